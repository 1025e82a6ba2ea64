//! The report page: one HTML file with its styles inline and its charts as
//! SVG, readable offline without JavaScript. Sections come in the order a
//! reviewer asks, each with a stable id (docs/report.md): `header`,
//! `findings`, `timeline`, `latency`, `listeners`, `peers`, `events`.
//! Every string that came from the recording goes through [`Html`].

use std::{fmt::Write as _, path::PathBuf};

use tcptrace_common::EventKind;

use super::{
    svg::{self, Axis, Scale, Series, PALETTE},
    timeline::{Timeline, CAUSES, TCPEXT},
    Collected,
};
use crate::{
    escape::Html,
    event::json::wall_time,
    hist::fmt_ns,
    record::format::Metadata,
    summary::json::{FindingJson, SummaryJson},
};

/// What the page says besides the collected data.
pub struct Page<'a> {
    pub meta: &'a Metadata,
    pub files: &'a [PathBuf],
    /// The report's own filters (`--port 80`), empty when none.
    pub filter: String,
    /// `--since` / `--until` as given, empty when none.
    pub asked: String,
    /// What could not be read, and how files ended.
    pub notes: &'a [String],
    pub data: &'a Collected,
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222;max-width:1200px}\
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;margin-top:1.6em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;\
font-size:13px;text-align:left;vertical-align:top}td.n{text-align:right}\
.alert{background:#fde2e1;border:2px solid #d62728;padding:.5em 1em;margin:.5em 0}\
.ok{color:#2ca02c}.sev-critical{color:#d62728}.sev-warning{color:#ff7f0e}\
.finding{border-left:4px solid #ccc;padding-left:1em;margin:1em 0}\
svg.chart{display:block;margin:.5em 0}p.none{color:#777}";

/// The whole page.
pub fn render(p: &Page<'_>) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>tcptrace report: {}</title><style>{STYLE}</style></head><body>\n",
        Html(&p.meta.hostname)
    );
    let empty = SummaryJson::default();
    let summary = p.data.summary.as_ref().unwrap_or(&empty);
    header(&mut out, p, summary);
    findings(&mut out, &p.data.findings);
    let axis = axis(&p.data.timeline, p.meta.boot_offset_ns);
    timeline(&mut out, p.data, &axis);
    latency(&mut out, p.data, summary, &axis);
    listeners(&mut out, p.data, summary, &axis);
    peers(&mut out, summary);
    events(&mut out, p.data, summary);
    out.push_str("</body></html>\n");
    out
}

fn header(out: &mut String, p: &Page<'_>, s: &SummaryJson) {
    let m = p.meta;
    let t = &p.data.timeline;
    let off = m.boot_offset_ns;
    let end = t.start_of(t.buckets.len().max(1)).max(t.last);
    let _ = write!(
        out,
        "<section id=\"header\"><h1>tcptrace report: {}</h1><table>\
         <tr><th>host</th><td>{}</td></tr><tr><th>kernel</th><td>{}</td></tr>\
         <tr><th>recorded by</th><td>tcptrace {}</td></tr>\
         <tr><th>report by</th><td>tcptrace {}</td></tr>\
         <tr><th>time</th><td id=\"window\">{} to {} (UTC), {} intervals of {}</td></tr>",
        Html(&m.hostname),
        Html(&m.hostname),
        Html(&m.kernel_release),
        Html(&m.tcptrace_version),
        env!("CARGO_PKG_VERSION"),
        wall_time(t.origin, off),
        wall_time(end, off),
        t.buckets.len(),
        fmt_ns(t.width_ns)
    );
    let hooks: Vec<String> = m
        .hooks
        .iter()
        .map(|h| {
            format!(
                "{} ({})",
                Html(&h.hook),
                Html(h.mechanism.as_deref().unwrap_or("UNAVAILABLE"))
            )
        })
        .collect();
    let _ = write!(
        out,
        "<tr><th>hooks</th><td id=\"hooks\">{}</td></tr>",
        hooks.join(", ")
    );
    let or_none = |s: &str| {
        if s.is_empty() {
            "none".to_owned()
        } else {
            Html(s).to_string()
        }
    };
    let _ = write!(
        out,
        "<tr><th>recording filter (kernel)</th><td>{}</td></tr>\
         <tr><th>report filters</th><td>{}</td></tr><tr><th>window asked</th><td>{}</td></tr>",
        or_none(&m.filter),
        or_none(&p.filter),
        or_none(&p.asked)
    );
    let files: Vec<String> = p
        .files
        .iter()
        .map(|f| Html(&f.display().to_string()).to_string())
        .collect();
    let _ = write!(
        out,
        "<tr><th>files</th><td>{}</td></tr></table>",
        files.join("<br>")
    );
    // Losses first and loud: every number below is short by them.
    let lost = s.lost_total;
    let missed = s.missed_total;
    let lost_per: Vec<String> = s
        .lost
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{}={n}", Html(k)))
        .collect();
    let missed_per: Vec<String> = s
        .missed
        .iter()
        .flatten()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{}={n}", Html(k)))
        .collect();
    let class = if lost > 0 || missed > 0 || s.decode_errors > 0 {
        "alert"
    } else {
        "ok"
    };
    let _ = write!(
        out,
        "<div id=\"losses\" class=\"{class}\"><p>lost events (ring buffer full): \
         <b id=\"lost-total\">{lost}</b> {}</p><p>programs skipped by the kernel \
         (another BPF program was running on that CPU): <b id=\"missed-total\">{missed}</b> {}</p>\
         <p>undecodable records: <b id=\"decode-errors\">{}</b></p></div>",
        paren(&lost_per),
        paren(&missed_per),
        s.decode_errors
    );
    // Events of a hook that did not attach are missing from every count.
    let missing: Vec<String> = m
        .hooks
        .iter()
        .filter(|h| h.mechanism.is_none())
        .map(|h| Html(&h.hook).to_string())
        .collect();
    if !missing.is_empty() {
        let _ = write!(
            out,
            "<div id=\"hooks-missing\" class=\"alert\">hooks that did not attach in the \
             recorded run (their events are in no count): {}</div>",
            missing.join(", ")
        );
    }
    if let Some(r) = &s.recording {
        let _ = write!(
            out,
            "<div class=\"alert\">recording stopped writing {}: {}: {} events written, \
             {} not written</div>",
            Html(&r.file),
            Html(&r.error),
            r.events_written,
            r.events_not_written
        );
    }
    out.push_str("<div id=\"unread\">");
    if p.notes.is_empty() {
        out.push_str("<p class=\"ok\">every file was read to its end.</p>");
    } else {
        out.push_str("<div class=\"alert\"><p>not everything could be read:</p><ul>");
        for n in p.notes {
            let _ = write!(out, "<li>{}</li>", Html(n));
        }
        out.push_str("</ul></div>");
    }
    out.push_str("</div><h2>events</h2><table id=\"totals\"><tr><th>kind</th><th>events</th></tr>");
    for kind in EventKind::ALL {
        let name = kind.name();
        let n = s.events.get(name).copied().unwrap_or(0);
        let _ = write!(
            out,
            "<tr><td>{name}</td><td class=\"n\" id=\"total-{name}\">{n}</td></tr>"
        );
    }
    let all: u64 = s.events.values().sum();
    let _ = write!(
        out,
        "<tr><th>all</th><td class=\"n\" id=\"total-events\">{all}</td></tr></table>"
    );
    if !s.errors.is_empty() {
        out.push_str("<table id=\"errors\"><tr><th>kind</th><th>error</th><th>calls</th></tr>");
        for e in &s.errors {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{} ({})</td><td class=\"n\">{}</td></tr>",
                Html(&e.kind),
                Html(&e.name),
                e.errno,
                e.count
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</section>\n");
}

fn paren(parts: &[String]) -> String {
    if parts.is_empty() {
        String::new()
    } else {
        format!("({})", parts.join(", "))
    }
}

fn findings(out: &mut String, found: &[FindingJson]) {
    let _ = write!(
        out,
        "<section id=\"findings\" data-count=\"{}\"><h2>findings ({})</h2>",
        found.len(),
        found.len()
    );
    if found.is_empty() {
        out.push_str("<p class=\"none\">no finding: the rules saw nothing to report.</p>");
    }
    for f in found {
        let _ = write!(
            out,
            "<div class=\"finding\" data-id=\"{}\"><h3><span class=\"sev-{}\">{}</span> {}: {}</h3>\
             <p>{}: {} events, first {} last {}</p><table>",
            Html(f.id),
            Html(f.severity),
            Html(f.severity),
            Html(f.id),
            Html(&f.summary),
            Html(&f.subject),
            f.count,
            Html(f.first_seen.as_deref().unwrap_or("-")),
            Html(f.last_seen.as_deref().unwrap_or("-"))
        );
        for (k, v) in &f.evidence {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let _ = write!(out, "<tr><th>{}</th><td>{}</td></tr>", Html(k), Html(&text));
        }
        out.push_str("</table><ul>");
        for a in &f.advice {
            let _ = write!(out, "<li>{}</li>", Html(a));
        }
        out.push_str("</ul></div>");
    }
    out.push_str("</section>\n");
}

/// Labels at five points of the axis: the interval's start, UTC.
fn axis(t: &Timeline, boot_offset_ns: i64) -> Axis {
    let n = t.buckets.len().max(1);
    let mut at: Vec<usize> = (0..5).map(|k| k * (n - 1) / 4).collect();
    at.dedup();
    Axis {
        intervals: n,
        labels: at
            .into_iter()
            .map(|i| {
                let w = wall_time(t.start_of(i), boot_offset_ns);
                (i, w.get(11..19).unwrap_or(&w).to_owned())
            })
            .collect(),
    }
}

fn count_series<'a>(
    t: &Timeline,
    names: &[&'a str],
    value: impl Fn(&super::timeline::Bucket, &str) -> u64,
) -> Vec<Series<'a>> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| Series {
            name,
            color: PALETTE[i % PALETTE.len()],
            values: t
                .buckets
                .iter()
                .map(|b| Some(value(b, name) as f64))
                .collect(),
            dashed: false,
        })
        .collect()
}

fn timeline(out: &mut String, d: &Collected, axis: &Axis) {
    let t = &d.timeline;
    let _ = write!(
        out,
        "<section id=\"timeline\"><h2>timeline</h2><p>events per interval of {} by kind \
         (stacked), then the TcpExt counters' increments on the same axis.</p>",
        fmt_ns(t.width_ns)
    );
    let kinds: Vec<&str> = EventKind::ALL
        .iter()
        .map(|k| k.name())
        .filter(|k| t.buckets.iter().any(|b| b.events.contains_key(k)))
        .collect();
    if kinds.is_empty() {
        out.push_str("<p class=\"none\">no event in the window.</p>");
    } else {
        let series = count_series(t, &kinds, |b, k| b.events.get(k).copied().unwrap_or(0));
        out.push_str(&svg::stacked_bars(
            "chart-events",
            "events per interval by kind",
            axis,
            &series,
        ));
    }
    let moved: Vec<&str> = TCPEXT
        .iter()
        .copied()
        .filter(|c| {
            t.buckets
                .iter()
                .any(|b| b.tcpext.get(c).is_some_and(|n| *n > 0))
        })
        .collect();
    if !d.tcpext_seen {
        out.push_str(
            "<p class=\"none\" id=\"tcpext-none\">no TcpExt counters in this recording (they \
             are stored with the host views of the live run's summaries).</p>",
        );
    } else if moved.is_empty() {
        out.push_str(
            "<p class=\"none\" id=\"tcpext-none\">no TcpExt counter of interest moved.</p>",
        );
    } else {
        let series = count_series(t, &moved, |b, k| b.tcpext.get(k).copied().unwrap_or(0));
        out.push_str(&svg::stacked_bars(
            "chart-tcpext",
            "TcpExt counter increments per interval",
            axis,
            &series,
        ));
    }
    out.push_str("</section>\n");
}

fn latency(out: &mut String, d: &Collected, s: &SummaryJson, axis: &Axis) {
    out.push_str(
        "<section id=\"latency\"><h2>latency</h2><p>p50 and p99 per interval from the \
         kernel's log2 histograms (every call, whatever --min-latency), log scale.</p>",
    );
    for (name, h) in &s.histograms {
        let pct = |v: Option<u64>| v.map_or("-".to_owned(), fmt_ns);
        let _ = write!(
            out,
            "<h3>{}: <span id=\"calls-{}\">{}</span> calls, p50 {} p90 {} p99 {}</h3>",
            Html(name),
            Html(name),
            h.count,
            pct(h.p50_ns),
            pct(h.p90_ns),
            pct(h.p99_ns)
        );
        if h.count == 0 {
            continue;
        }
        let per = |p: f64| -> Vec<Option<f64>> {
            d.timeline
                .buckets
                .iter()
                .map(|b| {
                    b.hists
                        .get(name.as_str())
                        .and_then(|h| h.percentile(p))
                        .map(|v| v as f64)
                })
                .collect()
        };
        let series = [
            Series {
                name: "p50",
                color: PALETTE[0],
                values: per(50.0),
                dashed: false,
            },
            Series {
                name: "p99",
                color: PALETTE[1],
                values: per(99.0),
                dashed: false,
            },
        ];
        out.push_str(&svg::lines(
            &format!("chart-latency-{name}"),
            &format!("{name} latency p50/p99 per interval"),
            axis,
            &series,
            Scale::Log,
            |v| fmt_ns(v as u64),
        ));
    }
    out.push_str("</section>\n");
}

fn listeners(out: &mut String, d: &Collected, s: &SummaryJson, axis: &Axis) {
    out.push_str(
        "<section id=\"listeners\"><h2>listeners</h2><table><tr><th>listener</th><th>owner</th>\
         <th>accept_queue_full</th><th>syn_queue_full</th><th>other</th><th>overflows</th>\
         <th>SYN-ACK retransmits</th><th>backlog now/max</th><th>syn queue</th></tr>",
    );
    if s.listeners.is_empty() {
        out.push_str("<tr><td colspan=\"9\">no listener dropped or answered a SYN</td></tr>");
    }
    for l in &s.listeners {
        let _ = write!(
            out,
            "<tr class=\"listener\"><td>{}:{} (netns {})</td><td>{} {}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}/{}</td><td class=\"n\">{}</td></tr>",
            l.addr.map_or("*".to_owned(), |a| a.to_string()),
            l.port.map_or("*".to_owned(), |p| p.to_string()),
            l.netns.map_or("?".to_owned(), |n| n.to_string()),
            l.pid,
            Html(&l.comm),
            l.syn_drops.accept_queue_full,
            l.syn_drops.syn_queue_full,
            l.syn_drops.other,
            l.listen_overflows,
            l.synack_retransmits,
            l.backlog,
            l.backlog_max,
            l.syn_queue
        );
    }
    out.push_str("</table>");
    let t = &d.timeline;
    for (i, (netns, addr, port)) in t.listeners.iter().enumerate() {
        let slot = |b: &super::timeline::Bucket| b.listeners.get(i).cloned().unwrap_or_default();
        let _ = write!(out, "<h3>{}:{port} (netns {netns})</h3>", Html(addr));
        let drops = count_series(t, &CAUSES, |b, c| {
            let k = CAUSES.iter().position(|x| *x == c).unwrap_or(0);
            slot(b).drops[k]
        });
        out.push_str(&svg::stacked_bars(
            &format!("chart-listener-{i}-drops"),
            "SYN drops per interval by cause",
            axis,
            &drops,
        ));
        let backlog = [
            Series {
                name: "backlog (largest seen)",
                color: PALETTE[0],
                values: t
                    .buckets
                    .iter()
                    .map(|b| slot(b).backlog.map(f64::from))
                    .collect(),
                dashed: false,
            },
            Series {
                name: "backlog max",
                color: PALETTE[1],
                values: t
                    .buckets
                    .iter()
                    .map(|b| {
                        let s = slot(b);
                        s.backlog.map(|_| f64::from(s.backlog_max))
                    })
                    .collect(),
                dashed: true,
            },
        ];
        out.push_str(&svg::lines(
            &format!("chart-listener-{i}-backlog"),
            "accept queue when it dropped or overflowed",
            axis,
            &backlog,
            Scale::Linear,
            svg::fmt_count,
        ));
    }
    out.push_str("</section>\n");
}

fn peers(out: &mut String, s: &SummaryJson) {
    let peer = |p: Option<std::net::IpAddr>| p.map_or("?".to_owned(), |a| a.to_string());
    let _ = write!(
        out,
        "<section id=\"peers\"><h2>peers</h2><h3>PAWS rejects: <span id=\"paws-rejects\">{}</span></h3>\
         <table><tr><th>peer</th><th>rejects</th><th>timestamp clocks</th><th>flows</th>\
         <th>only reordering</th><th>by site</th></tr>",
        s.paws.rejects
    );
    for p in &s.paws.top_peers {
        let sites: Vec<String> = p
            .by_site
            .iter()
            .map(|(k, n)| format!("{}={n}", Html(k)))
            .collect();
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td>{}</td></tr>",
            peer(p.peer),
            p.rejects,
            p.clocks,
            p.flows,
            p.reordered,
            sites.join(", ")
        );
    }
    let verdicts: Vec<String> = s
        .rst_received
        .by_verdict
        .iter()
        .map(|(k, n)| format!("{}={n}", Html(k)))
        .collect();
    let _ = write!(
        out,
        "</table><h3>RSTs received by verdict: {}</h3><table><tr><th>peer</th><th>accepted</th>\
         <th>challenge_ack</th><th>ignored</th></tr>",
        if verdicts.is_empty() {
            "none".to_owned()
        } else {
            verdicts.join(", ")
        }
    );
    for p in &s.rst_received.top_peers {
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            peer(p.peer),
            p.accepted,
            p.challenge_ack,
            p.ignored
        );
    }
    let sent: Vec<String> = s
        .rst_sent
        .by_reason
        .iter()
        .map(|(k, n)| format!("{}={n}", Html(k)))
        .collect();
    let _ = writeln!(
        out,
        "</table><p>RSTs sent: {} {}</p></section>",
        s.rst_sent.total,
        paren(&sent)
    );
}

fn events(out: &mut String, d: &Collected, s: &SummaryJson) {
    let _ = write!(
        out,
        "<section id=\"events\"><h2>first events of each kind</h2><p>the first {} of each \
         kind, every field as <code>--json</code> prints it.</p>",
        d.samples_per_kind
    );
    for kind in EventKind::ALL {
        let name = kind.name();
        let Some(rows) = d.samples.get(name) else {
            continue;
        };
        let total = s.events.get(name).copied().unwrap_or(0);
        let _ = write!(
            out,
            "<h3>{name}: {} of {total}</h3><table class=\"sample\" id=\"sample-{name}\">",
            rows.len()
        );
        // Fields an event lacks (a port not chosen yet, no container)
        // stay empty in its row.
        let keys: std::collections::BTreeSet<&str> =
            rows.iter().flatten().map(|(k, _)| k.as_str()).collect();
        out.push_str("<tr>");
        for k in &keys {
            let _ = write!(out, "<th>{}</th>", Html(k));
        }
        out.push_str("</tr>");
        for row in rows {
            out.push_str("<tr>");
            for k in &keys {
                let v = row.iter().find(|(f, _)| f == k).map_or("", |(_, v)| v);
                let _ = write!(out, "<td>{}</td>", Html(v));
            }
            out.push_str("</tr>");
        }
        out.push_str("</table>");
    }
    out.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use tcptrace_common::EventKind;

    use super::*;
    use crate::{
        event::{decode, tests::raw_latency},
        summary::{KernelCounters, Summary},
    };

    #[test]
    fn every_section_and_hostile_names_escaped() {
        let evil = "<script>alert(1)</script>\"&'";
        let meta = Metadata {
            hostname: evil.into(),
            kernel_release: "6.1<b>".into(),
            ..Metadata::default()
        };
        let mut data = Collected::new(0, 2);
        let mut summary = Summary::default();
        for i in 0..3u64 {
            let mut ev = decode(&raw_latency(EventKind::Connect, 2, 111)).unwrap();
            ev.comm = evil.into();
            ev.ts_ns = i * 1_500_000_000;
            summary.observe(&ev);
            data.event(&ev, 0).unwrap();
        }
        data.summary = Some(summary.to_json(&KernelCounters::zero(), true));
        let notes = vec![format!("{evil}: block 3 at byte 9 is corrupt")];
        let page = render(&Page {
            meta: &meta,
            files: &[PathBuf::from("/tmp/<x>.rec")],
            filter: String::new(),
            asked: String::new(),
            notes: &notes,
            data: &data,
        });
        for id in [
            "header",
            "findings",
            "timeline",
            "latency",
            "listeners",
            "peers",
            "events",
            "unread",
        ] {
            assert!(page.contains(&format!("id=\"{id}\"")), "no section {id}");
        }
        assert!(page.contains(r#"id="total-connect">3<"#), "{page}");
        assert!(page.contains(r#"id="lost-total">0<"#));
        // The host name (title, heading, table), the note, and the comm
        // of the two samples kept of three.
        assert_eq!(
            page.matches("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&amp;&#39;")
                .count(),
            3 + 1 + 2
        );
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("http://") && !page.contains("https://"));
        assert!(page.contains("6.1&lt;b&gt;") && page.contains("/tmp/&lt;x&gt;.rec"));
        assert!(page.contains("not everything could be read"));
    }
}
