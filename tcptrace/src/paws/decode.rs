//! Decoding `PawsEvent` and `RstEvent` records: a segment that failed the
//! PAWS check, and an RST received with the kernel's verdict on it.

use tcptrace_common::paws::{
    PawsEvent, PawsSite, RstEvent, RstVerdict, PAWS_OLD_ACK, PAWS_RST, PAWS_TS_RECENT_UNKNOWN,
    RST_SEQ_INFERRED,
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
}

impl RstDetail {
    /// How far `seq` lies outside the receive window `[rcv_wup, rcv_wup +
    /// rcv_wnd]`: negative below it, positive above it, 0 inside.
    pub fn window_distance(&self) -> i64 {
        let below = self.seq.wrapping_sub(self.rcv_wup) as i32;
        if below < 0 {
            return i64::from(below);
        }
        let right = self.rcv_wup.wrapping_add(self.rcv_wnd);
        let above = self.seq.wrapping_sub(right) as i32;
        i64::from(above.max(0))
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
            r.window_distance()
        };
        // Window [900, 1400].
        assert_eq!(d(900), 0);
        assert_eq!(d(1400), 0);
        assert_eq!(d(899), -1);
        assert_eq!(d(1500), 100);
        assert_eq!(d(0u32.wrapping_sub(100)), -1000);
    }
}
