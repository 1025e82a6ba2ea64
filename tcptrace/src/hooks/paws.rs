//! PAWS rejects at every site, verdicts on received RSTs, RSTs sent.
//!
//! Function hooks (fentry, else kprobe) are the primary path; where the
//! kernel names drop reasons and the receiving socket (kfree_skb's `rx_sk`,
//! 6.11+), tp_btf on `kfree_skb` is the fallback, and `auto`'s first choice
//! for the sites whose functions run on every segment of a kind
//! (`fallback_first`). Which fallback a kernel supports is read from its
//! BTF, never from its version number.

use tcptrace_common::{maps::kfree_skb_families, programs};

use super::{BtfTpTarget, Fallback, FnTarget, HookSpec, TpTarget};
use crate::{btf::KernelBtf, paws};

fn entry(function: &'static str, fentry: &'static str, kprobe: &'static str) -> FnTarget {
    FnTarget {
        function,
        fentry,
        kprobe,
        ret: false,
        optional: false,
    }
}

/// What the drop-reason fallback can rely on here.
struct Reasons {
    /// kfree_skb passes the receiving socket (6.11+).
    rx_sk: bool,
    names: Vec<(String, u64)>,
}

impl Reasons {
    fn has(&self, name: &str) -> bool {
        self.names.iter().any(|(n, _)| n == name)
    }

    /// A kfree_skb fallback needing `reasons` (all present) and `extra`
    /// (a kernel fact with the reason it is missing).
    fn fallback(
        &self,
        reasons: &[&str],
        extra: Result<(), &str>,
        family: u32,
        tracepoints: Vec<TpTarget>,
    ) -> Fallback {
        if !self.rx_sk {
            return Fallback::Unavailable(NO_RX_SK.into());
        }
        if let Some(unavailable) = self.missing(reasons) {
            return unavailable;
        }
        if let Err(why) = extra {
            return Fallback::Unavailable(format!("tracepoint fallback: {why}"));
        }
        kfree_skb(programs::KFREE_SKB_BTF, family, tracepoints)
    }

    /// The fallback is unavailable unless this kernel has every reason.
    fn missing(&self, reasons: &[&str]) -> Option<Fallback> {
        let missing = reasons.iter().find(|r| !self.has(r))?;
        Some(Fallback::Unavailable(format!(
            "tracepoint fallback: no drop reason {missing} in this kernel"
        )))
    }

    /// `validate_incoming`'s drop-reason form, with `tcp_reset` standing in
    /// for its tracepoint where it attaches: by the receiving socket where
    /// `kfree_skb` passes it (6.11+); else (6.0-6.10) from the segment, its
    /// drops told apart by call site, which needs `tcp_validate_incoming`'s
    /// address (`located`), and two functions naming the socket of PAWS
    /// drops and challenged RSTs where they attach.
    fn validate(&self, btf: &KernelBtf, located: bool) -> Fallback {
        let tracepoints = vec![receive_reset(
            programs::RECEIVE_RESET_EMIT,
            programs::RECEIVE_RESET_EMIT_BTF,
        )];
        let mut functions = accepted_rsts(btf);
        if self.rx_sk {
            return self
                .fallback(
                    &["TCP_RFC7323_PAWS", "TCP_RESET", "TCP_OLD_SEQUENCE"],
                    Ok(()),
                    kfree_skb_families::VALIDATE,
                    tracepoints,
                )
                .preferring(functions);
        }
        let reasons = ["TCP_RFC7323_PAWS", "TCP_RESET", "TCP_INVALID_SEQUENCE"];
        if let Some(unavailable) = self.missing(&reasons) {
            return unavailable;
        }
        if !located {
            return Fallback::Unavailable(format!(
                "{NO_RX_SK}, and tcp_validate_incoming's address is not in /proc/kallsyms"
            ));
        }
        for (function, fentry, kprobe) in [
            (
                "tcp_oow_rate_limited",
                programs::SEG_OOW_FENTRY,
                programs::SEG_OOW_KPROBE,
            ),
            (
                "tcp_send_challenge_ack",
                programs::SEG_CHALLENGE_FENTRY,
                programs::SEG_CHALLENGE_KPROBE,
            ),
        ] {
            functions.push(FnTarget {
                optional: true,
                ..entry(function, fentry, kprobe)
            });
        }
        kfree_skb(programs::KFREE_SKB_SEGMENT, 0, tracepoints).preferring(functions)
    }
}

const NO_RX_SK: &str =
    "tracepoint fallback: kfree_skb has no receiving socket (rx_sk, Linux 6.11+)";

/// A fallback on tp_btf `kfree_skb` (`family` 0: a program of its own, not
/// the shared one) with `tracepoints` beside it.
fn kfree_skb(program: &'static str, family: u32, tracepoints: Vec<TpTarget>) -> Fallback {
    Fallback::Tracepoints {
        tp_btf: vec![BtfTpTarget {
            name: "kfree_skb",
            program,
            family,
        }],
        tracepoints,
        functions: Vec::new(),
    }
}

/// tcp:tcp_receive_reset, tp_btf tcp_receive_reset(struct sock *sk) where
/// the kernel has it.
fn receive_reset(program: &'static str, typed: &'static str) -> TpTarget {
    TpTarget::typed("tcp", "tcp_receive_reset", program, typed, 1)
}

/// tcp:tcp_send_reset, and the tp_btf program matching this kernel's
/// signature: (sk, skb) before 6.10, (sk, skb, reason) since.
fn send_reset(btf: &KernelBtf) -> TpTarget {
    let (typed, args) = if btf
        .tracepoint_args("tcp_send_reset")
        .is_some_and(|n| n >= 3)
    {
        (programs::SEND_RESET_REASON_BTF, 3)
    } else {
        (programs::SEND_RESET_COUNT_BTF, 2)
    };
    TpTarget::typed(
        "tcp",
        "tcp_send_reset",
        programs::SEND_RESET_COUNT,
        typed,
        args,
    )
}

/// `tcp_reset(sk, skb)`, where it takes the segment (5.12+): accepted RSTs
/// with their segment, in the drop-reason form.
fn accepted_rsts(btf: &KernelBtf) -> Vec<FnTarget> {
    if btf.func_params("tcp_reset").is_some_and(|n| n >= 2) {
        vec![entry(
            "tcp_reset",
            programs::RESET_FENTRY,
            programs::RESET_KPROBE,
        )]
    } else {
        Vec::new()
    }
}

pub fn specs(btf: &KernelBtf) -> Vec<HookSpec> {
    let offsets = paws::kernel_offsets(btf);
    let located = offsets.as_ref().is_ok_and(|o| o.validate_text[1] != 0);
    let unavailable = offsets
        .err()
        .map(|e| format!("cannot resolve what the PAWS/RST programs read: {e:#}"));
    let reasons = Reasons {
        rx_sk: btf.tracepoint_args("kfree_skb").is_some_and(|n| n >= 4),
        names: paws::drop_reasons(btf),
    };
    let mut specs = vec![
        HookSpec {
            name: "validate_incoming",
            about: "PAWS rejects on synchronized sockets; RSTs accepted, challenged or ignored",
            functions: vec![
                entry(
                    "tcp_validate_incoming",
                    programs::VALIDATE_FENTRY,
                    programs::VALIDATE_KPROBE,
                ),
                FnTarget {
                    ret: true,
                    ..entry(
                        "tcp_validate_incoming",
                        programs::VALIDATE_FEXIT,
                        programs::VALIDATE_KRETPROBE,
                    )
                },
                entry(
                    "tcp_send_challenge_ack",
                    programs::CHALLENGE_ACK_FENTRY,
                    programs::CHALLENGE_ACK_KPROBE,
                ),
            ],
            companions: vec![receive_reset(
                programs::RECEIVE_RESET_MARK,
                programs::RECEIVE_RESET_MARK_BTF,
            )],
            fallback: reasons.validate(btf, located),
            // The drop-reason form runs only on drops and resets; the
            // function hooks run for every slow-path segment. With
            // `tcp_reset` hooked it reports the same fields, except an
            // ignored RST's state and window where kfree_skb does not pass
            // the socket (`--attach fentry` or `kprobe` reads them); through
            // the tracepoint alone, an accepted RST has no segment.
            fallback_first: true,
            ..HookSpec::default()
        },
        HookSpec {
            name: "paws_time_wait",
            about: "PAWS rejects by TIME_WAIT sockets (clients behind NAT reusing a 4-tuple)",
            functions: vec![entry(
                "tcp_timewait_state_process",
                programs::TIMEWAIT_FENTRY,
                programs::TIMEWAIT_KPROBE,
            )],
            fallback: reasons.fallback(
                &["TCP_RFC7323_TW_PAWS"],
                Ok(()),
                kfree_skb_families::TIME_WAIT,
                Vec::new(),
            ),
            // Same fields as the fentry form, and runs only on the drop
            // (the function runs for every segment to a TIME_WAIT socket).
            fallback_first: true,
            ..HookSpec::default()
        },
        HookSpec {
            name: "paws_syn_recv",
            about: "PAWS rejects of the handshake's third segment (request sockets)",
            functions: vec![entry(
                "tcp_check_req",
                programs::CHECK_REQ_FENTRY,
                programs::CHECK_REQ_KPROBE,
            )],
            fallback: reasons.fallback(
                &["TCP_RFC7323_PAWS"],
                if btf.func_params("tcp_check_req").is_some_and(|n| n >= 6) {
                    Ok(())
                } else {
                    Err("tcp_check_req sets no drop reason before 6.15")
                },
                kfree_skb_families::SYN_RECV,
                Vec::new(),
            ),
            ..HookSpec::default()
        },
        HookSpec {
            name: "paws_syn_sent",
            about: "PAWS rejects of SYN-ACKs echoing a timestamp our SYN did not send",
            functions: vec![entry(
                "tcp_rcv_state_process",
                programs::SYN_SENT_FENTRY,
                programs::SYN_SENT_KPROBE,
            )],
            fallback: reasons.fallback(
                &["TCP_RFC7323_PAWS"],
                if btf.func_returns_enum("tcp_rcv_state_process") {
                    Ok(())
                } else {
                    Err("SYN-SENT drops carry no reason before 6.12")
                },
                kfree_skb_families::SYN_SENT,
                Vec::new(),
            ),
            // Same fields as the fentry form, and runs only on the drop
            // (tcp_rcv_state_process runs for every segment of every socket
            // not ESTABLISHED: handshakes, closes, listeners).
            fallback_first: true,
            ..HookSpec::default()
        },
        HookSpec {
            name: "rst_sent",
            about: "RSTs this host sends, by reason (6.10+)",
            tracepoints: vec![send_reset(btf)],
            ..HookSpec::default()
        },
    ];
    for spec in &mut specs {
        spec.unavailable = unavailable.clone();
    }
    specs
}
