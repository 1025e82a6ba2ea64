//! Verdicts of the PAWS/RST family's hooks on a crafted peer's segments:
//! PAWS rejects at each site (`validate_incoming` for established
//! sockets, `paws_time_wait`, `paws_syn_recv`, `paws_syn_sent`) and the
//! verdicts on received RSTs (`validate_incoming`).

use tcptrace_common::{event::EventKind, paws::PawsSite};
use tcptrace_lab::repro::{
    paws::{Established, TimeWait},
    paws_handshake::{SynRecv, SynSent},
    rst::{Planned, Verdicts},
};

use super::InNs;
use crate::{
    event::{Detail, Event},
    paws::decode::{PawsDetail, RstDetail},
    selftest::verdict::Verdict,
};

/// What a PAWS reproduction injected, as its verdict compares it.
#[derive(Clone, Debug)]
pub struct PawsInjected {
    pub netns: u64,
    pub site: PawsSite,
    /// The crafted peer's port (the events' `dport`).
    pub peer_port: u16,
    /// Segments sent that the kernel must reject.
    pub rejects: u64,
    /// The first one's TSval; each next one `tsval_step` later.
    pub tsval: u32,
    pub tsval_step: u32,
    /// The socket's last stamp (ts_recent), where an event reports it;
    /// for SYN-SENT, how far the echo is behind it.
    pub ts_recent: TsRecent,
    /// The kernel counter of these rejects and its delta.
    pub counter: &'static str,
    pub counted: u64,
}

/// What an event's `ts_recent` must be.
#[derive(Clone, Copy, Debug)]
pub enum TsRecent {
    /// Exactly this.
    Is(u32),
    /// This, where the hook's path sees it (the drop-reason path of a
    /// request socket sees only the listener).
    IsIfKnown(u32),
    /// `tsecr` this far behind it (an active open's own SYN stamp).
    EchoBehind(u32),
}

impl PawsInjected {
    pub fn established(r: &Established) -> Self {
        Self {
            netns: r.server_netns,
            site: PawsSite::Established,
            peer_port: r.peer_port,
            rejects: r.rejects.into(),
            tsval: r.tsval,
            tsval_step: 0,
            ts_recent: TsRecent::Is(r.ts_recent),
            counter: "PAWSEstab",
            counted: r.after.since(&r.before, "PAWSEstab"),
        }
    }

    pub fn time_wait(r: &TimeWait) -> Self {
        Self {
            netns: r.server_netns,
            site: PawsSite::TimeWait,
            peer_port: r.peer_port,
            rejects: r.rejects.into(),
            tsval: r.first_tsval,
            tsval_step: 1,
            ts_recent: TsRecent::Is(r.ts_recent),
            counter: r.counter,
            counted: r.after.since(&r.before, r.counter),
        }
    }

    pub fn syn_recv(r: &SynRecv) -> Self {
        Self {
            netns: r.server_netns,
            site: PawsSite::SynRecv,
            peer_port: r.peer_port,
            rejects: r.rejects.into(),
            tsval: r.tsval,
            tsval_step: 0,
            ts_recent: TsRecent::IsIfKnown(r.ts_recent),
            counter: "PAWSEstab",
            counted: r.after.since(&r.before, "PAWSEstab"),
        }
    }

    pub fn syn_sent(r: &SynSent) -> Self {
        Self {
            netns: r.server_netns,
            site: PawsSite::SynSent,
            peer_port: r.peer_port,
            rejects: r.rejects.into(),
            tsval: r.tsval,
            tsval_step: 0,
            ts_recent: TsRecent::EchoBehind(r.echo_behind),
            counter: "PAWSActive",
            counted: r.after.since(&r.before, "PAWSActive"),
        }
    }

    /// Whether `d` (the `i`th reject) carries what was sent.
    fn matches(&self, i: usize, d: &PawsDetail) -> bool {
        let tsval = self
            .tsval
            .wrapping_add(self.tsval_step.wrapping_mul(i as u32));
        let ts_recent = match (self.ts_recent, d.ts_recent) {
            (TsRecent::Is(_), None) if d.socket_unread => true,
            (TsRecent::Is(want), got) => got == Some(want),
            (TsRecent::IsIfKnown(want), got) => got.is_none_or(|t| t == want),
            (TsRecent::EchoBehind(by), got) => got.is_some_and(|t| t.wrapping_sub(d.tsecr) == by),
        };
        d.site == self.site && d.tsval == tsval && ts_recent
    }
}

/// The PAWS rejects one reproduction made: exact when there is one event
/// per segment sent, each at its site with its stamps, and as many as the
/// kernel counted.
pub fn paws_verdict(p: &PawsInjected, ns: &InNs<'_>) -> Verdict {
    let seen: Vec<(&Event, &PawsDetail)> = ns
        .kind(EventKind::PawsReject)
        .iter()
        .filter_map(|e| match &e.detail {
            Detail::PawsReject(d) => Some((*e, d)),
            _ => None,
        })
        .collect();
    let right = seen
        .iter()
        .enumerate()
        .filter(|(i, (e, d))| e.endpoints.dport == p.peer_port && p.matches(*i, d))
        .count();
    let what = format!(
        "{} PAWS rejects ({right} at {} with the stamps sent) of {} stale segments, {} +{}",
        seen.len(),
        p.site.name(),
        p.rejects,
        p.counter,
        p.counted
    );
    if p.counted != p.rejects {
        return Verdict::Error(format!("{what}: the kernel did not reject what was sent"));
    }
    if seen.len() as u64 == p.rejects && right == seen.len() {
        exact(what, seen.iter().any(|(_, d)| d.socket_unread))
    } else {
        Verdict::Missed(what)
    }
}

/// Every event matched: exact, or partial where the hook read the segment
/// alone (its drop-reason form where `kfree_skb` does not pass the socket).
fn exact(what: String, socket_unread: bool) -> Verdict {
    if socket_unread {
        Verdict::Partial(format!(
            "{what}; the socket is not read here (drop reason without the receiving \
             socket): no state, stamp or window, which --attach fentry or kprobe gives"
        ))
    } else {
        Verdict::Exact(what)
    }
}

/// What the RST reproduction injected, as its verdict compares it.
#[derive(Clone, Debug)]
pub struct RstInjected {
    pub netns: u64,
    pub peer_port: u16,
    pub rcv_nxt: u32,
    pub plan: &'static [Planned],
    /// TCPChallengeACK and TCPACKSkippedChallenge deltas.
    pub challenge_acks: u64,
    pub skipped_challenges: u64,
}

impl RstInjected {
    pub fn of(r: &Verdicts) -> Self {
        Self {
            netns: r.server_netns,
            peer_port: r.peer_port,
            rcv_nxt: r.rcv_nxt,
            plan: r.plan,
            challenge_acks: r.after.since(&r.before, "TCPChallengeACK"),
            skipped_challenges: r.after.since(&r.before, "TCPACKSkippedChallenge"),
        }
    }
}

/// The RSTs sent: exact when there is one event per RST, in order, each
/// with the verdict planned, its sequence number, `rcv_nxt` and the side
/// of the window it fell on, and as many challenge ACKs as the kernel
/// counted.
pub fn rst_verdict(r: &RstInjected, ns: &InNs<'_>) -> Verdict {
    let seen: Vec<(&Event, &RstDetail)> = ns
        .kind(EventKind::Rst)
        .iter()
        .filter_map(|e| match &e.detail {
            Detail::Rst(d) => Some((*e, d)),
            _ => None,
        })
        .collect();
    let right = seen
        .iter()
        .zip(r.plan)
        .filter(|((e, d), p)| {
            e.endpoints.dport == r.peer_port
                && d.verdict.name() == p.verdict
                && (d.socket_unread || d.rcv_nxt == r.rcv_nxt)
                && d.seq == r.rcv_nxt.wrapping_add(p.offset as u32)
                && d.window_side().is_none_or(|side| side == p.sign)
        })
        .count();
    let challenged = seen
        .iter()
        .filter(|(_, d)| d.verdict.name() == "challenge_ack")
        .count() as u64;
    let what = format!(
        "{} RSTs ({right} with the verdict, sequence and window side planned) of {} sent; {challenged} challenge ACKs, TCPChallengeACK +{}",
        seen.len(),
        r.plan.len(),
        r.challenge_acks
    );
    if r.skipped_challenges > 0 {
        return Verdict::Error(format!(
            "{what}: the kernel rate limited a challenge ACK (TCPACKSkippedChallenge +{})",
            r.skipped_challenges
        ));
    }
    if seen.len() == r.plan.len() && right == seen.len() && challenged == r.challenge_acks {
        exact(what, seen.iter().any(|(_, d)| d.socket_unread))
    } else {
        Verdict::Missed(what)
    }
}

/// Reason of the RSTs that answer a stale SYN-ACK (6.10+).
const PAWS_RST_REASON: &str = "TCP_RFC7323_PAWS";

/// The RSTs an active open answered stale SYN-ACKs with (S8), against the
/// host-wide `RST_SENT` counter read just before and after that
/// reproduction.
#[derive(Clone, Debug)]
pub struct RstsSent {
    /// One per stale SYN-ACK.
    pub planned: u64,
    /// The namespace's Tcp OutRsts delta.
    pub out_rsts: u64,
    /// The counter's growth meanwhile: in `reason`'s slot where the kernel
    /// gives reasons, else over every slot.
    pub counted: u64,
    pub reason: Option<&'static str>,
}

impl RstsSent {
    /// From the reproduction and the counter's slots before and after it.
    pub fn of(r: &SynSent, before: &[(String, u64)], after: &[(String, u64)]) -> Self {
        let (counted, reason) = growth(before, after);
        Self {
            planned: r.rejects.into(),
            out_rsts: r.after.since(&r.before, "OutRsts"),
            counted,
            reason,
        }
    }
}

/// How much the `RST_SENT` counter grew between two readings: in the PAWS
/// reason's slot where the kernel gives reasons, else over every slot.
fn growth(before: &[(String, u64)], after: &[(String, u64)]) -> (u64, Option<&'static str>) {
    let reason = after
        .iter()
        .any(|(name, _)| name == PAWS_RST_REASON)
        .then_some(PAWS_RST_REASON);
    let total = |slots: &[(String, u64)]| -> u64 {
        slots
            .iter()
            .filter(|(name, _)| reason.is_none_or(|r| name == r))
            .map(|(_, n)| n)
            .sum()
    };
    (total(after).saturating_sub(total(before)), reason)
}

/// The RSTs sent: exact when the host-wide counter grew by what the
/// namespace sent, partial when it grew more (other RSTs elsewhere on the
/// host at the same time: it has no namespace to tell them apart).
pub fn rst_sent_verdict(r: &RstsSent) -> Verdict {
    let over = r.reason.map_or_else(
        || "of any reason (this kernel names none for PAWS)".to_owned(),
        |reason| format!("for {reason}"),
    );
    let what = format!(
        "{} RSTs counted {over} while an active open answered {} stale SYN-ACKs, Tcp OutRsts +{}",
        r.counted, r.planned, r.out_rsts
    );
    if r.out_rsts != r.planned {
        return Verdict::Error(format!(
            "{what}: the kernel did not answer each stale SYN-ACK with a RST"
        ));
    }
    match r.counted.cmp(&r.out_rsts) {
        std::cmp::Ordering::Equal => Verdict::Exact(what),
        std::cmp::Ordering::Less => Verdict::Missed(what),
        std::cmp::Ordering::Greater => Verdict::Partial(format!(
            "{what}: the counter is host-wide, and {} more were sent elsewhere on this host meanwhile",
            r.counted - r.out_rsts
        )),
    }
}

#[cfg(test)]
mod tests {
    use tcptrace_common::paws::RstVerdict;
    use tcptrace_lab::repro::rst::PLAN;

    use super::*;
    use crate::event::{
        decode,
        tests::{raw_paws, raw_rst},
    };

    const NS: u64 = 4026532001;

    fn paws(site: PawsSite, dport: u16, tsval: u32, ts_recent: u32) -> Event {
        let mut ev = decode(&raw_paws(site, [10, 77, 0, 3], tsval, ts_recent, 0)).unwrap();
        ev.netns = NS as u32;
        ev.endpoints.dport = dport;
        ev
    }

    fn time_wait() -> PawsInjected {
        PawsInjected {
            netns: NS,
            site: PawsSite::TimeWait,
            peer_port: 40002,
            rejects: 3,
            tsval: 100_000,
            tsval_step: 1,
            ts_recent: TsRecent::Is(1_500_000_020),
            counter: "PAWSTimewait",
            counted: 3,
        }
    }

    #[test]
    fn paws_rejects_are_exact_with_each_segment_and_the_counter() {
        let p = time_wait();
        let all: Vec<Event> = (0..3)
            .map(|i| paws(PawsSite::TimeWait, 40002, 100_000 + i, 1_500_000_020))
            .collect();
        let v = paws_verdict(&p, &InNs::of(&all, NS));
        assert!(matches!(v, Verdict::Exact(_)), "{v:?}");
        // One missing, or in another namespace.
        let v = paws_verdict(&p, &InNs::of(&all[1..], NS));
        assert!(
            matches!(v, Verdict::Missed(ref d) if d.starts_with("2 PAWS rejects")),
            "{v:?}"
        );
        let v = paws_verdict(&p, &InNs::of(&all, NS + 1));
        assert!(matches!(v, Verdict::Missed(_)), "{v:?}");
        // At another site, or with other stamps.
        let mut wrong = all.clone();
        wrong[2] = paws(PawsSite::Established, 40002, 100_002, 1_500_000_020);
        let v = paws_verdict(&p, &InNs::of(&wrong, NS));
        assert!(
            matches!(v, Verdict::Missed(ref d) if d.contains("(2 at")),
            "{v:?}"
        );
        wrong[2] = paws(PawsSite::TimeWait, 40002, 100_000, 1_500_000_020);
        let v = paws_verdict(&p, &InNs::of(&wrong, NS));
        assert!(matches!(v, Verdict::Missed(_)), "{v:?}");
        // The kernel counted other than what was sent: nothing to compare.
        let v = paws_verdict(
            &PawsInjected {
                counted: 2,
                ..time_wait()
            },
            &InNs::of(&all, NS),
        );
        assert!(matches!(v, Verdict::Error(_)), "{v:?}");
    }

    #[test]
    fn ts_recent_is_compared_as_each_site_reports_it() {
        let syn_recv = PawsInjected {
            site: PawsSite::SynRecv,
            peer_port: 40004,
            tsval: 1_999_000,
            tsval_step: 0,
            ts_recent: TsRecent::IsIfKnown(2_000_000),
            counter: "PAWSEstab",
            ..time_wait()
        };
        let mut unknown = paws(PawsSite::SynRecv, 40004, 1_999_000, 0);
        let Detail::PawsReject(d) = &mut unknown.detail else {
            unreachable!()
        };
        d.ts_recent = None;
        let known = paws(PawsSite::SynRecv, 40004, 1_999_000, 2_000_000);
        let all = vec![unknown, known.clone(), known];
        let v = paws_verdict(&syn_recv, &InNs::of(&all, NS));
        assert!(matches!(v, Verdict::Exact(_)), "{v:?}");
        // SYN-SENT: the echo (tsecr 9 in the synthetic record) is 100000
        // ticks behind the SYN's stamp.
        let syn_sent = PawsInjected {
            site: PawsSite::SynSent,
            peer_port: 9000,
            rejects: 2,
            tsval: 555,
            ts_recent: TsRecent::EchoBehind(100_000),
            counter: "PAWSActive",
            counted: 2,
            ..syn_recv
        };
        let sent = paws(PawsSite::SynSent, 9000, 555, 100_009);
        let v = paws_verdict(&syn_sent, &InNs::of(&[sent.clone(), sent], NS));
        assert!(matches!(v, Verdict::Exact(_)), "{v:?}");
        let off = paws(PawsSite::SynSent, 9000, 555, 100_010);
        let v = paws_verdict(&syn_sent, &InNs::of(&[off.clone(), off], NS));
        assert!(matches!(v, Verdict::Missed(_)), "{v:?}");
    }

    /// The event the kernel gives RST `p` on a socket at `rcv_nxt` 1000
    /// with window [900, 1400] (the synthetic record's).
    fn rst(p: &Planned) -> Event {
        let verdict = match p.verdict {
            "accepted" => RstVerdict::Accepted,
            "challenge_ack" => RstVerdict::ChallengeAck,
            _ => RstVerdict::Ignored,
        };
        let mut ev = decode(&raw_rst(verdict, 1000u32.wrapping_add(p.offset as u32))).unwrap();
        ev.netns = NS as u32;
        ev.endpoints.dport = 40003;
        ev
    }

    #[test]
    fn rst_verdicts_are_exact_in_plan_order_with_the_challenge_counter() {
        let r = RstInjected {
            netns: NS,
            peer_port: 40003,
            rcv_nxt: 1000,
            plan: &PLAN,
            challenge_acks: 2,
            skipped_challenges: 0,
        };
        let all: Vec<Event> = PLAN.iter().map(rst).collect();
        let v = rst_verdict(&r, &InNs::of(&all, NS));
        assert!(matches!(v, Verdict::Exact(_)), "{v:?}");
        let v = rst_verdict(&r, &InNs::of(&all[..4], NS));
        assert!(matches!(v, Verdict::Missed(_)), "{v:?}");
        // Out of order: verdicts do not match the plan.
        let mut swapped = all.clone();
        swapped.swap(0, 4);
        let v = rst_verdict(&r, &InNs::of(&swapped, NS));
        assert!(matches!(v, Verdict::Missed(_)), "{v:?}");
        // The kernel counted a challenge ACK the events do not show.
        let v = rst_verdict(
            &RstInjected {
                challenge_acks: 3,
                ..r.clone()
            },
            &InNs::of(&all, NS),
        );
        assert!(matches!(v, Verdict::Missed(_)), "{v:?}");
        let v = rst_verdict(
            &RstInjected {
                skipped_challenges: 1,
                ..r
            },
            &InNs::of(&all, NS),
        );
        assert!(matches!(v, Verdict::Error(_)), "{v:?}");
    }

    #[test]
    fn rsts_sent_are_exact_when_the_host_wide_counter_grew_by_the_namespace_s() {
        let sent = |counted, out_rsts| RstsSent {
            planned: 2,
            out_rsts,
            counted,
            reason: Some(PAWS_RST_REASON),
        };
        assert!(matches!(rst_sent_verdict(&sent(2, 2)), Verdict::Exact(_)));
        assert!(matches!(rst_sent_verdict(&sent(1, 2)), Verdict::Missed(_)));
        let v = rst_sent_verdict(&sent(5, 2));
        assert!(
            matches!(v, Verdict::Partial(ref d) if d.contains("3 more")),
            "{v:?}"
        );
        // The kernel did not send what the reproduction meant.
        assert!(matches!(rst_sent_verdict(&sent(1, 1)), Verdict::Error(_)));
    }

    #[test]
    fn rsts_sent_count_the_paws_reason_where_the_kernel_gives_reasons() {
        let slots = |paws, other| {
            vec![
                ("NO_SOCKET".to_owned(), other),
                (PAWS_RST_REASON.to_owned(), paws),
            ]
        };
        assert_eq!(
            growth(&slots(1, 10), &slots(3, 40)),
            (2, Some(PAWS_RST_REASON))
        );
        // Before 6.10 every RST is in one slot, `unknown`.
        let unknown = |n| vec![("unknown".to_owned(), n), ("reason_1".to_owned(), 0)];
        assert_eq!(growth(&unknown(4), &unknown(9)), (5, None));
    }
}
