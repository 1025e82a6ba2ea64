//! The state-map fullness shown in summaries is the kernel's real number:
//! connect() calls held in flight are counted in the connect state (per-task
//! storage) while they block, and gone once they return. Needs root; run by `cargo xtask test`
//! (host) and inside every VM of the matrix.

mod support;

use std::{
    mem::size_of,
    net::{SocketAddr, SocketAddrV4, TcpStream},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::*;

/// Threads blocked in connect() at once.
const N: usize = 8;
/// How long each stays blocked (SO_SNDTIMEO bounds a blocking connect()).
const HOLD: Duration = Duration::from_secs(3);
/// Between two threads' connect() calls: all N still overlap for
/// `HOLD - N * STAGGER`, several summary periods.
const STAGGER: Duration = Duration::from_millis(100);

/// One blocking connect() to `addr` that gives up after `HOLD`; returns
/// its errno and how long it blocked.
fn blocked_connect(addr: SocketAddrV4) -> (i32, Duration) {
    // SAFETY: plain socket syscalls on a descriptor this function owns; the
    // pointers passed are to live, correctly sized locals.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let fd = OwnedFd::from_raw_fd(fd);
        let tv = libc::timeval {
            tv_sec: HOLD.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        assert_eq!(
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDTIMEO,
                (&raw const tv).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            ),
            0,
            "SO_SNDTIMEO"
        );
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: addr.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*addr.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let start = Instant::now();
        let ret = libc::connect(
            fd.as_raw_fd(),
            (&raw const sin).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        let errno = if ret == 0 {
            0
        } else {
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
        };
        (errno, start.elapsed())
    }
}

/// The `connect` entry of a summary's `maps`.
fn connect_map(summary: &Value) -> &Value {
    summary["maps"]
        .as_array()
        .expect("maps in the summary")
        .iter()
        .find(|m| m["name"] == "connect")
        .expect("connect map in the summary")
}

fn map_entries(summary: &Value, name: &str) -> u64 {
    summary["maps"]
        .as_array()
        .expect("maps")
        .iter()
        .find(|m| m["name"] == name)
        .and_then(|m| m["entries"].as_u64())
        .unwrap_or_else(|| panic!("{name} entries in {summary}"))
}

/// N connect()s blocked on a listener whose accept queue is full (its SYNs
/// are dropped, the clients retransmit until SO_SNDTIMEO): the connect state
/// holds exactly N entries while they block, 0 after. Only this process is
/// traced (`--pid`), so no other connect() on the host is counted.
#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn connect_map_entries_are_the_calls_in_flight() {
    let pid = std::process::id().to_string();
    let tracer = Tracer::start_every("500ms", &[], &["--pid", &pid]);
    let worker = thread::spawn(|| {
        enter_private_netns();
        let (l, addr) = listener("127.0.0.1:0");
        let SocketAddr::V4(addr) = addr else {
            unreachable!("bound to IPv4")
        };
        // listen() again on a listening socket only sets its backlog: with 0
        // the accept queue is full once one connection waits in it.
        // SAFETY: listen on a socket the listener owns.
        assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0, "listen(0)");
        let first = TcpStream::connect(addr).expect("the one connection the queue takes");
        // One at a time: on kernels whose syscall tracepoints run
        // preemptible (7.x), a connect() entering while another thread's
        // program is preempted on that CPU is skipped by the kernel (counted
        // as `missed`, accounted below); spacing the calls keeps them apart.
        let blocked: Vec<_> = (0..N)
            .map(|_| {
                let t = thread::spawn(move || blocked_connect(addr));
                thread::sleep(STAGGER);
                t
            })
            .collect();
        let results: Vec<(i32, Duration)> = blocked
            .into_iter()
            .map(|t| t.join().expect("connect thread"))
            .collect();
        drop((first, l));
        results
    });
    let results = worker.join().expect("worker");
    for (errno, took) in &results {
        assert_eq!(
            *errno,
            libc::EINPROGRESS,
            "connect() must give up at SO_SNDTIMEO with EINPROGRESS"
        );
        assert!(
            *took >= HOLD - Duration::from_millis(100),
            "connect() blocked {took:?}"
        );
    }
    // A periodic summary after every connect() returned.
    thread::sleep(Duration::from_millis(1200));
    let objs = tracer.stop();

    // Programs the kernel skipped (recursion: 7.x syscall tracepoints and
    // fentry run preemptible): a skipped entry leaves no state, a skipped
    // exit leaves its state behind; each loses that call's event. Only this
    // test connects here.
    let last = final_summary(&objs);
    let (missed_enter, missed_exit) = connect_skips(last);
    let held = N as u64 - missed_enter;

    let summaries: Vec<&Value> = objs.iter().filter(|o| o["kind"] == "summary").collect();
    let periodic: Vec<u64> = summaries
        .iter()
        .filter(|s| s["final"] == false)
        .map(|s| map_entries(s, "connect"))
        .collect();
    eprintln!("connect map entries per periodic summary: {periodic:?}");
    assert!(
        periodic.iter().all(|&n| n <= N as u64),
        "never more entries than calls in flight: {periodic:?}"
    );
    assert!(
        periodic.iter().filter(|&&n| n == held).count() >= 2,
        "the connect map held exactly {held} entries ({N} calls, {missed_enter} entries \
         skipped by the kernel) while they blocked: {periodic:?}"
    );
    assert_eq!(
        periodic.last().copied(),
        Some(missed_exit),
        "a periodic summary after the calls returned ({missed_exit} exits skipped): {periodic:?}"
    );

    let connect = connect_map(last);
    assert_eq!(connect["entries"], missed_exit, "{connect}");
    // Per-task storage: no fixed capacity, nothing to evict.
    assert_eq!(connect["capacity"], 0, "{connect}");
    assert_eq!(connect["lru"], false, "{connect}");
    assert_eq!(connect["full_failures"], 0, "{connect}");
    assert_eq!(map_entries(last, "port_search"), 0);
    assert_eq!(last["stats"]["state_map_full"], 0);
    // Every connect() was reported once, as the EINPROGRESS it returned.
    let mine = events(&objs, "connect")
        .filter(|e| e["errno"] == libc::EINPROGRESS)
        .count();
    assert_eq!(
        mine as u64,
        N as u64 - missed_enter - missed_exit,
        "connect events for the blocked calls ({missed_enter} entries and {missed_exit} exits skipped)"
    );
}
