//! Decoding `PawsEvent` and `RstEvent` records: a segment that failed the
//! PAWS check, and an RST received with the kernel's verdict on it.

use tcptrace_common::paws::{
    PawsEvent, PawsSite, RstEvent, RstVerdict, PAWS_OLD_ACK, PAWS_RST, PAWS_TS_RECENT_UNKNOWN,
    RST_BELOW_WINDOW, RST_BEYOND_WINDOW, RST_SEQ_INFERRED, SOCKET_UNREAD,
};

/// A segment that failed the PAWS check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PawsDetail {
    pub site: PawsSite,
    /// TCP state of the socket.
    pub state: u8,
    pub tsval: u32,
    pub tsecr: u32,
    /// `None` where the kernel path does not expose it.
    pub ts_recent: Option<u32>,
    /// An old pure ACK (PAWSOldAck on 6.18+).
    pub old_ack: bool,
    pub rst: bool,
    /// The socket was not read, only the segment: `state` (0) and
    /// `ts_recent` are unknown.
    pub socket_unread: bool,
}

/// An RST received on a synchronized socket and what the kernel did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RstDetail {
    pub verdict: RstVerdict,
    pub state: u8,
    pub seq: u32,
    /// `seq` was not seen and is reported as `rcv_nxt`.
    pub seq_inferred: bool,
    pub rcv_nxt: u32,
    pub rcv_wup: u32,
    pub rcv_wnd: u32,
    /// The socket was not read, only the RST (drop-reason form where
    /// `kfree_skb` does not pass the socket): `state` (0) and the window
    /// fields are unknown.
    pub socket_unread: bool,
    /// Where the window is unknown, the side an ignored RST fell on, from
    /// the kernel's drop reason: -1 below, 1 beyond, 0 not said.
    pub reason_side: i8,
}

impl RstDetail {
    /// How far `seq` lies outside the receive window `[rcv_wup, rcv_wup +
    /// rcv_wnd]`: negative below it, positive above it, 0 inside; None
    /// where the window is not known.
    pub fn window_distance(&self) -> Option<i64> {
        if self.socket_unread {
            return None;
        }
        let below = self.seq.wrapping_sub(self.rcv_wup) as i32;
        if below < 0 {
            return Some(i64::from(below));
        }
        let right = self.rcv_wup.wrapping_add(self.rcv_wnd);
        let above = self.seq.wrapping_sub(right) as i32;
        Some(i64::from(above.max(0)))
    }

    /// The side of the window `seq` fell on: -1 below, 1 beyond, 0 inside;
    /// from the window, else from the drop reason; None where neither
    /// tells.
    pub fn window_side(&self) -> Option<i64> {
        match self.window_distance() {
            Some(d) => Some(d.signum()),
            None => (self.reason_side != 0).then_some(i64::from(self.reason_side)),
        }
    }
}

/// The record's detail; None when its `site` is one this tcptrace does not
/// know (the caller names the field).
pub fn paws(rec: &PawsEvent) -> Option<PawsDetail> {
    Some(PawsDetail {
        site: PawsSite::from_u8(rec.site)?,
        state: rec.state,
        tsval: rec.tsval,
        tsecr: rec.tsecr,
        ts_recent: (rec.flags & PAWS_TS_RECENT_UNKNOWN == 0).then_some(rec.ts_recent),
        old_ack: rec.flags & PAWS_OLD_ACK != 0,
        rst: rec.flags & PAWS_RST != 0,
        socket_unread: rec.flags & SOCKET_UNREAD != 0,
    })
}

/// The record's detail; None when its `verdict` is one this tcptrace does
/// not know (the caller names the field).
pub fn rst(rec: &RstEvent) -> Option<RstDetail> {
    Some(RstDetail {
        verdict: RstVerdict::from_u8(rec.verdict)?,
        state: rec.state,
        seq: rec.seq,
        seq_inferred: rec.flags & RST_SEQ_INFERRED != 0,
        rcv_nxt: rec.rcv_nxt,
        rcv_wup: rec.rcv_wup,
        rcv_wnd: rec.rcv_wnd,
        socket_unread: rec.flags & SOCKET_UNREAD != 0,
        reason_side: if rec.flags & RST_BELOW_WINDOW != 0 {
            -1
        } else if rec.flags & RST_BEYOND_WINDOW != 0 {
            1
        } else {
            0
        },
    })
}

#[cfg(test)]
mod tests {
    use tcptrace_common::paws::RstVerdict;

    use crate::event::{decode, tests::raw_rst, Detail};

    #[test]
    fn window_distance() {
        let d = |seq| {
            let Detail::Rst(r) = decode(&raw_rst(RstVerdict::Ignored, seq)).unwrap().detail else {
                unreachable!()
            };
            r.window_distance().unwrap()
        };
        // Window [900, 1400].
        assert_eq!(d(900), 0);
        assert_eq!(d(1400), 0);
        assert_eq!(d(899), -1);
        assert_eq!(d(1500), 100);
        assert_eq!(d(0u32.wrapping_sub(100)), -1000);
    }

    #[test]
    fn unread_socket_has_a_side_but_no_distance() {
        use tcptrace_common::paws::{RST_BELOW_WINDOW, RST_BEYOND_WINDOW, SOCKET_UNREAD};
        let side = |flags: u8| {
            let raw = crate::event::tests::raw_rst_flags(RstVerdict::Ignored, 5, flags);
            let Detail::Rst(r) = decode(&raw).unwrap().detail else {
                unreachable!()
            };
            (r.window_distance(), r.window_side())
        };
        assert_eq!(side(0), (Some(-895), Some(-1)));
        assert_eq!(side(SOCKET_UNREAD | RST_BELOW_WINDOW), (None, Some(-1)));
        assert_eq!(side(SOCKET_UNREAD | RST_BEYOND_WINDOW), (None, Some(1)));
        assert_eq!(side(SOCKET_UNREAD), (None, None));
    }
}
