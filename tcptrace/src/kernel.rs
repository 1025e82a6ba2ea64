//! Facts about the running kernel and process: symbols, privileges,
//! filesystems the loader needs, clocks.

use std::{collections::HashSet, ffi::CString, fs, path::Path};

use anyhow::{bail, Context as _, Result};

/// Function names in /proc/kallsyms: a BTF function without a symbol was
/// inlined and cannot be probed. Read on first use: only a failed attach
/// needs it (to say why), and reading it costs tens of milliseconds.
pub struct KernelSymbols {
    names: std::sync::OnceLock<Option<HashSet<String>>>,
}

impl KernelSymbols {
    /// Symbols read from /proc/kallsyms when first asked.
    pub fn lazy() -> Self {
        Self {
            names: std::sync::OnceLock::new(),
        }
    }

    pub fn parse(text: &str) -> Self {
        let names = text
            .lines()
            .filter_map(|line| {
                let mut cols = line.split_whitespace();
                let (_addr, kind, name) = (cols.next()?, cols.next()?, cols.next()?);
                matches!(kind, "t" | "T").then(|| name.to_owned())
            })
            .collect();
        let cell = std::sync::OnceLock::new();
        let _ = cell.set(Some(names));
        Self { names: cell }
    }

    /// Whether `name` is a kernel text symbol; true when kallsyms cannot be
    /// read (the attach error then speaks for itself).
    pub fn contains(&self, name: &str) -> bool {
        self.names
            .get_or_init(|| {
                let text = fs::read_to_string("/proc/kallsyms").ok()?;
                Self::parse(&text).names.into_inner().flatten()
            })
            .as_ref()
            .is_none_or(|names| names.contains(name))
    }
}

/// Where function `name`'s code lies, from kallsyms text: `[start, end)` of
/// its symbol and of a part the compiler split off it (`name.cold`), each
/// ending at the next symbol's address; zeros where absent, and all zeros
/// where kallsyms hides addresses (read without CAP_SYSLOG).
pub fn text_ranges(kallsyms: &str, name: &str) -> [u64; 4] {
    let cold = format!("{name}.cold");
    let mut starts: Vec<u64> = Vec::new();
    let (mut main, mut split) = (0, 0);
    for line in kallsyms.lines() {
        let mut cols = line.split_whitespace();
        let (Some(addr), Some(_kind), Some(sym)) = (cols.next(), cols.next(), cols.next()) else {
            continue;
        };
        let Ok(addr) = u64::from_str_radix(addr, 16) else {
            continue;
        };
        starts.push(addr);
        if sym == name {
            main = addr;
        } else if sym == cold {
            split = addr;
        }
    }
    starts.sort_unstable();
    let range = |start: u64| {
        let next = starts.iter().find(|&&a| a > start).copied();
        match next {
            Some(end) if start != 0 => [start, end],
            _ => [0, 0],
        }
    };
    let ([a, b], [c, d]) = (range(main), range(split));
    [a, b, c, d]
}

/// Fails with one line naming what is needed unless this process may load
/// and attach tracing programs.
pub fn check_privileges() -> Result<()> {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| cap_eff & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    bail!(
        "tcptrace needs root, or the capabilities CAP_BPF and CAP_PERFMON (kernel 5.8+): \
         run it with sudo"
    )
}

/// Lifts RLIMIT_MEMLOCK for kernels that still charge BPF maps to it (< 5.11).
pub fn raise_memlock() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid, initialised struct.
    let ret = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) };
    if ret != 0 {
        log::debug!(
            "setrlimit(RLIMIT_MEMLOCK) failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Mounts tracefs and bpffs where the system has not (minimal hosts, VMs).
pub fn ensure_filesystems() -> Result<()> {
    let tracing = Path::new("/sys/kernel/tracing");
    if !tracing.join("events").exists() && !Path::new("/sys/kernel/debug/tracing/events").exists() {
        mount("tracefs", tracing, "tracefs")?;
    }
    let bpf = Path::new("/sys/fs/bpf");
    if bpf.exists()
        && fs::read_dir(bpf)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false)
    {
        // An empty /sys/fs/bpf may simply be unmounted; mounting is harmless if
        // it was, and tcptrace pins nothing, so failure here is not fatal.
        let _ = mount("bpf", bpf, "bpf");
    }
    Ok(())
}

fn mount(source: &str, target: &Path, fstype: &str) -> Result<()> {
    let c = |s: &str| CString::new(s).context("mount argument with NUL");
    let (src, fst) = (c(source)?, c(fstype)?);
    let tgt = c(&target.to_string_lossy())?;
    // SAFETY: all pointers are valid NUL-terminated strings for the call.
    let ret = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            fst.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if ret != 0 {
        bail!(
            "{fstype} is not mounted at {} and mounting it failed ({}): mount it with \
             `mount -t {fstype} {source} {}`",
            target.display(),
            std::io::Error::last_os_error(),
            target.display()
        );
    }
    Ok(())
}

/// Nanoseconds to add to a CLOCK_BOOTTIME stamp to get Unix time.
pub fn boot_to_unix_offset_ns() -> i64 {
    let now = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into a valid timespec.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec * 1_000_000_000 + ts.tv_nsec
    };
    let real = now(libc::CLOCK_REALTIME);
    let boot = now(libc::CLOCK_BOOTTIME);
    real - boot
}

/// Whether the running kernel's release (`uname -r`) is older than
/// `major.minor`; false when it cannot be read. For tests that check
/// kernel facts which arrived in a known release.
#[cfg(test)]
pub fn release_before(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    match (parts.next(), parts.next()) {
        (Some(a), Some(b)) => (a, b) < (major, minor),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kallsyms_keeps_text_symbols_only() {
        let syms = KernelSymbols::parse(
            "ffffffff81000000 T _stext\n\
             ffffffff81a00000 t __inet_check_established\n\
             ffffffff81b00000 D tcp_hashinfo\n\
             ffffffffc0000000 t veth_xmit\t[veth]\n",
        );
        assert!(syms.contains("__inet_check_established"));
        assert!(syms.contains("veth_xmit"));
        assert!(!syms.contains("tcp_hashinfo"));
        assert!(!syms.contains("tcp_v4_connect"));
    }

    #[test]
    fn text_ranges_end_at_the_next_symbol() {
        let kallsyms = "ffffffff81a00000 t tcp_validate_incoming\n\
                        ffffffff81a00400 T tcp_rcv_established\n\
                        ffffffff81a00300 t tcp_sequence\n\
                        ffffffff81f00000 t tcp_validate_incoming.cold\n\
                        ffffffff81f00080 t tcp_rcv_state_process.cold\n";
        assert_eq!(
            text_ranges(kallsyms, "tcp_validate_incoming"),
            [
                0xffffffff81a00000,
                0xffffffff81a00300,
                0xffffffff81f00000,
                0xffffffff81f00080
            ]
        );
        assert_eq!(
            text_ranges(kallsyms, "tcp_rcv_established"),
            [0xffffffff81a00400, 0xffffffff81f00000, 0, 0]
        );
        assert_eq!(text_ranges(kallsyms, "tcp_v4_rcv"), [0; 4]);
        // Addresses hidden (no CAP_SYSLOG): nothing.
        let hidden =
            "0000000000000000 t tcp_validate_incoming\n0000000000000000 T tcp_rcv_established\n";
        assert_eq!(text_ranges(hidden, "tcp_validate_incoming"), [0; 4]);
    }
}
