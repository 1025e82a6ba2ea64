//! Scenario tests with a real server: nginx (master + one worker) in a
//! private network namespace. The master calls listen(), the worker
//! inherits the socket and accepts, under its own `worker_rlimit_nofile`:
//! diagnose must name the worker, not the master. They need root, BPF and
//! nginx (installed by `cargo xtask setup`); the VM initramfs has no nginx,
//! so there they say so and return.

mod support;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{
    diagnose::{worker, Diagnose},
    *,
};

/// nginx's binary, if installed.
fn nginx_bin() -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin"])
        .map(|d| Path::new(d).join("nginx"))
        .find(|p| p.is_file());
    found
}

/// A running nginx, killed (workers first) and its directory removed on drop.
struct Nginx {
    master: Child,
    worker: u32,
    dir: PathBuf,
}

/// The parent pid and state letter of /proc/PID/stat.
fn stat(pid: u32) -> Option<(u32, String)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = s[s.rfind(')')? + 1..].split_whitespace();
    let state = rest.next()?.to_owned();
    Some((rest.next()?.parse().ok()?, state))
}

impl Nginx {
    /// Starts nginx on 127.0.0.1:`port` (listen backlog 2) in the calling
    /// thread's network namespace; returns once its worker runs.
    fn start(bin: &Path, port: u16, worker_nofile: Option<u64>) -> Nginx {
        let dir =
            std::env::temp_dir().join(format!("tcptrace-nginx-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("nginx dir");
        let d = dir.display();
        let rlimit = worker_nofile.map_or(String::new(), |n| format!("worker_rlimit_nofile {n};"));
        let conf = format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\n{rlimit}\nuser root;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n  access_log off;\n  client_header_timeout 120s;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             server {{ listen 127.0.0.1:{port} backlog=2; location / {{ return 204; }} }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).expect("nginx.conf");
        let master = Command::new(bin)
            .args([
                "-p",
                &d.to_string(),
                "-c",
                &format!("{d}/nginx.conf"),
                "-e",
                &format!("{d}/error.log"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        let mut n = Nginx {
            worker: 0,
            dir,
            master,
        };
        let mpid = n.master.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        while n.worker == 0 {
            assert!(
                Instant::now() < deadline,
                "nginx started no worker: {}",
                n.error_log()
            );
            if let Ok(Some(status)) = n.master.try_wait() {
                panic!("nginx exited ({status}): {}", n.error_log());
            }
            thread::sleep(Duration::from_millis(20));
            let Ok(rd) = std::fs::read_dir("/proc") else {
                continue;
            };
            n.worker = rd
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .find(|&p| stat(p).is_some_and(|(ppid, _)| ppid == mpid))
                .unwrap_or(0);
        }
        // The worker sets its limit and starts accepting right after fork.
        thread::sleep(Duration::from_millis(300));
        n
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        let pid = |p: u32| nix::unistd::Pid::from_raw(p as i32);
        // Fast shutdown: the master stops its worker (resumed first, in case
        // it was stopped) and reaps it, so no zombie is left behind.
        if self.worker != 0 {
            let _ = kill(pid(self.worker), Signal::SIGCONT);
        }
        let _ = kill(pid(self.master.id()), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !matches!(self.master.try_wait(), Ok(None)) {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        // Still there after 5 s: SIGKILL, worker first (so the master
        // cannot fork a replacement).
        if matches!(self.master.try_wait(), Ok(None)) {
            if self.worker != 0 {
                let _ = kill(pid(self.worker), Signal::SIGKILL);
            }
            let _ = self.master.kill();
            let _ = self.master.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Open descriptors of a process now.
fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// Non-blocking connects to `addr`, `gap` apart.
fn connect_many(addr: SocketAddr, n: usize, gap: Duration) -> Vec<socket2::Socket> {
    (0..n)
        .map(|_| {
            let c = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("client");
            c.set_nonblocking(true).expect("nonblocking");
            match c.connect(&addr.into()) {
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
                other => panic!("non-blocking connect: {other:?}"),
            }
            thread::sleep(gap);
            c
        })
        .collect()
}

/// Keeps connected clients, closes those still in SYN-SENT (so no SYN
/// retransmission moves ListenOverflows after it was read).
fn keep_connected(clients: Vec<socket2::Socket>) -> Vec<socket2::Socket> {
    clients
        .into_iter()
        .filter(|c| c.peer_addr().is_ok())
        .collect()
}

/// What one scenario leaves for the assertions; nginx and the clients live
/// until the test ends (after tcptrace's final snapshot).
struct Run {
    nginx: Nginx,
    _clients: Vec<socket2::Socket>,
    overflows: u64,
}

/// The accept-queue finding, and where its listener evidence is: its own
/// (from events) or the counter-only form's first waiting listener.
fn accept_finding(findings: &[Value]) -> (&Value, &Value) {
    let ids: Vec<&str> = findings.iter().filter_map(|f| f["id"].as_str()).collect();
    for id in &ids {
        // Third ACKs may overflow too (ghost connections); nothing else.
        assert!(
            matches!(*id, "accept_queue_overflow" | "ghost_connections"),
            "{findings:#?}"
        );
    }
    let a: Vec<&Value> = findings
        .iter()
        .filter(|f| f["id"] == "accept_queue_overflow")
        .collect();
    assert_eq!(a.len(), 1, "{findings:#?}");
    let e = &a[0]["evidence"];
    let l = if e["source"] == "counters" {
        &e["listeners_with_waiting_connections"][0]
    } else {
        e
    };
    (a[0], l)
}

fn own_nofile_soft() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills a local struct.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) }, 0);
    rl.rlim_cur
}

/// The worker at its `worker_rlimit_nofile` (16): accept4() fails with
/// EMFILE, the accept queue (backlog 2) overflows. The finding must name
/// the worker at its limit, list master and worker with their limits, and
/// point at worker_rlimit_nofile; nginx itself logs EMFILE.
/// `clients` connect to nginx on `port`, one every 30 ms; after their first
/// tries and one round of SYN retransmissions, those still in SYN-SENT are
/// closed, so no later retransmission moves `ListenOverflows` once counted.
fn overflow(nginx: Nginx, port: u16, clients: usize) -> Run {
    let before = netstat();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let clients = connect_many(addr, clients, Duration::from_millis(30));
    thread::sleep(Duration::from_millis(1600));
    let clients = keep_connected(clients);
    thread::sleep(Duration::from_millis(200));
    let overflows = netstat()["ListenOverflows"] - before["ListenOverflows"];
    Run {
        nginx,
        _clients: clients,
        overflows,
    }
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn nginx_worker_at_its_fd_limit_is_named() {
    const PORT: u16 = 8081;
    let Some(bin) = nginx_bin() else {
        eprintln!("nginx is not installed here (VM initramfs): skipped");
        return;
    };
    let w = worker(move |_release| {
        let nginx = Nginx::start(&bin, PORT, Some(16));
        // 6 fit under the worker's limit, 3 in the queue, the rest overflow.
        overflow(nginx, PORT, 16)
    });
    let d = Diagnose::start("6s", w.netns);
    let (run, findings) = w.finish(d);
    eprintln!("{findings:#?}");
    let (master, worker_pid) = (run.nginx.master.id(), run.nginx.worker);
    assert!(
        run.nginx.error_log().contains("Too many open files"),
        "nginx's error log: {}",
        run.nginx.error_log()
    );
    assert!(run.overflows >= 1, "{}", run.overflows);

    let (f, l) = accept_finding(&findings);
    if f["evidence"]["source"] == "counters" {
        assert_eq!(f["count"], run.overflows, "count == ListenOverflows delta");
    }
    assert_eq!(l["port"], PORT);
    assert_eq!(l["pid"], worker_pid, "{l}");
    assert_eq!(l["comm"], "nginx");
    assert_eq!(l["at_fd_limit"], true);
    // The limit is set after fork, so descriptors inherited from the
    // master may take the worker past it: the count is /proc's.
    let fds = open_fds(worker_pid);
    assert!(fds >= 16, "{fds}");
    assert_eq!(l["open_fds"], fds);
    assert_eq!(l["nofile_soft"], 16);
    assert_eq!(l["holders_total"], 2);
    let holders = l["holders"].as_array().expect("holders");
    let got: Vec<(u64, bool, u64)> = holders
        .iter()
        .map(|h| {
            (
                h["pid"].as_u64().unwrap_or(0),
                h["at_fd_limit"] == true,
                h["nofile_soft"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let mut want = vec![
        (u64::from(master), false, own_nofile_soft()),
        (u64::from(worker_pid), true, 16),
    ];
    want.sort();
    assert_eq!(got, want, "{l}");
    let summary = f["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains(&format!(
            "nginx (pid {worker_pid}) is out of file descriptors"
        )),
        "{summary}"
    );
    let advice = f["advice"].to_string();
    assert!(
        advice.contains(&format!(
            "nginx (pid {worker_pid}) has {fds} open files, its RLIMIT_NOFILE soft limit (16)"
        )) && advice.contains("worker_rlimit_nofile"),
        "{advice}"
    );
    assert!(!advice.contains("blocked"), "{advice}");
}

/// The worker stopped with SIGSTOP: nobody accepts, the queue overflows.
/// The finding must name the stopped worker (state T) and say so.
#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn nginx_stopped_worker_is_named() {
    const PORT: u16 = 8082;
    let Some(bin) = nginx_bin() else {
        eprintln!("nginx is not installed here (VM initramfs): skipped");
        return;
    };
    let w = worker(move |_release| {
        let nginx = Nginx::start(&bin, PORT, None);
        let pid = nix::unistd::Pid::from_raw(nginx.worker as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
        let deadline = Instant::now() + Duration::from_secs(5);
        while stat(nginx.worker).map(|s| s.1).as_deref() != Some("T") {
            assert!(Instant::now() < deadline, "worker not stopped");
            thread::sleep(Duration::from_millis(10));
        }
        overflow(nginx, PORT, 8)
    });
    let d = Diagnose::start("6s", w.netns);
    let (run, findings) = w.finish(d);
    eprintln!("{findings:#?}");
    let worker_pid = run.nginx.worker;
    assert!(run.overflows >= 1, "{}", run.overflows);
    let (f, l) = accept_finding(&findings);
    if f["evidence"]["source"] == "counters" {
        assert_eq!(f["count"], run.overflows, "count == ListenOverflows delta");
    }
    assert_eq!(l["pid"], worker_pid, "{l}");
    assert_eq!(l["state"], "T");
    assert_eq!(l["at_fd_limit"], false);
    assert_eq!(l["holders_total"], 2);
    let states: Vec<(u64, &str)> = l["holders"]
        .as_array()
        .expect("holders")
        .iter()
        .map(|h| {
            (
                h["pid"].as_u64().unwrap_or(0),
                h["state"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(states.contains(&(u64::from(worker_pid), "T")), "{states:?}");
    assert!(
        states.contains(&(u64::from(run.nginx.master.id()), "S")),
        "{states:?}"
    );
    let summary = f["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains(&format!(
            "nginx (pid {worker_pid}), which holds the listening socket, is stopped"
        )),
        "{summary}"
    );
    let advice = f["advice"].to_string();
    assert!(
        advice.contains(&format!("kill -CONT {worker_pid}")),
        "{advice}"
    );
}
