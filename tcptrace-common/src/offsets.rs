//! Kernel struct field offsets, resolved from the running kernel's BTF by
//! userspace and handed to the programs as a read-only global.
//!
//! Nothing here is frozen from one kernel: a zero offset that BTF did not
//! confirm is never used, because userspace refuses to load without a full set.

/// Byte offsets of the fields the programs read with `bpf_probe_read_kernel`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `task_struct.files`
    pub task_files: u32,
    /// `files_struct.fdt`
    pub files_fdt: u32,
    /// `fdtable.max_fds`
    pub fdtable_max_fds: u32,
    /// `fdtable.fd`
    pub fdtable_fd: u32,
    /// `file.private_data`
    pub file_private_data: u32,
    /// `socket.type`
    pub socket_type: u32,
    /// `socket.sk`
    pub socket_sk: u32,
    /// `sock.sk_protocol`
    pub sock_protocol: u32,
    /// `sock_common.skc_daddr`
    pub skc_daddr: u32,
    /// `sock_common.skc_rcv_saddr`
    pub skc_rcv_saddr: u32,
    /// `sock_common.skc_dport`
    pub skc_dport: u32,
    /// `sock_common.skc_num`
    pub skc_num: u32,
    /// `sock_common.skc_family`
    pub skc_family: u32,
    /// `sock_common.skc_net`
    pub skc_net: u32,
    /// `sock_common.skc_v6_daddr`
    pub skc_v6_daddr: u32,
    /// `sock_common.skc_v6_rcv_saddr`
    pub skc_v6_rcv_saddr: u32,
    /// `net.ns.inum` (offset of `ns` plus `ns_common.inum`)
    pub net_ns_inum: u32,
    /// `sk_buff.head`, `.network_header`, `.transport_header`: the headers
    /// of a segment, for every hook that reads or captures one.
    pub skb_head: u32,
    pub skb_network_header: u32,
    pub skb_transport_header: u32,
    /// `sock.sk_err`: why a handshake ended in CLOSE.
    pub sk_err: u32,
    /// `tcp_sock.total_retrans`: SYNs retransmitted by a handshake.
    pub tcp_total_retrans: u32,
    /// `inet_sock.inet_sport` (network order): the source port, which the
    /// kernel keeps after a closing socket gives its port back (`skc_num`
    /// is 0 by the time the CLOSE state change is traced).
    pub inet_sport: u32,
    /// `tcp_sock.segs_out`: 0 when a socket left SYN_SENT without sending
    /// its SYN (connect() failed in between, e.g. EADDRNOTAVAIL).
    pub tcp_segs_out: u32,
    /// `sock_common.skc_state`: whether a socket closed or disconnected
    /// with a handshake entry is still in SYN_SENT.
    pub skc_state: u32,
}

const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 100);

// SAFETY: #[repr(C)], Copy, u32 fields only (no padding, asserted 100
// bytes): every bit pattern is a valid value.
#[cfg(feature = "user")]
unsafe impl aya::Pod for KernelOffsets {}
