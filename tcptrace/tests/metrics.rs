//! Scenario tests for `--metrics`: a real Prometheus server scrapes
//! tcptrace while the kernel does the thing (port exhaustion here; the SYN
//! family, PAWS and RSTs, and thousands of listeners and peers in the
//! submodules), and its HTTP API must show exactly what tcptrace printed
//! and the kernel counted; promtool accepts the exposition and the example
//! alert rules, and one of them fires. Where Prometheus is not installed
//! (the VM kernels) the same assertions read tcptrace's `/metrics` with the
//! tests' own client (support::scrape). Bad endpoint arguments get one
//! line; a client that sends nothing stalls nothing. They need root and are
//! run by `cargo xtask test`.

mod support;

// The crate root's modules resolve beside it: name the folder.
#[path = "metrics/cardinality.rs"]
mod cardinality;
#[path = "metrics/paws_rst.rs"]
mod paws_rst;
#[path = "metrics/syn.rs"]
mod syn;

use std::{
    io::Read as _,
    net::{TcpListener, TcpStream},
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{prometheus::*, scrape::Metrics, *};

fn rules() -> String {
    format!(
        "{}/../deploy/prometheus/alerts.yml",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A thread in a private network namespace that runs `scenario` when told
/// to and keeps what it returns (its sockets) until the end.
struct Lab<T> {
    netns: u64,
    go: mpsc::Sender<()>,
    done: mpsc::Receiver<T>,
}

fn lab<T: Send + 'static>(scenario: impl FnOnce() -> T + Send + 'static) -> Lab<T> {
    let (ns_tx, ns_rx) = mpsc::channel();
    let (go, go_rx) = mpsc::channel::<()>();
    let (done_tx, done) = mpsc::channel();
    thread::spawn(move || {
        enter_private_netns();
        ns_tx.send(thread_netns()).expect("netns");
        if go_rx.recv().is_ok() {
            let _ = done_tx.send(scenario());
        }
    });
    Lab {
        netns: ns_rx.recv().expect("the lab's namespace"),
        go,
        done,
    }
}

impl<T> Lab<T> {
    fn run(&self) -> T {
        self.go.send(()).expect("go");
        self.done.recv().expect("scenario")
    }
}

fn errno_events(objs: &[Value], errno: i32) -> usize {
    events(objs, "connect")
        .filter(|e| e["errno"] == errno)
        .count()
}

/// Port exhaustion and refused connects in a private namespace, traced with
/// `--netns` so every count is this scenario's: the metrics must hold what
/// tcptrace printed, the histogram `_count` every call. Where Prometheus is
/// installed it scrapes tcptrace, its API is queried and the port
/// exhaustion alert must fire, and promtool checks the exposition;
/// elsewhere (the VM kernels) the same values are scraped directly.
#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn metrics_hold_what_tcptrace_printed_and_an_alert_fires() {
    const RANGE: u16 = 8;
    const REFUSED: usize = 3;
    let lab = lab(|| {
        let (l, held) = exhaust_ports(41000, RANGE);
        drop(held);
        for _ in 0..REFUSED {
            let err = TcpStream::connect("127.0.0.1:5556").expect_err("nobody listens");
            assert_eq!(err.raw_os_error(), Some(libc::ECONNREFUSED), "{err}");
        }
        l
    });
    let port = free_port();
    let netns = lab.netns.to_string();
    let metrics = format!("127.0.0.1:{port}");
    let tracer = Tracer::start_every("1s", &[], &["--netns", &netns, "--metrics", &metrics]);
    let m = Metrics::start(port, &rules());
    let count_name = "tcptrace_connect_duration_seconds_count";
    assert_eq!(
        m.value(count_name, &[]),
        Some(0.0),
        "nothing in the namespace yet"
    );

    let _listener = lab.run();
    let calls = f64::from(RANGE) + 1.0 + REFUSED as f64;
    let count = m.wait_value(count_name, &[], calls);
    // The finding is published at the summary after the event (every 1 s)
    // and scraped after that: it can come a scrape later than the counters
    // the alert also fires on.
    let exhaustion = [("id", "ephemeral_port_exhaustion")];
    let finding = m.wait_value("tcptrace_finding_active", &exhaustion, 1.0);
    let firing = m.server().map(|prom| {
        // Every alert state is evaluated once a second: give the rule a few.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut firing = prom.firing();
        while !firing.iter().any(|a| a == "TcptracePortExhaustion") && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(500));
            firing = prom.firing();
        }
        firing
    });

    // promtool on the text format, and the OpenMetrics negotiation.
    let (status, _, text) = http_get(port, "/metrics", &[]);
    assert_eq!(status, 200);
    if have("promtool") {
        promtool_check_metrics(&text);
    }
    let (_, head, om) = http_get(
        port,
        "/metrics",
        &[("Accept", "application/openmetrics-text;version=1.0.0")],
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(om.ends_with("# EOF\n"));
    assert!(
        text.contains("# TYPE tcptrace_connect_errors_total counter"),
        "{text}"
    );

    let errors = |e: &str| m.value("tcptrace_connect_errors_total", &[("errno", e)]);
    let refused = errors("ECONNREFUSED");
    let exhausted = errors("EADDRNOTAVAIL");
    let inf = m.value(
        "tcptrace_connect_duration_seconds_bucket",
        &[("le", "+Inf")],
    );
    let sum = m.value("tcptrace_connect_duration_seconds_sum", &[]);
    let printed = m.value("tcptrace_events_total", &[("kind", "connect")]);
    let occurrences = m.value("tcptrace_finding_occurrences_total", &exhaustion);
    let increase = m.server().map(|prom| {
        prom.value(&format!(
            "max_over_time({count_name}[5m]) - min_over_time({count_name}[5m])"
        ))
    });
    drop(m);
    let objs = tracer.stop();

    let connects = events(&objs, "connect").count();
    assert_eq!(connects as f64, calls, "tcptrace printed every connect()");
    assert_eq!(count, Some(calls), "_count == connect() calls");
    if let Some(increase) = increase {
        assert_eq!(increase, Some(calls), "increase of _count over the run");
    }
    assert_eq!(inf, Some(calls));
    assert_eq!(
        printed,
        Some(calls),
        "tcptrace_events_total == events printed"
    );
    assert_eq!(
        refused,
        Some(errno_events(&objs, libc::ECONNREFUSED) as f64)
    );
    assert_eq!(refused, Some(REFUSED as f64));
    assert_eq!(
        exhausted,
        Some(errno_events(&objs, libc::EADDRNOTAVAIL) as f64)
    );
    assert_eq!(exhausted, Some(1.0));
    let latency_sum: u64 = events(&objs, "connect")
        .filter_map(|e| e["latency_ns"].as_u64())
        .sum();
    let sum = sum.expect("a _sum");
    // The kernel sums the same latencies the events carry.
    assert!(
        (sum - latency_sum as f64 / 1e9).abs() < 1e-6,
        "_sum {sum} s vs events {latency_sum} ns"
    );
    assert_eq!(finding, Some(1.0), "the diagnosis holds the finding");
    assert_eq!(occurrences, Some(1.0), "one failed connect()");
    if let Some(firing) = firing {
        assert!(
            firing.iter().any(|a| a == "TcptracePortExhaustion"),
            "alerts firing: {firing:?}"
        );
    }
}

/// `promtool check metrics` has nothing to say about `text`.
fn promtool_check_metrics(text: &str) {
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    std::io::Write::write_all(&mut check.stdin.take().expect("stdin"), text.as_bytes())
        .expect("feed promtool");
    let out = check.wait_with_output().expect("promtool");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The example rules load.
#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn promtool_accepts_the_alert_rules() {
    if !have("promtool") {
        eprintln!("promtool not installed here: skipped (runs on the host)");
        return;
    }
    let out = Command::new("promtool")
        .args(["check", "rules", &rules()])
        .output()
        .expect("promtool");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("SUCCESS: 6 rules found"), "{text}");
}

/// stderr of a tcptrace that must fail at start.
fn fails_with(args: &[&str], uid: Option<u32>) -> String {
    let mut cmd = Command::new(tcptrace_bin());
    cmd.args(args);
    if let Some(uid) = uid {
        std::os::unix::process::CommandExt::uid(&mut cmd, uid);
    }
    let out = cmd.output().expect("run tcptrace");
    assert!(!out.status.success(), "{args:?} succeeded");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    // clap adds its usual pointer to --help after the error line.
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.is_empty() && *l != "For more information, try '--help'.")
        .collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    format!("{}\n", lines[0])
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn bad_endpoints_get_one_line_at_start() {
    let held = TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = held.local_addr().expect("addr").to_string();
    assert_eq!(
        fails_with(&["--metrics", &taken, "--duration", "5s"], None),
        format!("tcptrace: error: --metrics {taken}: the port is taken (another process listens there)\n")
    );
    let err = fails_with(&["--metrics", "localhost:9x"], None);
    assert!(
        err.starts_with("error: invalid value 'localhost:9x' for '--metrics <ADDR:PORT>'")
            && err.contains("e.g. 9464 or 127.0.0.1:9464"),
        "{err}"
    );
    // As nobody: port 80 is below net.ipv4.ip_unprivileged_port_start.
    assert_eq!(
        fails_with(&["--metrics", "127.0.0.1:80"], Some(65534)),
        "tcptrace: error: --metrics 127.0.0.1:80: port 80 is privileged: binding it needs root or \
         CAP_NET_BIND_SERVICE; choose a port from 1024 up\n"
    );
}

/// Clients that connect and send nothing hold neither the drain nor other
/// scrapes, and are closed after the header timeout.
#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn a_silent_client_stalls_nothing() {
    const CALLS: usize = 20;
    let lab = lab(|| {
        let (l, addr) = listener("127.0.0.1:7000");
        let kept: Vec<TcpStream> = (0..CALLS)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        (l, kept)
    });
    let port = free_port();
    let netns = lab.netns.to_string();
    let metrics = format!("127.0.0.1:{port}");
    let tracer = Tracer::start_every("0", &[], &["--netns", &netns, "--metrics", &metrics]);
    let silent: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect to /metrics"))
        .collect();
    let _kept = lab.run();
    // The drain polls the ring buffer every few ms.
    thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let (status, _, body) = http_get(port, "/metrics", &[]);
    assert_eq!(status, 200);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "scrape took {:?}",
        t.elapsed()
    );
    let line = body
        .lines()
        .find(|l| l.starts_with("tcptrace_events_total{kind=\"connect\"}"))
        .expect("connect events in the exposition")
        .to_owned();
    // The silent clients are closed by the server within its header timeout.
    let mut closed = 0;
    for mut s in silent {
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut buf = [0u8; 64];
        if s.read(&mut buf).is_ok() {
            closed += 1;
        }
    }
    let objs = tracer.stop();
    assert_eq!(events(&objs, "connect").count(), CALLS, "no event lost");
    assert_eq!(
        line,
        format!("tcptrace_events_total{{kind=\"connect\"}} {CALLS}")
    );
    assert_eq!(closed, 8, "every silent client was closed");
}

/// The tests' own reader of the text format (used where there is no
/// Prometheus): labels, escapes, `+Inf`.
#[test]
fn the_scrape_client_parses_the_text_format() {
    let s = support::scrape::parse(
        "# TYPE x counter\nx_total{a=\"1\",b=\"q\\\"z\"} 3\ny 4.5\nh_bucket{le=\"+Inf\"} 2\n",
    );
    assert_eq!(s.len(), 3);
    assert_eq!(s[0].name, "x_total");
    assert_eq!(s[0].labels["b"], "q\"z");
    assert_eq!(s[0].value, 3.0);
    assert!(s[1].labels.is_empty());
    assert_eq!(s[1].value, 4.5);
    assert_eq!(s[2].labels["le"], "+Inf");
}
