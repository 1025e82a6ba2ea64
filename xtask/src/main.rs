//! Developer tasks for tcptrace. Every command installs what it needs first.
//!
//! - `cargo xtask setup`: Debian packages, bpf-linker, the eBPF toolchain.
//! - `cargo xtask run -- ARGS`: build and run tcptrace live.
//! - `cargo xtask test`: lint, unit, host scenarios, VM kernel matrix.
//! - `cargo xtask vm`: the VM matrix alone, with filters.
//! - `cargo xtask bench`: benchmarks, this kernel and the VM kernels.
//! - `cargo xtask dist`: one static x86_64 binary in target/dist/.

mod artifacts;
mod bench;
mod bench_notes;
mod bench_page;
mod bench_report;
mod bench_runs;
mod bench_scrape;
mod report_section;
mod setup;
mod sh;
mod soak;
mod test;
mod vm;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

#[derive(Parser)]
#[command(name = "cargo xtask")]
enum Cmd {
    /// Install the build chain and VM tools (idempotent).
    Setup,
    /// Build tcptrace (release) with the embedded eBPF object.
    Build,
    /// Build and run tcptrace live; arguments after `--` go to tcptrace.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build one static x86_64 binary: target/dist/tcptrace.
    Dist,
    /// The whole test suite.
    Test(test::TestArgs),
    /// The VM kernel matrix only.
    Vm(test::VmArgs),
    /// Benchmarks on this kernel and in the VM kernels.
    Bench(bench::BenchArgs),
    /// Boot kernels with small harness self-checks (development aid).
    #[command(hide = true)]
    VmSmoke {
        #[arg(long = "kernel", default_value = "6.12")]
        kernel: Vec<String>,
    },
}

fn build() -> Result<std::path::PathBuf> {
    setup::build_chain()?;
    sh::run(sh::cargo().args(["build", "--release", "-p", "tcptrace"]))?;
    Ok(sh::root().join("target/release/tcptrace"))
}

fn main() -> ExitCode {
    let result = match Cmd::parse() {
        Cmd::Setup => setup::build_chain()
            .and_then(|()| setup::vm_tools())
            .map(|()| {
                eprintln!("setup: done; packages:\n{}", setup::describe());
            }),
        Cmd::Build => build().map(|p| eprintln!("built {}", p.display())),
        Cmd::Run { args } => build().and_then(|bin| {
            use std::os::unix::process::CommandExt as _;
            let err = std::process::Command::new(&bin).args(args).exec();
            Err(anyhow::Error::from(err).context(format!("running {}", bin.display())))
        }),
        Cmd::Dist => setup::build_chain()
            .and_then(|()| artifacts::dist())
            .map(|p| println!("{}", p.display())),
        // Test tools (tshark) are needed by the unit tests already.
        Cmd::Test(args) => setup::build_chain()
            .and_then(|()| setup::vm_tools())
            .and_then(|()| test::all(&args)),
        Cmd::Vm(args) => setup::build_chain().and_then(|()| test::vm_only(&args)),
        Cmd::Bench(args) => setup::build_chain().and_then(|()| bench::run_all(&args)),
        Cmd::VmSmoke { kernel } => setup::vm_tools().and_then(|()| vm::smoke::run_all(&kernel)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
