//! `cargo xtask test`: lint, unit tests, host scenarios (root, this kernel)
//! and the VM kernel matrix, with one closing line of counts.

use std::{fmt::Write as _, path::PathBuf, time::Duration};

use anyhow::{bail, Context as _, Result};

use crate::{
    artifacts,
    sh::{cargo, run},
    vm,
};

#[derive(clap::Args, Clone, Debug)]
pub struct VmArgs {
    /// Kernels to boot (5.10, 6.1, 6.12, 6.18, newest); default: the whole matrix.
    #[arg(long = "kernel")]
    pub kernels: Vec<String>,
    /// Attach modes to run each kernel with; default: fentry and kprobe.
    #[arg(long = "attach", value_parser = ["auto", "fentry", "kprobe"])]
    pub attach: Vec<String>,
    /// Only these test executables (e.g. `connect`, `tcptrace` for unit tests).
    #[arg(long = "test")]
    pub tests: Vec<String>,
    /// Only the tests whose names contain this (passed to each test executable).
    #[arg(long, value_parser = test_name)]
    pub filter: Option<String>,
    /// Run each test executable this many times in a row in the guest; the
    /// VM fails if any run fails (to hunt flaky tests).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: u32,
    /// Per-VM time limit in seconds.
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
}

/// A test-name filter goes into the guest's shell script: only the
/// characters of Rust test paths.
fn test_name(s: &str) -> Result<String, String> {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        Ok(s.to_owned())
    } else {
        Err("a test name filter has only letters, digits, '_' and ':'".into())
    }
}

#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// Skip the VM matrix (unit and host tests only).
    #[arg(long)]
    pub no_vm: bool,
    #[command(flatten)]
    pub vm: VmArgs,
}

#[derive(Default)]
struct Tally {
    passed: u32,
    failed: u32,
    skipped: u32,
    lines: String,
}

impl Tally {
    fn record(&mut self, what: &str, result: Result<(), String>) {
        let line = match &result {
            Ok(()) => {
                self.passed += 1;
                format!("PASS     {what}")
            }
            Err(why) => {
                self.failed += 1;
                format!("FAIL     {what}: {why}")
            }
        };
        eprintln!("xtask: {line}");
        let _ = writeln!(self.lines, "{line}");
    }

    fn skip(&mut self, what: &str, why: &str) {
        self.skipped += 1;
        let line = format!("SKIPPED  {what}: {why}");
        eprintln!("xtask: {line}");
        let _ = writeln!(self.lines, "{line}");
    }
}

fn stage(tally: &mut Tally, what: &str, f: impl FnOnce() -> Result<()>) {
    tally.record(what, f().map_err(|e| format!("{e:#}")));
}

pub fn all(args: &TestArgs) -> Result<()> {
    let mut tally = Tally::default();
    stage(&mut tally, "rustfmt", || {
        run(cargo().args(["fmt", "--all", "--check"]))
    });
    stage(&mut tally, "clippy (host)", || {
        run(cargo()
            .args([
                "clippy",
                "--release",
                "--workspace",
                "--exclude",
                "tcptrace-ebpf",
                "--all-targets",
            ])
            .args(["--", "-D", "warnings"]))
    });
    stage(&mut tally, "clippy (eBPF)", || clippy_ebpf(&[]));
    stage(&mut tally, "clippy (eBPF, thread-hash)", || {
        clippy_ebpf(&["--features", "thread-hash"])
    });
    stage(&mut tally, "unit tests", || {
        run(cargo().args([
            "test",
            "--release",
            "--workspace",
            "--exclude",
            "tcptrace-ebpf",
        ]))
    });
    stage(&mut tally, "host scenarios (this kernel)", || {
        run(cargo().args([
            "test",
            "--release",
            "-p",
            "tcptrace",
            "--",
            "--ignored",
            "--test-threads=1",
        ]))
    });
    if !args.no_vm {
        matrix(&args.vm, &mut tally)?;
    }
    finish(tally)
}

/// clippy over the kernel programs, built for the BPF target with the same
/// toolchain and flags as the real build; `features`: the second object's
/// (`--features thread-hash`, kernels without task storage).
fn clippy_ebpf(features: &[&str]) -> Result<()> {
    let mut c = std::process::Command::new("rustup");
    c.current_dir(crate::sh::root())
        .args([
            "run",
            crate::setup::BPF_TOOLCHAIN,
            "cargo",
            "clippy",
            "-p",
            "tcptrace-ebpf",
            "--release",
        ])
        .args(features)
        .args([
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--target-dir",
            "target/bpf-clippy",
        ])
        .args(["--", "-D", "warnings"])
        .env("RUSTC_BOOTSTRAP", "1")
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            "--cfg=bpf_target_arch=\"x86_64\"",
        )
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    run(&mut c)
}

pub fn vm_only(args: &VmArgs) -> Result<()> {
    let mut tally = Tally::default();
    matrix(args, &mut tally)?;
    finish(tally)
}

fn finish(tally: Tally) -> Result<()> {
    eprintln!("\n{}", tally.lines);
    println!(
        "xtask: {} passed, {} failed, {} skipped",
        tally.passed, tally.failed, tally.skipped
    );
    if tally.failed > 0 {
        bail!("{} stage(s) failed", tally.failed);
    }
    Ok(())
}

/// The script /init runs in each VM: every test executable with the ignored
/// scenarios included (`repeat` times, each run numbered in the log), then
/// `tcptrace check` and `tcptrace selftest` for the record.
fn guest_script(
    tests: &[(String, std::path::PathBuf)],
    kernel: &str,
    attach: &str,
    filter: Option<&str>,
    repeat: u32,
) -> String {
    let unavailable = vm::known_unavailable(kernel).join(",");
    let mut s = format!(
        "export TCPTRACE_BIN=/bin/tcptrace TCPTRACE_ATTACH={attach} TCPTRACE_REQUIRE=all \
         TCPTRACE_UNAVAILABLE={unavailable} RUST_BACKTRACE=1\n\
         rc=0\n"
    );
    // Test names are Rust identifiers: nothing to quote.
    let filter = filter.unwrap_or_default();
    for (name, _) in tests {
        // Tests of host tools (tshark reading our pcapng) run on the host
        // only, and so do paws_rst's SNAT scenarios (1.5 min a VM under
        // TCG; paws_clients puts NAT in front of real clients in every VM).
        let run = format!(
            "/tests/{name} {filter} --include-ignored --test-threads=1 --skip tshark --skip behind_snat"
        );
        if repeat == 1 {
            let _ = writeln!(s, "{run} || rc=1");
        } else {
            let _ = writeln!(
                s,
                "for i in $(seq {repeat}); do echo \"repeat: {name} run $i of {repeat}\"; {run} || {{ rc=1; echo \"repeat: {name} FAILED in run $i\"; }}; done"
            );
        }
    }
    let _ = writeln!(
        s,
        "/bin/tcptrace check --attach {attach} | sed 's/^/check: /'"
    );
    // The verdict of every hook on this kernel, for the record; a failed
    // selftest fails the VM (tests/selftest.rs says why).
    let _ = writeln!(
        s,
        "/bin/tcptrace selftest --attach {attach} > /tmp/selftest 2>&1 || rc=1; sed 's/^/selftest: /' /tmp/selftest"
    );
    s.push_str("[ $rc -eq 0 ]\n");
    s
}

/// The default matrix also runs these test files under `--attach auto` on
/// [`AUTO_KERNEL`], where PAWS and RST verdicts come from drop reasons and
/// `tcp_reset` rather than from hooks on the functions that decide them.
const AUTO_TESTS: [&str; 2] = ["paws_rst", "selftest"];
const AUTO_KERNEL: &str = "newest";

/// One VM of the matrix: kernel name, kernel, attach mode, test files.
type VmRun<'a> = (&'a String, &'a vm::Kernel, &'a str, Vec<(String, PathBuf)>);

fn matrix(args: &VmArgs, tally: &mut Tally) -> Result<()> {
    crate::setup::vm_tools()?;
    let tcptrace = artifacts::static_tcptrace()?;
    let mut tests = artifacts::static_tests()?;
    if !args.tests.is_empty() {
        tests.retain(|(name, _)| args.tests.contains(name));
    }
    let kernels: Vec<String> = if args.kernels.is_empty() {
        vm::matrix().iter().map(|s| (*s).to_owned()).collect()
    } else {
        args.kernels.clone()
    };
    let modes: Vec<String> = if args.attach.is_empty() {
        vec!["fentry".into(), "kprobe".into()]
    } else {
        args.attach.clone()
    };
    let mut ready = Vec::new();
    for (name, kernel) in vm::resolve(&kernels) {
        match kernel {
            Ok(k) => ready.push((name, k)),
            Err(e) => tally.skip(&format!("kernel {name}"), &format!("{e:#}")),
        }
    }
    // Each VM is single-threaded TCG: one VM per host core, each worker
    // taking the next (kernel, mode) pair, so no core idles while another
    // kernel's runs remain. Results are tallied in matrix order.
    let parallel = std::env::var("TCPTRACE_VM_JOBS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let all_tests = &tests;
    let mut jobs: Vec<VmRun<'_>> = ready
        .iter()
        .flat_map(|(name, kernel)| {
            modes
                .iter()
                .map(move |mode| (name, kernel, mode.as_str(), all_tests.clone()))
        })
        .collect();
    if args.attach.is_empty() {
        // `auto` takes the drop-reason forms first where the kernel has
        // them (6.11+): the files that check them run that way once more.
        let auto: Vec<(String, PathBuf)> = tests
            .iter()
            .filter(|(n, _)| AUTO_TESTS.contains(&n.as_str()))
            .cloned()
            .collect();
        if let Some((name, kernel)) = ready.iter().find(|(n, _)| n == AUTO_KERNEL) {
            if !auto.is_empty() {
                jobs.push((name, kernel, "auto", auto));
            }
        }
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<Option<Result<(), String>>> = vec![None; jobs.len()];
    let done: Vec<(usize, Result<(), String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..parallel.min(jobs.len()))
            .map(|_| {
                let (jobs, next, tcptrace) = (&jobs, &next, &tcptrace);
                scope.spawn(move || {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((name, kernel, mode, tests)) = jobs.get(i) else {
                            return done;
                        };
                        done.push((i, run_one(name, kernel, mode, tests, tcptrace, args)));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    for (i, result) in done {
        results[i] = Some(result);
    }
    for ((name, kernel, mode, _), result) in jobs.iter().zip(results) {
        // A worker that panicked took its runs' results with it: they fail.
        let result =
            result.unwrap_or_else(|| Err("the xtask worker running it panicked".to_owned()));
        tally.record(&vm_title(name, kernel, mode), result);
    }
    Ok(())
}

/// The real programs of the server scenarios (tests/nginx.rs,
/// tests/paws_clients.rs, the SNAT case of tests/paws_rst.rs), where this
/// host has them (`cargo xtask setup` installs them): copied in with their
/// libraries, with the netfilter modules their nft rules need (tables,
/// conntrack state, SNAT) and the user database nginx's `user root` reads.
fn add_server_programs(job: &mut vm::Job) -> Result<()> {
    const PROGRAMS: [&str; 3] = ["nginx", "curl", "nft"];
    const NETFILTER: [&str; 6] = [
        "nf_tables",
        "nft_ct",
        "nft_chain_nat",
        "nft_nat",
        "nf_conntrack",
        "nf_nat",
    ];
    let found: Vec<&str> = PROGRAMS
        .into_iter()
        .filter(|p| vm::tools::find(p).is_some())
        .collect();
    if found.is_empty() {
        return Ok(());
    }
    job.host_bins.extend(found.iter().map(|p| (*p).to_owned()));
    if found.contains(&"nft") {
        job.modules
            .extend(NETFILTER.iter().map(|m| (*m).to_owned()));
    }
    let etc = crate::sh::root().join("target/vm-cache/etc");
    std::fs::create_dir_all(&etc).with_context(|| format!("creating {}", etc.display()))?;
    for (file, text) in [
        ("passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        ("group", "root:x:0:\n"),
    ] {
        let path = etc.join(file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        job.files.push((path, format!("/etc/{file}")));
    }
    Ok(())
}

fn vm_title(name: &str, kernel: &vm::Kernel, mode: &str) -> String {
    format!("VM {name} ({}) --attach {mode}", kernel.release)
}

/// One kernel with one attach mode: every test executable in the VM.
fn run_one(
    name: &str,
    kernel: &vm::Kernel,
    mode: &str,
    tests: &[(String, std::path::PathBuf)],
    tcptrace: &std::path::Path,
    args: &VmArgs,
) -> Result<(), String> {
    let what = vm_title(name, kernel, mode);
    let script = guest_script(tests, name, mode, args.filter.as_deref(), args.repeat);
    let mut job = vm::Job::new(script, Duration::from_secs(args.timeout));
    job.files
        .push((tcptrace.to_path_buf(), "/bin/tcptrace".into()));
    for (test, path) in tests {
        job.files.push((path.clone(), format!("/tests/{test}")));
    }
    job.host_bins = vec!["ip".into()];
    job.modules = vec!["veth".into()];
    if let Err(e) = add_server_programs(&mut job) {
        return Err(format!("{what}: {e:#}"));
    }
    let result = match vm::run(kernel, &job) {
        Ok(o) => {
            report_checks(name, mode, &o.log);
            if o.passed {
                Ok(())
            } else {
                Err(format!(
                    "{} (log: {}){}",
                    o.summary,
                    o.log.display(),
                    std::fs::read_to_string(&o.log)
                        .map(|text| failure_digest(&text))
                        .unwrap_or_default()
                ))
            }
        }
        Err(e) => Err(format!("{e:#}")),
    };
    eprintln!(
        "xtask: {} {what}",
        if result.is_ok() { "passed" } else { "FAILED" }
    );
    result
}

/// The failed tests and their panic messages from a guest log, indented
/// under the FAIL line, so a CI run that keeps only the tail of the output
/// still names them.
fn failure_digest(text: &str) -> String {
    const MAX_LINES: usize = 24;
    let mut out = String::new();
    let mut lines = text.lines().map(|l| l.trim_end_matches('\r'));
    let mut kept = 0;
    while let Some(line) = lines.next() {
        if kept >= MAX_LINES {
            out.push_str("\n    ...");
            break;
        }
        let keep = if line.contains("panicked at") {
            // The message is the line after the location.
            Some(format!("{line} {}", lines.next().unwrap_or_default()))
        } else if line.starts_with("test ") && line.ends_with("FAILED") {
            Some(line.to_owned())
        } else {
            None
        };
        if let Some(l) = keep {
            let _ = write!(out, "\n    {}", l.chars().take(300).collect::<String>());
            kept += 1;
        }
    }
    out
}

/// Echoes the guest's `tcptrace check` lines: which mechanism each hook used.
fn report_checks(kernel: &str, mode: &str, log: &std::path::Path) {
    let Ok(text) = std::fs::read_to_string(log) else {
        return;
    };
    for line in text.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(tagged) = ["check: ", "selftest: "]
            .iter()
            .find_map(|tag| line.split_once(tag).map(|(_, rest)| format!("{tag}{rest}")))
        {
            eprintln!("xtask: {kernel} --attach {mode}: {tagged}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::failure_digest;

    #[test]
    fn the_digest_names_failed_tests_and_their_messages() {
        let log = "running 2 tests\r\ntest a::passes ... ok\r\n\
                   thread 'b' (9) panicked at tcptrace/tests/b.rs:3:5:\r\n\
                   assertion failed: x == 1\r\nstack backtrace:\r\n\
                   test b ... FAILED\r\n";
        assert_eq!(
            failure_digest(log),
            "\n    thread 'b' (9) panicked at tcptrace/tests/b.rs:3:5: assertion failed: x == 1\
             \n    test b ... FAILED"
        );
        assert_eq!(failure_digest("test a ... ok\n"), "");
    }
}
