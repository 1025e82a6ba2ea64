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
            return Fallback::Unavailable(
                "tracepoint fallback: kfree_skb has no receiving socket (rx_sk, Linux 6.11+)"
                    .into(),
            );
        }
        if let Some(missing) = reasons.iter().find(|r| !self.has(r)) {
            return Fallback::Unavailable(format!(
                "tracepoint fallback: no drop reason {missing} in this kernel"
            ));
        }
        if let Err(why) = extra {
            return Fallback::Unavailable(format!("tracepoint fallback: {why}"));
        }
        Fallback::Tracepoints {
            tp_btf: vec![BtfTpTarget {
                name: "kfree_skb",
                program: programs::KFREE_SKB_BTF,
                family,
            }],
            tracepoints,
            functions: Vec::new(),
        }
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
    let unavailable = paws::kernel_offsets(btf)
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
            fallback: reasons
                .fallback(
                    &["TCP_RFC7323_PAWS", "TCP_RESET", "TCP_OLD_SEQUENCE"],
                    Ok(()),
                    kfree_skb_families::VALIDATE,
                    vec![receive_reset(
                        programs::RECEIVE_RESET_EMIT,
                        programs::RECEIVE_RESET_EMIT_BTF,
                    )],
                )
                .preferring(accepted_rsts(btf)),
            // The drop-reason form runs only on drops and resets; the
            // function hooks run for every slow-path segment. With
            // `tcp_reset` hooked it reports the same fields; through the
            // tracepoint alone, an accepted RST has no segment.
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
