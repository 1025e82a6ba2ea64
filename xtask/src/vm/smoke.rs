//! `cargo xtask vm-smoke`: the harness's own check on each kernel — boot,
//! BTF and syscall tracepoints present, a failing job fails, host programs
//! and modules work in network namespaces. `TCPTRACE_VM_SMOKE_BIN=<path>`
//! adds a job that ships and runs that (static) binary.

use std::{env, path::PathBuf, time::Duration};

use anyhow::{bail, Result};

use super::{matrix, resolve, run, Job, Kernel};

const TIMEOUT: Duration = Duration::from_secs(180);

/// Runs the smoke jobs on each named kernel (`all`: the whole matrix) and
/// prints one line per job.
pub fn run_all(names: &[String]) -> Result<()> {
    let names: Vec<String> = if names.iter().any(|n| n == "all") {
        matrix().iter().map(|n| n.to_string()).collect()
    } else {
        names.to_vec()
    };
    let mut bad = Vec::new();
    for (name, kernel) in resolve(&names) {
        let kernel = match kernel {
            Ok(k) => k,
            Err(e) => {
                println!("SKIPPED {name}: {e:#}");
                bad.push(format!("{name}: skipped"));
                continue;
            }
        };
        println!("{name}: {} (uname -r {})", kernel.package, kernel.release);
        for (label, job, expect_pass) in jobs(&kernel) {
            match run(&kernel, &job) {
                Ok(out) => {
                    let ok = out.passed == expect_pass;
                    println!(
                        "{name} {label}: {} [{:.1}s] {}{} log {}",
                        if ok { "ok" } else { "UNEXPECTED" },
                        out.duration.as_secs_f64(),
                        out.summary,
                        if expect_pass { "" } else { " (expected FAIL)" },
                        out.log.display()
                    );
                    if !ok {
                        bad.push(format!("{name} {label}"));
                    }
                }
                Err(e) => {
                    println!("{name} {label}: ERROR {e:#}");
                    bad.push(format!("{name} {label}"));
                }
            }
        }
    }
    if !bad.is_empty() {
        bail!("vm smoke failed: {}", bad.join(", "));
    }
    Ok(())
}

fn jobs(kernel: &Kernel) -> Vec<(&'static str, Job, bool)> {
    let basics = format!(
        r#"echo "uname -r: $(uname -r)"
b=/sys/kernel/btf/vmlinux; s=/sys/kernel/tracing/events/syscalls
[ -e $b ] && echo "btf: $b present ($(wc -c < $b) bytes)" || echo "btf: $b MISSING"
[ -d $s ] && echo "tracefs: $s present ($(ls $s | wc -l) events)" || echo "tracefs: $s MISSING"
[ "$(uname -r)" = "{}" ] && [ -e $b ] && [ -d $s ]"#,
        kernel.release
    );
    let mut netns = Job::new(
        "ip netns add a && ip netns add b && ip link add v0 type veth peer name v1 && \
         ip link set v1 netns b && ip netns exec b ip link show",
        TIMEOUT,
    );
    netns.host_bins = vec!["ip".into()];
    netns.modules = vec!["veth".into()];
    let mut jobs = vec![
        ("basics", Job::new(basics, TIMEOUT), true),
        ("false", Job::new("false", TIMEOUT), false),
        ("netns-veth", netns, true),
    ];
    if let Some(bin) = env::var_os("TCPTRACE_VM_SMOKE_BIN") {
        let mut job = Job::new("/bin/smoke-bin", TIMEOUT);
        job.files = vec![(PathBuf::from(bin), "/bin/smoke-bin".into())];
        jobs.push(("static-bin", job, true));
    }
    jobs
}
