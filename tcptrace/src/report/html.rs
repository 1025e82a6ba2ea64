//! The report page: one HTML file with its styles inline and its charts as
//! SVG, readable offline without JavaScript. Sections come in the order a
//! reviewer asks, each with a stable id (docs/report.md): `header`,
//! `findings`, `timeline`, `latency`, `listeners` (drawn over time, in
//! `over_time.rs`), `peers`, `events`.
//! Every string that came from the recording goes through [`Html`].

use std::{fmt::Write as _, path::PathBuf};

use tcptrace_common::EventKind;

use super::{over_time, Collected};
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
    let axis = over_time::axis(&p.data.timeline, p.meta.boot_offset_ns);
    over_time::timeline(&mut out, p.data, &axis);
    over_time::latency(&mut out, p.data, summary, &axis);
    over_time::listeners(&mut out, p.data, summary, &axis);
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
    let lost_per = counts(s.lost.iter().filter(|(_, n)| **n > 0));
    let missed_per = counts(s.missed.iter().flatten().filter(|(_, n)| **n > 0));
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

/// `name=count` for each entry of a count map, names escaped.
fn counts<'a, K: AsRef<str> + 'a>(m: impl Iterator<Item = (&'a K, &'a u64)>) -> Vec<String> {
    m.map(|(k, n)| format!("{}={n}", Html(k.as_ref())))
        .collect()
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
        let sites = counts(p.by_site.iter());
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
    let verdicts = counts(s.rst_received.by_verdict.iter());
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
    let sent = counts(s.rst_sent.by_reason.iter());
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
