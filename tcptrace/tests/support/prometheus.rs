//! A real Prometheus server for scenario tests: started on loopback with a
//! temporary config and data directory, scraping one target every second,
//! queried over its HTTP API. Plain HTTP/1.0 over std sockets.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

/// A loopback port free right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// GET `path` from `127.0.0.1:port` with extra headers: (status, headers, body).
pub fn http_get(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub struct Prometheus {
    child: Child,
    pub port: u16,
    dir: std::path::PathBuf,
}

impl Prometheus {
    /// Starts `prometheus` scraping `127.0.0.1:target` every second, with
    /// `rules` (a rule file) evaluated every second.
    pub fn start(target: u16, rules: &str) -> Prometheus {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("tcptrace-prom-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).expect("prometheus dir");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
             rule_files: [\"{rules}\"]\n\
             scrape_configs:\n  - job_name: tcptrace\n    static_configs:\n      - targets: [\"127.0.0.1:{target}\"]\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("config");
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus (Debian package prometheus; cargo xtask setup installs it)");
        let p = Prometheus { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok()
                && http_get(port, "/-/ready", &[]).0 == 200
            {
                return p;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("prometheus did not get ready");
    }

    fn api(&self, path: &str) -> Value {
        let (status, _, body) = http_get(self.port, path, &[]);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }

    /// An instant query: (labels, value) of every series.
    pub fn query(&self, q: &str) -> Vec<(Value, f64)> {
        let v = self.api(&format!("/api/v1/query?query={}", encode(q)));
        v["data"]["result"]
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|s| {
                        let n = s["value"][1].as_str().and_then(|t| t.parse().ok());
                        (s["metric"].clone(), n.unwrap_or(f64::NAN))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The value of a query with exactly one series, or None without any.
    pub fn value(&self, q: &str) -> Option<f64> {
        let r = self.query(q);
        assert!(r.len() <= 1, "{q}: {r:?}");
        r.first().map(|(_, v)| *v)
    }

    /// Waits until `q` has one series equal to `want` (or gives up and
    /// returns what it saw last).
    pub fn wait_for(&self, q: &str, want: f64, within: Duration) -> Option<f64> {
        let deadline = Instant::now() + within;
        loop {
            let v = self.value(q);
            if v == Some(want) || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Names of the alerts firing now.
    pub fn firing(&self) -> Vec<String> {
        let v = self.api("/api/v1/alerts");
        v["data"]["alerts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|a| a["state"] == "firing")
                    .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
