//! How PAWS rejects from one peer are read: the one estimator behind the
//! summary's `clocks` column and the PAWS findings (docs/diagnosis.md).
//!
//! What a reject compares decides what it can show:
//! - `time_wait`: the SYN of a new connection against the last TSval of an
//!   earlier connection on the same 4-tuple. Timestamps do not increase
//!   across connections: hosts behind one NAT address each have their own
//!   clock, and Linux starts every connection on an offset of its own where
//!   the offset hashes the ports too (6.18 and later, seen in the matrix).
//!   Such a reject says the 4-tuple was reused while this host held
//!   TIME_WAIT, never how many hosts share the address.
//! - `established`, `syn_recv`: two segments of one connection (the stored
//!   `ts_recent` came from that connection). A TSval more than [`SLACK`]
//!   ticks behind it is no reordering of one clock: a second clock on one
//!   connection, as when a NAT maps two hosts onto one 4-tuple (or a peer's
//!   clock jumped back).
//! - old pure ACKs (`old_ack`, PAWSOldAck on 6.18+) and segments at most
//!   [`REORDER`] ticks behind are reordering, which the kernel drops
//!   harmlessly: counted apart, never a finding.
//! - `syn_sent`: a SYN-ACK echoing a stamp our own clock never sent: stale.

use tcptrace_common::paws::PawsSite;

/// More than this many ticks behind on one connection is a second clock
/// (about a minute at Linux's 1 kHz).
pub const SLACK: u32 = 1 << 16;
/// At most this many ticks behind (100 ms at 1 kHz) is reordering.
pub const REORDER: u32 = 100;

/// What one reject shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reading {
    /// An old pure ACK, or a segment reordered by at most [`REORDER`] ticks.
    Reordered,
    /// A new connection's SYN older than the TIME_WAIT socket's last stamp.
    TimeWaitReuse,
    /// Older than its connection's last stamp, within one clock's reach.
    Stale,
    /// Further behind its connection's last stamp than one clock explains.
    SecondClock,
}

impl Reading {
    pub fn of(site: PawsSite, tsval: u32, ts_recent: Option<u32>, old_ack: bool) -> Self {
        match site {
            PawsSite::TimeWait => return Self::TimeWaitReuse,
            PawsSite::SynSent => return Self::Stale,
            PawsSite::Established | PawsSite::SynRecv => {}
        }
        if old_ack {
            return Self::Reordered;
        }
        // Unknown stored stamp (syn_recv in the tp_btf fallback): stale.
        let Some(recent) = ts_recent.filter(|&r| r != 0) else {
            return Self::Stale;
        };
        match recent.wrapping_sub(tsval) {
            0..=REORDER => Self::Reordered,
            behind if behind <= SLACK => Self::Stale,
            _ => Self::SecondClock,
        }
    }
}

/// The readings of every reject from one peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerClocks {
    pub reordered: u64,
    pub time_wait: u64,
    pub stale: u64,
    pub second_clock: u64,
}

impl PeerClocks {
    pub fn observe(
        &mut self,
        site: PawsSite,
        tsval: u32,
        ts_recent: Option<u32>,
        old_ack: bool,
    ) -> Reading {
        let r = Reading::of(site, tsval, ts_recent, old_ack);
        *match r {
            Reading::Reordered => &mut self.reordered,
            Reading::TimeWaitReuse => &mut self.time_wait,
            Reading::Stale => &mut self.stale,
            Reading::SecondClock => &mut self.second_clock,
        } += 1;
        r
    }

    /// Timestamp clocks the peer's segments prove: 2 when one connection
    /// carried two, 1 when any reject was seen, else 0. A lower bound: one
    /// clock per connection is all a server can tell apart.
    pub fn clocks(&self) -> u64 {
        if self.second_clock > 0 {
            2
        } else {
            u64::from(self.reordered + self.time_wait + self.stale > 0)
        }
    }

    /// Rejects on open connections that are not reordering.
    pub fn on_connections(&self) -> u64 {
        self.stale + self.second_clock
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings() {
        use PawsSite::*;
        let r = Reading::of;
        assert_eq!(
            r(TimeWait, 100_000, Some(1_500_000_020), false),
            Reading::TimeWaitReuse
        );
        assert_eq!(r(SynSent, 1, Some(5), false), Reading::Stale);
        // The 7.2 VM's healthy loopback run: old pure ACKs 4 ticks behind.
        assert_eq!(r(Established, 996, Some(1000), true), Reading::Reordered);
        assert_eq!(r(Established, 996, Some(1000), false), Reading::Reordered);
        assert_eq!(
            r(Established, 999_000, Some(1_000_010), false),
            Reading::Stale
        );
        assert_eq!(
            r(SynRecv, 1_999_000, Some(2_000_000), false),
            Reading::Stale
        );
        assert_eq!(r(SynRecv, 5, None, false), Reading::Stale);
        // Another host's clock on the same 4-tuple.
        assert_eq!(
            r(Established, 100_000, Some(1_500_000_000), false),
            Reading::SecondClock
        );
        // Wrapped: 10 ticks behind across 2^32.
        assert_eq!(
            r(Established, u32::MAX - 4, Some(5), false),
            Reading::Reordered
        );
    }

    #[test]
    fn clocks_are_proven_by_one_connection() {
        let mut p = PeerClocks::default();
        assert_eq!(p.clocks(), 0);
        // TIME_WAIT rejects with unrelated stamps: one client reusing a
        // 4-tuple, not several hosts.
        for v in [100_000, 3_000_000_000, 42] {
            p.observe(PawsSite::TimeWait, v, Some(1_500_000_020), false);
        }
        assert_eq!(p.clocks(), 1);
        p.observe(PawsSite::Established, 100_000, Some(1_500_000_000), false);
        assert_eq!(p.clocks(), 2);
        assert_eq!((p.time_wait, p.second_clock, p.on_connections()), (3, 1, 1));
    }
}
