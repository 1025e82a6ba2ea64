//! connect(): the syscall tracepoints on every kernel, replaced by
//! fentry/fexit on `inet_stream_connect` where the kernel allows BPF
//! trampolines (no syscall tracepoint on every task's syscalls, no fd walk).
//!
//! The syscall tracepoints stay plain tracepoints: they are not BTF
//! tracepoints, so they have no tp_btf form (the raw `sys_enter`/`sys_exit`
//! tp_btf hooks exist but run for every syscall of every task). Like every
//! plain tracepoint they are skipped while another tracer's BPF program runs
//! on the CPU; fentry, where the kernel allows it, is not.

use tcptrace_common::programs;

use super::{Fallback, FnTarget, HookSpec, TpTarget};
use crate::btf::KernelBtf;

/// The hook's name.
pub const HOOK: &str = "connect";

pub fn spec() -> HookSpec {
    // fentry only: a kretprobe costs more than the syscall tracepoints.
    let function = |fentry, ret| FnTarget {
        function: "inet_stream_connect",
        fentry,
        kprobe: "",
        ret,
        optional: false,
    };
    HookSpec {
        name: HOOK,
        about: "connect() on TCP sockets: latency and errno",
        tracepoints: vec![
            TpTarget::plain("syscalls", "sys_enter_connect", programs::SYS_ENTER_CONNECT),
            TpTarget::plain("syscalls", "sys_exit_connect", programs::SYS_EXIT_CONNECT),
        ],
        upgrade: vec![
            function(programs::CONNECT_FENTRY, false),
            function(programs::CONNECT_FEXIT, true),
        ],
        ..HookSpec::default()
    }
}

/// Why the state-change form of `handshake` stays off unless asked for.
const STATE_CHANGES_OFF: &str = "off: the state-change form \
    (sock:inet_sock_set_state) runs on every TCP state change of every socket, \
    about 10 programs per connection; --handshake-state-changes turns it on";

/// Active opens' handshakes, blocking or not. Where fentry or kprobes
/// attach, by function: the start at `tcp_connect`, success at
/// `tcp_finish_connect`, failures at `sk_error_report` (6.1+; on a kernel
/// without it, as 5.10, at `tcp_done`, which runs once more per end of
/// every connection), the application giving up at
/// `tcp_close`/`tcp_disconnect`; 4 runs per loopback connection (the start,
/// the success, a close per end), 6 with `tcp_done`. Elsewhere (no function
/// mechanism, or `--attach tracepoint`) only with `state_changes`
/// (`--handshake-state-changes`): `sock:inet_sock_set_state`, tp_btf where
/// the kernel has its BTF, else the plain tracepoint. It runs on every TCP
/// state change (about five per connection and side); all but CLOSE ->
/// SYN_SENT and SYN_SENT -> its end return after comparing two arguments.
pub fn handshake_spec(btf: &KernelBtf, state_changes: bool) -> HookSpec {
    let entry = |function, fentry, kprobe| FnTarget {
        function,
        fentry,
        kprobe,
        ret: false,
        optional: false,
    };
    // Both are `void f(struct sock *sk)`, called with the error set and the
    // socket still in SYN_SENT (or, from 6.10, already CLOSE).
    let error = if btf.func_params("sk_error_report").is_some() {
        "sk_error_report"
    } else {
        "tcp_done"
    };
    let fallback = if state_changes {
        Fallback::Tracepoints {
            tp_btf: Vec::new(),
            tracepoints: vec![TpTarget::typed(
                "sock",
                "inet_sock_set_state",
                programs::HANDSHAKE_STATE,
                programs::HANDSHAKE_STATE_BTF,
                3,
            )],
            functions: Vec::new(),
        }
    } else {
        Fallback::Unavailable(STATE_CHANGES_OFF.to_owned())
    };
    HookSpec {
        name: "handshake",
        about: "active opens: SYN sent -> established, reset, timed out or closed; SYN retransmits",
        functions: vec![
            entry(
                "tcp_connect",
                programs::HANDSHAKE_CONNECT_FENTRY,
                programs::HANDSHAKE_CONNECT_KPROBE,
            ),
            entry(
                "tcp_finish_connect",
                programs::HANDSHAKE_FINISH_FENTRY,
                programs::HANDSHAKE_FINISH_KPROBE,
            ),
            entry(
                error,
                programs::HANDSHAKE_ERROR_FENTRY,
                programs::HANDSHAKE_ERROR_KPROBE,
            ),
            entry(
                "tcp_close",
                programs::HANDSHAKE_CLOSE_FENTRY,
                programs::HANDSHAKE_CLOSE_KPROBE,
            ),
            entry(
                "tcp_disconnect",
                programs::HANDSHAKE_DISCONNECT_FENTRY,
                programs::HANDSHAKE_DISCONNECT_KPROBE,
            ),
        ],
        fallback,
        ..HookSpec::default()
    }
}

/// The time of each SYN retransmission of those handshakes:
/// `tcp:tcp_retransmit_skb`, tp_btf where the kernel has its BTF, else the
/// plain tracepoint. It runs only on a retransmitted segment (none on a
/// healthy connection), and returns after one map lookup unless the socket
/// is in SYN_SENT. A hook of its own: where it cannot attach, handshakes
/// are still reported, with their retransmissions counted but not timed.
pub fn handshake_rtx_spec() -> HookSpec {
    HookSpec {
        name: "handshake_rtx",
        about: "the time of each SYN retransmission of an active open (in handshake events)",
        tracepoints: vec![TpTarget::typed(
            "tcp",
            "tcp_retransmit_skb",
            programs::HANDSHAKE_RTX,
            programs::HANDSHAKE_RTX_BTF,
            1,
        )],
        ..HookSpec::default()
    }
}
