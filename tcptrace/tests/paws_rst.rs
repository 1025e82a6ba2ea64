//! Scenario tests for the PAWS/RST family: a crafted peer (see `support::craft`)
//! makes the server namespace's kernel reject old timestamps and judge RSTs;
//! tcptrace must report exactly what was injected, and the kernel's own
//! counters must agree. They need root and run under `cargo xtask test`.

mod support;

use std::{
    io::{ErrorKind, Read as _},
    thread,
    time::Duration,
};

use serde_json::Value;
use support::craft::{self, Family, Lab};
use support::*;
use tcptrace_lab::repro::{
    abort,
    paws::{self, Behind},
    paws_handshake, rst,
};

/// A lab as the reproductions return it (support::craft::Lab derefs to it).
type AnyLab = tcptrace_lab::craft::Lab;

/// Starts tcptrace and says whether `hook` is attached; fails when the run
/// requires it (VM matrix) and it is not.
fn tracer_for(hook: &str) -> (Tracer, bool) {
    // Recorded with --pcap: stop() checks the packets against the events.
    let tracer = Tracer::start_pcap(&[]);
    let on = tracer.mechanism(hook);
    eprintln!("{hook}: {on:?}");
    if required(hook) {
        assert!(
            on.is_some(),
            "{hook} must attach here: {:?}",
            tracer.attach_report
        );
    }
    (tracer, on.is_some())
}

/// Whether validate_incoming sees the segment of each RST it reports as
/// accepted: its function hooks do, and so does its drop-reason form where
/// `tcp_reset` itself is hooked; its tracepoint `tcp:tcp_receive_reset`
/// passes the socket alone.
fn reset_segments_seen(tracer: &Tracer) -> bool {
    match tracer.mechanism("validate_incoming").as_deref() {
        Some("fentry" | "kprobe") => true,
        Some(_) => tracer.attach_report.iter().any(|l| {
            l.split_whitespace().nth(1) == Some("validate_incoming")
                && (l.contains("tcp_reset (fentry)") || l.contains("tcp_reset (kprobe)"))
        }),
        None => false,
    }
}

/// Whether validate_incoming reads an ignored RST's segment alone: its
/// drop-reason form where `kfree_skb` does not pass the receiving socket
/// (6.0-6.10 under `auto`), which has no function naming that socket.
fn ignored_socket_unread(tracer: &Tracer) -> bool {
    tracer.attach_report.iter().any(|l| {
        l.split_whitespace().nth(1) == Some("validate_incoming") && l.contains("kfree_skb_segment")
    })
}

/// Events of `kind` in `netns`; each carries its packet's headers, except
/// accepted RSTs seen without their segment (`seq_inferred`).
fn in_ns<'a>(objs: &'a [Value], kind: &str, netns: u64) -> Vec<&'a Value> {
    let found: Vec<&Value> = events(objs, kind).filter(|e| e["netns"] == netns).collect();
    for e in &found {
        let captured = e["packet_len"].as_u64().is_some_and(|n| n >= 40);
        assert!(captured || e["seq_inferred"] == true, "no packet: {e}");
    }
    found
}

/// The findings about the server namespace: exactly the ids `want`.
fn lab_findings<'a>(objs: &'a [Value], lab: &AnyLab, want: &[&str]) -> Vec<&'a Value> {
    let found = findings_in(objs, lab.server_netns_inode().expect("netns inode"));
    assert_eq!(finding_ids(&found), want, "{found:#?}");
    found
}

/// A PAWS finding about the crafted peer: `rejects` rejects, all at `site`,
/// from `clocks` timestamp clocks, matching the kernel's `counter` delta.
fn check_paws_finding(
    f: &Value,
    lab: &AnyLab,
    (site, rejects, clocks): (&str, u64, u64),
    (counter, delta): (&str, u64),
) {
    let e = &f["evidence"];
    let netns = lab.server_netns_inode().expect("netns inode");
    assert_eq!(f["severity"], "warning", "{f}");
    assert_eq!(f["subject"], format!("peer {} netns {netns}", lab.peer_ip));
    assert_eq!(f["count"], rejects, "{f}");
    assert_eq!(e["peer"], lab.peer_ip.to_string());
    assert_eq!(e["rejects"], rejects, "{e}");
    assert_eq!(
        e["rejects_by_site"],
        serde_json::json!({ site: rejects }),
        "{e}"
    );
    assert_eq!(e["clocks"], clocks, "{e}");
    assert_eq!(e["counters"][counter], delta, "{e}");
    assert_eq!(e["tcp_timestamps"], 1, "sysctls of the namespace: {e}");
    for k in ["first_seen", "last_seen"] {
        assert!(f[k].as_str().is_some_and(|t| t.ends_with('Z')), "{k}: {f}");
    }
}

/// S4: an established connection receives data stamped older than its
/// `ts_recent` (tcptrace_lab::repro::paws::established): one `paws_reject`
/// at site `established` per segment.
fn established(family: Family, behind: Behind) {
    let (tracer, on) = tracer_for("validate_incoming");
    let r = paws::established(&craft::PREFIX, family, behind).expect("S4 reproduction");
    let objs = tracer.stop();
    let lab = &r.lab;
    let (before, after) = (&r.before.0, &r.after.0);
    let old = r.rejects;
    // How far behind, and what diagnose makes of it.
    let (finding, clocks) = match behind {
        // 1010 ticks: stale timestamps from the connection's own clock.
        Behind::Stale => (Some("paws_stale_timestamps"), 1),
        // 4 ticks: reordering; the kernel drops them, no finding.
        Behind::Reordered => (None, 1),
        // 1,000,010 ticks: a second clock on one connection (shared mapping).
        Behind::SecondClock => (Some("paws_nat_clocks"), 2),
    };

    assert_eq!(delta(before, after, "PAWSEstab"), u64::from(old));
    assert_eq!(delta(before, after, "PAWSOldAck"), 0);
    if !on {
        // No counter-only PAWS rule: the counters name no peer.
        lab_findings(&objs, lab, &[]);
        eprintln!("validate_incoming unavailable: kernel counters checked only");
        return;
    }
    // Three rejects from one clock: stale timestamps; from two clocks on
    // one connection: a shared NAT mapping; reordering: nothing.
    let found = lab_findings(&objs, lab, finding.as_slice());
    if let Some(id) = finding {
        let f = the_finding(&found, id);
        check_paws_finding(
            f,
            lab,
            ("established", old.into(), clocks),
            ("PAWSEstab", old.into()),
        );
        assert_eq!(f["evidence"]["reordered"], 0);
        assert_eq!(f["evidence"]["sample_tsval"], r.tsval);
        assert_eq!(f["evidence"]["sample_ts_recent"], r.ts_recent);
        assert_eq!(
            f["evidence"]["local_ports"],
            serde_json::json!([{"port": 8040, "count": old}])
        );
    }
    let paws = in_ns(&objs, "paws_reject", r.server_netns);
    assert_eq!(paws.len(), old as usize, "{paws:?}");
    for e in paws {
        assert_eq!(e["site"], "established");
        assert_eq!(e["state"], "ESTABLISHED");
        assert_eq!(e["daddr"], lab.peer_ip.to_string());
        assert_eq!(e["dport"], 40001);
        assert_eq!(e["saddr"], lab.server_ip.to_string());
        assert_eq!(e["sport"], 8040);
        assert_eq!(e["tsval"], r.tsval);
        assert_eq!(e["ts_recent"], r.ts_recent);
        assert_eq!(e["old_ack"], false);
    }
    let summary = final_summary(&objs);
    assert_eq!(summary["lost_total"], 0);
    let peer = &summary["paws"]["top_peers"][0];
    assert_eq!(peer["peer"], lab.peer_ip.to_string(), "{summary}");
    assert_eq!(peer["clocks"], clocks, "{peer}");
    let reordered = if matches!(behind, Behind::Reordered) {
        old
    } else {
        0
    };
    assert_eq!(peer["reordered"], reordered, "{peer}");
}

/// S5: a client reuses a 4-tuple the server holds in TIME_WAIT with a
/// clock behind the old connection's (tcptrace_lab::repro::paws::time_wait):
/// each SYN fails PAWS against the old connection's last stamp.
fn time_wait(family: Family) {
    let (tracer, on) = tracer_for("paws_time_wait");
    let r = paws::time_wait(&craft::PREFIX, family).expect("S5 reproduction");
    let objs = tracer.stop();
    let lab = &r.lab;
    let (before, after) = (&r.before.0, &r.after.0);
    let syns = r.rejects;

    // 6.16+ counts TIME_WAIT rejects apart; before, they are PAWSEstab.
    let counter = if after.contains_key("PAWSTimewait") {
        assert_eq!(delta(before, after, "PAWSEstab"), 0);
        "PAWSTimewait"
    } else {
        "PAWSEstab"
    };
    assert_eq!(counter, r.counter);
    assert_eq!(delta(before, after, counter), u64::from(syns), "{counter}");
    if !on {
        lab_findings(&objs, lab, &[]);
        eprintln!("paws_time_wait unavailable: kernel counters checked only");
        return;
    }
    // 4-tuple reuse against TIME_WAIT: stamps of two connections prove one
    // clock, not two hosts (Linux may offset every connection apart).
    let found = lab_findings(&objs, lab, &["paws_time_wait_reuse"]);
    let f = the_finding(&found, "paws_time_wait_reuse");
    check_paws_finding(
        f,
        lab,
        ("time_wait", syns.into(), 1),
        (counter, syns.into()),
    );
    assert_eq!(f["evidence"]["sample_tsval"], r.first_tsval);
    assert_eq!(f["evidence"]["sample_ts_recent"], r.ts_recent);
    assert!(
        f["advice"].to_string().contains("TIME_WAIT"),
        "{}",
        f["advice"]
    );
    let paws = in_ns(&objs, "paws_reject", r.server_netns);
    assert_eq!(paws.len(), syns as usize, "{paws:?}");
    for (i, e) in paws.iter().enumerate() {
        assert_eq!(e["site"], "time_wait");
        assert_eq!(e["state"], "TIME_WAIT");
        assert_eq!(e["daddr"], lab.peer_ip.to_string());
        assert_eq!(e["dport"], 40002);
        assert_eq!(e["sport"], 8050);
        assert_eq!(e["tsval"], r.first_tsval + i as u32);
        assert_eq!(e["ts_recent"], r.ts_recent);
    }
    let summary = final_summary(&objs);
    let peer = summary["paws"]["top_peers"]
        .as_array()
        .expect("top_peers")
        .iter()
        .find(|p| p["peer"] == lab.peer_ip.to_string())
        .expect("the shared address in the summary");
    assert_eq!(peer["rejects"], syns);
    assert_eq!(
        peer["clocks"], 1,
        "the summary counts as the finding: {peer}"
    );
}

/// S5 as it happens in production: ONE client host behind SNAT (nft in the
/// client namespace maps every connection to source port 40000), a server
/// that closes first (so it holds TIME_WAIT), 20 fetches with curl. Where
/// Linux offsets timestamps per 4-tuple (6.18), each new connection leaves
/// from another private port with an unrelated clock and lands on the
/// server's TIME_WAIT 4-tuple: PAWS rejects about half the time. They are
/// reported exactly, as 4-tuple reuse, and never as several hosts.
fn time_wait_behind_snat(family: Family) {
    const FETCHES: u32 = 20;
    const PORT: u16 = 8055;
    if !have("curl") || !have("nft") {
        eprintln!("curl or nft not installed here: skipped (runs on the host)");
        return;
    }
    let lab = Lab::new(family);
    let listener = lab.listen(PORT);
    listener.set_nonblocking(false).expect("blocking listener");
    let client_ip = match family {
        Family::V4 => "10.77.0.2",
        Family::V6 => "fd77::2",
    };
    let (table, addr) = match family {
        Family::V4 => ("ip", client_ip.to_owned()),
        Family::V6 => ("ip6", format!("[{client_ip}]")),
    };
    let rules = format!(
        "table {table} tcptrace_snat {{\n chain post {{\n  type nat hook postrouting priority 100;\n  oifname \"vc\" tcp dport {PORT} snat to {addr}:40000\n }}\n}}\n"
    );
    craft::nft(&lab.client_ns, &rules);

    let (tracer, on) = tracer_for("paws_time_wait");
    let before = lab.server_netstat();
    // The server answers each request and closes first. Fetches the NAT
    // could not map (its own TIME_WAIT clash) never arrive: accept with a
    // deadline.
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fetching = std::sync::Arc::clone(&done);
    let server = thread::spawn(move || {
        use std::{io::Write as _, sync::atomic::Ordering};
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut served = 0u32;
        while served < FETCHES
            && !fetching.load(Ordering::Relaxed)
            && std::time::Instant::now() < deadline
        {
            match listener.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).expect("blocking stream");
                    s.set_read_timeout(Some(Duration::from_secs(2)))
                        .expect("timeout");
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf);
                    let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
                    served += 1;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
        served
    });
    let url = match family {
        Family::V4 => format!("http://{}:{PORT}/", lab.server_ip),
        Family::V6 => format!("http://[{}]:{PORT}/", lab.server_ip),
    };
    let mut fetched = 0;
    for _ in 0..FETCHES {
        let ok = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.client_ns,
                "curl",
                "-s",
                "-o",
                "/dev/null",
            ])
            .args(["--max-time", "2", &url])
            .status()
            .is_ok_and(|s| s.success());
        fetched += u32::from(ok);
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    thread::sleep(Duration::from_millis(100));
    let after = lab.server_netstat();
    let objs = tracer.stop();
    let served = server.join().expect("server");
    eprintln!("{fetched} of {FETCHES} fetches completed, {served} served");
    assert!(fetched > 0, "no fetch got through the NAT");

    let counter = if after.contains_key("PAWSTimewait") {
        "PAWSTimewait"
    } else {
        "PAWSEstab"
    };
    let rejects = delta(&before, &after, counter);
    eprintln!("{counter} +{rejects}");
    if !on {
        lab_findings(&objs, &lab, &[]);
        eprintln!("paws_time_wait unavailable: kernel counters checked only");
        return;
    }
    let paws = in_ns(&objs, "paws_reject", lab.server_netns_inode());
    assert_eq!(
        paws.len() as u64,
        rejects,
        "events == {counter} delta: {paws:?}"
    );
    for e in &paws {
        assert_eq!(e["site"], "time_wait", "{e}");
        assert_eq!(e["dport"], 40000, "{e}");
        assert_eq!(e["daddr"], client_ip, "{e}");
    }
    // One host: never `paws_nat_clocks`, whatever its clocks did.
    if rejects == 0 {
        lab_findings(&objs, &lab, &[]);
        return;
    }
    let found = lab_findings(&objs, &lab, &["paws_time_wait_reuse"]);
    let f = the_finding(&found, "paws_time_wait_reuse");
    let e = &f["evidence"];
    let netns = lab.server_netns_inode();
    assert_eq!(f["subject"], format!("peer {client_ip} netns {netns}"));
    assert_eq!(f["count"], rejects, "{f}");
    assert_eq!(
        e["rejects_by_site"],
        serde_json::json!({ "time_wait": rejects }),
        "{e}"
    );
    assert_eq!(e["clocks"], 1, "{e}");
    assert_eq!(e["counters"][counter], rejects, "{e}");
    assert_eq!(
        e["local_ports"],
        serde_json::json!([{"port": PORT, "count": rejects}]),
        "{e}"
    );
}

/// S6: RSTs with an exact, an in-window inexact and out-of-window sequence
/// numbers (tcptrace_lab::repro::rst::verdicts): accepted, challenge_ack,
/// ignored — one event each.
fn rst_verdicts(family: Family) {
    let (tracer, on) = tracer_for("validate_incoming");
    let segments = reset_segments_seen(&tracer);
    let unread = ignored_socket_unread(&tracer);
    // The exact RST resets the connection (the reproduction checks it).
    let r = rst::verdicts(&craft::PREFIX, family).expect("S6 reproduction");
    let objs = tracer.stop();
    let lab = &r.lab;
    let (before, after) = (&r.before.0, &r.after.0);
    let rcv_nxt = r.rcv_nxt;
    let plan = r.plan;

    assert_eq!(delta(before, after, "TCPChallengeACK"), 2);
    assert_eq!(delta(before, after, "TCPACKSkippedChallenge"), 0);
    if !on {
        lab_findings(&objs, lab, &[]);
        eprintln!("validate_incoming unavailable: kernel counters checked only");
        return;
    }
    let rsts = in_ns(&objs, "rst", r.server_netns);
    let all: Vec<_> = events(&objs, "rst").collect();
    assert_eq!(rsts.len(), plan.len(), "{rsts:?}; every rst: {all:?}");
    for (e, p) in rsts.iter().zip(plan) {
        assert_eq!(e["verdict"], p.verdict, "{e}");
        assert_eq!(e["daddr"], lab.peer_ip.to_string());
        assert_eq!(e["dport"], 40003);
        assert_eq!(e["seq"], rcv_nxt.wrapping_add(p.offset as u32), "{e}");
        let side = match p.sign {
            ..0 => "below",
            0 => "inside",
            1.. => "beyond",
        };
        if unread && p.verdict == "ignored" {
            // No state or window; the side where the drop reason tells it
            // (where the kernel has TCP_OLD_SEQUENCE; 6.1 has not).
            for field in ["state", "rcv_nxt", "window_distance"] {
                assert!(e.get(field).is_none(), "{field}: {e}");
            }
            assert!(
                e["window_side"].is_null() || e["window_side"] == side,
                "{e}"
            );
            continue;
        }
        assert_eq!(e["rcv_nxt"], rcv_nxt, "{e}");
        let d = e["window_distance"].as_i64().expect("window_distance");
        assert_eq!(d.signum(), p.sign, "{e}");
        assert_eq!(e["window_side"], side, "{e}");
        if p.verdict == "accepted" {
            assert_eq!(e["seq_inferred"], !segments, "{e}");
        }
    }
    // The summary counts every namespace (other RSTs on a shared host
    // included): it must agree with the events printed.
    let by_verdict = &final_summary(&objs)["rst_received"]["by_verdict"];
    for (verdict, ours) in [("ignored", 2), ("challenge_ack", 2), ("accepted", 1)] {
        let printed = events(&objs, "rst")
            .filter(|e| e["verdict"] == verdict)
            .count();
        assert!(printed >= ours, "{verdict}: {printed}");
        assert_eq!(by_verdict[verdict], printed, "{verdict}: {by_verdict}");
    }
    // The exact RST raises nothing; the others one finding per verdict.
    let found = lab_findings(&objs, lab, &["rst_challenge_ack", "rst_out_of_window"]);
    let mut states = serde_json::Map::new();
    for r in rsts.iter().filter(|r| r["verdict"] != "accepted") {
        if let Some(st) = r["state"].as_str() {
            let n = states.get(st).and_then(Value::as_u64).unwrap_or(0);
            states.insert(st.to_owned(), (n + 1).into());
        }
    }
    let states = Value::Object(states);
    for (id, severity) in [
        ("rst_out_of_window", "warning"),
        ("rst_challenge_ack", "info"),
    ] {
        let f = the_finding(&found, id);
        let e = &f["evidence"];
        assert_eq!(f["severity"], severity, "{f}");
        assert_eq!(
            f["subject"],
            format!("peer {} netns {}", lab.peer_ip, r.server_netns)
        );
        assert_eq!(f["count"], 2, "{f}");
        assert_eq!(e["ignored"], 2, "{e}");
        assert_eq!(e["challenge_acks"], 2, "{e}");
        assert_eq!(e["accepted"], 1, "{e}");
        assert_eq!(e["counters"]["TCPChallengeACK"], 2, "{e}");
        assert_eq!(e["counters"]["TCPACKSkippedChallenge"], 0, "{e}");
        assert_eq!(e["states"], states, "{e}");
    }
    let e = &the_finding(&found, "rst_out_of_window")["evidence"];
    let distance = |sign: i64| {
        rsts.iter()
            .filter(|r| r["verdict"] == "ignored")
            .filter_map(|r| r["window_distance"].as_i64())
            .find(|d| d.signum() == sign)
    };
    assert_eq!(e["max_distance_below_window"].as_i64(), distance(-1), "{e}");
    assert_eq!(e["max_distance_beyond_window"].as_i64(), distance(1), "{e}");
}

/// S6: data reaching a socket shut for reading (tcptrace_lab::repro::abort):
/// the kernel aborts it through `tcp_reset` though no RST arrived, and
/// resets the peer. One RST was received, the peer's, accepted. Where the
/// segment is not seen (the tracepoint alone), the abort looks like an
/// accepted RST too: that gap is pinned here, one event exactly.
fn abort_on_data() {
    let (tracer, on) = tracer_for("validate_incoming");
    let segments = reset_segments_seen(&tracer);
    let (r, _keeper) = abort::abort_on_data().expect("abort-on-data reproduction");
    let objs = tracer.stop();
    assert_eq!(
        (r.abort_on_data, r.estab_resets, r.out_rsts),
        (1, 1, 1),
        "{r:?}"
    );
    if !on {
        eprintln!("validate_incoming unavailable: kernel counters checked only");
        return;
    }
    let rsts = in_ns(&objs, "rst", r.netns);
    let at = |port: u16| -> Vec<&&Value> { rsts.iter().filter(|e| e["sport"] == port).collect() };
    let client = at(r.client_port);
    assert_eq!(client.len() as u64, r.estab_resets, "{rsts:?}");
    assert_eq!(client[0]["verdict"], "accepted", "{rsts:?}");
    assert_eq!(client[0]["state"], "CLOSE_WAIT", "{rsts:?}");
    assert_eq!(client[0]["seq_inferred"], !segments, "{rsts:?}");
    let phantom = usize::from(!segments);
    assert_eq!(at(r.server_port).len(), phantom, "{rsts:?}");
    assert_eq!(rsts.len(), client.len() + phantom, "{rsts:?}");
}

/// S7: the third segment of a handshake carries a TSval older than the
/// SYN's (tcptrace_lab::repro::paws_handshake::syn_recv): the request
/// socket (SYN-RECV) rejects it, once per segment.
fn syn_recv(family: Family) {
    let (tracer, on) = tracer_for("paws_syn_recv");
    let r = paws_handshake::syn_recv(&craft::PREFIX, family).expect("S7 reproduction");
    let objs = tracer.stop();
    let lab = &r.lab;
    let acks = r.rejects;

    assert_eq!(delta(&r.before.0, &r.after.0, "PAWSEstab"), u64::from(acks));
    if !on {
        lab_findings(&objs, lab, &[]);
        eprintln!("paws_syn_recv unavailable: kernel counters checked only");
        return;
    }
    // Three rejects, one clock (the SYN's stamp and the older ACKs are
    // 1000 ticks apart): stale timestamps.
    let found = lab_findings(&objs, lab, &["paws_stale_timestamps"]);
    check_paws_finding(
        the_finding(&found, "paws_stale_timestamps"),
        lab,
        ("syn_recv", acks.into(), 1),
        ("PAWSEstab", acks.into()),
    );
    let paws = in_ns(&objs, "paws_reject", r.server_netns);
    assert_eq!(paws.len(), acks as usize, "{paws:?}");
    for e in paws {
        assert_eq!(e["site"], "syn_recv");
        assert_eq!(e["daddr"], lab.peer_ip.to_string());
        assert_eq!(e["dport"], 40004);
        assert_eq!(e["saddr"], lab.server_ip.to_string());
        assert_eq!(e["sport"], 8070);
        assert_eq!(e["tsval"], r.tsval);
        // The drop-reason path sees only the listener, not the request.
        if !e["ts_recent"].is_null() {
            assert_eq!(e["ts_recent"], r.ts_recent);
        }
    }
}

/// S8: an active open gets SYN-ACKs whose TSecr echoes a time before its SYN
/// was sent (tcptrace_lab::repro::paws_handshake::syn_sent): PAWSActive,
/// the connection is reset by our side.
fn syn_sent(family: Family) {
    let (tracer, on) = tracer_for("paws_syn_sent");
    let r = paws_handshake::syn_sent(&craft::PREFIX, family).expect("S8 reproduction");
    let objs = tracer.stop();
    let lab = &r.lab;
    let synacks = r.rejects;

    assert_eq!(
        delta(&r.before.0, &r.after.0, "PAWSActive"),
        u64::from(synacks)
    );
    // Two SYN-ACKs rejected on one active open are below the stale-
    // timestamp threshold (3) and syn_sent rejects carry our own clock (no
    // NAT evidence): no PAWS finding. The non-blocking connect never
    // completed and was closed: one slow handshake.
    let found = lab_findings(&objs, lab, &["slow_connect"]);
    let s = the_finding(&found, "slow_connect");
    assert_eq!(s["evidence"]["measured"], "handshake", "{s}");
    assert_eq!(s["evidence"]["slow_connects"], 1, "{s}");
    if !on {
        eprintln!("paws_syn_sent unavailable: kernel counters checked only");
        return;
    }
    let paws = in_ns(&objs, "paws_reject", r.server_netns);
    assert_eq!(paws.len(), synacks as usize, "{paws:?}");
    for e in &paws {
        assert_eq!(e["site"], "syn_sent");
        assert_eq!(e["state"], "SYN_SENT");
        assert_eq!(e["daddr"], lab.peer_ip.to_string());
        assert_eq!(e["dport"], 9000);
        assert_eq!(e["sport"], r.local_port);
        assert_eq!(e["tsval"], r.tsval);
        // The echo is 100000 ticks before the stamp of our SYN.
        let sent = e["ts_recent"].as_u64().expect("ts_recent") as u32;
        let echoed = e["tsecr"].as_u64().expect("tsecr") as u32;
        assert_eq!(sent.wrapping_sub(echoed), r.echo_behind, "{e}");
    }
    // Our side answers each with a RST whose reason (6.10+) names PAWS.
    let sent = &final_summary(&objs)["rst_sent"]["by_reason"];
    if tracer_has_rst_reasons(sent) {
        assert_eq!(sent["TCP_RFC7323_PAWS"], synacks, "{sent}");
    }
}

/// Whether the RSTs-sent counters carry reasons on this kernel.
fn tracer_has_rst_reasons(by_reason: &Value) -> bool {
    by_reason
        .as_object()
        .is_some_and(|m| !m.contains_key("unknown"))
}

macro_rules! scenario {
    ($name:ident, $body:ident, $($arg:expr),+) => {
        #[test]
        #[ignore = "needs root and BPF: run by cargo xtask test"]
        fn $name() {
            $body($($arg),+);
        }
    };
}

scenario!(
    s4_paws_established_v4,
    established,
    Family::V4,
    Behind::Stale
);
scenario!(
    s4_paws_established_v6,
    established,
    Family::V6,
    Behind::Stale
);
scenario!(
    s4_paws_reordered_v4,
    established,
    Family::V4,
    Behind::Reordered
);
scenario!(
    s4_paws_second_clock_v6,
    established,
    Family::V6,
    Behind::SecondClock
);
scenario!(s5_paws_time_wait_reuse_v4, time_wait, Family::V4);
scenario!(s5_paws_time_wait_reuse_v6, time_wait, Family::V6);
scenario!(
    s5_paws_time_wait_behind_snat_v4,
    time_wait_behind_snat,
    Family::V4
);
scenario!(
    s5_paws_time_wait_behind_snat_v6,
    time_wait_behind_snat,
    Family::V6
);
scenario!(s6_rst_verdicts_v4, rst_verdicts, Family::V4);
scenario!(s6_rst_verdicts_v6, rst_verdicts, Family::V6);
#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn s6_rst_abort_on_data_v4() {
    abort_on_data();
}
scenario!(s7_paws_syn_recv_v4, syn_recv, Family::V4);
scenario!(s7_paws_syn_recv_v6, syn_recv, Family::V6);
scenario!(s8_paws_syn_sent_v4, syn_sent, Family::V4);
scenario!(s8_paws_syn_sent_v6, syn_sent, Family::V6);
