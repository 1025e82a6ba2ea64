//! Hostile input against the real binary (issue 11): a task whose name is a
//! terminal escape sequence, and a recording cut short by a full disk. They
//! need root and BPF and run through `cargo xtask test`.

mod support;

use std::{
    ffi::CString,
    net::{SocketAddr, TcpStream},
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use nix::sys::signal::{kill, Signal};
use serde_json::Value;
use support::{attach_mode, tcptrace_bin, Spawned};

/// A running tcptrace with any arguments (the support `Tracer` always
/// asks for JSON; these tests read the text view too).
struct Run {
    child: Child,
    stdout: JoinHandle<String>,
    stderr: mpsc::Receiver<String>,
}

impl Run {
    /// Starts `tcptrace ARGS…` and waits until it traces.
    fn start(args: &[&str]) -> Run {
        let mut cmd = Command::new(tcptrace_bin());
        cmd.args(args);
        let s = Spawned::until_tracing(cmd, "tcptrace");
        Run {
            child: s.child,
            stdout: s.stdout,
            stderr: s.stderr,
        }
    }

    /// Waits for tcptrace to exit on its own (killing it after `limit`):
    /// exit status, stdout, the stderr lines since it started tracing.
    fn wait(mut self, limit: Duration) -> (ExitStatus, String, Vec<String>) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait tcptrace") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("tcptrace did not stop within {limit:?}");
            }
            thread::sleep(Duration::from_millis(50));
        };
        let stdout = self.stdout.join().expect("stdout reader");
        // The reader thread ends with stderr; collect what it still holds.
        let stderr = self.stderr.iter().collect();
        (status, stdout, stderr)
    }

    /// SIGINT after the last events reached the ring buffer, then [`Run::wait`].
    fn stop(self) -> (ExitStatus, String, Vec<String>) {
        thread::sleep(Duration::from_millis(300));
        kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            Signal::SIGINT,
        )
        .expect("signal tcptrace");
        self.wait(Duration::from_secs(30))
    }
}

fn connect_refused(addr: SocketAddr) {
    let err = TcpStream::connect(addr).expect_err("nobody listens there");
    assert_eq!(err.raw_os_error(), Some(libc::ECONNREFUSED), "{err}");
}

/// The calling thread's name (its comm), as any process may set it.
fn set_thread_name(name: &[u8]) {
    let name = CString::new(name).expect("no NUL in the name");
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes
    // (longer names are cut by the kernel); `name` outlives the call.
    let r = unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
    assert_eq!(r, 0, "prctl(PR_SET_NAME)");
}

const EVIL: &[u8] = b"\x1b[31mEVIL\x1b[2J\x07";

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn escape_sequences_in_a_task_name_never_reach_the_terminal() {
    let (_bound, addr) = support::refused_addr();
    let port = addr.port().to_string();
    let run = Run::start(&[
        "--interval",
        "0",
        "--attach",
        &attach_mode(),
        "--port",
        &port,
    ]);
    thread::spawn(move || {
        set_thread_name(EVIL);
        connect_refused(addr);
    })
    .join()
    .expect("worker");
    let (status, out, _) = run.stop();
    assert!(status.success(), "tcptrace exited with {status}");
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(" connect ") && l.ends_with(" ECONNREFUSED"))
        .collect();
    assert_eq!(lines.len(), 1, "{out}");
    // The name escaped, in its own column (the local address varies by hook).
    assert!(
        lines[0].contains(r" \x1b[31mEVIL\x1b[2J\x07 "),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains(&format!(" 127.0.0.1:{port} ")),
        "{}",
        lines[0]
    );
    let raw: Vec<(usize, u8)> = out
        .bytes()
        .enumerate()
        .filter(|(_, b)| matches!(b, 0x1b | 0x07))
        .collect();
    assert!(raw.is_empty(), "raw control bytes at {raw:?} in {out:?}");
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted (lazily, so a
/// file still open cannot keep it) and removed when dropped, panics included.
struct TinyFs(PathBuf);

impl TinyFs {
    fn mount(name: &str, size: &str) -> TinyFs {
        let dir = std::env::temp_dir().join(format!("tcptrace-{name}-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let target = CString::new(dir.as_os_str().as_bytes()).expect("path");
        let opts = CString::new(format!("size={size},mode=0700")).expect("options");
        // SAFETY: every pointer is a NUL-terminated string living across the call.
        let r = unsafe {
            libc::mount(
                c"tcptrace-test".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                opts.as_ptr().cast(),
            )
        };
        assert_eq!(r, 0, "mount tmpfs: {}", std::io::Error::last_os_error());
        TinyFs(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        if let Ok(target) = CString::new(self.0.as_os_str().as_bytes()) {
            // SAFETY: a NUL-terminated path living across the call.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn events(objs: &[Value]) -> Vec<&Value> {
    objs.iter()
        .filter(|o| o["kind"] != "summary" && o["kind"] != "finding")
        .collect()
}

fn objects(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// Records refused connects into a 64 KiB tmpfs until it is full: tcptrace
/// says so at once, stops, counts what it could not write; the file replays
/// every event it holds and says why it ends.
#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn a_recording_cut_by_a_full_disk_says_so_and_replays_what_was_written() {
    let fs = TinyFs::mount("diskfull", "64k");
    let file = fs.file("run.rec");
    let file_s = file.to_str().expect("utf-8 path").to_owned();
    let (_bound, addr) = support::refused_addr();
    let port = addr.port().to_string();
    let run = Run::start(&[
        "record",
        "-o",
        &file_s,
        "--json",
        "--interval",
        "0",
        "--attach",
        &attach_mode(),
        "--port",
        &port,
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut n = 0u64;
            // Bounded: 64 KiB holds some thousands of events.
            while !stop.load(Ordering::Relaxed) && n < 2_000_000 {
                connect_refused(addr);
                n += 1;
            }
            n
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut stderr = Vec::new();
    let full_line = loop {
        match run
            .stderr
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(l) if l.contains("no space left on device") => break l,
            Ok(l) => stderr.push(l),
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                panic!("no disk-full line within 60 s: {stderr:?}")
            }
        }
    };
    stop.store(true, Ordering::Relaxed);
    let connects = worker.join().expect("worker");
    let (status, out, rest) = run.wait(Duration::from_secs(30));
    let prefix = format!("tcptrace: {file_s}: no space left on device: recording stopped after ");
    let written: u64 = full_line
        .strip_prefix(&prefix)
        .and_then(|t| t.strip_suffix(" events"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected line {full_line:?}"));
    assert!(written > 0, "{full_line}");

    // The live run: stopped with an error, the loss counted, never silent.
    let live = objects(&out);
    let live_events = events(&live);
    let summary = live
        .iter()
        .find(|o| o["kind"] == "summary" && o["final"] == true)
        .expect("final summary");
    let not_written = summary["recording"]["events_not_written"]
        .as_u64()
        .expect("events_not_written");
    assert_eq!(
        summary["recording"],
        serde_json::json!({"file": file_s, "stopped": "disk_full",
            "error": "no space left on device",
            "events_written": written, "events_not_written": not_written})
    );
    assert!(not_written > 0, "{summary}");
    assert_eq!(written + not_written, live_events.len() as u64);
    // Every connect() made at most one connect event (kernels with the
    // port_search hook add a port search event per connect as well).
    let connect_events = live_events
        .iter()
        .filter(|e| e["kind"] == "connect")
        .count();
    assert!(connect_events > 0, "{out}");
    assert!(
        connects >= connect_events as u64,
        "{connects} connects, {connect_events} connect events"
    );
    assert!(!status.success(), "tcptrace exited with {status}");
    assert!(
        rest.contains(&format!(
            "tcptrace: error: recording to {file_s} stopped: no space left on device: \
             {written} events written, {not_written} not written"
        )),
        "{rest:?}"
    );

    // The file: every written event replays, and the reader says why it ends.
    let replay = Command::new(tcptrace_bin())
        .args(["replay", &file_s, "--json"])
        .output()
        .expect("tcptrace replay");
    let err = String::from_utf8_lossy(&replay.stderr);
    assert!(replay.status.success(), "replay: {err}");
    assert_eq!(
        err.trim_end(),
        format!(
            "tcptrace: {file_s}: recording stopped: disk full (no space left on device) \
             after {written} events: read all of them"
        )
    );
    let replayed = objects(&String::from_utf8(replay.stdout).expect("UTF-8"));
    let replayed_events = events(&replayed);
    assert_eq!(replayed_events.len() as u64, written);
    assert_eq!(replayed_events[..], live_events[..written as usize]);
    let info = Command::new(tcptrace_bin())
        .args(["replay", &file_s, "--info"])
        .output()
        .expect("tcptrace replay --info");
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains(&format!(
            "; stopped: disk full (no space left on device) after {written} events\n"
        )),
        "{info}"
    );
    drop(fs);
    assert!(!Path::new(&file_s).exists());
}
