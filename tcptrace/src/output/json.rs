//! JSON Lines: one object per event, field names documented in README.md.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use tcptrace_common::paws::tcp_state;

use crate::event::{errno_name, Detail, Event};

/// RFC 3339 wall-clock time of a CLOCK_BOOTTIME stamp.
pub fn wall_time(ts_ns: u64, boot_offset_ns: i64) -> String {
    let unix_ns = ts_ns as i64 + boot_offset_ns;
    DateTime::<Utc>::from_timestamp_nanos(unix_ns).to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub fn event(ev: &Event, boot_offset_ns: i64) -> Value {
    let e = &ev.endpoints;
    let mut v = json!({
        "kind": ev.kind.name(),
        "time": wall_time(ev.ts_ns, boot_offset_ns),
        "pid": ev.pid,
        "tid": ev.tid,
        "comm": ev.comm,
        "netns": ev.netns,
        "cgroup": ev.cgroup,
        "saddr": e.saddr.to_string(),
        "daddr": e.daddr.to_string(),
        "dport": e.dport,
    });
    if e.sport != 0 {
        v["sport"] = json!(e.sport);
    }
    match &ev.detail {
        &Detail::Connect { latency_ns, errno } => {
            v["latency_ns"] = json!(latency_ns);
            v["errno"] = json!(errno);
            v["error"] = json!(errno_name(errno));
        }
        &Detail::PortSearch {
            latency_ns,
            errno,
            ports_probed,
        } => {
            v["latency_ns"] = json!(latency_ns);
            v["errno"] = json!(errno);
            v["error"] = json!(errno_name(errno));
            v["ports_probed"] = json!(ports_probed);
        }
        Detail::Syn(d) => crate::syn::json_fields(ev, d, &mut v),
        Detail::PawsReject(ref p) => {
            v["site"] = json!(p.site.name());
            v["state"] = json!(tcp_state::name(p.state));
            v["tsval"] = json!(p.tsval);
            v["tsecr"] = json!(p.tsecr);
            v["ts_recent"] = json!(p.ts_recent);
            v["old_ack"] = json!(p.old_ack);
            v["rst"] = json!(p.rst);
        }
        Detail::Rst(ref r) => {
            v["verdict"] = json!(r.verdict.name());
            v["state"] = json!(tcp_state::name(r.state));
            v["seq"] = json!(r.seq);
            v["seq_inferred"] = json!(r.seq_inferred);
            v["rcv_nxt"] = json!(r.rcv_nxt);
            v["rcv_wup"] = json!(r.rcv_wup);
            v["rcv_wnd"] = json!(r.rcv_wnd);
            v["window_distance"] = json!(r.window_distance());
        }
    }
    if crate::pcapng::carries_packet(ev.kind) {
        v["packet_len"] = json!(ev.packet.len());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{decode, tests::raw_latency};
    use tcptrace_common::EventKind;

    #[test]
    fn port_search_json_has_documented_fields() {
        let ev = decode(&raw_latency(EventKind::PortSearch, 2, 99)).unwrap();
        let v = event(&ev, 1_700_000_000_000_000_000);
        assert_eq!(v["kind"], "port_search");
        assert_eq!(v["time"], "2023-11-14T22:13:21.000000Z");
        for (k, want) in [
            ("pid", json!(42)),
            ("comm", json!("curl")),
            ("saddr", json!("127.0.0.1")),
            ("sport", json!(40000)),
            ("daddr", json!("10.1.2.3")),
            ("dport", json!(8080)),
            ("latency_ns", json!(1500)),
            ("errno", json!(99)),
            ("error", json!("EADDRNOTAVAIL")),
            ("ports_probed", json!(7)),
            ("netns", json!(4026531840u32)),
        ] {
            assert_eq!(v[k], want, "{k}");
        }
    }

    #[test]
    fn paws_and_rst_json_fields() {
        use crate::event::tests::{raw_paws, raw_rst};
        use tcptrace_common::paws::{PawsSite, RstVerdict};
        let v = event(
            &decode(&raw_paws(
                PawsSite::Established,
                [10, 0, 0, 3],
                100,
                5000,
                0,
            ))
            .unwrap(),
            0,
        );
        assert_eq!(v["kind"], "paws_reject");
        assert_eq!(v["site"], "established");
        assert_eq!(v["state"], "TIME_WAIT");
        assert_eq!(v["tsval"], 100);
        assert_eq!(v["ts_recent"], 5000);
        assert_eq!(v["daddr"], "10.0.0.3");
        assert_eq!(v["old_ack"], false);
        let v = event(&decode(&raw_rst(RstVerdict::Ignored, 1500)).unwrap(), 0);
        assert_eq!(v["kind"], "rst");
        assert_eq!(v["verdict"], "ignored");
        assert_eq!(v["seq"], 1500);
        assert_eq!(v["rcv_nxt"], 1000);
        assert_eq!(v["rcv_wup"], 900);
        assert_eq!(v["rcv_wnd"], 500);
        assert_eq!(v["window_distance"], 100);
        assert_eq!(v["seq_inferred"], false);
        assert_eq!(v["state"], "ESTABLISHED");
    }
}
