//! The initramfs of one run: busybox (from Debian's busybox-static) for the
//! applets, the host's dash as /bin/sh, /init, the job's files, host programs
//! with their shared libraries, and the decompressed kernel modules.
//!
//! Why dash: Debian's static busybox is built with FEATURE_SH_STANDALONE and
//! FEATURE_PREFER_APPLETS, so its shell runs its own `ip` applet even when
//! the real iproute2 `ip` is first in PATH. With dash as /bin/sh, commands
//! are found through PATH, where host programs (/bin) come before busybox
//! links. Busybox applets that start programs by name (`timeout`, `env`,
//! `xargs`) still prefer their own applets. It is written fresh for every run as one
//! uncompressed newc archive: even with a large static binary this takes
//! milliseconds, and the kernel unpacks it faster than a compressed one under
//! TCG.

use std::{
    collections::HashSet,
    fs::{self, File},
    io::BufWriter,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::Command,
};

use anyhow::{bail, Context, Result};

use super::{cpio, elf, modules::Module, tools, Job, Kernel};

/// Guest directory holding the job script and the module list.
const JOB_DIR: &str = "/tcptrace-vm";

/// What /init prints once the system is up, just before the job runs.
pub const INIT_READY: &str = "up, init ready";

/// The result line /init prints, before `: PASS` or `: FAIL rc=N`. /init
/// builds it from a variable so that printing /init does not forge it.
pub const RESULT_MARKER: &str = "TCPTRACE-VM-RESULT";

const INIT: &str = r#"#!/bin/sh
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=linux
try() { "$@" || echo "tcptrace-vm: failed: $*"; }
try mount -t proc proc /proc
try mount -t sysfs sysfs /sys
try mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
try mount -t devpts devpts /dev/pts
try mount -t tmpfs tmpfs /dev/shm
try mount -t tracefs tracefs /sys/kernel/tracing
try mount -t debugfs debugfs /sys/kernel/debug
try mount -t bpf bpf /sys/fs/bpf
try mount -t cgroup2 cgroup2 /sys/fs/cgroup
ulimit -l unlimited 2>/dev/null
try ip link set lo up
# One TCP connection before any job: the first lookup initialises the
# kernel's hash secrets (net_get_random_once), whose static key is then
# patched from a workqueue; under TCG that live patching can race a CPU
# running the same code (seen as "Oops: int3" in inet_ehashfn on 6.18).
# Doing it here, with nothing attached, keeps it out of every measurement.
busybox nc -l -p 9 127.0.0.1 >/dev/null 2>&1 &
sleep 0.2
echo warm | busybox nc 127.0.0.1 9 >/dev/null 2>&1
sleep 1
echo "tcptrace-vm: kernel $(uname -r) up, init ready"
rc=0
if [ -f /tcptrace-vm/modules ]; then
    while read -r ko; do
        insmod "$ko" || { rc=$?; echo "tcptrace-vm: insmod $ko failed"; break; }
    done < /tcptrace-vm/modules
fi
if [ "$rc" -eq 0 ]; then
    cd /
    sh /tcptrace-vm/job.sh
    rc=$?
fi
echo 1 > /proc/sys/kernel/printk
m=TCPTRACE-VM-RESULT
if [ "$rc" -eq 0 ]; then echo "$m: PASS"; else echo "$m: FAIL rc=$rc"; fi
sync
poweroff -f
echo o > /proc/sysrq-trigger
sleep 10
"#;

/// Directories every run has, empty unless something is put in them.
const DIRS: &[&str] = &[
    "/bin",
    "/sbin",
    "/usr",
    "/usr/bin",
    "/usr/sbin",
    "/lib",
    "/lib64",
    "/etc",
    "/root",
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/var",
    "/var/run",
    "/mnt",
];
/// World-writable sticky directories.
const TMP_DIRS: &[&str] = &["/tmp", "/var/tmp"];

/// Writes the initramfs for `job` on `kernel` to `out`.
pub fn build(out: &Path, kernel: &Kernel, job: &Job, modules: &[Module]) -> Result<()> {
    let file = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut a = Archive {
        w: cpio::Writer::new(BufWriter::new(file)),
        dirs: HashSet::new(),
        libs: HashSet::new(),
    };
    let io =
        |e: std::io::Error| anyhow::Error::new(e).context(format!("writing {}", out.display()));
    for d in DIRS {
        a.dir(d).map_err(io)?;
    }
    for d in TMP_DIRS {
        a.dirs.insert(d.to_string());
        a.w.dir(d, 0o1777).map_err(io)?;
    }
    a.w.char_dev("/dev/console", 0o600, 5, 1).map_err(io)?;
    a.w.char_dev("/dev/null", 0o666, 1, 3).map_err(io)?;

    let busybox = busybox()?;
    a.put("/bin/busybox", 0o755, &busybox).map_err(io)?;
    tools::require("dash", "dash")?;
    add_host_bin(&mut a, "dash").context("the guest shell, dash")?;
    a.w.symlink("/bin/sh", "dash").map_err(io)?;
    a.put("/init", 0o755, INIT.as_bytes()).map_err(io)?;

    for name in &job.host_bins {
        add_host_bin(&mut a, name).with_context(|| format!("host program `{name}`"))?;
    }
    for (host, guest) in &job.files {
        add_host_path(&mut a, host, guest)
            .with_context(|| format!("job file {} -> {guest}", host.display()))?;
    }
    let mut list = String::new();
    for m in modules {
        let guest = format!("/lib/modules/{}/{}.ko", kernel.release, m.name);
        let bytes = fs::read(&m.ko).with_context(|| format!("reading {}", m.ko.display()))?;
        a.put(&guest, 0o644, &bytes).map_err(io)?;
        list.push_str(&guest);
        list.push('\n');
    }
    a.put(&format!("{JOB_DIR}/modules"), 0o644, list.as_bytes())
        .map_err(io)?;
    a.put(&format!("{JOB_DIR}/job.sh"), 0o755, job.script.as_bytes())
        .map_err(io)?;
    a.w.finish().map_err(io)?;
    Ok(())
}

struct Archive {
    w: cpio::Writer<BufWriter<File>>,
    dirs: HashSet<String>,
    /// Shared libraries already added.
    libs: HashSet<String>,
}

impl Archive {
    /// Adds `path` and its missing parents as directories.
    fn dir(&mut self, path: &str) -> std::io::Result<()> {
        let mut at = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            at.push('/');
            at.push_str(part);
            if self.dirs.insert(at.clone()) {
                self.w.dir(&at, 0o755)?;
            }
        }
        Ok(())
    }

    fn put(&mut self, path: &str, perm: u32, data: &[u8]) -> std::io::Result<()> {
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent)?;
        }
        self.w.file(path, perm, data)
    }
}

/// The host's busybox, which must be the static one.
fn busybox() -> Result<Vec<u8>> {
    let path = tools::require("busybox", "busybox-static")?;
    let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    if elf::is_static(&bytes) != Some(true) {
        bail!(
            "{} is not a static binary: install the Debian package `busybox-static`",
            path.display()
        );
    }
    Ok(bytes)
}

/// A host file or directory tree at `guest`, modes kept, symlinks followed.
fn add_host_path(a: &mut Archive, host: &Path, guest: &str) -> Result<()> {
    if !guest.starts_with('/') {
        bail!("guest path must be absolute");
    }
    let meta = fs::metadata(host).with_context(|| format!("reading {}", host.display()))?;
    if meta.is_dir() {
        a.dir(guest)?;
        for entry in fs::read_dir(host).with_context(|| format!("reading {}", host.display()))? {
            let entry = entry.with_context(|| format!("reading {}", host.display()))?;
            let name = entry.file_name();
            let child = format!("{}/{}", guest.trim_end_matches('/'), name.to_string_lossy());
            add_host_path(a, &entry.path(), &child)?;
        }
        return Ok(());
    }
    let bytes = fs::read(host).with_context(|| format!("reading {}", host.display()))?;
    a.put(guest, meta.permissions().mode(), &bytes)?;
    Ok(())
}

/// A host program at /bin/<name> with the shared libraries and loader it
/// needs at the paths `ldd` reports.
fn add_host_bin(a: &mut Archive, name: &str) -> Result<()> {
    let path = tools::find(name).context("not found on the host")?;
    let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    a.put(&format!("/bin/{base}"), 0o755, &bytes)?;
    if elf::is_static(&bytes) == Some(true) {
        return Ok(());
    }
    for lib in libraries(&path)? {
        if a.libs.insert(lib.clone()) {
            add_host_path(a, Path::new(&lib), &lib)?;
        }
    }
    Ok(())
}

/// Absolute paths of the shared objects `ldd` lists for `program`.
fn libraries(program: &Path) -> Result<Vec<String>> {
    let ldd = tools::require("ldd", "libc-bin")?;
    let out = tools::output(Command::new(ldd).arg(program))?;
    parse_ldd(&String::from_utf8_lossy(&out.stdout))
        .with_context(|| format!("libraries of {}", program.display()))
}

fn parse_ldd(text: &str) -> Result<Vec<String>> {
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim) {
        let target = match line.split_once("=>") {
            Some((lib, rest)) => {
                let rest = rest.trim();
                if rest.starts_with("not found") {
                    bail!("{} not found", lib.trim());
                }
                rest
            }
            None => line,
        };
        if let Some(p) = target
            .split_whitespace()
            .next()
            .filter(|p| p.starts_with('/'))
        {
            libs.push(p.to_string());
        }
    }
    Ok(libs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ldd_output() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibbpf.so.1 => /lib/x86_64-linux-gnu/libbpf.so.1 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text).unwrap(),
            [
                "/lib/x86_64-linux-gnu/libbpf.so.1",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
        assert!(parse_ldd("\tlibx.so => not found\n").is_err());
    }

    #[test]
    fn init_builds_the_marker_from_a_variable() {
        assert!(!INIT.contains(&format!("{RESULT_MARKER}: PASS")));
        assert!(INIT.contains(JOB_DIR));
    }
}
