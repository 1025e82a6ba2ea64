//! Recording and replay against the real binary: a replay prints exactly what
//! the live run printed, a SIGKILLed recorder leaves a readable file, bad
//! files give one-line errors, and the size per event on a realistic run.
//! Scenario tests need root and run through `cargo xtask test`; the bad-file
//! tests need nothing and run with plain `cargo test`.

mod support;

use std::{
    io::Write as _,
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::fs::PermissionsExt as _,
    path::Path,
    process::{Child, Command, Output},
    sync::mpsc,
    thread::{self, JoinHandle},
    time::Duration,
};

use chrono::{DateTime, SecondsFormat};
use nix::sys::signal::{kill, Signal};
use serde_json::Value;
use support::{attach_mode, tcptrace_bin, tempdir::TempDir, Spawned};

fn tid() -> u64 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u64 }
}

/// `tcptrace record -o FILE ARGS…`, started and attached.
struct Recorder {
    child: Child,
    stdout: JoinHandle<String>,
    stderr: mpsc::Receiver<String>,
}

impl Recorder {
    fn start(file: &Path, extra: &[&str]) -> Recorder {
        let mut cmd = Command::new(tcptrace_bin());
        cmd.arg("record")
            .arg("-o")
            .arg(file)
            .args(["--attach", &attach_mode()])
            .args(extra);
        let s = Spawned::until_tracing(cmd, "tcptrace record");
        Recorder {
            child: s.child,
            stdout: s.stdout,
            stderr: s.stderr,
        }
    }

    /// Sends `sig` and returns (success, stdout, stderr lines after start).
    fn stop(mut self, sig: Signal) -> (bool, String, Vec<String>) {
        thread::sleep(Duration::from_millis(300));
        kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).expect("signal tcptrace");
        let status = self.child.wait().expect("wait tcptrace");
        let stdout = self.stdout.join().expect("stdout reader");
        let stderr = self.stderr.try_iter().collect();
        (status.success(), stdout, stderr)
    }
}

fn replay(args: &[&str]) -> Output {
    let out = Command::new(tcptrace_bin())
        .arg("replay")
        .args(args)
        .output()
        .expect("run tcptrace replay");
    eprintln!(
        "[tcptrace replay {args:?}] {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

fn objects(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

fn connects_of(objs: &[Value], tid: u64) -> Vec<&Value> {
    objs.iter()
        .filter(|o| o["kind"] == "connect" && o["tid"] == tid)
        .collect()
}

/// A listener that accepts and drops connections until the process ends.
fn accepting_listener() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    thread::spawn(move || {
        for s in l.incoming() {
            drop(s);
        }
    });
    addr
}

/// `n` connects to `addr` from one thread; returns that thread's id.
fn connects(addr: SocketAddr, n: usize) -> u64 {
    thread::spawn(move || {
        for _ in 0..n {
            drop(TcpStream::connect(addr).expect("connect"));
        }
        tid()
    })
    .join()
    .expect("worker")
}

fn assert_same_lines(live: &str, replayed: &str) {
    let (a, b): (Vec<&str>, Vec<&str>) = (live.lines().collect(), replayed.lines().collect());
    for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
        assert_eq!(x, y, "line {i} differs between the live run and the replay");
    }
    assert_eq!(a.len(), b.len(), "line counts differ");
    assert_eq!(live, replayed);
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn replay_prints_exactly_what_the_live_run_printed() {
    const BURST: usize = 50;
    let dir = TempDir::new("replay");
    let file = dir.file("run.rec");
    let rec = Recorder::start(&file, &["--json", "--interval", "1s"]);
    let addr = accepting_listener();
    let mut tids = Vec::new();
    for _ in 0..3 {
        tids.push(connects(addr, BURST));
        thread::sleep(Duration::from_millis(1300));
    }
    let (ok, live, _) = rec.stop(Signal::SIGINT);
    assert!(ok, "tcptrace record failed");

    let mode = std::fs::metadata(&file)
        .expect("recording")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "recording mode");

    let live_objs = objects(&live);
    for &t in &tids {
        assert_eq!(
            connects_of(&live_objs, t).len(),
            BURST,
            "live connects of one burst"
        );
    }
    let periodic = live_objs
        .iter()
        .filter(|o| o["kind"] == "summary" && o["final"] == false)
        .count();
    assert!(
        periodic >= 2,
        "periodic summaries in the live run: {periodic}"
    );
    assert_eq!(support::final_summary(&live_objs)["lost_total"], 0);

    // The same events and summaries, byte for byte.
    let replayed = stdout_of(&replay(&[file.to_str().unwrap(), "--json"]));
    assert_same_lines(&live, &replayed);

    // The text view of the replay ends with the same final summary.
    let text = stdout_of(&replay(&[file.to_str().unwrap()]));
    assert!(text.starts_with("TIME "), "{text}");
    assert!(text.contains("--- final summary ---"), "{text}");

    // Filters: only this test's connects (their peer port).
    let port = addr.port().to_string();
    let objs = objects(&stdout_of(&replay(&[
        file.to_str().unwrap(),
        "--json",
        "--port",
        &port,
    ])));
    let count = |kind: &str| objs.iter().filter(|o| o["kind"] == kind).count();
    assert_eq!(count("connect"), 3 * BURST, "connects to port {port}");
    // One port search per connect where that hook attaches, else none.
    assert!(
        [0, 3 * BURST].contains(&count("port_search")),
        "port searches"
    );
    // Every event the filtered replay prints involves the port (other kinds,
    // such as RSTs of these short connections, may legitimately appear).
    let port_num = addr.port();
    let stray: Vec<&Value> = objs
        .iter()
        .filter(|o| !["summary", "finding"].contains(&o["kind"].as_str().unwrap_or("")))
        .filter(|o| o["sport"] != port_num && o["dport"] != port_num)
        .collect();
    assert!(
        stray.is_empty(),
        "events not involving port {port}: {stray:?}"
    );
    assert_eq!(
        support::final_summary(&objs)["events"]["connect"],
        3 * BURST
    );

    // Time window: cut between the first and the second burst.
    let last_of_first = connects_of(&live_objs, tids[0])
        .last()
        .and_then(|e| e["time"].as_str())
        .expect("time")
        .to_owned();
    let cut = DateTime::parse_from_rfc3339(&last_of_first).expect("RFC 3339")
        + chrono::Duration::milliseconds(600);
    let cut = cut.to_rfc3339_opts(SecondsFormat::Nanos, true);
    let f = file.to_str().unwrap();
    let until = objects(&stdout_of(&replay(&[
        f, "--json", "--port", &port, "--until", &cut,
    ])));
    assert_eq!(connects_of(&until, tids[0]).len(), BURST);
    assert_eq!(
        until.iter().filter(|o| o["kind"] == "connect").count(),
        BURST
    );
    let since = objects(&stdout_of(&replay(&[
        f, "--json", "--port", &port, "--since", &cut,
    ])));
    assert_eq!(
        since.iter().filter(|o| o["kind"] == "connect").count(),
        2 * BURST
    );
    assert_eq!(connects_of(&since, tids[0]).len(), 0);
    // The window's histogram comes from the snapshots around it.
    let h = support::final_summary(&since)["histograms"]["connect"]["count"]
        .as_u64()
        .expect("count");
    assert!(
        h >= 2 * BURST as u64,
        "connect histogram in the window: {h}"
    );
    // Relative form: everything, and nothing.
    let all = objects(&stdout_of(&replay(&[
        f, "--json", "--port", &port, "--since", "0s",
    ])));
    assert_eq!(
        all.iter().filter(|o| o["kind"] == "connect").count(),
        3 * BURST
    );
    let none = objects(&stdout_of(&replay(&[f, "--json", "--until", "0s"])));
    assert_eq!(none.iter().filter(|o| o["kind"] == "connect").count(), 0);
}

/// SYN-family events replay identically too, including the listener owner
/// the live run found in /proc (the listener exists before tracing starts,
/// and is gone when the replay runs).
#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn syn_events_and_listener_owners_replay_identically() {
    use socket2::{Domain, Socket, Type};
    const BACKLOG: i32 = 2;
    const CLIENTS: usize = 8;
    let dir = TempDir::new("syn");
    let file = dir.file("syn.rec");
    let (ready_tx, ready_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let worker = thread::spawn(move || {
        support::enter_private_netns();
        let l = support::backlog_listener(([127, 0, 0, 1], 0).into(), BACKLOG);
        let addr = support::addr_of(&l);
        ready_tx.send(()).expect("ready");
        go_rx.recv().expect("go");
        let clients: Vec<Socket> = (0..CLIENTS)
            .map(|_| {
                let c = Socket::new(Domain::IPV4, Type::STREAM, None).expect("client");
                c.set_nonblocking(true).expect("nonblocking");
                let _ = c.connect(&addr.into());
                c
            })
            .collect();
        thread::sleep(Duration::from_millis(2500));
        drop((clients, l));
        support::thread_netns()
    });
    ready_rx.recv().expect("listener ready");
    let rec = Recorder::start(&file, &["--json", "--interval", "0"]);
    go_tx.send(()).expect("go");
    let netns = worker.join().expect("worker");
    let (ok, live, _) = rec.stop(Signal::SIGINT);
    assert!(ok);
    let live_objs = objects(&live);
    let syn: Vec<&Value> = live_objs
        .iter()
        .filter(|o| {
            o["netns"] == netns
                && matches!(
                    o["kind"].as_str(),
                    Some("syn_drop" | "listen_overflow" | "synack_retransmit")
                )
        })
        .collect();
    assert_same_lines(
        &live,
        &stdout_of(&replay(&[file.to_str().unwrap(), "--json"])),
    );
    if syn.is_empty() {
        // syn_drop needs fentry or kprobes; the VM matrix requires it.
        assert!(!support::required("syn_drop"), "no syn_drop events");
        let _ = writeln!(
            std::io::stderr(),
            "no SYN-family events on this kernel: owners not exercised"
        );
        return;
    }
    let from_proc = syn.iter().filter(|e| e["owner"] == "proc").count();
    assert!(from_proc > 0, "owners found in /proc: {syn:?}");
    let _ = writeln!(
        std::io::stderr(),
        "{} SYN-family events, {from_proc} with the owner found in /proc, replayed identically",
        syn.len()
    );
    for e in syn.iter().filter(|e| e["owner"] == "proc") {
        assert_eq!(e["pid"], std::process::id(), "{e}");
    }
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn text_replay_matches_the_live_text_view() {
    let dir = TempDir::new("text");
    let file = dir.file("text.rec");
    let rec = Recorder::start(&file, &["--print", "--interval", "1s"]);
    let addr = accepting_listener();
    connects(addr, 20);
    thread::sleep(Duration::from_millis(1200));
    connects(addr, 20);
    let (ok, live, _) = rec.stop(Signal::SIGINT);
    assert!(ok);
    assert!(live.contains("--- summary ---"), "{live}");
    assert!(live.contains("--- final summary ---"), "{live}");
    assert_same_lines(&live, &stdout_of(&replay(&[file.to_str().unwrap()])));
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn sigkilled_recorder_leaves_a_file_readable_to_its_last_block() {
    const BURST: usize = 40;
    let dir = TempDir::new("sigkill");
    let file = dir.file("killed.rec");
    let rec = Recorder::start(&file, &["--json", "--interval", "0"]);
    let addr = accepting_listener();
    let first = connects(addr, BURST);
    thread::sleep(Duration::from_millis(1300));
    let second = connects(addr, BURST);
    // Blocks are written at least every second: wait for this one.
    thread::sleep(Duration::from_millis(2200));
    let (_, live, _) = rec.stop(Signal::SIGKILL);
    let live_events: Vec<&str> = live.lines().collect();
    assert!(
        !live.contains("\"summary\""),
        "a killed recorder prints no summary"
    );

    let f = file.to_str().unwrap();
    let out = replay(&[f, "--json"]);
    let replayed = stdout_of(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no end block"),
        "replay notes the missing end block"
    );
    let objs = objects(&replayed);
    assert_eq!(connects_of(&objs, first).len(), BURST);
    assert_eq!(connects_of(&objs, second).len(), BURST);
    // Every replayed event is what the live run printed, in order.
    let replayed_events: Vec<&str> = replayed
        .lines()
        .filter(|l| !l.contains("\"summary\""))
        .collect();
    assert_eq!(replayed_events[..], live_events[..replayed_events.len()]);
    assert_eq!(support::final_summary(&objs)["final"], true);

    // Cut the file inside its last block (a kill in the middle of a write):
    // it still reads, up to the block before.
    let bytes = std::fs::read(&file).expect("read recording");
    for cut in [bytes.len() - 1, bytes.len() - 9] {
        let cut_file = dir.file("cut.rec");
        std::fs::write(&cut_file, &bytes[..cut]).expect("write cut file");
        let out = replay(&[cut_file.to_str().unwrap(), "--json"]);
        let text = stdout_of(&out);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("ends inside a block"),
            "cut at {cut}"
        );
        let events: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains("\"summary\""))
            .collect();
        // The last block may hold no event (a counter snapshot, written when
        // the kernel's counters moved after the second burst: a state map's
        // fill, RSTs sent), so the cut may lose none; what was read is
        // always a prefix.
        assert!(events.len() <= replayed_events.len(), "cut at {cut}");
        assert_eq!(events[..], replayed_events[..events.len()], "cut at {cut}");
    }
}

/// A listener on `addr` that accepts and drops connections.
fn accepting_listener_on(addr: &str) -> SocketAddr {
    let l = TcpListener::bind(addr).expect("bind");
    let a = l.local_addr().expect("addr");
    thread::spawn(move || {
        for s in l.incoming() {
            drop(s);
        }
    });
    a
}

/// Size per recorded event on 10,000 loopback connects in a mix: four
/// threads, IPv4 and IPv6, three listeners, and every tenth connect refused
/// (every connect() is one event here; where port_search attaches, two).
#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn bytes_per_event_on_10000_loopback_connects() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 2500;
    let dir = TempDir::new("size");
    let file = dir.file("size.rec");
    let rec = Recorder::start(&file, &["--interval", "0"]);
    let peers = [
        accepting_listener_on("127.0.0.1:0"),
        accepting_listener_on("127.0.0.1:0"),
        accepting_listener_on("[::1]:0"),
    ];
    // A port nobody listens on: bind, note it, close.
    let refused = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let workers: Vec<JoinHandle<(u64, usize)>> = (0..THREADS)
        .map(|w| {
            thread::spawn(move || {
                let mut failed = 0;
                for i in 0..PER_THREAD {
                    let peer = if i % 10 == 9 {
                        refused
                    } else {
                        peers[(i + w) % 3]
                    };
                    match TcpStream::connect(peer) {
                        Ok(s) => drop(s),
                        Err(_) => failed += 1,
                    }
                }
                (tid(), failed)
            })
        })
        .collect();
    let results: Vec<(u64, usize)> = workers
        .into_iter()
        .map(|w| w.join().expect("worker"))
        .collect();
    let (ok, _, _) = rec.stop(Signal::SIGINT);
    assert!(ok);
    let f = file.to_str().unwrap();
    let objs = objects(&stdout_of(&replay(&[f, "--json"])));
    let counters = support::final_summary(&objs);
    // The kernel may skip a program when another run of it is preempted on
    // that CPU (7.x syscall tracepoints and fentry run preemptible): tcptrace
    // counts those skips, and together with the events they must account
    // for every connect() exactly.
    let (missed_enter, missed_exit) = support::connect_skips(counters);
    let missed = missed_enter + missed_exit;
    let seen: Vec<usize> = results
        .iter()
        .map(|(t, _)| connects_of(&objs, *t).len())
        .collect();
    let made = (THREADS * PER_THREAD) as u64;
    let unseen = made - seen.iter().sum::<usize>() as u64;
    // Each unseen connect had its enter or exit program skipped, or both.
    assert!(
        unseen <= missed && missed <= 2 * unseen,
        "connect events {seen:?} of {made}, programs skipped {missed} ({}; lost {}, stats {})",
        counters["missed"],
        counters["lost"],
        counters["stats"]
    );
    for (t, failed) in &results {
        let mine = connects_of(&objs, *t);
        let refused_events = mine.iter().filter(|e| e["error"] == "ECONNREFUSED").count();
        if missed == 0 {
            assert_eq!(mine.len(), PER_THREAD, "every connect recorded");
            assert_eq!(refused_events, *failed);
        } else {
            assert!(refused_events <= *failed);
        }
    }
    assert_eq!(support::final_summary(&objs)["lost_total"], 0);
    let events = objs.iter().filter(|o| o["kind"] != "summary").count();
    let size = std::fs::metadata(&file).expect("recording").len();
    let per = size as f64 / events as f64;
    let n = THREADS * PER_THREAD;
    // Straight to the process's stderr, past the test harness's capture, so
    // every run (host and VM) shows the figure.
    let _ = writeln!(
        std::io::stderr(),
        "bytes per event: {per:.2} ({events} events, {size} bytes, {n} connects)"
    );
    assert!(per <= 16.0, "{per:.2} bytes per event");
}

// ---- no privileges needed -------------------------------------------------

/// (exit ok, stderr) of replaying a file with these bytes.
fn replay_bytes(dir: &TempDir, bytes: &[u8]) -> (bool, String) {
    let file = dir.file("bad.rec");
    std::fs::write(&file, bytes).expect("write");
    let out = replay(&[file.to_str().expect("temporary path is UTF-8")]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn header(version: u16, meta: &[u8]) -> Vec<u8> {
    let mut h = b"TCPTRREC".to_vec();
    h.extend_from_slice(&version.to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes());
    h.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    h.extend_from_slice(meta);
    let crc = crc32fast::hash(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h
}

#[test]
fn bad_files_give_one_line_errors() {
    let dir = TempDir::new("bad");
    let mut good = header(1, b"{\"hostname\":\"h\"}");
    let (ok, err) = replay_bytes(&dir, &good);
    assert!(ok, "an empty recording replays: {err}");

    let mut block = vec![1u8, 0, 0, 0];
    block.extend_from_slice(&2u32.to_le_bytes());
    block.extend_from_slice(&2u32.to_le_bytes());
    block.extend_from_slice(&0u32.to_le_bytes());
    block.extend_from_slice(&0xdead_beefu32.to_le_bytes());
    block.extend_from_slice(&[0, 0]);
    let mut bad_block = good.clone();
    bad_block.extend_from_slice(&block);
    good.truncate(good.len() - 1);

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "empty file"),
        (
            "foreign",
            b"\x0a\x0d\x0d\x0a some pcapng bytes".to_vec(),
            "not a tcptrace recording",
        ),
        (
            "text",
            b"hello world, this is text\n".to_vec(),
            "not a tcptrace recording",
        ),
        (
            "future",
            header(7, b"{}"),
            "newer tcptrace (format version 7",
        ),
        ("truncated header", good, "truncated header"),
        ("bad metadata", header(1, b"{nope"), "corrupt header"),
        ("bad block", bad_block, "block 1 at byte"),
    ];
    for (what, bytes, want) in cases {
        let (ok, err) = replay_bytes(&dir, &bytes);
        assert!(!ok, "{what}: replay must fail");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{what}: one line, got {err:?}");
        assert!(lines[0].starts_with("tcptrace: error: "), "{what}: {err}");
        assert!(lines[0].contains(want), "{what}: {err}");
    }
    let out = replay(&[dir.file("missing.rec").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("No such file"));
}
