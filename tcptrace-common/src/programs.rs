//! Names of the kernel programs, shared by both sides of the contract.
//!
//! The aya-ebpf macros name a program after its function, so the kernel side
//! spells these names as function names; userspace names programs only
//! through these constants. A unit test in the product crate opens the
//! embedded object and checks that it holds exactly [`ALL`], each program
//! with its [`Kind`], and that the attach table names only these, each in a
//! slot of its kind.
//!
//! Tracepoint programs on BTF tracepoints have a tp_btf twin (`*_BTF`): the
//! same record from the tracepoint's typed arguments, attached where the
//! kernel has its BTF.

/// How a program attaches: the ELF section aya loads it from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Tracepoint,
    /// BTF-typed tracepoint (`tp_btf`).
    TpBtf,
    FEntry,
    FExit,
    KProbe,
    KRetProbe,
}

// ---- connect -----------------------------------------------------------------

/// `syscalls:sys_enter_connect` / `sys_exit_connect`: no tp_btf form
/// (syscall tracepoints are not BTF tracepoints).
pub const SYS_ENTER_CONNECT: &str = "sys_enter_connect";
/// `sock:inet_sock_set_state` and its tp_btf twin: active opens' handshakes
/// where no function hook attaches, when asked for.
pub const HANDSHAKE_STATE: &str = "handshake_state";
pub const HANDSHAKE_STATE_BTF: &str = "handshake_state_btf";
/// Active opens' handshakes by function, where fentry or kprobes attach:
/// the start (`tcp_connect`), success (`tcp_finish_connect`), failures
/// (`sk_error_report`, or `tcp_done` where the kernel lacks it) and the
/// application giving up (`tcp_close`,
/// `tcp_disconnect`).
pub const HANDSHAKE_CONNECT_FENTRY: &str = "handshake_connect_fentry";
pub const HANDSHAKE_CONNECT_KPROBE: &str = "handshake_connect_kprobe";
pub const HANDSHAKE_FINISH_FENTRY: &str = "handshake_finish_fentry";
pub const HANDSHAKE_FINISH_KPROBE: &str = "handshake_finish_kprobe";
pub const HANDSHAKE_ERROR_FENTRY: &str = "handshake_error_fentry";
pub const HANDSHAKE_ERROR_KPROBE: &str = "handshake_error_kprobe";
pub const HANDSHAKE_CLOSE_FENTRY: &str = "handshake_close_fentry";
pub const HANDSHAKE_CLOSE_KPROBE: &str = "handshake_close_kprobe";
pub const HANDSHAKE_DISCONNECT_FENTRY: &str = "handshake_disconnect_fentry";
pub const HANDSHAKE_DISCONNECT_KPROBE: &str = "handshake_disconnect_kprobe";
/// `tcp:tcp_retransmit_skb` and its tp_btf twin: the time of each SYN
/// retransmission of a handshake in flight.
pub const HANDSHAKE_RTX: &str = "handshake_rtx";
pub const HANDSHAKE_RTX_BTF: &str = "handshake_rtx_btf";
pub const SYS_EXIT_CONNECT: &str = "sys_exit_connect";
/// `inet_stream_connect`, where the kernel allows BPF trampolines.
pub const CONNECT_FENTRY: &str = "connect_fentry";
pub const CONNECT_FEXIT: &str = "connect_fexit";

// ---- fexit return values on kernels before 5.11 ----------------------------------

/// The thread-hash object (kernels without task storage, before 5.11, so
/// also without `bpf_get_func_ret`, 5.17+) reads an fexit program's return
/// value from the trampoline's context, in the slot after the arguments:
/// the function's parameter count on those kernels (5.10's), fixed at
/// build time because the verifier takes context reads at constant offsets
/// only. Userspace loads such a program only where the kernel's BTF gives
/// the function exactly that many parameters ([`FEXIT_RET_SLOTS`]).
pub const RET_SLOT_INET_STREAM_CONNECT: usize = 4;
pub const RET_SLOT_INET_HASH_CONNECT: usize = 4;
pub const RET_SLOT_SYN_RECV_SOCK: usize = 6;
pub const RET_SLOT_VALIDATE_INCOMING: usize = 4;

/// (fexit program, function, return slot) of every fexit program that reads
/// its function's return value.
pub const FEXIT_RET_SLOTS: [(&str, &str, usize); 5] = [
    (
        CONNECT_FEXIT,
        "inet_stream_connect",
        RET_SLOT_INET_STREAM_CONNECT,
    ),
    (
        HASH_CONNECT_FEXIT,
        "__inet_hash_connect",
        RET_SLOT_INET_HASH_CONNECT,
    ),
    (
        SYN_RECV_SOCK4_FEXIT,
        "tcp_v4_syn_recv_sock",
        RET_SLOT_SYN_RECV_SOCK,
    ),
    (
        SYN_RECV_SOCK6_FEXIT,
        "tcp_v6_syn_recv_sock",
        RET_SLOT_SYN_RECV_SOCK,
    ),
    (
        VALIDATE_FEXIT,
        "tcp_validate_incoming",
        RET_SLOT_VALIDATE_INCOMING,
    ),
];

// ---- port search -------------------------------------------------------------

/// `__inet_hash_connect`.
pub const HASH_CONNECT_FENTRY: &str = "hash_connect_fentry";
pub const HASH_CONNECT_FEXIT: &str = "hash_connect_fexit";
pub const HASH_CONNECT_KPROBE: &str = "hash_connect_kprobe";
pub const HASH_CONNECT_KRETPROBE: &str = "hash_connect_kretprobe";
/// `__inet_check_established` / `__inet6_check_established` before 6.18
/// (every call is a port probed).
pub const CHECK_ESTABLISHED_FENTRY: &str = "check_established_fentry";
pub const CHECK6_ESTABLISHED_FENTRY: &str = "check6_established_fentry";
pub const CHECK_ESTABLISHED_KPROBE: &str = "check_established_kprobe";
/// The same with the `rcu_lookup` argument (6.18+): only lockless calls count.
pub const CHECK_ESTABLISHED_RCU_FENTRY: &str = "check_established_rcu_fentry";
pub const CHECK6_ESTABLISHED_RCU_FENTRY: &str = "check6_established_rcu_fentry";
pub const CHECK_ESTABLISHED_RCU_KPROBE: &str = "check_established_rcu_kprobe";

// ---- SYN at a listener ---------------------------------------------------------

/// `tcp_v4_conn_request` / `tcp_v6_conn_request`; one kprobe pair for both.
pub const CONN_REQUEST4_FENTRY: &str = "conn_request4_fentry";
pub const CONN_REQUEST4_FEXIT: &str = "conn_request4_fexit";
pub const CONN_REQUEST6_FENTRY: &str = "conn_request6_fentry";
pub const CONN_REQUEST6_FEXIT: &str = "conn_request6_fexit";
pub const CONN_REQUEST_KPROBE: &str = "conn_request_kprobe";
pub const CONN_REQUEST_KRETPROBE: &str = "conn_request_kretprobe";
/// `tcp_make_synack`: a SYN answered.
pub const MAKE_SYNACK_FENTRY: &str = "make_synack_fentry";
pub const MAKE_SYNACK_KPROBE: &str = "make_synack_kprobe";
/// `tcp_v4_syn_recv_sock` / `tcp_v6_syn_recv_sock`: the third ACK.
pub const SYN_RECV_SOCK4_FENTRY: &str = "syn_recv_sock4_fentry";
pub const SYN_RECV_SOCK4_FEXIT: &str = "syn_recv_sock4_fexit";
pub const SYN_RECV_SOCK6_FENTRY: &str = "syn_recv_sock6_fentry";
pub const SYN_RECV_SOCK6_FEXIT: &str = "syn_recv_sock6_fexit";
pub const SYN_RECV_SOCK_KPROBE: &str = "syn_recv_sock_kprobe";
pub const SYN_RECV_SOCK_KRETPROBE: &str = "syn_recv_sock_kretprobe";
/// `skb:kfree_skb` with reason TCP_LISTEN_OVERFLOW, as a plain tracepoint
/// (its tp_btf form is [`KFREE_SKB_BTF`]).
pub const KFREE_SKB_LISTEN_OVERFLOW: &str = "kfree_skb_listen_overflow";
/// `tcp:tcp_retransmit_synack`
pub const RETRANSMIT_SYNACK: &str = "retransmit_synack";
pub const RETRANSMIT_SYNACK_BTF: &str = "retransmit_synack_btf";
/// `syscalls:sys_enter_listen`: who called listen() (no tp_btf form).
pub const SYS_ENTER_LISTEN: &str = "sys_enter_listen";
/// `inet_csk_listen_start`, where the kernel allows BPF trampolines.
pub const LISTEN_FENTRY: &str = "listen_fentry";

// ---- PAWS and RSTs -------------------------------------------------------------

/// `tcp_validate_incoming`: PAWS on synchronized sockets, RST verdicts.
pub const VALIDATE_FENTRY: &str = "validate_fentry";
pub const VALIDATE_FEXIT: &str = "validate_fexit";
pub const VALIDATE_KPROBE: &str = "validate_kprobe";
pub const VALIDATE_KRETPROBE: &str = "validate_kretprobe";
/// `tcp_send_challenge_ack`, marking a segment being validated.
pub const CHALLENGE_ACK_FENTRY: &str = "challenge_ack_fentry";
pub const CHALLENGE_ACK_KPROBE: &str = "challenge_ack_kprobe";
/// `tcp:tcp_receive_reset` beside the validate_incoming function hooks
pub const RECEIVE_RESET_MARK: &str = "receive_reset_mark";
pub const RECEIVE_RESET_MARK_BTF: &str = "receive_reset_mark_btf";
/// `tcp:tcp_receive_reset` in the drop-reason fallback
pub const RECEIVE_RESET_EMIT: &str = "receive_reset_emit";
pub const RECEIVE_RESET_EMIT_BTF: &str = "receive_reset_emit_btf";
/// `tcp_reset(sk, skb)` in the drop-reason fallback where fentry or kprobes
/// attach: accepted RSTs with their segment
pub const RESET_FENTRY: &str = "reset_fentry";
pub const RESET_KPROBE: &str = "reset_kprobe";
/// `tcp_timewait_state_process`
pub const TIMEWAIT_FENTRY: &str = "timewait_fentry";
pub const TIMEWAIT_KPROBE: &str = "timewait_kprobe";
/// `tcp_check_req` (SYN-RECV)
pub const CHECK_REQ_FENTRY: &str = "check_req_fentry";
pub const CHECK_REQ_KPROBE: &str = "check_req_kprobe";
/// `tcp_rcv_state_process` (SYN-SENT)
pub const SYN_SENT_FENTRY: &str = "syn_sent_fentry";
pub const SYN_SENT_KPROBE: &str = "syn_sent_kprobe";
/// tp_btf `kfree_skb`: one program for every hook that reads drop reasons
/// (`listen_overflow`, and the fallback of each PAWS/RST site), serving
/// the families set in the `KFREE_SKB_FAMILIES` map.
pub const KFREE_SKB_BTF: &str = "kfree_skb_btf";
/// tp_btf `kfree_skb(skb, location, reason)` where it has no receiving
/// socket (6.0-6.10): `validate_incoming`'s drops, told apart by the call
/// site (`location` inside `tcp_validate_incoming`) and read from the
/// segment alone.
pub const KFREE_SKB_SEGMENT: &str = "kfree_skb_segment";
/// Beside [`KFREE_SKB_SEGMENT`] where fentry or kprobes attach: the socket
/// of a PAWS drop (`tcp_oow_rate_limited`, called with the segment) and of
/// a challenged RST's (`tcp_send_challenge_ack`).
pub const SEG_OOW_FENTRY: &str = "seg_oow_fentry";
pub const SEG_OOW_KPROBE: &str = "seg_oow_kprobe";
pub const SEG_CHALLENGE_FENTRY: &str = "seg_challenge_fentry";
pub const SEG_CHALLENGE_KPROBE: &str = "seg_challenge_kprobe";
/// `tcp:tcp_send_reset`; tp_btf without the reason argument (< 6.10)
/// and with it (6.10+)
pub const SEND_RESET_COUNT: &str = "send_reset_count";
pub const SEND_RESET_COUNT_BTF: &str = "send_reset_count_btf";
pub const SEND_RESET_REASON_BTF: &str = "send_reset_reason_btf";

// ---- bench only (`crate::bench`) ----------------------------------------------

/// The synthetic event source on `syscalls:sys_enter_getppid`.
pub const BENCH_FLOOD: &str = "bench_flood";
/// Empty programs on the connect() syscall tracepoints.
pub const BENCH_FLOOR_ENTER: &str = "bench_floor_enter";
pub const BENCH_FLOOR_EXIT: &str = "bench_floor_exit";

/// Every program of the object, with its kind.
pub const ALL: &[(&str, Kind)] = &[
    (SYS_ENTER_CONNECT, Kind::Tracepoint),
    (SYS_EXIT_CONNECT, Kind::Tracepoint),
    (CONNECT_FENTRY, Kind::FEntry),
    (CONNECT_FEXIT, Kind::FExit),
    (HANDSHAKE_STATE, Kind::Tracepoint),
    (HANDSHAKE_STATE_BTF, Kind::TpBtf),
    (HANDSHAKE_CONNECT_FENTRY, Kind::FEntry),
    (HANDSHAKE_CONNECT_KPROBE, Kind::KProbe),
    (HANDSHAKE_FINISH_FENTRY, Kind::FEntry),
    (HANDSHAKE_FINISH_KPROBE, Kind::KProbe),
    (HANDSHAKE_ERROR_FENTRY, Kind::FEntry),
    (HANDSHAKE_ERROR_KPROBE, Kind::KProbe),
    (HANDSHAKE_CLOSE_FENTRY, Kind::FEntry),
    (HANDSHAKE_CLOSE_KPROBE, Kind::KProbe),
    (HANDSHAKE_DISCONNECT_FENTRY, Kind::FEntry),
    (HANDSHAKE_DISCONNECT_KPROBE, Kind::KProbe),
    (HANDSHAKE_RTX, Kind::Tracepoint),
    (HANDSHAKE_RTX_BTF, Kind::TpBtf),
    (HASH_CONNECT_FENTRY, Kind::FEntry),
    (HASH_CONNECT_FEXIT, Kind::FExit),
    (HASH_CONNECT_KPROBE, Kind::KProbe),
    (HASH_CONNECT_KRETPROBE, Kind::KRetProbe),
    (CHECK_ESTABLISHED_FENTRY, Kind::FEntry),
    (CHECK6_ESTABLISHED_FENTRY, Kind::FEntry),
    (CHECK_ESTABLISHED_KPROBE, Kind::KProbe),
    (CHECK_ESTABLISHED_RCU_FENTRY, Kind::FEntry),
    (CHECK6_ESTABLISHED_RCU_FENTRY, Kind::FEntry),
    (CHECK_ESTABLISHED_RCU_KPROBE, Kind::KProbe),
    (CONN_REQUEST4_FENTRY, Kind::FEntry),
    (CONN_REQUEST4_FEXIT, Kind::FExit),
    (CONN_REQUEST6_FENTRY, Kind::FEntry),
    (CONN_REQUEST6_FEXIT, Kind::FExit),
    (CONN_REQUEST_KPROBE, Kind::KProbe),
    (CONN_REQUEST_KRETPROBE, Kind::KRetProbe),
    (MAKE_SYNACK_FENTRY, Kind::FEntry),
    (MAKE_SYNACK_KPROBE, Kind::KProbe),
    (SYN_RECV_SOCK4_FENTRY, Kind::FEntry),
    (SYN_RECV_SOCK4_FEXIT, Kind::FExit),
    (SYN_RECV_SOCK6_FENTRY, Kind::FEntry),
    (SYN_RECV_SOCK6_FEXIT, Kind::FExit),
    (SYN_RECV_SOCK_KPROBE, Kind::KProbe),
    (SYN_RECV_SOCK_KRETPROBE, Kind::KRetProbe),
    (KFREE_SKB_LISTEN_OVERFLOW, Kind::Tracepoint),
    (RETRANSMIT_SYNACK, Kind::Tracepoint),
    (RETRANSMIT_SYNACK_BTF, Kind::TpBtf),
    (SYS_ENTER_LISTEN, Kind::Tracepoint),
    (LISTEN_FENTRY, Kind::FEntry),
    (VALIDATE_FENTRY, Kind::FEntry),
    (VALIDATE_FEXIT, Kind::FExit),
    (VALIDATE_KPROBE, Kind::KProbe),
    (VALIDATE_KRETPROBE, Kind::KRetProbe),
    (CHALLENGE_ACK_FENTRY, Kind::FEntry),
    (CHALLENGE_ACK_KPROBE, Kind::KProbe),
    (RECEIVE_RESET_MARK, Kind::Tracepoint),
    (RECEIVE_RESET_MARK_BTF, Kind::TpBtf),
    (RECEIVE_RESET_EMIT, Kind::Tracepoint),
    (RECEIVE_RESET_EMIT_BTF, Kind::TpBtf),
    (RESET_FENTRY, Kind::FEntry),
    (RESET_KPROBE, Kind::KProbe),
    (TIMEWAIT_FENTRY, Kind::FEntry),
    (TIMEWAIT_KPROBE, Kind::KProbe),
    (CHECK_REQ_FENTRY, Kind::FEntry),
    (CHECK_REQ_KPROBE, Kind::KProbe),
    (SYN_SENT_FENTRY, Kind::FEntry),
    (SYN_SENT_KPROBE, Kind::KProbe),
    (KFREE_SKB_BTF, Kind::TpBtf),
    (KFREE_SKB_SEGMENT, Kind::TpBtf),
    (SEG_OOW_FENTRY, Kind::FEntry),
    (SEG_OOW_KPROBE, Kind::KProbe),
    (SEG_CHALLENGE_FENTRY, Kind::FEntry),
    (SEG_CHALLENGE_KPROBE, Kind::KProbe),
    (SEND_RESET_COUNT, Kind::Tracepoint),
    (SEND_RESET_COUNT_BTF, Kind::TpBtf),
    (SEND_RESET_REASON_BTF, Kind::TpBtf),
    (BENCH_FLOOD, Kind::Tracepoint),
    (BENCH_FLOOR_ENTER, Kind::Tracepoint),
    (BENCH_FLOOR_EXIT, Kind::Tracepoint),
];

/// The kind of program `name`, if the object has one of that name.
pub fn kind(name: &str) -> Option<Kind> {
    ALL.iter().find(|(n, _)| *n == name).map(|&(_, k)| k)
}
