//! When connect() resends its SYN, derived from the kernel's sysctls
//! rather than assumed: the first SYN's timer is the initial RTO (1 s,
//! `TCP_TIMEOUT_INIT`); on kernels with `net.ipv4.tcp_syn_linear_timeouts`
//! (6.x) the timer stays at 1 s until the retransmission count exceeds it,
//! then doubles (tcp_retransmit_timer(): `total_rto > linear`), up to
//! `TCP_RTO_MAX` (120 s); without it every timeout doubles. connect()
//! gives up (ETIMEDOUT) when the timer fires with `tcp_syn_retries` (+
//! `tcp_syn_linear_timeouts` where it exists) retransmissions sent
//! (tcp_write_timeout()). A socket's own TCP_SYNCNT overrides
//! `tcp_syn_retries`; that is not visible here.
//!
//! Measured on 6.18 with the defaults (6 and 4): SYNs resent at 1.01,
//! 2.04, 3.06, 4.08, 5.11, 7.12, 11.19 s, which this schedule gives as 1,
//! 2, 3, 4, 5, 7, 11 s.

use crate::host::Sysctls;

/// The initial retransmission timeout of a SYN (ms).
pub const INITIAL_RTO_MS: u64 = 1_000;
/// `TCP_RTO_MAX` (ms).
pub const RTO_MAX_MS: u64 = 120_000;
/// Linux's default `net.ipv4.tcp_syn_retries`.
pub const DEFAULT_SYN_RETRIES: u64 = 6;

/// Where the numbers of a schedule came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The sysctls of this namespace.
    Netns(u64),
    /// Not read (a saved stream without host snapshots): Linux's default
    /// `tcp_syn_retries` and no linear timeouts (kernels before the sysctl).
    Defaults,
}

/// The SYN retransmission schedule of one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynSchedule {
    pub syn_retries: u64,
    /// `None`: the kernel has no `tcp_syn_linear_timeouts` (or unknown).
    pub linear_timeouts: Option<u64>,
    /// When each retransmitted SYN is sent, counted from the first (ms).
    pub resend_ms: Vec<u64>,
    /// When connect() gives up with ETIMEDOUT, from the first SYN (ms).
    pub give_up_ms: u64,
    pub source: Source,
}

impl SynSchedule {
    /// The schedule for these settings.
    pub fn derive(syn_retries: u64, linear_timeouts: Option<u64>, source: Source) -> Self {
        let linear = linear_timeouts.unwrap_or(0);
        // The sysctls are u8 in the kernel: bound the loop all the same.
        let total = syn_retries.saturating_add(linear).min(512);
        let mut rto = INITIAL_RTO_MS;
        let mut at = 0u64;
        let mut resend_ms = Vec::new();
        for sent in 1..=total {
            at = at.saturating_add(rto);
            resend_ms.push(at);
            if sent > linear {
                rto = (rto * 2).min(RTO_MAX_MS);
            }
        }
        Self {
            syn_retries,
            linear_timeouts,
            resend_ms,
            give_up_ms: at.saturating_add(rto),
            source,
        }
    }

    /// From a namespace's sysctls when they were read, else the defaults.
    pub fn for_netns(netns: u64, sysctls: Option<&Sysctls>) -> Self {
        match sysctls.and_then(|s| s.tcp_syn_retries.map(|r| (r, s.tcp_syn_linear_timeouts))) {
            Some((retries, linear)) => Self::derive(retries, linear, Source::Netns(netns)),
            None => Self::derive(DEFAULT_SYN_RETRIES, None, Source::Defaults),
        }
    }

    /// How many SYN retransmissions a connect() that took `latency_ns`
    /// waited for: the last resend at or before it.
    pub fn resends_before(&self, latency_ns: u64) -> usize {
        let ms = latency_ns / 1_000_000;
        self.resend_ms.iter().take_while(|&&r| r <= ms).count()
    }

    /// "1, 2, 3, 4, 5, 7, 11 s" (at most `n` resends, then "...").
    pub fn resends_text(&self, n: usize) -> String {
        let mut parts: Vec<String> = self
            .resend_ms
            .iter()
            .take(n)
            .map(|&ms| seconds(ms * 1_000_000))
            .collect();
        if self.resend_ms.len() > n {
            parts.push("...".into());
        }
        format!("{} s", parts.join(", "))
    }

    /// The settings behind the schedule, for a sentence.
    pub fn settings_text(&self) -> String {
        let linear = match self.linear_timeouts {
            Some(l) => format!("tcp_syn_linear_timeouts={l}"),
            None => "no tcp_syn_linear_timeouts".into(),
        };
        match self.source {
            Source::Netns(ns) => format!(
                "net.ipv4.tcp_syn_retries={}, {linear} in netns {ns}",
                self.syn_retries
            ),
            Source::Defaults => format!(
                "sysctls unknown: the defaults tcp_syn_retries={}, {linear} (6.x kernels that have tcp_syn_linear_timeouts, default 4, resend at 1 s steps first)",
                self.syn_retries
            ),
        }
    }
}

/// Seconds with what the precision shows: "1", "1.03", "11.19".
pub fn seconds(ns: u64) -> String {
    let cs = (ns + 5_000_000) / 10_000_000;
    if cs.is_multiple_of(100) {
        format!("{}", cs / 100)
    } else {
        format!("{}.{:02}", cs / 100, cs % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_timeouts_then_exponential() {
        // 6.18 defaults: measured 1.01, 2.04, 3.06, 4.08, 5.11, 7.12, 11.19 s.
        let s = SynSchedule::derive(6, Some(4), Source::Netns(7));
        assert_eq!(
            s.resend_ms,
            [1000, 2000, 3000, 4000, 5000, 7000, 11000, 19000, 35000, 67000]
        );
        assert_eq!(s.give_up_ms, 131_000);
        assert_eq!(s.resends_text(7), "1, 2, 3, 4, 5, 7, 11, ... s");
        assert_eq!(s.resends_before(1_030_000_000), 1);
        assert_eq!(s.resends_before(7_120_000_000), 6);
        assert_eq!(s.resends_before(999_000_000), 0);
    }

    #[test]
    fn without_linear_timeouts_every_timeout_doubles() {
        let s = SynSchedule::derive(6, None, Source::Defaults);
        assert_eq!(s.resend_ms, [1000, 3000, 7000, 15000, 31000, 63000]);
        assert_eq!(s.give_up_ms, 127_000);
        let s = SynSchedule::derive(2, Some(0), Source::Defaults);
        assert_eq!(s.resend_ms, [1000, 3000]);
        assert_eq!(s.give_up_ms, 7000);
        // The timer is capped at TCP_RTO_MAX.
        let s = SynSchedule::derive(10, None, Source::Defaults);
        assert_eq!(s.resend_ms[7], 247_000);
        assert_eq!(s.resend_ms[9] - s.resend_ms[8], RTO_MAX_MS);
    }

    #[test]
    fn from_sysctls_or_defaults() {
        let sys = Sysctls {
            tcp_syn_retries: Some(3),
            tcp_syn_linear_timeouts: Some(2),
            ..Sysctls::default()
        };
        let s = SynSchedule::for_netns(9, Some(&sys));
        assert_eq!(s.resend_ms, [1000, 2000, 3000, 5000, 9000]);
        assert_eq!(s.source, Source::Netns(9));
        assert!(s
            .settings_text()
            .contains("tcp_syn_linear_timeouts=2 in netns 9"));
        let d = SynSchedule::for_netns(9, None);
        assert_eq!(d.source, Source::Defaults);
        assert_eq!(d.resend_ms.len(), 6);
    }

    #[test]
    fn seconds_keep_their_precision() {
        assert_eq!(seconds(1_030_000_000), "1.03");
        assert_eq!(seconds(1_000_000_000), "1");
        assert_eq!(seconds(11_194_000_000), "11.19");
        assert_eq!(seconds(999_999_999), "1");
    }
}
