//! Helpers for scenario tests: run the real tcptrace binary, make the kernel
//! do something, read back what tcptrace reported.
#![allow(dead_code)]

use std::{
    io::{BufRead as _, BufReader},
    net::{SocketAddr, TcpListener},
    os::fd::AsRawFd as _,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::Value;

/// The tcptrace binary: `TCPTRACE_BIN` (VM runs) or the one cargo built.
pub fn tcptrace_bin() -> String {
    std::env::var("TCPTRACE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tcptrace").to_owned())
}

/// `--attach` mode for this run: `TCPTRACE_ATTACH` or auto.
pub fn attach_mode() -> String {
    std::env::var("TCPTRACE_ATTACH").unwrap_or_else(|_| "auto".into())
}

/// Hooks that must attach in this run (`TCPTRACE_REQUIRE`, comma separated):
/// the VM matrix requires every hook; this machine's kernel lacks some.
pub fn required(hook: &str) -> bool {
    std::env::var("TCPTRACE_REQUIRE")
        .map(|v| v.split(',').any(|h| h == hook || h == "all"))
        .unwrap_or(false)
}

pub struct Tracer {
    child: Child,
    /// stderr lines up to "tracing;" (the attach report).
    pub attach_report: Vec<String>,
}

impl Tracer {
    /// Starts `tcptrace --json` and waits until its probes are attached.
    pub fn start(extra: &[&str]) -> Tracer {
        let mut child = Command::new(tcptrace_bin())
            .args(["--json", "--interval", "0", "--attach", &attach_mode()])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tcptrace");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[tcptrace] {line}");
                if tx.send(line).is_err() {
                    // Keep draining so tcptrace never blocks on stderr.
                }
            }
        });
        let mut attach_report = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("tracing;") => break,
                Ok(line) => attach_report.push(line),
                Err(_) => {
                    let _ = child.kill();
                    panic!("tcptrace did not start: {attach_report:?}");
                }
            }
        }
        Tracer {
            child,
            attach_report,
        }
    }

    /// The mechanism a hook attached with, or None if it is unavailable.
    pub fn mechanism(&self, hook: &str) -> Option<String> {
        let line = self
            .attach_report
            .iter()
            .find(|l| l.split_whitespace().nth(1) == Some(hook))?;
        let mech = line.split_whitespace().nth(2)?;
        (mech != "UNAVAILABLE").then(|| mech.to_owned())
    }

    /// SIGINT, then every JSON object tcptrace printed.
    pub fn stop(self) -> Vec<Value> {
        self.stop_with(nix::sys::signal::Signal::SIGINT)
    }

    /// Stops tcptrace with `signal` and returns every JSON object it printed.
    pub fn stop_with(self, signal: nix::sys::signal::Signal) -> Vec<Value> {
        // Let the last events reach the ring buffer reader.
        std::thread::sleep(Duration::from_millis(300));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal)
            .expect("signal tcptrace");
        let out = self.child.wait_with_output().expect("wait tcptrace");
        assert!(out.status.success(), "tcptrace exited with {}", out.status);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }
}

/// Ids of the BPF programs loaded in the kernel right now whose names are
/// tcptrace's (the kernel keeps the first 15 bytes of a program name).
pub fn loaded_tcptrace_programs(names: &[&str]) -> std::collections::BTreeSet<u32> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| {
            p.name_as_str().is_some_and(|n| {
                !n.is_empty()
                    && names
                        .iter()
                        .any(|want| want.as_bytes().starts_with(n.as_bytes()))
            })
        })
        .map(|p| p.id())
        .collect()
}

/// The final summary object.
pub fn final_summary(objs: &[Value]) -> &Value {
    objs.iter()
        .find(|o| o["kind"] == "summary" && o["final"] == true)
        .expect("final summary")
}

pub fn events<'a>(objs: &'a [Value], kind: &str) -> impl Iterator<Item = &'a Value> {
    let kind = kind.to_owned();
    objs.iter().filter(move |o| o["kind"] == kind.as_str())
}

/// Inode of the calling thread's network namespace.
pub fn thread_netns() -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/thread-self/ns/net")
        .expect("netns")
        .ino()
}

/// Moves the calling thread into a new network namespace with lo up.
pub fn enter_private_netns() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").expect("socket in the new netns");
    // SAFETY: ifreq is plain data; the ioctls read/write it in place.
    unsafe {
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        assert_eq!(
            libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr),
            0,
            "SIOCGIFFLAGS lo"
        );
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        assert_eq!(
            libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr),
            0,
            "SIOCSIFFLAGS lo"
        );
    }
}

/// Writes a sysctl of the calling thread's network namespace.
pub fn set_sysctl(path: &str, value: &str) {
    std::fs::write(format!("/proc/sys/{path}"), value)
        .unwrap_or_else(|e| panic!("write {path}: {e}"));
}

pub fn listener(addr: &str) -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind(addr).expect("bind listener");
    let a = l.local_addr().expect("local addr");
    (l, a)
}
