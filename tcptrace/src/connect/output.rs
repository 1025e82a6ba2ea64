//! How connect and port_search events read: the LATENCY and RESULT columns
//! of the live view and their JSON fields. They carry no packet.

use std::borrow::Cow;

use tcptrace_common::HandshakeOutcome;

use super::decode::{ConnectDetail, HandshakeDetail, PortSearchDetail};
use crate::event::{
    errno_name,
    json::{ErrorName, EventJson},
    Columns, Event, Family,
};

/// A failed call, except the EINPROGRESS of a non-blocking connect().
fn failed(errno: i32) -> bool {
    errno != 0 && errno != libc::EINPROGRESS
}

impl Family for ConnectDetail {
    fn errno(&self) -> i32 {
        self.errno
    }

    fn text(&self, _ev: &Event) -> Columns {
        Columns {
            latency_ns: Some(self.latency_ns),
            result: errno_name(self.errno),
            failed: failed(self.errno),
        }
    }

    fn json(&self, _ev: &Event, v: &mut EventJson<'_>) {
        v.latency_ns = Some(self.latency_ns);
        v.errno = Some(self.errno);
        v.error = Some(ErrorName::Of(self.errno));
    }
}

impl Family for PortSearchDetail {
    fn errno(&self) -> i32 {
        self.errno
    }

    fn text(&self, _ev: &Event) -> Columns {
        Columns {
            latency_ns: Some(self.latency_ns),
            result: format!("{} probed={}", errno_name(self.errno), self.ports_probed),
            failed: failed(self.errno),
        }
    }

    fn json(&self, _ev: &Event, v: &mut EventJson<'_>) {
        v.latency_ns = Some(self.latency_ns);
        v.errno = Some(self.errno);
        v.error = Some(ErrorName::Of(self.errno));
        v.ports_probed = Some(self.ports_probed);
    }
}

impl Family for HandshakeDetail {
    fn errno(&self) -> i32 {
        self.errno
    }

    fn text(&self, _ev: &Event) -> Columns {
        let mut result = self.outcome.name().to_owned();
        if self.errno != 0 {
            result = format!("{result} {}", errno_name(self.errno));
        }
        result = format!("{result} syn_rtx={}", self.syn_retransmits);
        let times = self.syn_retransmit_us();
        if !times.is_empty() {
            // `syn_rtx=2 at 1.003s,3.011s`; `,...` for those not timed.
            let at: Vec<String> = times
                .iter()
                .map(|&us| format!("{:.3}s", f64::from(us) / 1e6))
                .collect();
            let more = if self.syn_retransmits as usize > times.len() {
                ",..."
            } else {
                ""
            };
            result = format!("{result} at {}{more}", at.join(","));
        }
        Columns {
            latency_ns: Some(self.handshake_ns),
            result,
            failed: self.outcome != HandshakeOutcome::Established,
        }
    }

    fn json<'a>(&'a self, _ev: &'a Event, v: &mut EventJson<'a>) {
        v.handshake_ns = Some(self.handshake_ns);
        v.syn_retransmits = Some(self.syn_retransmits);
        let times = self.syn_retransmit_us();
        v.syn_retransmit_us = (!times.is_empty()).then_some(Cow::Borrowed(times));
        v.outcome = Some(self.outcome.into());
        v.errno = Some(self.errno);
        v.error = Some(ErrorName::Of(self.errno));
    }
}
