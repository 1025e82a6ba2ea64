//! `cargo xtask bench`: benchmark executables run on this kernel and in the
//! VM kernels; every line they print starting with `bench ` is collected.

use std::time::Duration;

use anyhow::Result;

use crate::{artifacts, sh::run, vm};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Kernels to boot for the function hooks; default: the whole matrix.
    #[arg(long = "kernel")]
    pub kernels: Vec<String>,
    /// Skip the VM kernels.
    #[arg(long)]
    pub no_vm: bool,
}

pub fn run_all(args: &BenchArgs) -> Result<()> {
    let tcptrace = artifacts::static_tcptrace()?;
    let benches = artifacts::static_benches()?;
    for (name, path) in &benches {
        eprintln!("bench: {name} on this kernel");
        run(std::process::Command::new(path).env("TCPTRACE_BIN", &tcptrace))?;
    }
    if args.no_vm {
        return Ok(());
    }
    crate::setup::vm_tools()?;
    let kernels: Vec<String> = if args.kernels.is_empty() {
        vm::matrix().iter().map(|s| (*s).to_owned()).collect()
    } else {
        args.kernels.clone()
    };
    let mut script =
        String::from("export TCPTRACE_BIN=/bin/tcptrace TCPTRACE_ATTACH=fentry\nrc=0\n");
    for (name, _) in &benches {
        script.push_str(&format!("/benches/{name} || rc=1\n"));
    }
    script.push_str("[ $rc -eq 0 ]\n");
    for (name, kernel) in vm::resolve(&kernels) {
        let kernel = match kernel {
            Ok(k) => k,
            Err(e) => {
                println!("bench {name}: SKIPPED ({e:#})");
                continue;
            }
        };
        let mut job = vm::Job::new(script.clone(), Duration::from_secs(1800));
        job.files.push((tcptrace.clone(), "/bin/tcptrace".into()));
        for (bench, path) in &benches {
            job.files.push((path.clone(), format!("/benches/{bench}")));
        }
        let outcome = vm::run(&kernel, &job)?;
        let log = std::fs::read_to_string(&outcome.log).unwrap_or_default();
        for line in log
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| l.starts_with("bench "))
        {
            println!("{name} ({}): {line}", kernel.release);
        }
        if !outcome.passed {
            println!(
                "bench {name}: FAILED: {} (log: {})",
                outcome.summary,
                outcome.log.display()
            );
        }
    }
    Ok(())
}
