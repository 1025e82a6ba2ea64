//! Listener rules: accept queue overflowing (at the SYN or at the third
//! ACK), ghost connections, SYN queue full. Events: `syn_drop`,
//! `listen_overflow`, `synack_retransmit` (docs/events-syn.md); the
//! summary's `listeners` for SYN cookies; TcpExt counters when the events
//! are missing (hooks unavailable).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use serde_json::{json, Value};
use tcptrace_common::{syn::SynDropCause, EventKind};

use super::{
    drain::{self, Verdict},
    endpoint,
    evidence::Evidence,
    hookset,
    syn_timer::{seconds, SynSchedule},
    tally::{capped_insert, top, Span},
    Context, Finding, Severity,
};
use crate::host::Needs;
use crate::{
    event::json::Outcome,
    event::json::{EventJson, Stamp},
    summary::json::SummaryJson,
};

/// Listeners tracked one by one.
const MAX_LISTENERS: usize = 1024;
/// Peers remembered per listener (more are counted, not named).
const MAX_PEERS: usize = 4096;
/// Distinct dropped peers from which a full SYN queue looks like a flood.
pub const FLOOD_PEERS: usize = 64;
/// CLOSE_WAIT connections on a listener's port worth calling out.
pub const CLOSE_WAIT_PILE: u64 = 10;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub netns: u64,
    pub port: u16,
    /// The bound address (`listen_addr`), else the address the peer used.
    pub addr: Option<IpAddr>,
}

#[derive(Clone, Debug, Default)]
pub struct Listener {
    pub accept_full: Span,
    pub syn_queue_full: Span,
    pub last_quarter: Span,
    pub overflow_ghost: Span,
    pub overflow_reset: Span,
    /// Overflows without an `outcome` (decided later from abort_on_overflow).
    pub overflow_unknown: Span,
    pub synack_rtx: u64,
    pub synack_rtx_after_overflow: u64,
    pub backlog_max: Option<u64>,
    pub backlog_seen: Option<u64>,
    pub syn_queue_seen: Option<u64>,
    pub max_syn_backlog: Option<u64>,
    pub syncookies: Option<u64>,
    pub abort_on_overflow: Option<u64>,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub peers: BTreeMap<IpAddr, u64>,
    pub peers_untracked: u64,
    /// Addresses peers sent to (`saddr`).
    pub local_addrs: BTreeSet<IpAddr>,
}

impl Listener {
    fn overflows(&self) -> Span {
        self.overflow_ghost
            .merge(&self.overflow_reset)
            .merge(&self.overflow_unknown)
    }

    /// SYNs dropped and third ACKs overflowed because the accept queue
    /// was full: what `ListenOverflows` counts for this listener.
    pub fn accept_events(&self) -> u64 {
        self.accept_full.count + self.overflows().count
    }

    /// SYNs dropped by a full SYN queue (or its last quarter).
    pub fn syn_queue_events(&self) -> u64 {
        self.syn_queue_full.count + self.last_quarter.count
    }

    /// Whether connections to this listener were being dropped.
    pub fn dropping(&self) -> bool {
        self.accept_full.count
            + self.overflows().count
            + self.syn_queue_full.count
            + self.last_quarter.count
            > 0
    }
}

#[derive(Clone, Debug, Default)]
pub struct Listeners {
    pub by_key: BTreeMap<Key, Listener>,
    pub untracked: u64,
}

fn max_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

impl Listeners {
    pub fn observe(&mut self, kind: EventKind, ev: &EventJson<'_>, netns: u64, at: Option<&Stamp>) {
        let Some(port) = ev.sport else {
            return;
        };
        let key = Key {
            netns,
            port,
            addr: ev.listen_addr.or(ev.saddr),
        };
        let Some(l) = capped_insert(&mut self.by_key, key, MAX_LISTENERS) else {
            self.untracked += 1;
            return;
        };
        match kind {
            EventKind::SynDrop => match ev.cause {
                Some(SynDropCause::AcceptQueueFull) => l.accept_full.add(at),
                Some(SynDropCause::SynQueueFull) => l.syn_queue_full.add(at),
                Some(_) if ev.last_quarter == Some(true) => l.last_quarter.add(at),
                _ => return,
            },
            EventKind::ListenOverflow => {
                let abort = ev.abort_on_overflow.map(u64::from);
                l.abort_on_overflow = abort.or(l.abort_on_overflow);
                match (ev.outcome, abort) {
                    (Some(Outcome::Ghost), _) | (None, Some(0)) => l.overflow_ghost.add(at),
                    (Some(Outcome::Reset), _) | (None, Some(_)) => l.overflow_reset.add(at),
                    (None, None) | (Some(_), _) => l.overflow_unknown.add(at),
                }
            }
            EventKind::SynackRetransmit => {
                l.synack_rtx += 1;
                if ev.after_overflow == Some(true) {
                    l.synack_rtx_after_overflow += 1;
                }
                return;
            }
            _ => return,
        }
        let wide = |v: Option<u32>| v.map(u64::from);
        l.backlog_max = wide(ev.backlog_max).or(l.backlog_max);
        l.backlog_seen = max_opt(l.backlog_seen, wide(ev.backlog));
        l.syn_queue_seen = max_opt(l.syn_queue_seen, wide(ev.syn_queue));
        l.max_syn_backlog = wide(ev.max_syn_backlog).or(l.max_syn_backlog);
        l.syncookies = ev.syncookies.map(u64::from).or(l.syncookies);
        if let Some(pid) = ev.known_pid() {
            l.pid = Some(pid);
            l.comm = ev.known_comm().map(str::to_owned).or(l.comm.take());
        }
        if let Some(a) = ev.saddr {
            if l.local_addrs.len() < 16 {
                l.local_addrs.insert(a);
            }
        }
        if let Some(peer) = ev.daddr {
            match capped_insert(&mut l.peers, peer, MAX_PEERS) {
                Some(n) => *n += 1,
                None => l.peers_untracked += 1,
            }
        }
    }

    pub fn needs(&self, n: &mut Needs) {
        for (k, l) in self.by_key.iter().filter(|(_, l)| l.dropping()) {
            n.netns.insert(k.netns);
            n.listeners.insert((k.netns, k.port));
            if let Some(pid) = l.pid {
                n.pids.insert(pid);
            }
        }
    }

    pub fn findings(&self, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        for (k, l) in &self.by_key {
            accept_queue(ctx, k, l, out);
            ghosts(ctx, k, l, out);
            syn_queue(ctx, k, l, cookies_sent(ctx.summary, k), out);
        }
        // Cookie answers without any drop event (the summary counts them).
        for (k, cookies) in summary_cookies(ctx.summary) {
            if !self.by_key.contains_key(&k) {
                syn_queue(ctx, &k, &Listener::default(), Some(cookies), out);
            }
        }
        counter_only(ctx, self, out);
    }
}

pub fn subject(k: &Key) -> String {
    format!("listener {} netns {}", endpoint(k.addr, k.port), k.netns)
}

/// The listener's owner: the pid its events carry (the listen() caller),
/// else the lowest pid holding the socket now, with its comm.
fn owner(ctx: &Context<'_>, k: &Key, l: &Listener) -> Option<(u32, Option<String>)> {
    let pid = l.pid.or_else(|| ctx.host.listener_owner(k.netns, k.port))?;
    let comm = l
        .comm
        .clone()
        .or_else(|| ctx.host.process(pid).map(|p| p.comm.clone()));
    Some((pid, comm))
}

/// The hooks whose events the accept-queue finding counts.
const ACCEPT_HOOKS: [&str; 2] = ["syn_drop", "listen_overflow"];

/// Skips and unattached hooks behind a finding, into its evidence.
fn hook_evidence(ctx: &Context<'_>, e: &mut Evidence, hooks: &[&str]) -> Option<u64> {
    let skipped = ctx.hooks.skipped(hooks, ctx.summary);
    let off = ctx.hooks.not_attached(hooks);
    e.opt("skipped", skipped);
    if !off.is_empty() {
        e.set("hooks_not_attached", off);
    }
    skipped
}

fn top_peers(l: &Listener) -> Value {
    let t: Vec<Value> = top(&l.peers, 5)
        .into_iter()
        .map(|(a, n)| json!({"addr": a.to_string(), "count": n}))
        .collect();
    Value::Array(t)
}

fn distinct_peers(l: &Listener) -> u64 {
    l.peers.len() as u64 + u64::from(l.peers_untracked > 0)
}

fn accept_queue(ctx: &Context<'_>, k: &Key, l: &Listener, out: &mut Vec<Finding>) {
    let overflows = l.overflows();
    let span = l.accept_full.merge(&overflows);
    if span.count == 0 {
        return;
    }
    let h = &ctx.host;
    let owner = owner(ctx, k, l);
    let verdict = Verdict::read(ctx, k.netns, k.port, owner.as_ref().map(|o| o.0));
    let somaxconn = h.sysctl(k.netns, |s| s.somaxconn);
    let now = h.listener(k.netns, k.port, k.addr);
    let mut e = Evidence::default();
    e.set("netns", k.netns)
        .opt("listen_addr", k.addr.map(|a| a.to_string()))
        .set("port", k.port)
        .set("syn_drops_accept_queue_full", l.accept_full.count)
        .set("third_ack_overflows", overflows.count)
        .opt("backlog_max", l.backlog_max)
        .opt("backlog_seen", l.backlog_seen)
        .opt("backlog_now", now.map(|n| n.backlog))
        .opt("somaxconn", somaxconn)
        .set("distinct_peers", distinct_peers(l))
        .set("top_peers", top_peers(l));
    let capped = match (l.backlog_max, somaxconn) {
        (Some(b), Some(s)) => Some(b >= s),
        _ => None,
    };
    e.opt("backlog_capped_by_somaxconn", capped);
    let abort = l
        .abort_on_overflow
        .or_else(|| h.sysctl(k.netns, |s| s.tcp_abort_on_overflow));
    e.opt("abort_on_overflow", abort).opt(
        "counters",
        h.deltas(k.netns, &["ListenOverflows", "ListenDrops"]),
    );
    let mut advice = Vec::new();
    let close_wait = h.port_states(k.netns, k.port).map(|p| p.close_wait);
    let explained = drain::advise(
        &mut e,
        &mut advice,
        &verdict,
        owner.clone(),
        k.port,
        close_wait,
    );
    let who_ = match (verdict.primary(owner.as_ref().map(|o| o.0)), &owner) {
        (Some((p, i)), _) => drain::who(p, &i.comm),
        (None, Some((p, c))) => drain::who(*p, c.as_deref().unwrap_or("")),
        (None, None) => "the listening process".into(),
    };
    let skipped = hook_evidence(ctx, &mut e, &ACCEPT_HOOKS);
    if !explained {
        advice.push(format!(
            "{who_} does not call accept() as fast as connections arrive: look for blocked or saturated worker threads or event loop (thread dumps, CPU, slow downstream calls) and compare its accept rate with the connection rate."
        ));
    }
    match (l.backlog_max, somaxconn, capped) {
        (Some(b), Some(s), Some(true)) => advice.push(format!(
            "The accept queue holds {b} connections, the net.core.somaxconn cap ({s}): listen() asked for at least that and was truncated. Raise net.core.somaxconn and the application's backlog together if bursts must be absorbed."
        )),
        (Some(b), Some(s), _) => advice.push(format!(
            "The application's listen() backlog is {b} (net.core.somaxconn would allow {s}): raise its backlog setting if bursts must be absorbed."
        )),
        (Some(b), None, _) => advice.push(format!(
            "The accept queue holds {b} connections (min of the listen() backlog and net.core.somaxconn): raise both if bursts must be absorbed."
        )),
        _ => {}
    }
    if overflows.count > 0 {
        match abort {
            Some(0) => advice.push(
                "Third ACKs that overflow leave ghost connections (tcp_abort_on_overflow=0): see ghost_connections.".into(),
            ),
            Some(_) => advice.push(
                "tcp_abort_on_overflow=1: clients whose handshake overflows get a RST (ECONNRESET) right after connecting.".into(),
            ),
            None => {}
        }
    }
    if l.accept_full.count > 0 {
        let sched = SynSchedule::for_netns(k.netns, h.sysctls(k.netns));
        advice.push(format!(
            "SYNs dropped because the accept queue is full are retransmitted by the clients on their SYN timer — a Linux client with {} resends at {} after its first SYN and gives up after {} s: connect() calls stall for seconds or time out.",
            sched.settings_text(),
            sched.resends_text(7),
            seconds(sched.give_up_ms * 1_000_000),
        ));
    }
    let backlog = match (l.backlog_seen, l.backlog_max) {
        (Some(s), Some(m)) => format!(" (backlog {s}/{m})"),
        _ => String::new(),
    };
    if let Some(n) = skipped.filter(|&n| n > 0) {
        advice.push(hookset::skip_advice(&ACCEPT_HOOKS, n));
    }
    // SYN-stage overflows are seen one by one only by syn_drop: without it
    // the events here are third-ACK overflows, the counter has them all.
    if ctx.hooks.attached("syn_drop") == Some(false) {
        let d = h.delta(k.netns, "ListenOverflows");
        advice.push(format!(
            "The syn_drop hook did not attach on this kernel: SYNs dropped because this accept queue was full are not among the {} events here{}.",
            span.count,
            d.map_or(String::new(), |d| format!(" (ListenOverflows, which counts both, grew by {d} in this namespace)")),
        ));
    }
    let mut f = Finding::new(
        "accept_queue_overflow",
        Severity::Critical,
        subject(k),
        &span,
    );
    let clause = verdict.summary_clause();
    f.summary = format!(
        "Accept queue of {} overflowed {} times{backlog}: {who_} is not accepting connections fast enough{}.",
        endpoint(k.addr, k.port),
        hookset::at_least(span.count, skipped),
        if clause.is_empty() { String::new() } else { format!(" — {clause}") },
    );
    f.evidence = e.0;
    f.advice = advice;
    out.push(f);
}

fn ghosts(ctx: &Context<'_>, k: &Key, l: &Listener, out: &mut Vec<Finding>) {
    let abort = l
        .abort_on_overflow
        .or_else(|| ctx.host.sysctl(k.netns, |s| s.tcp_abort_on_overflow));
    let mut span = l.overflow_ghost.clone();
    if abort == Some(0) {
        span = span.merge(&l.overflow_unknown);
    }
    if span.count == 0 {
        return;
    }
    let mut e = Evidence::default();
    e.set("netns", k.netns)
        .opt("listen_addr", k.addr.map(|a| a.to_string()))
        .set("port", k.port)
        .set("ghost_overflows", span.count)
        .set("abort_on_overflow", abort.unwrap_or(0))
        .set("synack_retransmits", l.synack_rtx)
        .set(
            "synack_retransmits_after_overflow",
            l.synack_rtx_after_overflow,
        )
        .set("distinct_peers", distinct_peers(l))
        .set("top_peers", top_peers(l))
        .opt(
            "counters",
            ctx.host
                .deltas(k.netns, &["ListenOverflows", "TCPSynRetrans"]),
        );
    let skipped = hook_evidence(ctx, &mut e, &["listen_overflow"]);
    let mut f = Finding::new("ghost_connections", Severity::Warning, subject(k), &span);
    f.summary = format!(
        "{} third ACKs to {} found the accept queue full with tcp_abort_on_overflow=0: the clients believe they are connected, the server keeps only a request and resends its SYN-ACK.",
        hookset::at_least(span.count, skipped),
        endpoint(k.addr, k.port)
    );
    f.advice = vec![
        "Clients send their request on a connection the server has not accepted: it goes unanswered until a resent SYN-ACK is re-ACKed while the queue has room (1 s, 3 s, 7 s... later) or the SYN-ACK retries (net.ipv4.tcp_synack_retries) run out and the client gets a RST or a timeout.".into(),
        "Fix the accept queue drain first (see accept_queue_overflow for this listener).".into(),
        "net.ipv4.tcp_abort_on_overflow=1 makes such clients fail at once with ECONNRESET instead of hanging — better for clients that retry elsewhere, worse when overflows are short bursts the default rides out.".into(),
    ];
    if let Some(n) = skipped.filter(|&n| n > 0) {
        f.advice.push(hookset::skip_advice(&["listen_overflow"], n));
    }
    f.evidence = e.0;
    out.push(f);
}

fn syn_queue(
    ctx: &Context<'_>,
    k: &Key,
    l: &Listener,
    cookies: Option<u64>,
    out: &mut Vec<Finding>,
) {
    let h = &ctx.host;
    let span = l.syn_queue_full.merge(&l.last_quarter);
    let syncookies = l
        .syncookies
        .or_else(|| h.sysctl(k.netns, |s| s.tcp_syncookies));
    let cookies = cookies.filter(|&c| c > 0 && syncookies != Some(2));
    if span.count == 0 && cookies.is_none() {
        return;
    }
    let max_syn_backlog = l
        .max_syn_backlog
        .or_else(|| h.sysctl(k.netns, |s| s.tcp_max_syn_backlog));
    let peers = distinct_peers(l);
    let mut e = Evidence::default();
    e.set("netns", k.netns)
        .opt("listen_addr", k.addr.map(|a| a.to_string()))
        .set("port", k.port)
        .set("syn_queue_full_drops", l.syn_queue_full.count)
        .set("last_quarter_drops", l.last_quarter.count)
        .opt("cookies_sent", cookies)
        .opt("syn_queue_seen", l.syn_queue_seen)
        .opt("backlog_max", l.backlog_max)
        .opt("max_syn_backlog", max_syn_backlog)
        .opt("syncookies", syncookies)
        .opt("somaxconn", h.sysctl(k.netns, |s| s.somaxconn))
        .set("distinct_peers", peers)
        .set("top_peers", top_peers(l))
        .opt(
            "counters",
            h.deltas(
                k.netns,
                &["TCPReqQFullDrop", "TCPReqQFullDoCookies", "ListenDrops"],
            ),
        );
    let skipped = hook_evidence(ctx, &mut e, &["syn_drop"]);
    let mut advice = Vec::new();
    let (severity, summary);
    if span.count > 0 {
        severity = Severity::Critical;
        summary = format!(
            "{} SYNs to {} were dropped because the SYN queue was full and SYN cookies are off{}.",
            hookset::at_least(span.count, skipped),
            endpoint(k.addr, k.port),
            if peers as usize >= FLOOD_PEERS {
                format!(" — from {peers} distinct peers, a SYN flood")
            } else {
                String::new()
            }
        );
        advice.push(
            "Turn SYN cookies on: net.ipv4.tcp_syncookies=1 (the default) answers SYNs with a cookie when the queue is full instead of dropping them.".into(),
        );
        if peers as usize >= FLOOD_PEERS {
            advice.push(format!(
                "{peers} distinct sources left half-open handshakes: a SYN flood (sources may be spoofed). Filter it upstream; cookies keep legitimate clients served meanwhile."
            ));
        } else {
            advice.push(
                "Few sources: the handshakes are not being completed fast enough (clients far away, SYN-ACKs or ACKs lost, asymmetric routing) or the burst exceeds the queue.".into(),
            );
        }
        if let Some(b) = l.backlog_max {
            advice.push(format!(
                "The SYN queue is bounded by the listener's backlog ({b}, min of listen() backlog and net.core.somaxconn): raise both for legitimate bursts."
            ));
        }
        if l.last_quarter.count > 0 {
            advice.push(format!(
                "{} SYNs were dropped by the last-quarter rule: with cookies off, once three quarters of net.ipv4.tcp_max_syn_backlog ({}) are in use, peers without TCP metrics are refused. Raise tcp_max_syn_backlog or turn cookies on.",
                l.last_quarter.count,
                max_syn_backlog.map_or("?".into(), |m| m.to_string())
            ));
        }
    } else {
        severity = Severity::Info;
        summary = format!(
            "The SYN queue of {} overflowed and {} SYNs were answered with SYN cookies: connections still succeed.",
            endpoint(k.addr, k.port),
            cookies.unwrap_or(0)
        );
        advice.push(
            "Cookie handshakes lose TCP options the cookie cannot carry (window scaling and SACK when timestamps are off): throughput may suffer.".into(),
        );
        advice.push(
            "If this is not an attack, raise the listener's backlog and net.core.somaxconn so the SYN queue holds the burst.".into(),
        );
    }
    if let Some(n) = skipped.filter(|&n| n > 0) {
        advice.push(hookset::skip_advice(&["syn_drop"], n));
    }
    let span = if span.count == 0 {
        Span {
            count: cookies.unwrap_or(0),
            ..Span::default()
        }
    } else {
        span
    };
    let mut f = Finding::new("syn_queue_full", severity, subject(k), &span);
    f.summary = summary;
    f.evidence = e.0;
    f.advice = advice;
    out.push(f);
}

/// The summary's per-listener SYN cookie answers (docs/events-syn.md).
fn summary_cookies(summary: Option<&SummaryJson>) -> Vec<(Key, u64)> {
    summary
        .into_iter()
        .flat_map(SummaryJson::cookie_answers)
        .map(|(netns, addr, port, cookies)| {
            let key = Key {
                netns: netns.into(),
                port,
                addr,
            };
            (key, cookies)
        })
        .collect()
}

fn cookies_sent(summary: Option<&SummaryJson>, k: &Key) -> Option<u64> {
    summary_cookies(summary)
        .into_iter()
        .find(|(sk, _)| sk == k)
        .map(|(_, c)| c)
}

/// Findings from TcpExt counters alone, for namespaces where the counters
/// moved but no event of the kind they count arrived (hooks unavailable on
/// this kernel). Other listener events of that namespace do not count: a
/// SYN-ACK retransmit says nothing about an overflow, and the hook that
/// sees SYN drops may attach where the third-ACK one cannot.
fn counter_only(ctx: &Context<'_>, ls: &Listeners, out: &mut Vec<Finding>) {
    let h = &ctx.host;
    let cookie_listeners = summary_cookies(ctx.summary);
    for ino in h.netns_with_deltas() {
        if !ctx.counters_allowed(ino) {
            continue;
        }
        let in_ns = || ls.by_key.iter().filter(move |(k, _)| k.netns == ino);
        let accept_seen = in_ns().any(|(_, l)| l.accept_full.count + l.overflows().count > 0);
        let syn_seen = in_ns().any(|(_, l)| l.syn_queue_full.count + l.last_quarter.count > 0)
            || cookie_listeners.iter().any(|(k, _)| k.netns == ino);
        let overflows = if accept_seen {
            0
        } else {
            h.delta(ino, "ListenOverflows").unwrap_or(0)
        };
        let (qfull, cookies) = if syn_seen {
            (0, 0)
        } else {
            (
                h.delta(ino, "TCPReqQFullDrop").unwrap_or(0),
                h.delta(ino, "TCPReqQFullDoCookies").unwrap_or(0),
            )
        };
        let subject = format!("netns {ino}");
        if overflows > 0 {
            let mut e = Evidence::default();
            e.set("netns", ino)
                .set("source", "counters")
                .opt(
                    "counters",
                    h.deltas(ino, &["ListenOverflows", "ListenDrops"]),
                )
                .opt("somaxconn", h.sysctl(ino, |s| s.somaxconn));
            let mut advice = Vec::new();
            let mut busy: Vec<Value> = Vec::new();
            let mut starved: Vec<String> = Vec::new();
            let mut listeners: Vec<_> = h
                .netns(ino)
                .map(|n| n.listeners.iter().filter(|l| l.backlog > 0).collect())
                .unwrap_or_default();
            listeners.sort_by_key(|l| std::cmp::Reverse(l.backlog));
            for l in listeners.into_iter().take(5) {
                let owner = h
                    .listener_owner(ino, l.port)
                    .map(|p| (p, h.process(p).map(|i| i.comm.clone())));
                let verdict = Verdict::read(ctx, ino, l.port, owner.as_ref().map(|o| o.0));
                let mut le = Evidence::default();
                le.set("addr", l.addr.to_string())
                    .set("port", l.port)
                    .set("backlog_now", l.backlog);
                let cw = h.port_states(ino, l.port).map(|s| s.close_wait);
                if drain::advise(&mut le, &mut advice, &verdict, owner, l.port, cw) {
                    starved.push(format!("on port {}, {}", l.port, verdict.summary_clause()));
                }
                busy.push(Value::Object(le.0));
            }
            e.set("listeners_with_waiting_connections", Value::Array(busy));
            let skipped = hook_evidence(ctx, &mut e, &ACCEPT_HOOKS);
            advice.push(
                ctx.hooks
                    .counters_advice(&ACCEPT_HOOKS, skipped, "these overflows"),
            );
            advice.push(
                "A listener whose process does not accept() fast enough overflows: check its threads, its file descriptor limit, and its listen() backlog against net.core.somaxconn.".into(),
            );
            let mut f = Finding::new(
                "accept_queue_overflow",
                Severity::Critical,
                subject.clone(),
                &Span {
                    count: overflows,
                    ..Span::default()
                },
            );
            f.summary = format!(
                "ListenOverflows grew by {overflows} in netns {ino}: an accept queue overflowed (no per-listener events were seen){}.",
                if starved.is_empty() {
                    String::new()
                } else {
                    format!("; {}", starved.join("; "))
                }
            );
            f.evidence = e.0;
            f.advice = advice;
            out.push(f);
        }
        let syncookies = h.sysctl(ino, |s| s.tcp_syncookies);
        if qfull > 0 || (cookies > 0 && syncookies != Some(2)) {
            let mut e = Evidence::default();
            e.set("netns", ino)
                .set("source", "counters")
                .opt("syncookies", syncookies)
                .opt("max_syn_backlog", h.sysctl(ino, |s| s.tcp_max_syn_backlog))
                .opt(
                    "counters",
                    h.deltas(
                        ino,
                        &["TCPReqQFullDrop", "TCPReqQFullDoCookies", "ListenDrops"],
                    ),
                );
            let skipped = hook_evidence(ctx, &mut e, &["syn_drop"]);
            let (sev, count, summary, advice) = if qfull > 0 {
                (
                    Severity::Critical,
                    qfull,
                    format!("TCPReqQFullDrop grew by {qfull} in netns {ino}: SYNs were dropped because a SYN queue was full and SYN cookies are off."),
                    vec![
                        "Turn SYN cookies on: net.ipv4.tcp_syncookies=1.".to_owned(),
                        "Raise the listener's backlog and net.core.somaxconn for legitimate bursts; many distinct sources mean a SYN flood.".to_owned(),
                        ctx.hooks.counters_advice(&["syn_drop"], skipped, "these SYN drops"),
                    ],
                )
            } else {
                (
                    Severity::Info,
                    cookies,
                    format!("TCPReqQFullDoCookies grew by {cookies} in netns {ino}: a SYN queue overflowed and SYNs were answered with cookies."),
                    vec!["If this is not an attack, raise the listener's backlog and net.core.somaxconn.".to_owned()],
                )
            };
            let mut f = Finding::new(
                "syn_queue_full",
                sev,
                subject,
                &Span {
                    count,
                    ..Span::default()
                },
            );
            f.summary = summary;
            f.evidence = e.0;
            f.advice = advice;
            out.push(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{
        evidence::HostView,
        hookset::{HookSet, HookState},
        tests::*,
        Context, Engine,
    };
    use super::*;
    use crate::host::{
        owner_key, HostSnapshot, Listener as SysListener, NetnsSnapshot, PortStates, ProcessInfo,
        Scope, Sysctls,
    };

    fn drop_ev(sec: u32, cause: &str, peer: &str) -> Value {
        ev(
            "syn_drop",
            sec,
            json!({"cause": cause, "listen_addr": "0.0.0.0", "daddr": peer, "backlog": 3, "backlog_max": 2,
                   "syn_queue": 0, "syncookies": 1, "max_syn_backlog": 512, "last_quarter": false}),
        )
    }

    fn overflow(sec: u32, abort: u64, outcome: Option<&str>) -> Value {
        let mut v = ev(
            "listen_overflow",
            sec,
            json!({"listen_addr": "0.0.0.0", "backlog": 5, "backlog_max": 4, "abort_on_overflow": abort}),
        );
        if let Some(o) = outcome {
            v["outcome"] = json!(o);
        }
        v
    }

    /// Host where the listener :8080 is owned by pid 31 with `fds` of 1024
    /// files and `cw` CLOSE_WAIT connections on its port.
    fn listener_host(fds: u64, cw: u64, somaxconn: u64) -> (HostSnapshot, HostSnapshot) {
        let (start, mut now) = host(
            Sysctls {
                somaxconn: Some(somaxconn),
                tcp_abort_on_overflow: Some(0),
                ..Sysctls::default()
            },
            &[("ListenOverflows", 7), ("ListenDrops", 7)],
        );
        let ns: &mut NetnsSnapshot = now.netns.get_mut(&NS).unwrap();
        ns.sockets_read = true;
        ns.listeners.push(SysListener {
            addr: "0.0.0.0".parse().unwrap(),
            port: 8080,
            backlog: 3,
            inode: 1,
        });
        ns.listener_ports.insert(
            8080,
            PortStates {
                established: 3,
                close_wait: cw,
                time_wait: 0,
            },
        );
        now.listener_owners.insert(owner_key(NS, 8080), 31);
        now.processes.insert(
            31,
            ProcessInfo {
                comm: "api".into(),
                open_fds: Some(fds),
                nofile_soft: Some(1024),
                nofile_hard: Some(4096),
                state: Some("S".into()),
            },
        );
        (start, now)
    }

    /// An nginx-like host: master 30 called listen() on :8080 (the events
    /// carry its pid), workers 31 and 32 inherited the socket; worker 32
    /// has `worker` as open files and state.
    fn prefork_host(worker_fds: u64, worker_state: &str) -> (HostSnapshot, HostSnapshot) {
        let (start, mut now) = listener_host(40, 0, 4096);
        now.listener_owners.insert(owner_key(NS, 8080), 30);
        now.listener_holders
            .insert(owner_key(NS, 8080), vec![30, 31, 32]);
        let proc_ = |fds: u64, soft: u64, state: &str| ProcessInfo {
            comm: "nginx".into(),
            open_fds: Some(fds),
            nofile_soft: Some(soft),
            nofile_hard: Some(soft),
            state: Some(state.into()),
        };
        now.processes.insert(30, proc_(7, 20000, "S"));
        now.processes.insert(31, proc_(9, 16, "S"));
        now.processes
            .insert(32, proc_(worker_fds, 16, worker_state));
        (start, now)
    }

    fn run_ctx(
        events: &[Value],
        hv: HostView<'_>,
        summary: Option<&Value>,
        hooks: &HookSet,
    ) -> Vec<Finding> {
        let mut e = Engine::default();
        for v in events {
            observe(&mut e, v);
        }
        let summary = summary.map(super::super::tests::summary);
        e.evaluate(&Context {
            summary: summary.as_ref(),
            host: hv,
            counters: Scope::All,
            hooks,
        })
    }

    fn hooks(syn_drop: bool, listen_overflow: bool) -> HookSet {
        let h = |name: &str, attached: bool, prog: &str| HookState {
            name: name.into(),
            attached,
            programs: vec![prog.into()],
        };
        HookSet(vec![
            h("syn_drop", syn_drop, "conn_request4_fentry"),
            h(
                "listen_overflow",
                listen_overflow,
                "kfree_skb_listen_overflow",
            ),
        ])
    }

    #[test]
    fn the_worker_at_its_fd_limit_is_named_not_the_master() {
        let events: Vec<Value> = (0..4)
            .map(|i| {
                let mut v = overflow(i, 0, Some("ghost"));
                v["pid"] = json!(30);
                v["comm"] = json!("nginx");
                v
            })
            .collect();
        let (start, now) = prefork_host(16, "S");
        let hv = HostView {
            start: Some(&start),
            now: Some(&now),
        };
        let f = run(&events, hv);
        let a = &f[0];
        assert_eq!(a.id, "accept_queue_overflow");
        assert_eq!(a.evidence["pid"], 32);
        assert_eq!(a.evidence["open_fds"], 16);
        assert_eq!(a.evidence["nofile_soft"], 16);
        assert_eq!(a.evidence["at_fd_limit"], true);
        let holders = a.evidence["holders"].as_array().unwrap();
        let got: Vec<(u64, bool, u64)> = holders
            .iter()
            .map(|h| {
                (
                    h["pid"].as_u64().unwrap(),
                    h["at_fd_limit"].as_bool().unwrap(),
                    h["nofile_soft"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, [(30, false, 20000), (31, false, 16), (32, true, 16)]);
        assert_eq!(a.evidence["holders_total"], 3);
        assert!(
            a.summary.ends_with(
                "nginx (pid 32) is out of file descriptors (accept() fails with EMFILE)."
            ),
            "{}",
            a.summary
        );
        assert!(
            a.advice[0].contains("RLIMIT_NOFILE soft limit (16)"),
            "{:?}",
            a.advice
        );
        assert!(
            a.advice[0].contains("worker_rlimit_nofile"),
            "{:?}",
            a.advice
        );
        assert!(
            !a.advice.iter().any(|s| s.contains("blocked")),
            "{:?}",
            a.advice
        );
        // An event pid that does not hold the socket (a stale owner) is not
        // listed as a holder.
        let mut stale = events.clone();
        for e in &mut stale {
            e["pid"] = json!(99);
        }
        let f = run(&stale, hv);
        assert_eq!(f[0].evidence["holders_total"], 3);
        assert_eq!(f[0].evidence["pid"], 32);
    }

    #[test]
    fn a_stopped_worker_is_named() {
        let (start, now) = prefork_host(9, "T");
        let hv = HostView {
            start: Some(&start),
            now: Some(&now),
        };
        // Counter-only form (no listener event).
        let f = run(&[], hv);
        let a = &f[0];
        assert_eq!(a.evidence["source"], "counters");
        let l = &a.evidence["listeners_with_waiting_connections"][0];
        assert_eq!(l["pid"], 32);
        assert_eq!(l["state"], "T");
        assert_eq!(l["holders"][2]["state"], "T");
        assert!(
            a.summary.contains(
                "on port 8080, nginx (pid 32), which holds the listening socket, is stopped"
            ),
            "{}",
            a.summary
        );
        assert!(a.advice[0].contains("kill -CONT 32"), "{:?}", a.advice);
    }

    #[test]
    fn counter_advice_names_only_hooks_that_did_not_attach() {
        let (start, now) = listener_host(40, 0, 4096);
        let hv = HostView {
            start: Some(&start),
            now: Some(&now),
        };
        let summary = json!({"kind": "summary", "missed": {}});
        let f = run_ctx(&[], hv, Some(&summary), &hooks(false, true));
        let a = &f[0];
        assert_eq!(a.evidence["hooks_not_attached"], json!(["syn_drop"]));
        assert_eq!(a.evidence["skipped"], 0);
        let hook_lines: Vec<&String> = a.advice.iter().filter(|s| s.contains("attach")).collect();
        assert_eq!(hook_lines.len(), 1, "{:?}", a.advice);
        assert!(
            hook_lines[0].starts_with("The syn_drop hook did not attach"),
            "{hook_lines:?}"
        );
        assert!(
            !a.advice.iter().any(|s| s.contains("listen_overflow")),
            "{:?}",
            a.advice
        );
        // Both attached: none is blamed.
        let f = run_ctx(&[], hv, Some(&summary), &hooks(true, true));
        assert!(f[0].evidence.get("hooks_not_attached").is_none());
        assert!(
            !f[0].advice.iter().any(|s| s.contains("did not attach")),
            "{:?}",
            f[0].advice
        );
    }

    #[test]
    fn skipped_programs_make_counts_lower_bounds() {
        let events: Vec<Value> = (0..3).map(|i| overflow(i, 0, Some("ghost"))).collect();
        let summary =
            json!({"kind": "summary", "missed": {"kfree_skb_listen_overflow": 6, "unrelated": 50}});
        let f = run_ctx(
            &events,
            HostView::default(),
            Some(&summary),
            &hooks(false, true),
        );
        assert_eq!(ids(&f), ["accept_queue_overflow", "ghost_connections"]);
        let (a, g) = (&f[0], &f[1]);
        assert_eq!(a.evidence["skipped"], 6);
        assert_eq!(g.evidence["skipped"], 6);
        assert!(
            a.summary.contains("overflowed at least 3 times"),
            "{}",
            a.summary
        );
        assert!(
            g.summary.starts_with("at least 3 third ACKs"),
            "{}",
            g.summary
        );
        assert!(
            a.advice.iter().any(|s| s
                .contains("skipped the programs of the syn_drop/listen_overflow hooks 6 times")),
            "{:?}",
            a.advice
        );
        // No skips: exact counts.
        let summary = json!({"kind": "summary", "missed": {"unrelated": 50}});
        let f = run_ctx(
            &events,
            HostView::default(),
            Some(&summary),
            &hooks(false, true),
        );
        assert_eq!(f[0].evidence["skipped"], 0);
        assert!(
            f[0].summary.contains("overflowed 3 times"),
            "{}",
            f[0].summary
        );
        assert!(
            f[0].advice.iter().any(|s| s.starts_with("The syn_drop hook did not attach on this kernel: SYNs dropped because this accept queue was full are not among the 3 events here.")),
            "{:?}",
            f[0].advice
        );
        assert!(
            !f[0].advice.iter().any(|s| s.contains("skipped")),
            "{:?}",
            f[0].advice
        );
    }

    #[test]
    fn accept_queue_full_at_the_syn() {
        let events: Vec<Value> = (0..6)
            .map(|i| drop_ev(i, "accept_queue_full", "10.0.0.9"))
            .collect();
        let (start, now) = listener_host(40, 0, 4096);
        let f = run(
            &events,
            HostView {
                start: Some(&start),
                now: Some(&now),
            },
        );
        assert_eq!(ids(&f), ["accept_queue_overflow"]);
        let a = &f[0];
        assert_eq!(a.count, 6);
        assert_eq!(a.severity, Severity::Critical);
        assert_eq!(a.evidence["port"], 8080);
        assert_eq!(a.evidence["backlog_max"], 2);
        assert_eq!(a.evidence["backlog_now"], 3);
        assert_eq!(a.evidence["somaxconn"], 4096);
        assert_eq!(a.evidence["backlog_capped_by_somaxconn"], false);
        assert_eq!(a.evidence["pid"], 31);
        assert_eq!(a.evidence["comm"], "api");
        assert_eq!(a.evidence["at_fd_limit"], false);
        assert_eq!(a.evidence["counters"]["ListenOverflows"], 7);
        assert!(
            a.advice.iter().any(|s| s.contains("listen() backlog is 2")),
            "{:?}",
            a.advice
        );
        assert!(a
            .advice
            .iter()
            .any(|s| s.contains("does not call accept()")));
        assert!(!a.advice.iter().any(|s| s.contains("EMFILE")));
        // The clients' SYN timer: this namespace's settings, else defaults.
        assert!(
            a.advice.iter().any(|s| s.contains(
                "sysctls unknown: the defaults tcp_syn_retries=6, no tcp_syn_linear_timeouts"
            ) && s.contains("resends at 1, 3, 7, 15, 31, 63 s")),
            "{:?}",
            a.advice
        );
        let mut now = now;
        if let Some(ns) = now.netns.get_mut(&NS) {
            ns.sysctls.tcp_syn_retries = Some(6);
            ns.sysctls.tcp_syn_linear_timeouts = Some(4);
        }
        let f = run(
            &events,
            HostView {
                start: Some(&start),
                now: Some(&now),
            },
        );
        assert!(
            f[0].advice
                .iter()
                .any(|s| s.contains("resends at 1, 2, 3, 4, 5, 7, 11, ... s after its first SYN and gives up after 131 s")),
            "{:?}",
            f[0].advice
        );
    }

    #[test]
    fn emfile_and_close_wait_name_the_cause() {
        let events: Vec<Value> = (0..3)
            .map(|i| drop_ev(i, "accept_queue_full", "10.0.0.9"))
            .collect();
        let (start, now) = listener_host(1024, 250, 2);
        let f = run(
            &events,
            HostView {
                start: Some(&start),
                now: Some(&now),
            },
        );
        let a = &f[0];
        assert_eq!(a.evidence["at_fd_limit"], true);
        assert_eq!(a.evidence["close_wait_on_port"], 250);
        assert_eq!(a.evidence["backlog_capped_by_somaxconn"], true);
        assert!(a.summary.contains("EMFILE"), "{}", a.summary);
        assert!(
            a.advice[0].contains("EMFILE") && a.advice[0].contains("1024"),
            "{:?}",
            a.advice
        );
        assert!(a
            .advice
            .iter()
            .any(|s| s.contains("250 connections on port 8080 are in CLOSE_WAIT")));
        assert!(a.advice.iter().any(|s| s.contains("somaxconn cap (2)")));
    }

    #[test]
    fn ghost_connections_need_abort_on_overflow_zero() {
        let mut events = vec![overflow(0, 0, Some("ghost")), overflow(1, 0, Some("ghost"))];
        events.push(ev(
            "synack_retransmit",
            1,
            json!({"listen_addr": "0.0.0.0", "retransmit": 1, "after_overflow": true}),
        ));
        let f = run(&events, HostView::default());
        assert_eq!(ids(&f), ["accept_queue_overflow", "ghost_connections"]);
        let g = &f[1];
        assert_eq!(g.count, 2);
        assert_eq!(g.evidence["synack_retransmits_after_overflow"], 1);
        assert_eq!(g.evidence["abort_on_overflow"], 0);
        assert!(f[0].advice.iter().any(|s| s.contains("ghost_connections")));

        // abort_on_overflow=1: the client is reset, no ghosts.
        let f = run(&[overflow(0, 1, Some("reset"))], HostView::default());
        assert_eq!(ids(&f), ["accept_queue_overflow"]);
        assert!(f[0].advice.iter().any(|s| s.contains("ECONNRESET")));

        // No outcome field: decided by abort_on_overflow.
        let f = run(&[overflow(0, 0, None)], HostView::default());
        assert_eq!(ids(&f), ["accept_queue_overflow", "ghost_connections"]);
    }

    #[test]
    fn syn_queue_full_without_cookies() {
        let mut events: Vec<Value> = (0..11)
            .map(|i| {
                let mut v = drop_ev(i, "syn_queue_full", "10.77.0.3");
                v["syncookies"] = json!(0);
                v["syn_queue"] = json!(9);
                v["backlog"] = json!(0);
                v["backlog_max"] = json!(8);
                v
            })
            .collect();
        let f = run(&events, HostView::default());
        assert_eq!(ids(&f), ["syn_queue_full"]);
        assert_eq!(f[0].severity, Severity::Critical);
        assert_eq!(f[0].count, 11);
        assert_eq!(f[0].evidence["syncookies"], 0);
        assert_eq!(f[0].evidence["distinct_peers"], 1);
        assert!(f[0].advice[0].contains("tcp_syncookies=1"));
        assert!(!f[0].summary.contains("flood"));

        // Many distinct sources: a flood.
        events = (0..100)
            .map(|i| {
                let mut v = drop_ev(i, "syn_queue_full", &format!("198.51.100.{}", i + 1));
                v["syncookies"] = json!(0);
                v
            })
            .collect();
        let f = run(&events, HostView::default());
        assert!(f[0].summary.contains("SYN flood"), "{}", f[0].summary);

        // The last-quarter rule (cause other): also this finding.
        let mut v = drop_ev(0, "other", "10.77.0.3");
        v["last_quarter"] = json!(true);
        v["syncookies"] = json!(0);
        v["max_syn_backlog"] = json!(8);
        let f = run(&[v], HostView::default());
        assert_eq!(ids(&f), ["syn_queue_full"]);
        assert_eq!(f[0].evidence["last_quarter_drops"], 1);
        assert!(f[0]
            .advice
            .iter()
            .any(|s| s.contains("tcp_max_syn_backlog (8)")));

        // cause other without last_quarter (allocation, route, LSM): nothing.
        assert!(run(&[drop_ev(0, "other", "10.77.0.3")], HostView::default()).is_empty());
    }

    #[test]
    fn syn_cookies_from_the_summary_are_informational() {
        let summary = super::super::tests::summary(&json!({"kind": "summary", "listeners": [
            {"netns": NS, "addr": "10.0.0.1", "port": 8080, "answered": {"normal": 9, "cookie": 11, "fastopen": 0}},
            {"netns": NS, "addr": "10.0.0.1", "port": 9090, "answered": {"normal": 9, "cookie": 0, "fastopen": 0}}
        ]}));
        let e = Engine::default();
        let ctx = Context {
            summary: Some(&summary),
            host: HostView::default(),
            counters: Scope::All,
            hooks: &Default::default(),
        };
        let f = e.evaluate(&ctx);
        assert_eq!(ids(&f), ["syn_queue_full"]);
        assert_eq!(f[0].severity, Severity::Info);
        assert_eq!(f[0].evidence["cookies_sent"], 11);
        // tcp_syncookies=2 sends cookies for every SYN: by configuration.
        let (start, now) = host(
            Sysctls {
                tcp_syncookies: Some(2),
                ..Sysctls::default()
            },
            &[],
        );
        let ctx = Context {
            summary: Some(&summary),
            host: HostView {
                start: Some(&start),
                now: Some(&now),
            },
            counters: Scope::All,
            hooks: &Default::default(),
        };
        assert!(Engine::default().evaluate(&ctx).is_empty());
    }

    #[test]
    fn counters_alone_when_no_listener_event() {
        let (start, now) = listener_host(1024, 12, 4096);
        let hv = HostView {
            start: Some(&start),
            now: Some(&now),
        };
        let f = run(&[], hv);
        assert_eq!(ids(&f), ["accept_queue_overflow"]);
        assert_eq!(f[0].evidence["source"], "counters");
        assert_eq!(f[0].count, 7);
        let l = &f[0].evidence["listeners_with_waiting_connections"][0];
        assert_eq!(l["port"], 8080);
        assert_eq!(l["at_fd_limit"], true);
        assert!(f[0].advice.iter().any(|s| s.contains("EMFILE")));
        assert!(
            f[0].summary
                .contains("on port 8080, api (pid 31) is out of file descriptors"),
            "{}",
            f[0].summary
        );
        assert!(f[0].advice.iter().any(|s| s.contains("CLOSE_WAIT")));
        // Not when counters are out of scope (a --port filter, replay).
        let mut e = Engine::default();
        observe(
            &mut e,
            &ev("connect", 0, json!({"latency_ns": 1000, "errno": 0})),
        );
        assert!(e
            .evaluate(&Context {
                summary: None,
                host: hv,
                counters: Scope::Needed,
                hooks: &Default::default(),
            })
            .is_empty());
        assert!(e
            .evaluate(&Context {
                summary: None,
                host: hv,
                counters: Scope::Netns(NS + 1),
                hooks: &Default::default(),
            })
            .is_empty());
        // Nor when they did not move.
        let (start, now) = host(
            Sysctls::default(),
            &[("ListenOverflows", 0), ("TCPReqQFullDrop", 0)],
        );
        assert!(run(
            &[],
            HostView {
                start: Some(&start),
                now: Some(&now)
            }
        )
        .is_empty());
        // TCPReqQFullDrop alone: SYN queue full.
        let (start, now) = host(Sysctls::default(), &[("TCPReqQFullDrop", 4)]);
        let f = run(
            &[],
            HostView {
                start: Some(&start),
                now: Some(&now),
            },
        );
        assert_eq!(ids(&f), ["syn_queue_full"]);
        assert_eq!(f[0].severity, Severity::Critical);
    }

    #[test]
    fn counters_speak_for_the_events_a_hook_missed() {
        // Third-ACK overflows where only SYN-ACK retransmits are seen (the
        // overflow hook cannot attach): the counters still name them.
        let (start, now) = host(
            Sysctls::default(),
            &[("ListenOverflows", 2), ("ListenDrops", 2)],
        );
        let hv = HostView {
            start: Some(&start),
            now: Some(&now),
        };
        let rtx = ev(
            "synack_retransmit",
            0,
            json!({"retransmit": 1, "after_overflow": false}),
        );
        let f = run(std::slice::from_ref(&rtx), hv);
        assert_eq!(ids(&f), ["accept_queue_overflow"]);
        assert_eq!(f[0].subject, format!("netns {NS}"));
        assert_eq!(f[0].count, 2);
        // Overflow events make the counters redundant for that finding...
        let f = run(&[rtx.clone(), overflow(1, 0, Some("ghost"))], hv);
        assert_eq!(ids(&f), ["accept_queue_overflow", "ghost_connections"]);
        assert!(f[0].subject.starts_with("listener "), "{}", f[0].subject);
        // ...but not for another one: SYN queue drops the SYN hook missed.
        let (start, now) = host(
            Sysctls::default(),
            &[("ListenOverflows", 1), ("TCPReqQFullDrop", 3)],
        );
        let hv = HostView {
            start: Some(&start),
            now: Some(&now),
        };
        let f = run(&[overflow(1, 0, Some("ghost"))], hv);
        assert_eq!(
            ids(&f),
            [
                "accept_queue_overflow",
                "syn_queue_full",
                "ghost_connections"
            ]
        );
        assert_eq!(f[1].subject, format!("netns {NS}"));
        assert_eq!(f[1].count, 3);
        let f = run(&[drop_ev(0, "syn_queue_full", "10.0.0.9")], hv);
        assert_eq!(ids(&f), ["accept_queue_overflow", "syn_queue_full"]);
        assert_eq!(f[0].subject, format!("netns {NS}"));
        assert!(f[1].subject.starts_with("listener "), "{}", f[1].subject);
    }

    #[test]
    fn synack_retransmits_alone_are_not_a_finding() {
        let events = vec![ev(
            "synack_retransmit",
            0,
            json!({"retransmit": 1, "after_overflow": false}),
        )];
        assert!(run(&events, HostView::default()).is_empty());
    }
}
