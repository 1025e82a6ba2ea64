//! Running `tcptrace diagnose --json` beside a scenario that runs in its own
//! network namespace: shared by the diagnosis scenario tests.

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{attach_mode, enter_private_netns, tcptrace_bin, thread_netns};

/// A running `tcptrace diagnose --json`.
pub struct Diagnose {
    child: Child,
    report: Vec<String>,
}

impl Diagnose {
    /// Starts it for `duration` on namespace `netns`; returns once attached.
    pub fn start(duration: &str, netns: u64) -> Self {
        Self::start_with(duration, &["--netns", &netns.to_string()])
    }

    /// Starts it for `duration` with these filters (none: the whole host,
    /// every namespace's counters); returns once attached.
    pub fn start_with(duration: &str, filters: &[&str]) -> Self {
        let mut child = Command::new(tcptrace_bin())
            .args([
                "diagnose",
                "--json",
                "--duration",
                duration,
                "--attach",
                &attach_mode(),
                super::STATE_CHANGES,
            ])
            .args(filters)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tcptrace diagnose");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[tcptrace] {line}");
                let _ = tx.send(line);
            }
        });
        let mut report = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains("tracing;") => break,
                Ok(line) => report.push(line),
                Err(_) => {
                    let _ = child.kill();
                    panic!("tcptrace diagnose did not start: {report:?}");
                }
            }
        }
        Self { child, report }
    }

    pub fn hook_attached(&self, hook: &str) -> bool {
        self.report.iter().any(|l| {
            let mut w = l.split_whitespace().skip(1);
            w.next() == Some(hook) && w.next() != Some("UNAVAILABLE")
        })
    }

    /// Waits for the end of the watch; every line must be a finding.
    pub fn findings(self) -> Vec<Value> {
        let out = self.child.wait_with_output().expect("wait tcptrace");
        assert!(
            out.status.success(),
            "tcptrace diagnose exited with {}",
            out.status
        );
        let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect();
        for l in &lines {
            assert_eq!(l["kind"], "finding", "diagnose prints only findings: {l}");
        }
        lines
    }
}

/// A worker thread in its own namespace, driven step by step: the test
/// starts tcptrace once the namespace exists and tells the worker when to
/// go; the worker keeps its sockets until told to let go (after tcptrace
/// took its final snapshot).
pub struct Worker<T> {
    pub netns: u64,
    go: mpsc::Sender<()>,
    done: mpsc::Receiver<T>,
    release: mpsc::Sender<()>,
    handle: thread::JoinHandle<()>,
}

pub fn worker<T: Send + 'static>(
    scenario: impl FnOnce(mpsc::Receiver<()>) -> T + Send + 'static,
) -> Worker<T> {
    let (ns_tx, ns_rx) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    let (done_tx, done) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let handle = thread::spawn(move || {
        enter_private_netns();
        ns_tx.send(thread_netns()).expect("netns");
        go_rx.recv().expect("go");
        done_tx.send(scenario(release_rx)).expect("done");
    });
    let netns = ns_rx.recv().expect("the worker's namespace");
    Worker {
        netns,
        go,
        done,
        release,
        handle,
    }
}

impl<T> Worker<T> {
    pub fn finish(self, d: Diagnose) -> (T, Vec<Value>) {
        self.go.send(()).expect("go");
        let result = self.done.recv().expect("scenario");
        let findings = d.findings();
        let _ = self.release.send(());
        self.handle.join().expect("worker");
        (result, findings)
    }
}
