//! The kernel test matrix: Debian kernels booted under QEMU/TCG with an
//! initramfs holding the static binaries and a scenario script.
//!
//! - [`matrix`]: the kernel names of the matrix.
//! - [`resolve`]: turns names (`5.10`, `6.1`, `6.12`, `6.18`, `newest`) into kernels,
//!   finding today's package, downloading and caching it; one that cannot be
//!   had is `Err` by name, with the reason.
//! - [`run`]: boots one kernel with a [`Job`] and reports the result line.
//!
//! Everything lives under [`cache_dir`] (`target/vm-cache`, or
//! `$TCPTRACE_VM_CACHE`): private apt state (`apt/`), unpacked kernels
//! (`kernels/`), decompressed modules (`ko/`), console logs (`logs/`).
//! `TCPTRACE_VM_VERBOSE=1` echoes console lines prefixed with the kernel name.

mod apt;
mod cpio;
mod elf;
mod initramfs;
mod kernels;
mod modules;
mod qemu;
pub mod smoke;
pub mod tools;

use std::{
    env, fs,
    path::PathBuf,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result};

/// A kernel ready to boot.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// Matrix name: "5.10", "6.1", "6.12", "6.18", "newest".
    pub name: String,
    /// Debian package it came from, as `package=version`.
    pub package: String,
    /// What `uname -r` prints in the guest (from the vmlinuz file name).
    pub release: String,
    pub vmlinuz: PathBuf,
    /// The package's modules tree (`.../lib/modules/<release>`), compressed
    /// as shipped; [`run`] decompresses what a job asks for.
    pub modules: PathBuf,
}

/// What to run inside the VM.
#[derive(Debug, Clone)]
pub struct Job {
    /// (host file, absolute guest path); static binaries or data files. Modes
    /// are kept; a host directory is copied recursively.
    pub files: Vec<(PathBuf, String)>,
    /// Shell lines run by /init with /bin/sh (the host's dash; busybox
    /// provides the other commands) after mounts and module loads.
    /// The job passes when the last command exits 0.
    pub script: String,
    pub timeout: Duration,
    /// Host programs (`ip`, `tc`, or a path) copied to /bin in the guest with
    /// their shared libraries and loader; they win over busybox applets.
    pub host_bins: Vec<String>,
    /// Kernel modules (`veth`) loaded with insmod before the script, with
    /// their dependencies; modules built into the kernel are skipped.
    pub modules: Vec<String>,
}

impl Job {
    /// A job running `script` with nothing else added.
    pub fn new(script: impl Into<String>, timeout: Duration) -> Self {
        Self {
            files: Vec::new(),
            script: script.into(),
            timeout,
            host_bins: Vec::new(),
            modules: Vec::new(),
        }
    }
}

/// Outcome of one VM run.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub passed: bool,
    /// The result line the guest printed, or why there was none.
    pub summary: String,
    /// Full serial console log on the host.
    pub log: PathBuf,
    /// From starting QEMU to the result line and power-off (or the kill).
    pub duration: Duration,
}

/// The kernels of the matrix, oldest first.
pub use kernels::known_unavailable;

pub fn matrix() -> &'static [&'static str] {
    kernels::MATRIX
}

/// The harness cache: `$TCPTRACE_VM_CACHE`, else `target/vm-cache` in the
/// workspace.
pub fn cache_dir() -> PathBuf {
    match env::var_os("TCPTRACE_VM_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(|ws| ws.join("target"))
            .unwrap_or_else(|| PathBuf::from("target"))
            .join("vm-cache"),
    }
}

/// Finds and fetches each named kernel. Package lists are refreshed at most
/// once per run; a kernel already unpacked is reused.
pub fn resolve(names: &[String]) -> Vec<(String, Result<Kernel>)> {
    let cache = cache_dir();
    names
        .iter()
        .map(|name| {
            let kernel = kernels::resolve(name, &cache).with_context(|| format!("kernel {name}"));
            (name.clone(), kernel)
        })
        .collect()
}

/// Boots `kernel` with `job`. `Err` means the run could not happen (missing
/// host tool, module, file); a guest failure or timeout is an [`Outcome`]
/// that did not pass.
pub fn run(kernel: &Kernel, job: &Job) -> Result<Outcome> {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let cache = cache_dir();
    let what = || format!("kernel {} ({})", kernel.name, kernel.package);
    let modules = modules::prepare(kernel, &job.modules, &cache)?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let id = format!(
        "{}-{stamp}-{}-{}",
        kernel.name,
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    );
    let (runs, logs) = (cache.join("runs"), cache.join("logs"));
    for d in [&runs, &logs] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let initrd = runs.join(format!("{id}.cpio"));
    initramfs::build(&initrd, kernel, job, &modules)
        .with_context(|| format!("{}: building the initramfs", what()))?;
    // A kernel that dies before /init runs never ran the job: boot it once
    // more and say so. A failure after /init started is the job's.
    let mut outcome = qemu::boot(
        kernel,
        &initrd,
        &logs.join(format!("{id}.log")),
        job.timeout,
    );
    if let Ok(first) = &outcome {
        if !first.passed && !reached_init(&first.log) {
            eprintln!(
                "vm: {} crashed before /init ({}; log {}): booting again",
                what(),
                first.summary,
                first.log.display()
            );
            let first_log = first.log.clone();
            outcome = qemu::boot(
                kernel,
                &initrd,
                &logs.join(format!("{id}-retry.log")),
                job.timeout,
            )
            .map(|mut o| {
                o.summary = format!(
                    "{} (after a first boot that crashed before /init: {})",
                    o.summary,
                    first_log.display()
                );
                o
            });
        }
    }
    let _ = fs::remove_file(&initrd);
    outcome.with_context(what)
}

/// Whether the guest's /init got as far as running the job.
fn reached_init(log: &std::path::Path) -> bool {
    fs::read_to_string(log).is_ok_and(|t| t.contains(initramfs::INIT_READY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_kernel_is_an_error_by_name() {
        let got = resolve(&["5.4".to_string()]);
        assert_eq!(got.len(), 1);
        let err = format!("{:#}", got[0].1.as_ref().unwrap_err());
        assert!(
            err.contains("kernel 5.4") && err.contains("unknown"),
            "{err}"
        );
    }

    fn kernel_6_12() -> Kernel {
        let mut got = resolve(&["6.12".to_string()]);
        got.remove(0).1.unwrap()
    }

    #[test]
    #[ignore = "boots a VM: needs qemu and the 6.12 kernel (network or cache)"]
    fn timeout_is_a_failure() {
        let out = run(
            &kernel_6_12(),
            &Job::new("sleep 600", Duration::from_secs(15)),
        )
        .unwrap();
        assert!(!out.passed);
        assert!(out.summary.contains("timed out"), "{}", out.summary);
    }

    #[test]
    #[ignore = "needs the 6.12 kernel (network or cache)"]
    fn missing_module_is_an_error() {
        let mut job = Job::new("true", Duration::from_secs(60));
        job.modules = vec!["no_such_module".into()];
        let err = format!("{:#}", run(&kernel_6_12(), &job).unwrap_err());
        assert!(err.contains("no_such_module"), "{err}");
    }

    #[test]
    #[ignore = "boots a VM: needs qemu and the 6.12 kernel (network or cache)"]
    fn files_keep_their_mode_and_modules_load_with_dependencies() {
        let dir = std::env::temp_dir().join(format!("tcptrace-vm-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let exe = dir.join("hello.sh");
        fs::write(&exe, "#!/bin/sh\necho hello-from-file\n").unwrap();
        fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let data = dir.join("data.txt");
        fs::write(&data, "payload\n").unwrap();
        let mut job = Job::new(
            "test -x /opt/t/hello.sh && ! test -x /opt/t/data.txt && /opt/t/hello.sh && \
             grep -q payload /opt/t/data.txt && grep -q '^udp_tunnel ' /proc/modules && grep -q '^vxlan ' /proc/modules && tc -V",
            Duration::from_secs(120),
        );
        job.files = vec![
            (exe, "/opt/t/hello.sh".into()),
            (data, "/opt/t/data.txt".into()),
        ];
        job.modules = vec!["vxlan".into()];
        job.host_bins = vec!["tc".into()];
        let out = run(&kernel_6_12(), &job).unwrap();
        let _ = fs::remove_dir_all(&dir);
        assert!(out.passed, "{} ({})", out.summary, out.log.display());
    }
}
