//! SYN/listen family, userspace side: offsets for the programs
//! ([`offsets`]), decoding of `SynEvent` records ([`decode`]), their JSON
//! fields and text ([`output`]), listener owners from /proc ([`owners`]),
//! the SYN maps ([`maps`]) and the per-listener summary ([`summary`]). The
//! attach table is in `hooks/syn.rs`; the rules in `diagnose/listen.rs`.

pub mod decode;
pub mod maps;
pub mod offsets;
pub mod output;
pub mod owners;
pub mod summary;

pub use self::{
    decode::{Outcome, Owner, SynDetail},
    maps::{ListenerId, SynKernelCounters, SynMaps},
    offsets::{kfree_skb_fallback, offsets},
    owners::{OwnerLookup, Owners},
    summary::{Answered, ListenerJson, SynSummary},
};

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::{json, Value};
    use tcptrace_common::{
        event::{AF_INET, AF_INET6},
        syn::{flags, SynEvent},
        EventHeader, EventKind, Flow,
    };

    use crate::event::json::EventJson;

    pub fn raw_syn(kind: EventKind, cause: u8, fl: u8) -> Vec<u8> {
        let mut flow = Flow {
            family: AF_INET,
            sport: 8080,
            dport: 40001,
            ..Flow::default()
        };
        flow.saddr[..4].copy_from_slice(&[10, 9, 0, 1]);
        flow.daddr[..4].copy_from_slice(&[10, 9, 0, 3]);
        let mut comm = [0u8; 16];
        comm[..5].copy_from_slice(b"nginx");
        let rec = SynEvent {
            header: EventHeader {
                kind: kind as u8,
                pid: 7,
                tid: 7,
                netns: 4026532000,
                ts_ns: 2_000_000_000,
                comm,
                ..EventHeader::default()
            },
            flow,
            listen_addr: [0; 16],
            listen_family: AF_INET6,
            listener_ino: 0,
            backlog: 5,
            backlog_max: 4,
            syn_queue: 1,
            max_syn_backlog: 128,
            retransmit: 2,
            cause,
            syncookies: 1,
            abort_on_overflow: 0,
            flags: fl,
            since_overflow_ns: 1_500_000_000,
            packet: tcptrace_common::packet::Packet::default(),
        };
        // SAFETY: SynEvent is repr(C) plain data.
        unsafe { std::slice::from_raw_parts((&raw const rec).cast::<u8>(), size_of::<SynEvent>()) }
            .to_vec()
    }

    #[test]
    fn json_and_live_lines_per_kind() {
        use crate::{event::decode, output};
        let drop = decode(&raw_syn(EventKind::SynDrop, 1, flags::OWNER_KNOWN)).unwrap();
        let v = serde_json::to_value(EventJson::of(&drop, 0)).unwrap();
        for (k, want) in [
            ("kind", json!("syn_drop")),
            ("cause", json!("accept_queue_full")),
            ("saddr", json!("10.9.0.1")),
            ("sport", json!(8080)),
            ("daddr", json!("10.9.0.3")),
            ("dport", json!(40001)),
            ("listen_addr", json!("::")),
            ("backlog", json!(5)),
            ("backlog_max", json!(4)),
            ("syn_queue", json!(1)),
            ("max_syn_backlog", json!(128)),
            ("syncookies", json!(1)),
            ("last_quarter", json!(false)),
            ("owner", json!("listen")),
            ("pid", json!(7)),
            ("comm", json!("nginx")),
        ] {
            assert_eq!(v[k], want, "{k}");
        }
        let ovf = decode(&raw_syn(EventKind::ListenOverflow, 0, 0)).unwrap();
        let v = serde_json::to_value(EventJson::of(&ovf, 0)).unwrap();
        assert_eq!(v["outcome"], "ghost");
        assert_eq!(v["abort_on_overflow"], 0);
        assert_eq!(v["owner"], Value::Null);
        let rtx = decode(&raw_syn(
            EventKind::SynackRetransmit,
            0,
            flags::AFTER_OVERFLOW,
        ))
        .unwrap();
        let v = serde_json::to_value(EventJson::of(&rtx, 0)).unwrap();
        assert_eq!(v["retransmit"], 2);
        assert_eq!(v["after_overflow"], true);
        assert_eq!(v["since_overflow_ns"], 1_500_000_000u64);
        let h = output::human::Human::plain();
        let line = h.line(&drop, 0);
        assert!(
            line.ends_with("accept_queue_full backlog=5/4 synq=1 cookies=1"),
            "{line}"
        );
        assert_eq!(line.find("syn_drop"), output::human::HEADER.find("KIND"));
        assert!(h.line(&rtx, 0).ends_with("#2 after_overflow 1.5s ago"));
        assert!(h.line(&ovf, 0).contains(" ghost backlog=5/4"));
    }
}
