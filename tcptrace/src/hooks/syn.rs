//! SYN family: unanswered SYNs at a listener (IPv4 and IPv6 hooks apart, so
//! each pair of conn_request and send_synack attaches together or not at
//! all), accept-queue overflows on the third ACK, SYN-ACK retransmits, and
//! the owners of listening sockets.

use super::{FnTarget, HookSpec, TpTarget};
use crate::btf::KernelBtf;

/// Every hook of the family, as named in `tcptrace check`.
pub const HOOKS: [&str; 5] = [
    "syn_drop",
    "syn_drop6",
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

fn syn_drop(family: u8) -> HookSpec {
    let (name, about, conn, synack, conn_progs, conn_ret_progs, synack_progs) = if family == 4 {
        (
            "syn_drop",
            "IPv4 SYNs a listener left unanswered: cause, queues, listener",
            "tcp_v4_conn_request",
            "tcp_v4_send_synack",
            ("conn_request4_fentry", "conn_request4_kprobe"),
            ("conn_request4_fexit", "conn_request4_kretprobe"),
            ("send_synack4_fentry", "send_synack4_kprobe"),
        )
    } else {
        (
            "syn_drop6",
            "IPv6 SYNs a listener left unanswered: cause, queues, listener",
            "tcp_v6_conn_request",
            "tcp_v6_send_synack",
            ("conn_request6_fentry", "conn_request6_kprobe"),
            ("conn_request6_fexit", "conn_request6_kretprobe"),
            ("send_synack6_fentry", "send_synack6_kprobe"),
        )
    };
    HookSpec {
        name,
        about,
        tracepoints: Vec::new(),
        // The answer hook first: a SYN must never be seen without it.
        functions: vec![
            target(synack, synack_progs, false),
            target(conn, conn_progs, false),
            target(conn, conn_ret_progs, true),
        ],
    }
}

fn listen_overflow(btf: &KernelBtf) -> HookSpec {
    let mut v6_enter = target(
        "tcp_v6_syn_recv_sock",
        ("syn_recv_sock6_fentry", "syn_recv_sock_kprobe"),
        false,
    );
    let mut v6_exit = target(
        "tcp_v6_syn_recv_sock",
        ("syn_recv_sock6_fexit", "syn_recv_sock_kretprobe"),
        true,
    );
    v6_enter.optional = true;
    v6_exit.optional = true;
    HookSpec {
        name: "listen_overflow",
        about: "accept queue full on the third ACK: reset or ghost connection",
        // skb:kfree_skb carries the verdict as a drop reason on 6.15+.
        tracepoints: if crate::syn::kfree_skb_fallback(btf) {
            vec![TpTarget {
                category: "skb",
                name: "kfree_skb",
                program: "kfree_skb_listen_overflow",
            }]
        } else {
            Vec::new()
        },
        functions: vec![
            target(
                "tcp_v4_syn_recv_sock",
                ("syn_recv_sock4_fentry", "syn_recv_sock_kprobe"),
                false,
            ),
            target(
                "tcp_v4_syn_recv_sock",
                ("syn_recv_sock4_fexit", "syn_recv_sock_kretprobe"),
                true,
            ),
            v6_enter,
            v6_exit,
        ],
    }
}

pub fn specs(btf: &KernelBtf) -> Vec<HookSpec> {
    vec![
        syn_drop(4),
        syn_drop(6),
        listen_overflow(btf),
        HookSpec {
            name: "synack_retrans",
            about: "SYN-ACK retransmits, linked to an earlier accept-queue overflow",
            tracepoints: vec![TpTarget {
                category: "tcp",
                name: "tcp_retransmit_synack",
                program: "retransmit_synack",
            }],
            functions: Vec::new(),
        },
        HookSpec {
            name: "listen_owner",
            about: "which process called listen(); ends ghost links on ESTABLISHED",
            tracepoints: vec![TpTarget {
                category: "sock",
                name: "inet_sock_set_state",
                program: "sock_set_state",
            }],
            functions: Vec::new(),
        },
    ]
}
