//! The sections drawn over the report's time axis: events by kind beside
//! the TcpExt counters (`timeline`), latency percentiles per interval
//! (`latency`), each listener's drops and backlog (`listeners`).

use std::fmt::Write as _;

use tcptrace_common::EventKind;

use super::{
    svg::{self, Axis, Scale, Series, PALETTE},
    timeline::{Bucket, Timeline, CAUSES, TCPEXT},
    Collected,
};
use crate::{escape::Html, event::json::wall_time, hist::fmt_ns, summary::json::SummaryJson};

/// Labels at five points of the axis: the interval's start, UTC.
pub fn axis(t: &Timeline, boot_offset_ns: i64) -> Axis {
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
    value: impl Fn(&Bucket, &str) -> u64,
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

pub fn timeline(out: &mut String, d: &Collected, axis: &Axis) {
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

pub fn latency(out: &mut String, d: &Collected, s: &SummaryJson, axis: &Axis) {
    out.push_str(
        "<section id=\"latency\"><h2>latency</h2><p>p50 and p99 per interval from the \
         kernel's log2 histograms (every call, whatever --min-latency), log scale; \
         below each, the histogram itself per interval (a log2 heatmap).</p>",
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
        let cells: Vec<Vec<u64>> = d
            .timeline
            .buckets
            .iter()
            .map(|b| {
                b.hists
                    .get(name.as_str())
                    .map_or_else(Vec::new, |h| h.slots.to_vec())
            })
            .collect();
        out.push_str(&svg::heatmap(
            &format!("chart-heatmap-{name}"),
            &format!("{name} latency, calls per log2 slot per interval"),
            axis,
            &cells,
            |slot| fmt_ns(crate::hist::slot_low(slot)),
        ));
    }
    out.push_str("</section>\n");
}

pub fn listeners(out: &mut String, d: &Collected, s: &SummaryJson, axis: &Axis) {
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
        let slot = |b: &Bucket| b.listeners.get(i).cloned().unwrap_or_default();
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
