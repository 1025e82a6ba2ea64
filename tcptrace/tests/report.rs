//! `tcptrace report` against the real binary and a real browser: a
//! recording made while connects are refused and a listener overflows
//! becomes a page whose every section is present in the DOM Chromium
//! builds (`--dump-dom`), whose totals are `replay --json`'s, with no
//! external URL and no script; a screenshot is kept as a test artifact.
//! A corrupt or cut recording gives a page that says what was not read,
//! where replay stops with an error or a note. Chromium is installed by
//! `cargo xtask test`; where it is missing (the VM images) the page is
//! checked as written.

mod support;

use std::{
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Output},
    thread,
    time::Duration,
};

use nix::sys::signal::{kill, Signal};
use serde_json::Value;
use support::{
    addr_of, attach_mode, backlog_listener,
    craft::{self, Family, Lab, Peer},
    delta, have, refused_addr, set_sysctl, tcptrace_bin,
    tempdir::TempDir,
    Spawned,
};

/// Every section of the page, by id (docs/report.md).
const SECTIONS: [&str; 7] = [
    "header",
    "findings",
    "timeline",
    "latency",
    "listeners",
    "peers",
    "events",
];
const KINDS: [&str; 7] = [
    "connect",
    "port_search",
    "syn_drop",
    "listen_overflow",
    "synack_retransmit",
    "paws_reject",
    "rst",
];

fn tcptrace(args: &[&str]) -> Output {
    let out = Command::new(tcptrace_bin())
        .args(args)
        .output()
        .expect("run tcptrace");
    eprintln!(
        "[tcptrace {args:?}] {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The report of `rec` written to `page`; its stderr.
fn report(rec: &Path, page: &Path) -> String {
    let out = tcptrace(&[
        "report",
        rec.to_str().expect("UTF-8 path"),
        "-o",
        page.to_str().expect("UTF-8 path"),
    ]);
    assert!(out.status.success(), "report failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The final summary `replay --json` prints for `rec`.
fn replay_summary(rec: &Path) -> Value {
    let out = tcptrace(&["replay", rec.to_str().expect("UTF-8 path"), "--json"]);
    assert!(out.status.success(), "replay failed");
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let objs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    support::final_summary(&objs).clone()
}

/// The DOM Chromium builds from the page, or the page itself without
/// Chromium.
fn dom_of(page: &Path) -> String {
    if !have("chromium") {
        eprintln!("chromium not installed here: the page is checked as written");
        return std::fs::read_to_string(page).expect("read page");
    }
    let out = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 DOM")
}

/// Where screenshots go: `TCPTRACE_ARTIFACTS`, else `target/test-artifacts`.
fn artifact(name: &str) -> PathBuf {
    let dir = std::env::var_os("TCPTRACE_ARTIFACTS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).expect("artifact directory");
    dir.join(name)
}

fn screenshot(page: &Path, png: &Path) {
    if !have("chromium") {
        return;
    }
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1280,4000",
        ])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium screenshot failed");
    let size = std::fs::metadata(png).expect("screenshot written").len();
    assert!(size > 10_000, "a {size}-byte screenshot shows nothing");
    eprintln!("report screenshot: {}", png.display());
}

/// The text of the element with `id` (its first text, tags inside skipped).
fn by_id<'a>(dom: &'a str, id: &str) -> &'a str {
    let open = format!("id=\"{id}\"");
    let at = dom
        .find(&open)
        .unwrap_or_else(|| panic!("no element {id} in the page"));
    let rest = &dom[at..];
    let start = rest.find('>').expect("tag end") + 1;
    let end = rest[start..].find('<').expect("text end");
    &rest[start..start + end]
}

fn number(dom: &str, id: &str) -> u64 {
    by_id(dom, id)
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{id}: not a number: {e}"))
}

/// Records refused connects and an overflowing listener over about three
/// seconds, so the page has several intervals. A crafted peer's third ACK
/// also overflows a listener in a namespace: returns its port and the
/// namespace's ListenOverflows, or None when the listen_overflow hook did
/// not attach (6.1 under fentry: its function takes seven arguments).
fn record(file: &Path) -> (u16, Option<u64>) {
    let mut cmd = Command::new(tcptrace_bin());
    cmd.arg("record")
        .arg("-o")
        .arg(file)
        .args(["--attach", &attach_mode(), "--interval", "1s"]);
    let mut rec = Spawned::until_tracing(cmd, "tcptrace record");
    let overflow_hook = rec.before_tracing.iter().any(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        w.get(1) == Some(&"listen_overflow") && w.get(2) != Some(&"UNAVAILABLE")
    });
    let (_refusing, refused) = refused_addr();
    // A backlog of 1, never accepting: connects past it overflow it.
    let listener = backlog_listener(([127, 0, 0, 1], 0).into(), 1);
    let full = addr_of(&listener);
    let lab = Lab::new(Family::V4);
    let in_lab = SocketAddr::new(lab.server_ip, 0);
    let lab_listener = craft::in_netns(&lab.server_ns, move || {
        set_sysctl("net/ipv4/tcp_abort_on_overflow", "0");
        backlog_listener(in_lab, 2)
    });
    let lab_port = addr_of(&lab_listener).port();
    let mut overflows = 0;
    for round in 0..3 {
        for _ in 0..20 {
            assert!(TcpStream::connect(refused).is_err());
        }
        if round == 1 {
            let held: Vec<_> = (0..8)
                .filter_map(|_| TcpStream::connect_timeout(&full, Duration::from_millis(300)).ok())
                .collect();
            thread::sleep(Duration::from_millis(300));
            drop(held);
            let before = lab.server_netstat();
            Peer::new(lab.wire(), lab_port).overflow_at_third_ack(41000, 2);
            overflows = delta(&before, &lab.server_netstat(), "ListenOverflows");
        }
        thread::sleep(Duration::from_millis(1100));
    }
    kill(
        nix::unistd::Pid::from_raw(rec.child.id() as i32),
        Signal::SIGINT,
    )
    .expect("signal tcptrace");
    assert!(rec.child.wait().expect("wait").success());
    (lab_port, overflow_hook.then_some(overflows))
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn report_shows_every_section_with_replays_totals() {
    let dir = TempDir::new("report");
    let rec = dir.file("run.rec");
    let (lab_port, overflows) = record(&rec);
    let page = dir.file("report.html");
    report(&rec, &page);
    let summary = replay_summary(&rec);

    let html = std::fs::read_to_string(&page).expect("read page");
    assert!(html.len() < 4 << 20, "page of {} bytes", html.len());
    for bad in ["http://", "https://", "<script", "<link", "<img", "@import"] {
        assert!(!html.contains(bad), "the page holds {bad:?}");
    }

    let dom = dom_of(&page);
    for id in SECTIONS {
        assert!(dom.contains(&format!("<section id=\"{id}\"")), "no {id}");
    }
    for kind in KINDS {
        let want = summary["events"][kind].as_u64().unwrap_or(0);
        assert_eq!(number(&dom, &format!("total-{kind}")), want, "{kind}");
    }
    assert!(summary["events"]["connect"].as_u64().unwrap_or(0) >= 60);
    assert_eq!(number(&dom, "lost-total"), summary["lost_total"]);
    assert_eq!(number(&dom, "missed-total"), summary["missed_total"]);
    assert_eq!(number(&dom, "decode-errors"), summary["decode_errors"]);
    let findings = summary["findings"].as_array().map_or(0, Vec::len);
    assert!(dom.contains(&format!("findings ({findings})")), "findings");
    let calls = summary["histograms"]["connect"]["count"].as_u64().unwrap();
    assert_eq!(number(&dom, "calls-connect"), calls);
    assert!(dom.contains("id=\"chart-events\""), "no timeline chart");
    assert!(
        dom.contains("id=\"chart-latency-connect\""),
        "no latency chart"
    );
    assert!(
        dom.contains("id=\"chart-heatmap-connect\""),
        "no latency heatmap"
    );
    // The crafted overflow's listener: its row and its charts over time.
    match overflows {
        Some(overflows) => {
            assert_eq!(overflows, 1, "one third ACK found the queue full");
            let listener = summary["listeners"]
                .as_array()
                .and_then(|ls| ls.iter().find(|l| l["port"] == lab_port))
                .expect("the namespace's listener in the summary");
            assert_eq!(listener["listen_overflows"], overflows);
            let row = format!(
                "<td class=\"n\">{}</td><td class=\"n\">{}</td>",
                listener["listen_overflows"], listener["synack_retransmits"]
            );
            let at = dom.find("<section id=\"listeners\"").expect("listeners");
            let section = &dom[at..at + dom[at..].find("</section>").expect("section end")];
            assert!(section.contains(&row), "listener row {row}");
            for chart in ["drops", "backlog"] {
                assert!(
                    dom.contains(&format!("id=\"chart-listener-0-{chart}\"")),
                    "no listener {chart} chart"
                );
            }
        }
        None => eprintln!("listen_overflow unavailable on this kernel: listener checks skipped"),
    }
    assert!(dom.contains("id=\"sample-connect\""), "no event table");
    assert!(dom.contains("ECONNREFUSED"), "refused connects listed");
    assert!(dom.contains("every file was read to its end"));
    screenshot(&page, &artifact("report.png"));
}

/// A byte inside the stored payload of the block holding offset `near` of
/// recording `bytes` (the block's CRC catches a flip there). A flip in a
/// block header's length instead can read as a cut file (a length past the
/// end is what a killed recorder leaves), which the cut case covers.
/// Layout: 16-byte fixed header with the metadata length at 12, metadata,
/// CRC; then blocks of a 20-byte header (stored length at 4) and payload.
fn payload_byte(bytes: &[u8], near: usize) -> usize {
    let u32_at =
        |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
    let mut block = 16 + u32_at(12) + 4;
    loop {
        let payload = block + 20;
        let end = payload + u32_at(block + 4);
        assert!(end <= bytes.len(), "a block past the end of the recording");
        if near < end {
            return if near < payload {
                payload + (end - payload) / 2
            } else {
                near
            };
        }
        block = end;
    }
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn corrupt_or_cut_recordings_give_a_page_saying_what_was_not_read() {
    let dir = TempDir::new("report-bad");
    let rec = dir.file("run.rec");
    record(&rec);
    let bytes = std::fs::read(&rec).expect("read recording");
    let whole = replay_summary(&rec)["events"]["connect"]
        .as_u64()
        .unwrap_or(0);

    // Cut inside the last block: replay reads up to the block before and
    // notes it; the report says the same on its page.
    let cut = dir.file("cut.rec");
    std::fs::write(&cut, &bytes[..bytes.len() - 9]).expect("write cut file");
    let replay_note =
        String::from_utf8_lossy(&tcptrace(&["replay", cut.to_str().unwrap(), "--json"]).stderr)
            .into_owned();
    assert!(replay_note.contains("ends inside a block"), "{replay_note}");
    let page = dir.file("cut.html");
    let stderr = report(&cut, &page);
    let dom = dom_of(&page);
    assert!(dom.contains("not everything could be read"));
    let note = replay_note
        .lines()
        .find(|l| l.contains("ends inside a block"))
        .and_then(|l| l.strip_prefix("tcptrace: "))
        .expect("replay's note");
    assert!(dom.contains(note), "the page says what replay said: {note}");
    assert!(stderr.contains(note));
    let cut_summary = replay_summary(&cut);
    assert_eq!(
        number(&dom, "total-connect"),
        cut_summary["events"]["connect"].as_u64().unwrap_or(0)
    );

    // A corrupt block: replay stops with an error; the report covers the
    // blocks before it and names the one it could not read.
    let mut bad = bytes.clone();
    bad[payload_byte(&bytes, bytes.len() * 3 / 4)] ^= 0xff;
    let corrupt = dir.file("corrupt.rec");
    std::fs::write(&corrupt, &bad).expect("write corrupt file");
    let out = tcptrace(&["replay", corrupt.to_str().unwrap()]);
    assert!(!out.status.success(), "replay stops at a corrupt block");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let why = err
        .lines()
        .find_map(|l| l.strip_prefix("tcptrace: error: "))
        .expect("replay's error line");
    let page = dir.file("corrupt.html");
    report(&corrupt, &page);
    let dom = dom_of(&page);
    assert!(dom.contains("not everything could be read"));
    assert!(dom.contains(why), "the page names what replay named: {why}");
    assert!(number(&dom, "total-connect") <= whole);
    screenshot(&page, &artifact("report-corrupt.png"));
}
