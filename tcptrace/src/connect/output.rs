//! How connect and port_search events read: the LATENCY and RESULT columns
//! of the live view and their JSON fields. They carry no packet.

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
        Columns {
            latency_ns: Some(self.handshake_ns),
            result: format!("{result} syn_rtx={}", self.syn_retransmits),
            failed: self.outcome != HandshakeOutcome::Established,
        }
    }

    fn json(&self, _ev: &Event, v: &mut EventJson<'_>) {
        v.handshake_ns = Some(self.handshake_ns);
        v.syn_retransmits = Some(self.syn_retransmits);
        v.outcome = Some(self.outcome.into());
        v.errno = Some(self.errno);
        v.error = Some(ErrorName::Of(self.errno));
    }
}
