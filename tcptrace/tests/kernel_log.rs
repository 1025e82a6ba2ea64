//! The kernel programs' own diagnostics (aya-log): a kernel read that failed
//! is counted in the summary always, and logged on stderr with `-v` only.
//! Needs root; run by `cargo xtask test` (host) and in every VM.

mod support;

use std::{os::fd::AsRawFd as _, process::Command, time::Duration};

use serde_json::Value;
use support::*;

/// connect() with a sockaddr pointer into unmapped memory: the kernel
/// answers EFAULT, and sys_enter_connect fails to read the address.
fn connect_to_bad_pointer() {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("socket");
    // SAFETY: connect() only reads `len` bytes at the pointer and reports
    // EFAULT for an unmapped one; nothing of ours is touched.
    let ret = unsafe { libc::connect(socket.as_raw_fd(), 8 as *const libc::sockaddr, 16) };
    let err = std::io::Error::last_os_error();
    assert_eq!(
        (ret, err.raw_os_error()),
        (-1, Some(libc::EFAULT)),
        "connect to a bad pointer"
    );
}

/// (stderr lines after `tracing;`, JSON objects) of a run with `pre` before
/// the usual arguments, connecting to a bad pointer meanwhile.
fn run(pre: &[&str]) -> (Vec<String>, Vec<Value>) {
    let mut cmd = Command::new(tcptrace_bin());
    // The syscall tracepoints see the bad pointer; fentry on
    // inet_stream_connect is never reached (the kernel copies the address
    // first).
    cmd.args(pre)
        .args(["--json", "--interval", "0", "--attach", "tracepoint"]);
    let mut s = Spawned::until_tracing(cmd, "tcptrace");
    connect_to_bad_pointer();
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(s.child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("signal tcptrace");
    let status = s.child.wait().expect("wait tcptrace");
    assert!(status.success(), "tcptrace exited with {status}");
    let stdout = s.stdout.join().expect("stdout reader");
    let objs = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect();
    // The stderr reader ends with tcptrace's stderr.
    let stderr = s.stderr.iter().collect();
    (stderr, objs)
}

const LOGGED: &str = "sys_enter_connect: kernel read failed (error -14)";

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn a_failed_kernel_read_is_logged_with_v() {
    for (pre, shown) in [(&["-v"][..], true), (&[][..], false)] {
        let (stderr, objs) = run(pre);
        let logged = stderr.iter().filter(|l| l.contains(LOGGED)).count();
        if shown {
            assert!(logged >= 1, "with -v: {stderr:?}");
        } else {
            assert_eq!(logged, 0, "without -v: {stderr:?}");
        }
        let failed = final_summary(&objs)["stats"]["kernel_read_failed"]
            .as_u64()
            .expect("kernel_read_failed");
        assert!(failed >= 1, "{pre:?}: kernel_read_failed {failed}");
    }
}
