//! A real nginx (Debian's) for scenario tests: master + one worker on a
//! listen backlog of 2, in the calling thread's network namespace, killed
//! and its directory removed on drop.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

/// nginx's binary, if installed.
pub fn nginx_bin() -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin"])
        .map(|d| Path::new(d).join("nginx"))
        .find(|p| p.is_file());
    found
}

/// A running nginx, killed (workers first) and its directory removed on drop.
pub struct Nginx {
    pub master: Child,
    pub worker: u32,
    dir: PathBuf,
}

/// The parent pid and state letter of /proc/PID/stat.
pub fn stat(pid: u32) -> Option<(u32, String)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = s[s.rfind(')')? + 1..].split_whitespace();
    let state = rest.next()?.to_owned();
    Some((rest.next()?.parse().ok()?, state))
}

impl Nginx {
    /// Starts nginx on 127.0.0.1:`port` (listen backlog 2) in the calling
    /// thread's network namespace; returns once its worker runs.
    pub fn start(bin: &Path, port: u16, worker_nofile: Option<u64>) -> Nginx {
        Nginx::start_at(bin, "127.0.0.1", port, worker_nofile)
    }

    /// The same on `addr`:`port` (`0.0.0.0` for a wildcard listener).
    pub fn start_at(bin: &Path, addr: &str, port: u16, worker_nofile: Option<u64>) -> Nginx {
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
             server {{ listen {addr}:{port} backlog=2; location / {{ return 204; }} }}\n}}\n"
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

    pub fn error_log(&self) -> String {
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
