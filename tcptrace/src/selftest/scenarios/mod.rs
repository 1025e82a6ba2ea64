//! The reproductions the selftest runs (from `tcptrace-lab`, the same the
//! scenario tests run) and, for each, the verdicts of the hooks it
//! exercises: their events in its namespace against what it injected and
//! the namespace's counters. One file per hook family: [`connect`],
//! [`syn`], [`paws`].

mod connect;
mod paws;
mod syn;

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use tcptrace_common::event::EventKind;
use tcptrace_lab::{
    craft::{Family, Lab, Prefix},
    netns::NetnsKeeper,
    repro::{
        accept_queue, handshake, paws as paws_repro, paws_handshake, ports, rst,
        syn_queue::{self, Burst},
    },
};

use super::verdict::Verdict;
use crate::event::Event;
use crate::paws::maps::RstSentMap;
use paws::{PawsInjected, RstInjected, RstsSent};
use syn::{GhostInjected, SynQueueInjected};

/// First port of the narrowed ephemeral range, and its size.
const PORTS_FIRST: u16 = 40000;
const PORTS_RANGE: u16 = 8;
/// SYNs of the burst against a SYN queue of 8 (syncookies off).
const BURST_SYNS: u16 = 12;

/// What the reproductions did; each failed one keeps its error.
pub struct Runs {
    ports: Result<ports::Exhausted>,
    handshake: Result<handshake::SlowHandshake>,
    accept_queue: Result<accept_queue::FullAtSyn>,
    ghost: Result<GhostInjected>,
    syn_queue: Result<SynQueueInjected>,
    paws_established: Result<PawsInjected>,
    paws_time_wait: Result<PawsInjected>,
    paws_syn_recv: Result<PawsInjected>,
    paws_syn_sent: Result<PawsInjected>,
    rst: Result<RstInjected>,
    /// The RSTs answering `paws_syn_sent`'s SYN-ACKs.
    rst_sent: Result<RstsSent>,
    /// Why the crafted peer's reproductions could not run here at all.
    no_lab: Option<String>,
    /// The namespaces, open until the events are in.
    _keep: Vec<NetnsKeeper>,
    _labs: Vec<Lab>,
}

/// Runs every reproduction, one after the other (each in a namespace of
/// its own, or a crafted peer's pair; about 11 s in all): at the same time,
/// one's program runs could preempt another's on a CPU, and kernels that
/// run tracing programs preemptible skip a program already running there.
/// A crafted peer's reproduction runs only when a hook it exercises is
/// among `attached`. `rsts` is read around the reproduction whose
/// namespace sends RSTs (`rst_sent` counts them host-wide).
pub fn run(attached: &[&str], rsts: &RstSentMap) -> Runs {
    let mut keep = Vec::new();
    let ports = kept(ports::exhaust(PORTS_FIRST, PORTS_RANGE), &mut keep);
    let handshake = kept(handshake::after_one_syn_retransmit(), &mut keep);
    let accept_queue = kept(accept_queue::full_at_syn(false), &mut keep);
    let mut labs = Vec::new();
    let no_lab = lab_unavailable();
    let (prefix, v4) = (&Prefix::SELFTEST, Family::V4);
    let wanted = |hook: &str| no_lab.is_none() && attached.contains(&hook);
    let ghost = in_lab(
        wanted("listen_overflow") || wanted("synack_retrans"),
        || syn_queue::third_ack_overflow(prefix, v4, false),
        GhostInjected::of,
        |r| r.lab,
        &mut labs,
    );
    let syn_queue = in_lab(
        wanted("syn_drop"),
        || syn_queue::syn_burst(prefix, v4, Burst::SynQueueFull, BURST_SYNS),
        SynQueueInjected::of,
        |r| r.lab,
        &mut labs,
    );
    let paws_established = in_lab(
        wanted("validate_incoming"),
        || paws_repro::established(prefix, v4, paws_repro::Behind::Stale),
        PawsInjected::established,
        |r| r.lab,
        &mut labs,
    );
    let paws_time_wait = in_lab(
        wanted("paws_time_wait"),
        || paws_repro::time_wait(prefix, v4),
        PawsInjected::time_wait,
        |r| r.lab,
        &mut labs,
    );
    let rst = in_lab(
        wanted("validate_incoming"),
        || rst::verdicts(prefix, v4),
        RstInjected::of,
        |r| r.lab,
        &mut labs,
    );
    let paws_syn_recv = in_lab(
        wanted("paws_syn_recv"),
        || paws_handshake::syn_recv(prefix, v4),
        PawsInjected::syn_recv,
        |r| r.lab,
        &mut labs,
    );
    let (paws_syn_sent, rst_sent) = split(in_lab(
        wanted("paws_syn_sent") || wanted("rst_sent"),
        || {
            let before = rsts.read_every_slot()?;
            let r = paws_handshake::syn_sent(prefix, v4)?;
            let after = rsts.read_every_slot()?;
            Ok((r, before, after))
        },
        |(r, before, after)| (PawsInjected::syn_sent(r), RstsSent::of(r, before, after)),
        |(r, ..)| r.lab,
        &mut labs,
    ));
    Runs {
        ports,
        handshake,
        accept_queue,
        ghost,
        syn_queue,
        paws_established,
        paws_time_wait,
        paws_syn_recv,
        paws_syn_sent,
        rst,
        rst_sent,
        no_lab,
        _keep: keep,
        _labs: labs,
    }
}

/// A reproduction skipped because no hook it exercises attached (no
/// verdict asks for it).
fn not_run<T>() -> Result<T> {
    Err(anyhow!("not run: its hook did not attach"))
}

/// Why a crafted peer's lab cannot be built here: it needs iproute2's
/// `ip` (named namespaces, a veth pair).
fn lab_unavailable() -> Option<String> {
    let runs = std::process::Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    (!runs).then(|| "the crafted peer's reproduction needs iproute2's ip, not found here".into())
}

/// Runs a crafted peer's reproduction when `wanted` (a hook it exercises
/// attached): what it injected (`injected`), its lab moved to `labs`
/// (`lab` takes it out of the result).
fn in_lab<R, T>(
    wanted: bool,
    run: impl FnOnce() -> Result<R>,
    injected: impl FnOnce(&R) -> T,
    lab: impl FnOnce(R) -> Lab,
    labs: &mut Vec<Lab>,
) -> Result<T> {
    if !wanted {
        return not_run();
    }
    run().map(|r| {
        let t = injected(&r);
        labs.push(lab(r));
        t
    })
}

/// One result in two, the error's message in both.
fn split<A, B>(r: Result<(A, B)>) -> (Result<A>, Result<B>) {
    match r {
        Ok((a, b)) => (Ok(a), Ok(b)),
        Err(e) => {
            let again = anyhow!("{e:#}");
            (Err(e), Err(again))
        }
    }
}

/// A reproduction's result, its namespace's keeper moved to `keep`.
fn kept<T>(r: Result<(T, NetnsKeeper)>, keep: &mut Vec<NetnsKeeper>) -> Result<T> {
    r.map(|(v, k)| {
        keep.push(k);
        v
    })
}

/// The events of one namespace, by kind.
struct InNs<'a>(BTreeMap<u8, Vec<&'a Event>>);

impl<'a> InNs<'a> {
    fn of(events: &'a [Event], netns: u64) -> Self {
        let mut m: BTreeMap<u8, Vec<&Event>> = BTreeMap::new();
        for e in events.iter().filter(|e| u64::from(e.netns) == netns) {
            m.entry(e.kind as u8).or_default().push(e);
        }
        Self(m)
    }

    fn kind(&self, k: EventKind) -> &[&'a Event] {
        self.0.get(&(k as u8)).map_or(&[], Vec::as_slice)
    }
}

fn error(e: &anyhow::Error) -> Verdict {
    Verdict::Error(format!("the reproduction failed: {e:#}"))
}

/// A reproduction's verdict: `of` its result and its namespace's
/// events, or its error.
fn judged<T>(
    r: &Result<T>,
    events: &[Event],
    netns: impl Fn(&T) -> u64,
    of: impl Fn(&T, &InNs<'_>) -> Verdict,
) -> Verdict {
    match r {
        Ok(t) => of(t, &InNs::of(events, netns(t))),
        Err(e) => error(e),
    }
}

/// A crafted peer's reproduction's verdict ([`judged`]); None where no
/// lab could run here.
fn in_lab_verdict<T>(
    runs: &Runs,
    r: &Result<T>,
    events: &[Event],
    netns: impl Fn(&T) -> u64,
    of: impl Fn(&T, &InNs<'_>) -> Verdict,
) -> Option<Verdict> {
    runs.no_lab.is_none().then(|| judged(r, events, netns, of))
}

/// The verdict on one PAWS reproduction's rejects.
fn paws_of(p: &Result<PawsInjected>, events: &[Event]) -> Verdict {
    judged(p, events, |p| p.netns, paws::paws_verdict)
}

impl Runs {
    /// The verdict for `hook` (attached) from the events seen; `attached`
    /// says which other hooks attached, for those that depend on them.
    pub fn verdict(
        &self,
        hook: &str,
        events: &[Event],
        attached: &dyn Fn(&str) -> bool,
    ) -> Verdict {
        match hook {
            "connect" | "port_search" => judged(
                &self.ports,
                events,
                |p| p.netns,
                |p, ns| connect::ports_verdict(hook, p, ns),
            ),
            "handshake" | "handshake_rtx" => judged(
                &self.handshake,
                events,
                |h| h.netns,
                |h, ns| connect::handshake_verdict(hook, h, ns, attached),
            ),
            "listen_owner" => match &self.accept_queue {
                Ok(a) => {
                    let full_at_syn = InNs::of(events, a.netns);
                    let ghost = self.ghost.as_ref().ok().map(|g| InNs::of(events, g.netns));
                    let of_ghost = ghost
                        .as_ref()
                        .map_or(&[][..], |g| g.kind(EventKind::ListenOverflow));
                    let all: Vec<&Event> = full_at_syn
                        .kind(EventKind::SynDrop)
                        .iter()
                        .chain(full_at_syn.kind(EventKind::ListenOverflow))
                        .chain(of_ghost)
                        .copied()
                        .collect();
                    syn::owner_verdict(&all)
                }
                Err(e) => error(e),
            },
            "syn_drop" | "listen_overflow" => {
                let full_at_syn = judged(
                    &self.accept_queue,
                    events,
                    |a| a.netns,
                    |a, ns| syn::accept_queue_verdict(hook, a, ns, attached),
                );
                // A full SYN queue, and a ghost's third ACK.
                let lab = match hook {
                    "syn_drop" => in_lab_verdict(
                        self,
                        &self.syn_queue,
                        events,
                        |q| q.netns,
                        syn::syn_queue_verdict,
                    ),
                    "listen_overflow" => in_lab_verdict(
                        self,
                        &self.ghost,
                        events,
                        |g| g.netns,
                        syn::ghost_overflow_verdict,
                    ),
                    _ => None,
                };
                match lab {
                    Some(v) => Verdict::both(full_at_syn, v),
                    None => full_at_syn,
                }
            }
            "synack_retrans" => in_lab_verdict(
                self,
                &self.ghost,
                events,
                |g| g.netns,
                |g, ns| syn::synack_retrans_verdict(g, ns, attached),
            )
            .unwrap_or_else(|| Verdict::Unverified(self.no_lab.clone().unwrap_or_default())),
            "validate_incoming" | "paws_time_wait" | "paws_syn_recv" | "paws_syn_sent"
            | "rst_sent"
                if self.no_lab.is_some() =>
            {
                Verdict::Unverified(self.no_lab.clone().unwrap_or_default())
            }
            // PAWS rejects on established sockets and the verdicts on RSTs.
            "validate_incoming" => Verdict::both(
                paws_of(&self.paws_established, events),
                judged(&self.rst, events, |r| r.netns, paws::rst_verdict),
            ),
            "paws_time_wait" => paws_of(&self.paws_time_wait, events),
            "paws_syn_recv" => paws_of(&self.paws_syn_recv, events),
            "paws_syn_sent" => paws_of(&self.paws_syn_sent, events),
            "rst_sent" => match &self.rst_sent {
                Ok(r) => paws::rst_sent_verdict(r),
                Err(e) => error(e),
            },
            _ => Verdict::Unverified("no reproduction exercises this hook yet".into()),
        }
    }
}
