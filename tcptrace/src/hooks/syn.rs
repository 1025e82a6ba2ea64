//! SYN family: unanswered SYNs at a listener, accept-queue overflows on the
//! third ACK, SYN-ACK retransmits, and the owners of listening sockets.

use tcptrace_common::{maps::kfree_skb_families, programs};

use super::{FnTarget, HookSpec, TpTarget};
use crate::btf::KernelBtf;

/// Every hook of the family, as named in `tcptrace check`.
pub const HOOKS: [&str; 4] = [
    "syn_drop",
    "listen_overflow",
    "synack_retrans",
    "listen_owner",
];

fn target(function: &'static str, progs: (&'static str, &'static str), ret: bool) -> FnTarget {
    FnTarget {
        function,
        fentry: progs.0,
        kprobe: progs.1,
        ret,
        optional: false,
    }
}

fn syn_drop() -> HookSpec {
    let optional = |mut t: FnTarget| {
        t.optional = true;
        t
    };
    HookSpec {
        name: "syn_drop",
        about: "SYNs a listener left unanswered: cause, queues, listener",
        tracepoints: Vec::new(),
        // The answer hook first: a SYN must never be seen without it. The
        // IPv6 pair is optional (IPv6 may be off); an IPv4 SYN to a
        // dual-stack listener passes through both and counts once.
        functions: vec![
            target(
                "tcp_make_synack",
                (programs::MAKE_SYNACK_FENTRY, programs::MAKE_SYNACK_KPROBE),
                false,
            ),
            target(
                "tcp_v4_conn_request",
                (
                    programs::CONN_REQUEST4_FENTRY,
                    programs::CONN_REQUEST_KPROBE,
                ),
                false,
            ),
            target(
                "tcp_v4_conn_request",
                (
                    programs::CONN_REQUEST4_FEXIT,
                    programs::CONN_REQUEST_KRETPROBE,
                ),
                true,
            ),
            optional(target(
                "tcp_v6_conn_request",
                (
                    programs::CONN_REQUEST6_FENTRY,
                    programs::CONN_REQUEST_KPROBE,
                ),
                false,
            )),
            optional(target(
                "tcp_v6_conn_request",
                (
                    programs::CONN_REQUEST6_FEXIT,
                    programs::CONN_REQUEST_KRETPROBE,
                ),
                true,
            )),
        ],
        ..HookSpec::default()
    }
}

fn listen_overflow(btf: &KernelBtf) -> HookSpec {
    let mut v6_enter = target(
        "tcp_v6_syn_recv_sock",
        (
            programs::SYN_RECV_SOCK6_FENTRY,
            programs::SYN_RECV_SOCK_KPROBE,
        ),
        false,
    );
    let mut v6_exit = target(
        "tcp_v6_syn_recv_sock",
        (
            programs::SYN_RECV_SOCK6_FEXIT,
            programs::SYN_RECV_SOCK_KRETPROBE,
        ),
        true,
    );
    v6_enter.optional = true;
    v6_exit.optional = true;
    HookSpec {
        name: "listen_overflow",
        about: "accept queue full on the third ACK: reset or ghost connection",
        // skb:kfree_skb carries the verdict as a drop reason on 6.15+.
        tracepoints: if crate::syn::kfree_skb_fallback(btf) {
            // tp_btf kfree_skb(skb, location, reason, rx_sk): the program
            // shared with the PAWS/RST hooks' drop-reason forms.
            vec![TpTarget::typed(
                "skb",
                "kfree_skb",
                programs::KFREE_SKB_LISTEN_OVERFLOW,
                programs::KFREE_SKB_BTF,
                4,
            )
            .serving(kfree_skb_families::LISTEN_OVERFLOW)]
        } else {
            Vec::new()
        },
        functions: vec![
            target(
                "tcp_v4_syn_recv_sock",
                (
                    programs::SYN_RECV_SOCK4_FENTRY,
                    programs::SYN_RECV_SOCK_KPROBE,
                ),
                false,
            ),
            target(
                "tcp_v4_syn_recv_sock",
                (
                    programs::SYN_RECV_SOCK4_FEXIT,
                    programs::SYN_RECV_SOCK_KRETPROBE,
                ),
                true,
            ),
            v6_enter,
            v6_exit,
        ],
        ..HookSpec::default()
    }
}

pub fn specs(btf: &KernelBtf) -> Vec<HookSpec> {
    vec![
        syn_drop(),
        listen_overflow(btf),
        HookSpec {
            name: "synack_retrans",
            about: "SYN-ACK retransmits, linked to an earlier accept-queue overflow",
            tracepoints: vec![TpTarget::typed(
                "tcp",
                "tcp_retransmit_synack",
                programs::RETRANSMIT_SYNACK,
                programs::RETRANSMIT_SYNACK_BTF,
                2,
            )],
            functions: Vec::new(),
            ..HookSpec::default()
        },
        HookSpec {
            name: "listen_owner",
            about: "which process called listen()",
            // Runs per listen() call, never per connection. Like connect(),
            // the syscall tracepoint attaches first and fentry on the
            // function that puts a socket in LISTEN takes over where the
            // kernel allows trampolines (no syscall tracepoint left on every
            // task's syscalls there; io_uring and kernel listeners seen).
            tracepoints: vec![TpTarget::plain(
                "syscalls",
                "sys_enter_listen",
                programs::SYS_ENTER_LISTEN,
            )],
            upgrade: vec![FnTarget {
                function: "inet_csk_listen_start",
                fentry: programs::LISTEN_FENTRY,
                kprobe: "",
                ret: false,
                optional: false,
            }],
            ..HookSpec::default()
        },
    ]
}
