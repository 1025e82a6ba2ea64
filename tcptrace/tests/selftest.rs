//! `tcptrace selftest` against the running kernel: every hook a
//! reproduction exercises sees exactly what the kernel did, nothing stays
//! behind (programs, namespaces, links), also when it is interrupted, and
//! a second selftest is refused while one runs. Run by `cargo xtask test`
//! on the host and in every VM of the matrix.

mod support;

use std::{
    collections::BTreeSet,
    os::unix::process::CommandExt as _,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use support::*;
use tcptrace_common::programs;

/// The hooks a reproduction exercises, each with the hooks its exact
/// verdict needs beside it.
const EXERCISED: &[(&str, &[&str])] = &[
    ("connect", &[]),
    ("port_search", &[]),
    ("handshake", &[]),
    ("handshake_rtx", &["handshake"]),
    ("syn_drop", &["listen_overflow"]),
    ("listen_overflow", &["syn_drop"]),
    ("listen_owner", &["syn_drop"]),
    ("synack_retrans", &["listen_overflow"]),
    ("validate_incoming", &[]),
    ("paws_time_wait", &[]),
    ("paws_syn_recv", &[]),
    ("paws_syn_sent", &[]),
    // Host-wide counts: exact where nothing else on the host sent a RST
    // (of that reason, 6.10+) during the reproduction, as in the VMs.
    ("rst_sent", &[]),
];

fn selftest(extra: &[&str]) -> Command {
    let mut cmd = Command::new(tcptrace_bin());
    cmd.args(["selftest", "--attach", &attach_mode(), STATE_CHANGES])
        .args(extra);
    cmd
}

/// What must be gone once a selftest ended: tcptrace's programs, every
/// network namespace in use, the root namespace's links.
#[derive(Debug, PartialEq, Eq)]
struct Footprint {
    programs: BTreeSet<u32>,
    namespaces: BTreeSet<String>,
    links: BTreeSet<String>,
}

impl Footprint {
    fn now() -> Self {
        let names: Vec<&str> = programs::ALL.iter().map(|(name, _)| *name).collect();
        let mut namespaces = BTreeSet::new();
        for proc in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Ok(tasks) = std::fs::read_dir(proc.path().join("task")) else {
                continue;
            };
            for task in tasks.flatten() {
                if let Ok(ns) = std::fs::read_link(task.path().join("ns/net")) {
                    namespaces.insert(ns.to_string_lossy().into_owned());
                }
            }
        }
        let links = std::fs::read_dir("/sys/class/net")
            .expect("/sys/class/net")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        Self {
            programs: loaded_tcptrace_programs(&names),
            namespaces,
            links,
        }
    }

    /// What is still there, compared with this earlier reading, after a
    /// grace of up to 5 s: the kernel frees a tp_btf or fentry program's
    /// link, and with it the program, after an RCU grace period.
    fn left_behind(&self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = self.grown(&Footprint::now());
            if left.is_empty() || Instant::now() >= deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What `later` holds that this did not.
    fn grown(&self, later: &Footprint) -> Vec<String> {
        let mut left: Vec<String> = later
            .programs
            .difference(&self.programs)
            .map(|id| format!("BPF program {id}"))
            .collect();
        left.extend(
            later
                .namespaces
                .difference(&self.namespaces)
                .map(|ns| format!("namespace {ns}")),
        );
        left.extend(
            later
                .links
                .difference(&self.links)
                .map(|l| format!("link {l}")),
        );
        left
    }
}

/// The one miss allowed where the hook is not required (as
/// support::runs_against_counter allows it in S2): this host's 6.18 now and
/// then does not run the SYN-ACK retransmit program for a retransmit it
/// counts. Some("synack_retrans") when that is the selftest's only failing
/// verdict, one event short of TCPSynRetrans.
fn kernel_skipped_once(all: &[Value]) -> Option<&'static str> {
    let failing: Vec<&Value> = all
        .iter()
        .filter(|v| v["verdict"] == "missed" || v["verdict"] == "error")
        .collect();
    let [v] = failing[..] else {
        return None;
    };
    if v["hook"] != "synack_retrans" || v["verdict"] != "missed" || required("synack_retrans") {
        return None;
    }
    // "{events} SYN-ACK retransmits (…), TCPSynRetrans +{counted}, …"
    let detail = v["detail"].as_str()?;
    let events: u64 = detail.split(' ').next()?.parse().ok()?;
    let counted: u64 = detail
        .split("TCPSynRetrans +")
        .nth(1)?
        .split(',')
        .next()?
        .parse()
        .ok()?;
    (events + 1 == counted).then(|| {
        eprintln!("KERNEL-SKIPPED: synack_retrans: {v}");
        "synack_retrans"
    })
}

fn verdicts(out: &Output) -> Vec<Value> {
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_str(&text).expect("selftest --json prints a JSON array");
    v.as_array().expect("an array of verdicts").clone()
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn exercised_hooks_are_exact_and_nothing_stays_behind() {
    let before = Footprint::now();
    let started = Instant::now();
    let out = selftest(&["--json"]).output().expect("run selftest");
    let took = started.elapsed();
    let all = verdicts(&out);
    let skipped = kernel_skipped_once(&all);
    assert!(
        out.status.success() || skipped.is_some(),
        "selftest failed: {:?}",
        out.status
    );
    eprintln!("selftest took {took:?}");
    let find = |hook: &str| {
        all.iter()
            .find(|v| v["hook"] == hook)
            .unwrap_or_else(|| panic!("no verdict for {hook}"))
    };
    let attached = |hook: &str| !find(hook)["mechanism"].is_null();
    for v in &all {
        let verdict = v["verdict"].as_str().expect("verdict");
        assert!(
            ["exact", "partial", "unavailable", "unverified"].contains(&verdict),
            "{v}"
        );
        assert!(
            !v["detail"].as_str().expect("detail").is_empty(),
            "every verdict says why: {v}"
        );
        assert_eq!(
            verdict == "unavailable",
            !attached(v["hook"].as_str().expect("hook")),
            "{v}"
        );
    }
    // connect() always attaches, and its reproduction is exact everywhere.
    assert_eq!(find("connect")["verdict"], "exact");
    for (hook, needs) in EXERCISED {
        let v = find(hook);
        if !attached(hook) {
            // The one limit accepted where every hook is required (see
            // support::hook): trampolines before 6.4 take at most 6 arguments.
            let trampoline_limit = attach_mode() == "fentry"
                && v["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("at most 6 arguments"));
            assert!(
                !required(hook) || known_unavailable(hook) || trampoline_limit,
                "{hook} must attach: {v}"
            );
            continue;
        }
        assert_ne!(v["verdict"], "unverified", "{v}");
        if skipped == Some(*hook) {
            continue;
        }
        // validate_incoming's drop-reason form without the receiving
        // socket (6.0-6.10 under auto) reads an ignored RST's segment alone.
        let socket_unread = v["verdict"] == "partial"
            && v["detail"]
                .as_str()
                .is_some_and(|d| d.contains("the socket is not read"));
        if needs.iter().all(|n| attached(n)) && !(*hook == "validate_incoming" && socket_unread) {
            assert_eq!(v["verdict"], "exact", "{v}");
        } else {
            // Without the hook beside it, it is exact only when the kernel
            // counted nothing the other would have seen (e.g. no third-ACK
            // overflow in the accept-queue run), else partial.
            assert!(v["verdict"] == "partial" || v["verdict"] == "exact", "{v}");
        }
    }
    let left = before.left_behind();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Waits until a selftest holds its lock (the abstract unix socket).
fn wait_for_lock(within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let unix = std::fs::read_to_string("/proc/net/unix").expect("/proc/net/unix");
        if unix.lines().any(|l| l.ends_with(" @tcptrace-selftest")) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the selftest did not take its lock within {within:?}");
}

/// Whether a thread of process `pid` is in another network namespace
/// than this one.
fn in_own_netns(pid: u32) -> bool {
    let ours = std::fs::read_link("/proc/self/ns/net").expect("our netns");
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .any(|t| std::fs::read_link(t.path().join("ns/net")).is_ok_and(|ns| ns != ours))
        })
        .unwrap_or(false)
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn a_second_selftest_is_refused_and_an_interrupted_one_leaves_nothing() {
    let before = Footprint::now();
    let mut first = selftest(&[]);
    // SAFETY: signal() is async-signal-safe, as pre_exec requires; SIGINT
    // back to its default action, which a shell's background job (`&`)
    // inherits as ignored.
    unsafe {
        first.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut first = first.stdout(Stdio::null()).spawn().expect("first selftest");
    wait_for_lock(Duration::from_secs(30));
    let second = selftest(&[]).output().expect("second selftest");
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "the second selftest ran");
    assert_eq!(
        err.trim(),
        "tcptrace: error: another tcptrace selftest is running on this host (it holds @tcptrace-selftest)"
    );
    // Interrupted while its reproductions run: once a thread of it is in
    // a namespace of its own.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !in_own_netns(first.id()) {
        assert!(Instant::now() < deadline, "no reproduction started");
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let status = first.wait().expect("wait for the first selftest");
    assert!(!status.success(), "interrupted: {status:?}");
    let left = before.left_behind();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn only_one_skipped_synack_retransmit_is_tolerated() {
    let verdict = |hook: &str, verdict: &str, detail: &str| serde_json::json!({"hook": hook, "mechanism": "tp_btf", "verdict": verdict, "detail": detail});
    let exact = verdict("connect", "exact", "9 events");
    let short = |events: u64| {
        verdict(
            "synack_retrans",
            "missed",
            &format!("{events} SYN-ACK retransmits ({events} to the ghost after its overflow), TCPSynRetrans +2, 2 resent SYN-ACKs seen by the peer"),
        )
    };
    let tolerated = (!required("synack_retrans")).then_some("synack_retrans");
    assert_eq!(kernel_skipped_once(&[exact.clone(), short(1)]), tolerated);
    // Two short, another hook failing too, or another hook alone: no.
    assert_eq!(kernel_skipped_once(&[exact.clone(), short(0)]), None);
    let other = verdict("syn_drop", "missed", "1 SYN drops");
    assert_eq!(kernel_skipped_once(&[short(1), other.clone()]), None);
    assert_eq!(kernel_skipped_once(&[exact, other]), None);
}
