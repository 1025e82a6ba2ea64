//! SYN family, userspace side: offsets for the programs, decoding of
//! [`SynEvent`] records, listener owners, and the per-listener summary.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use anyhow::{Context as _, Result};
use aya::maps::{MapData, PerCpuArray, PerCpuHashMap};
use serde::{Deserialize, Serialize};
use tcptrace_common::{
    event::AF_INET6,
    maps,
    syn::{flags, ListenerCounters, ListenerKey, SynAnswer, SynDropCause, SynEvent, SynOffsets},
    EventKind,
};

use crate::{
    btf::KernelBtf,
    endpoint::endpoint,
    event::{
        json::{EventJson, Outcome, Owner},
        Event,
    },
    hist::fmt_ns,
    tracefs,
};

// ---- offsets ---------------------------------------------------------------

fn enum_value(btf: &KernelBtf, enum_name: &str, member: &str) -> Result<Option<u32>> {
    Ok(btf
        .enum_values(enum_name)?
        .into_iter()
        .find(|(n, _)| n == member)
        .map(|(_, v)| v as u32))
}

/// Struct offsets and enum values the SYN programs need, from this kernel's
/// BTF. Tracepoint fields that are missing stay 0: those tracepoints then
/// fail to attach (or are not offered) and say why.
pub fn offsets(btf: &KernelBtf) -> Result<SynOffsets> {
    let off = |s: &str, p: &str| btf.member_offset(s, p);
    let mut o = SynOffsets {
        sk_ack_backlog: off("sock", "sk_ack_backlog")?,
        sk_max_ack_backlog: off("sock", "sk_max_ack_backlog")?,
        icsk_qlen: off("inet_connection_sock", "icsk_accept_queue.qlen")?,
        sk_socket: off("sock", "sk_socket")?,
        socket_inode: off("socket_alloc", "vfs_inode")? - off("socket_alloc", "socket")?,
        inode_ino: off("inode", "i_ino")?,
        net_syncookies: off("net", "ipv4.sysctl_tcp_syncookies")?,
        net_max_syn_backlog: off("net", "ipv4.sysctl_max_syn_backlog")?,
        net_abort_on_overflow: off("net", "ipv4.sysctl_tcp_abort_on_overflow")?,
        req_num_retrans: off("request_sock", "num_retrans")?,
        synack_cookie: enum_value(btf, "tcp_synack_type", "TCP_SYNACK_COOKIE")?
            .context("enum tcp_synack_type has no TCP_SYNACK_COOKIE")?,
        synack_fastopen: enum_value(btf, "tcp_synack_type", "TCP_SYNACK_FASTOPEN")?
            .context("enum tcp_synack_type has no TCP_SYNACK_FASTOPEN")?,
        reason_listen_overflow: u32::MAX,
        ..SynOffsets::default()
    };
    if let Ok(v) = tracefs::field_offsets(
        "sock",
        "inet_sock_set_state",
        &["skaddr", "oldstate", "newstate"],
    ) {
        (o.tp_state_skaddr, o.tp_state_oldstate, o.tp_state_newstate) = (v[0], v[1], v[2]);
    }
    if let Ok(v) = tracefs::field_offsets("tcp", "tcp_retransmit_synack", &["skaddr", "req"]) {
        (o.tp_rtx_skaddr, o.tp_rtx_req) = (v[0], v[1]);
    }
    if let Some(reason) = listen_overflow_reason(btf) {
        if let Ok(v) = tracefs::field_offsets("skb", "kfree_skb", &["skbaddr", "rx_sk", "reason"]) {
            (o.tp_kfree_skbaddr, o.tp_kfree_rx_sk, o.tp_kfree_reason) = (v[0], v[1], v[2]);
            o.reason_listen_overflow = reason;
        }
    }
    Ok(o)
}

/// SKB_DROP_REASON_TCP_LISTEN_OVERFLOW on kernels that have it (6.15+).
pub fn listen_overflow_reason(btf: &KernelBtf) -> Option<u32> {
    enum_value(
        btf,
        "skb_drop_reason",
        "SKB_DROP_REASON_TCP_LISTEN_OVERFLOW",
    )
    .ok()
    .flatten()
}

/// Whether skb:kfree_skb can stand in for the syn_recv_sock hooks: the
/// kernel has the drop reason and the tracepoint names the listener.
pub fn kfree_skb_fallback(btf: &KernelBtf) -> bool {
    listen_overflow_reason(btf).is_some()
        && tracefs::field_offsets("skb", "kfree_skb", &["skbaddr", "rx_sk", "reason"]).is_ok()
}

// ---- decoding --------------------------------------------------------------

/// What a SYN-family record says beyond the 4-tuple.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynDetail {
    pub listen_addr: IpAddr,
    pub listener_ino: u64,
    pub backlog: u32,
    pub backlog_max: u32,
    pub syn_queue: u32,
    pub max_syn_backlog: u32,
    pub retransmit: u16,
    pub cause: Option<SynDropCause>,
    pub syncookies: u8,
    pub abort_on_overflow: u8,
    pub after_overflow: bool,
    pub last_quarter: bool,
    pub since_overflow_ns: u64,
    /// Where pid/comm came from: "listen" (seen calling listen()), "proc"
    /// (holds the socket now), or None when unknown.
    pub owner: Option<Owner>,
}

fn addr(family: u16, a: &[u8; 16]) -> IpAddr {
    if family == AF_INET6 {
        IpAddr::V6(Ipv6Addr::from(*a))
    } else {
        IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
    }
}

pub fn detail(rec: &SynEvent) -> SynDetail {
    SynDetail {
        listen_addr: addr(rec.listen_family, &rec.listen_addr),
        listener_ino: rec.listener_ino,
        backlog: rec.backlog,
        backlog_max: rec.backlog_max,
        syn_queue: rec.syn_queue,
        max_syn_backlog: rec.max_syn_backlog,
        retransmit: rec.retransmit,
        cause: SynDropCause::from_u8(rec.cause),
        syncookies: rec.syncookies,
        abort_on_overflow: rec.abort_on_overflow,
        after_overflow: rec.flags & flags::AFTER_OVERFLOW != 0,
        last_quarter: rec.flags & flags::LAST_QUARTER != 0,
        since_overflow_ns: rec.since_overflow_ns,
        owner: (rec.flags & flags::OWNER_KNOWN != 0).then_some(Owner::Listen),
    }
}

/// Fields of SYN-family events in JSON (beside the common ones).
pub fn json_fields(kind: EventKind, d: &SynDetail, v: &mut EventJson<'_>) {
    v.listen_addr = Some(d.listen_addr);
    v.backlog = Some(d.backlog);
    v.backlog_max = Some(d.backlog_max);
    v.syn_queue = Some(d.syn_queue);
    v.syncookies = Some(d.syncookies);
    v.owner = Some(d.owner);
    match kind {
        EventKind::SynDrop => {
            v.cause = Some(d.cause.unwrap_or(SynDropCause::Other));
            v.max_syn_backlog = Some(d.max_syn_backlog);
            v.last_quarter = Some(d.last_quarter);
        }
        EventKind::ListenOverflow => {
            v.abort_on_overflow = Some(d.abort_on_overflow);
            v.outcome = Some(Outcome::of(d.abort_on_overflow));
        }
        _ => {
            v.retransmit = Some(d.retransmit);
            v.after_overflow = Some(d.after_overflow);
            if d.after_overflow {
                v.since_overflow_ns = Some(d.since_overflow_ns);
            }
        }
    }
}

/// The RESULT column of the live view.
pub fn human_result(ev: &Event, d: &SynDetail) -> String {
    let queues = format!(
        "backlog={}/{} synq={}",
        d.backlog, d.backlog_max, d.syn_queue
    );
    match ev.kind.name() {
        "syn_drop" => format!(
            "{} {queues} cookies={}{}",
            d.cause.map(SynDropCause::name).unwrap_or("other"),
            d.syncookies,
            if d.last_quarter { " last_quarter" } else { "" }
        ),
        "listen_overflow" => format!(
            "{} {queues} abort_on_overflow={}",
            Outcome::of(d.abort_on_overflow).name(),
            d.abort_on_overflow
        ),
        _ if d.after_overflow => format!(
            "#{} after_overflow {} ago",
            d.retransmit,
            fmt_ns(d.since_overflow_ns)
        ),
        _ => format!("#{}", d.retransmit),
    }
}

// ---- listener owners found in /proc ----------------------------------------

/// What a /proc scan found for a listener's socket inode: (pid, comm) of a
/// process holding it, or None.
pub type OwnerLookup = (u64, Option<(u32, String)>);

/// Socket inode → (pid, comm) of a process holding it, for listeners that
/// were created before tcptrace started. One /proc scan per unknown inode.
#[derive(Default)]
pub struct Owners {
    cache: HashMap<u64, Option<(u32, String)>>,
    /// Replay: never scan this host's /proc, only use what the recording
    /// says the live run found ([`Owners::learn`]).
    offline: bool,
}

impl Owners {
    pub fn offline() -> Self {
        Self {
            offline: true,
            ..Self::default()
        }
    }

    /// A lookup the live run made (from a recording).
    pub fn learn(&mut self, (ino, owner): OwnerLookup) {
        self.cache.insert(ino, owner);
    }

    /// Fills pid/comm of a SYN event from the listener's owner; returns the
    /// /proc lookup when one was made (the recorder stores it).
    pub fn fill(&mut self, ev: &mut Event) -> Option<OwnerLookup> {
        let crate::event::Detail::Syn(d) = &mut ev.detail else {
            return None;
        };
        if d.owner.is_some() || d.listener_ino == 0 {
            return None;
        }
        let ino = d.listener_ino;
        let mut lookup = None;
        let found = match self.cache.get(&ino) {
            Some(found) => found.clone(),
            None if self.offline => None,
            None => {
                let found = find_socket_owner(ino);
                self.cache.insert(ino, found.clone());
                lookup = Some((ino, found.clone()));
                found
            }
        };
        if let Some((pid, comm)) = found {
            ev.pid = pid;
            ev.comm = comm;
            d.owner = Some(Owner::Proc);
        }
        lookup
    }
}

fn find_socket_owner(ino: u64) -> Option<(u32, String)> {
    let want = format!("socket:[{ino}]");
    for proc_entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = proc_entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == want.as_str()) {
                let comm = fs::read_to_string(proc_entry.path().join("comm"))
                    .map(|c| c.trim_end().to_owned())
                    .unwrap_or_default();
                return Some((pid, comm));
            }
        }
    }
    None
}

// ---- summary ---------------------------------------------------------------

/// A listener as the summary names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListenerId {
    pub netns: u32,
    pub addr: IpAddr,
    pub port: u16,
}

impl ListenerId {
    fn from_key(k: &ListenerKey) -> Self {
        Self {
            netns: k.netns,
            addr: addr(k.family, &k.addr),
            port: k.port,
        }
    }
}

/// Counters read from the kernel for the summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SynKernelCounters {
    /// Answered SYNs by `SynAnswer`, all listeners.
    pub answered: [u64; SynAnswer::COUNT as usize],
    pub listeners: Vec<(ListenerId, ListenerCounters)>,
}

/// The SYN maps, read for every summary.
pub struct SynMaps {
    answered: PerCpuArray<MapData, u64>,
    listeners: PerCpuHashMap<MapData, ListenerKey, ListenerCounters>,
}

impl SynMaps {
    pub fn take(ebpf: &mut aya::Ebpf) -> Result<Self> {
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .with_context(|| format!("map {name} missing from the object"))
        };
        Ok(Self {
            answered: PerCpuArray::try_from(take(maps::SYN_ANSWERED)?)
                .context(maps::SYN_ANSWERED)?,
            listeners: PerCpuHashMap::try_from(take(maps::SYN_LISTENERS)?)
                .context(maps::SYN_LISTENERS)?,
        })
    }

    pub fn read(&self) -> Result<SynKernelCounters> {
        let mut out = SynKernelCounters::default();
        for a in SynAnswer::ALL {
            out.answered[a as usize] = self
                .answered
                .get(&(a as u32), 0)
                .context("reading SYN_ANSWERED")?
                .iter()
                .sum();
        }
        for item in self.listeners.iter() {
            let Ok((key, per_cpu)) = item else { continue };
            let mut total = ListenerCounters::default();
            let mut newest = 0;
            for c in per_cpu.iter() {
                total.answered_normal += c.answered_normal;
                total.answered_cookie += c.answered_cookie;
                total.answered_fastopen += c.answered_fastopen;
                if c.last_ns >= newest && c.last_ns > 0 {
                    newest = c.last_ns;
                    total.backlog = c.backlog;
                    total.backlog_max = c.backlog_max;
                    total.syn_queue = c.syn_queue;
                }
            }
            total.last_ns = newest;
            out.listeners.push((ListenerId::from_key(&key), total));
        }
        Ok(out)
    }
}

/// Per listener, from the event stream.
#[derive(Clone, Debug, Default)]
pub struct ListenerStats {
    pub pid: u32,
    pub comm: String,
    pub drops: BTreeMap<&'static str, u64>,
    pub overflows: u64,
    pub synack_retransmits: u64,
    pub retransmits_after_overflow: u64,
    /// Queue state at the newest event.
    pub last_ns: u64,
    pub backlog: u32,
    pub backlog_max: u32,
    pub syn_queue: u32,
}

#[derive(Clone, Debug, Default)]
pub struct SynSummary {
    pub listeners: BTreeMap<ListenerId, ListenerStats>,
}

impl SynSummary {
    pub fn observe(&mut self, ev: &Event) {
        let crate::event::Detail::Syn(d) = &ev.detail else {
            return;
        };
        let id = ListenerId {
            netns: ev.netns,
            addr: d.listen_addr,
            port: ev.endpoints.sport,
        };
        let s = self.listeners.entry(id).or_default();
        if ev.pid != 0 {
            s.pid = ev.pid;
            s.comm.clone_from(&ev.comm);
        }
        match ev.kind.name() {
            "syn_drop" => {
                *s.drops
                    .entry(d.cause.map(SynDropCause::name).unwrap_or("other"))
                    .or_default() += 1;
            }
            "listen_overflow" => s.overflows += 1,
            _ => {
                s.synack_retransmits += 1;
                s.retransmits_after_overflow += u64::from(d.after_overflow);
            }
        }
        if ev.ts_ns >= s.last_ns {
            s.last_ns = ev.ts_ns;
            s.backlog = d.backlog;
            s.backlog_max = d.backlog_max;
            s.syn_queue = d.syn_queue;
        }
    }

    /// Event-stream stats and kernel counters joined per listener.
    fn rows(&self, k: &SynKernelCounters) -> Vec<(ListenerId, ListenerStats, ListenerCounters)> {
        let mut rows: BTreeMap<ListenerId, (ListenerStats, ListenerCounters)> = self
            .listeners
            .iter()
            .map(|(id, s)| (id.clone(), (s.clone(), ListenerCounters::default())))
            .collect();
        for (id, c) in &k.listeners {
            let row = rows.entry(id.clone()).or_default();
            row.1 = *c;
            // The newer of the two queue snapshots wins.
            if c.last_ns > row.0.last_ns {
                row.0.last_ns = c.last_ns;
                row.0.backlog = c.backlog;
                row.0.backlog_max = c.backlog_max;
                row.0.syn_queue = c.syn_queue;
            }
        }
        rows.into_iter().map(|(id, (s, c))| (id, s, c)).collect()
    }

    pub fn render_text(&self, k: &SynKernelCounters, out: &mut String) {
        let total: u64 = k.answered.iter().sum();
        if total == 0 && self.listeners.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "SYNs answered: normal {} cookie {} fastopen {}",
            k.answered[0], k.answered[1], k.answered[2]
        );
        for (id, s, c) in self.rows(k) {
            let owner = if s.pid != 0 {
                format!("{}[{}]", crate::escape::Escaped(&s.comm), s.pid)
            } else {
                "?".into()
            };
            let drops: Vec<String> = s.drops.iter().map(|(c, n)| format!("{c}={n}")).collect();
            let _ = writeln!(
                out,
                "  listener {} netns {} {owner}: drops {} overflows {} synack_retransmits {} ({} after overflow) answered normal {} cookie {} backlog {}/{} synq {}",
                endpoint(id.addr, id.port),
                id.netns,
                if drops.is_empty() { "0".into() } else { drops.join(" ") },
                s.overflows,
                s.synack_retransmits,
                s.retransmits_after_overflow,
                c.answered_normal,
                c.answered_cookie,
                s.backlog,
                s.backlog_max,
                s.syn_queue
            );
        }
    }

    /// The summary's `syn_answered` and `listeners`.
    pub fn to_json(&self, k: &SynKernelCounters) -> (Answered, Vec<ListenerJson>) {
        let answered = Answered {
            normal: k.answered[0],
            cookie: k.answered[1],
            fastopen: k.answered[2],
        };
        let listeners = self
            .rows(k)
            .into_iter()
            .map(|(id, s, c)| ListenerJson {
                netns: Some(id.netns),
                addr: Some(id.addr),
                port: Some(id.port),
                pid: s.pid,
                comm: s.comm,
                syn_drops: SynDrops {
                    accept_queue_full: s.drops.get("accept_queue_full").copied().unwrap_or(0),
                    syn_queue_full: s.drops.get("syn_queue_full").copied().unwrap_or(0),
                    other: s.drops.get("other").copied().unwrap_or(0),
                },
                listen_overflows: s.overflows,
                synack_retransmits: s.synack_retransmits,
                synack_retransmits_after_overflow: s.retransmits_after_overflow,
                answered: Answered {
                    normal: c.answered_normal,
                    cookie: c.answered_cookie,
                    fastopen: c.answered_fastopen,
                },
                backlog: s.backlog,
                backlog_max: s.backlog_max,
                syn_queue: s.syn_queue,
            })
            .collect();
        (answered, listeners)
    }
}

/// SYNs answered, by how (the summary's `syn_answered`, and per listener).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Answered {
    pub cookie: u64,
    pub fastopen: u64,
    pub normal: u64,
}

/// SYNs a listener dropped, by cause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SynDrops {
    pub accept_queue_full: u64,
    pub other: u64,
    pub syn_queue_full: u64,
}

/// One listener in the summary's `listeners` (docs/events-syn.md). When
/// read from a saved stream, fields it lacks are `None` or 0.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListenerJson {
    pub addr: Option<IpAddr>,
    pub answered: Answered,
    pub backlog: u32,
    pub backlog_max: u32,
    pub comm: String,
    pub listen_overflows: u64,
    pub netns: Option<u32>,
    pub pid: u32,
    pub port: Option<u16>,
    pub syn_drops: SynDrops,
    pub syn_queue: u32,
    pub synack_retransmits: u64,
    pub synack_retransmits_after_overflow: u64,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::{json, Value};
    use tcptrace_common::{event::AF_INET, EventHeader, EventKind, Flow};

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

    #[test]
    fn resolves_offsets_on_this_kernel() {
        // A fresh host may not have tracefs mounted yet: tcptrace mounts it
        // before it resolves offsets, and so does this test.
        crate::kernel::ensure_filesystems().expect("tracefs");
        let btf = KernelBtf::from_sys().expect("kernel BTF");
        let o = offsets(&btf).expect("SYN offsets");
        assert!(o.sk_max_ack_backlog > 0 && o.sk_ack_backlog > 0);
        assert!(o.net_syncookies > 0 && o.net_abort_on_overflow > 0);
        assert_eq!(o.synack_cookie, 2);
        assert_eq!(o.synack_fastopen, 1);
        assert_eq!(o.tp_rtx_skaddr, 8);
        assert_eq!(o.tp_state_skaddr, 8);
    }

    #[test]
    fn summary_joins_events_and_kernel_counters() {
        let mut s = SynSummary::default();
        for (cause, n) in [(1u8, 3), (2, 1)] {
            for _ in 0..n {
                s.observe(
                    &crate::event::decode(&raw_syn(EventKind::SynDrop, cause, flags::OWNER_KNOWN))
                        .unwrap(),
                );
            }
        }
        s.observe(&crate::event::decode(&raw_syn(EventKind::ListenOverflow, 0, 0)).unwrap());
        s.observe(
            &crate::event::decode(&raw_syn(
                EventKind::SynackRetransmit,
                0,
                flags::AFTER_OVERFLOW,
            ))
            .unwrap(),
        );
        let k = SynKernelCounters {
            answered: [9, 2, 0],
            listeners: vec![(
                ListenerId {
                    netns: 4026532000,
                    addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                    port: 8080,
                },
                ListenerCounters {
                    answered_normal: 9,
                    answered_cookie: 2,
                    last_ns: 1,
                    ..ListenerCounters::default()
                },
            )],
        };
        let (answered, listeners) = s.to_json(&k);
        let (answered, listeners) = (json!(answered), json!(listeners));
        assert_eq!(answered["normal"], 9);
        assert_eq!(listeners.as_array().unwrap().len(), 1, "{listeners}");
        let l = &listeners[0];
        assert_eq!(l["addr"], "::");
        assert_eq!(l["syn_drops"]["accept_queue_full"], 3);
        assert_eq!(l["syn_drops"]["syn_queue_full"], 1);
        assert_eq!(l["listen_overflows"], 1);
        assert_eq!(l["synack_retransmits_after_overflow"], 1);
        assert_eq!(l["answered"]["cookie"], 2);
        assert_eq!(
            (l["backlog"].as_u64(), l["backlog_max"].as_u64()),
            (Some(5), Some(4))
        );
        assert_eq!(l["comm"], "nginx");
        let mut text = String::new();
        s.render_text(&k, &mut text);
        assert!(text.contains("listener [::]:8080"), "{text}");
        assert!(
            text.contains("accept_queue_full=3 syn_queue_full=1"),
            "{text}"
        );
    }

    #[test]
    fn listener_owner_names_are_escaped() {
        let mut ev = crate::event::decode(&raw_syn(EventKind::ListenOverflow, 0, 0)).unwrap();
        ev.comm = "srv\x1b[2J\u{9b}".into();
        let mut s = SynSummary::default();
        s.observe(&ev);
        let mut text = String::new();
        s.render_text(&SynKernelCounters::default(), &mut text);
        assert!(text.contains(r" srv\x1b[2J\u{9b}[7]: "), "{text}");
        assert!(
            !text.trim_end().chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        let (_, listeners) = s.to_json(&SynKernelCounters::default());
        let listeners = json!(listeners);
        assert_eq!(listeners[0]["comm"], "srv\x1b[2J\u{9b}");
    }
}
