//! Struct offsets, enum values and tracepoint field offsets the SYN programs
//! need, from this kernel's BTF and tracefs.

use anyhow::{Context as _, Result};
use tcptrace_common::syn::SynOffsets;

use crate::{btf::KernelBtf, tracefs};

fn enum_value(btf: &KernelBtf, enum_name: &str, member: &str) -> Result<Option<u32>> {
    Ok(btf
        .enum_values(enum_name)?
        .into_iter()
        .find(|(n, _)| n == member)
        .map(|(_, v)| v as u32))
}

/// Struct offsets and enum values the SYN programs need, from this kernel's
/// BTF. Tracepoint fields that are missing stay 0: those tracepoints then
/// fail to attach (or are not offered) and say why.
pub fn offsets(btf: &KernelBtf) -> Result<SynOffsets> {
    let off = |s: &str, p: &str| btf.member_offset(s, p);
    let mut o = SynOffsets {
        sk_ack_backlog: off("sock", "sk_ack_backlog")?,
        sk_max_ack_backlog: off("sock", "sk_max_ack_backlog")?,
        icsk_qlen: off("inet_connection_sock", "icsk_accept_queue.qlen")?,
        sk_socket: off("sock", "sk_socket")?,
        socket_inode: off("socket_alloc", "vfs_inode")? - off("socket_alloc", "socket")?,
        inode_ino: off("inode", "i_ino")?,
        net_syncookies: off("net", "ipv4.sysctl_tcp_syncookies")?,
        net_max_syn_backlog: off("net", "ipv4.sysctl_max_syn_backlog")?,
        net_abort_on_overflow: off("net", "ipv4.sysctl_tcp_abort_on_overflow")?,
        req_num_retrans: off("request_sock", "num_retrans")?,
        treq_rcv_isn: off("tcp_request_sock", "rcv_isn")?,
        synack_cookie: enum_value(btf, "tcp_synack_type", "TCP_SYNACK_COOKIE")?
            .context("enum tcp_synack_type has no TCP_SYNACK_COOKIE")?,
        synack_fastopen: enum_value(btf, "tcp_synack_type", "TCP_SYNACK_FASTOPEN")?
            .context("enum tcp_synack_type has no TCP_SYNACK_FASTOPEN")?,
        reason_listen_overflow: u32::MAX,
        ..SynOffsets::default()
    };
    if let Ok(v) = tracefs::field_offsets("tcp", "tcp_retransmit_synack", &["skaddr", "req"]) {
        (o.tp_rtx_skaddr, o.tp_rtx_req) = (v[0], v[1]);
    }
    if let Some(reason) = listen_overflow_reason(btf) {
        if let Ok(v) = tracefs::field_offsets("skb", "kfree_skb", &["skbaddr", "rx_sk", "reason"]) {
            (o.tp_kfree_skbaddr, o.tp_kfree_rx_sk, o.tp_kfree_reason) = (v[0], v[1], v[2]);
            o.reason_listen_overflow = reason;
        }
    }
    Ok(o)
}

/// SKB_DROP_REASON_TCP_LISTEN_OVERFLOW on kernels that have it (6.15+).
pub fn listen_overflow_reason(btf: &KernelBtf) -> Option<u32> {
    enum_value(
        btf,
        "skb_drop_reason",
        "SKB_DROP_REASON_TCP_LISTEN_OVERFLOW",
    )
    .ok()
    .flatten()
}

/// Whether skb:kfree_skb can stand in for the syn_recv_sock hooks: the
/// kernel has the drop reason and the tracepoint names the listener.
pub fn kfree_skb_fallback(btf: &KernelBtf) -> bool {
    listen_overflow_reason(btf).is_some()
        && tracefs::field_offsets("skb", "kfree_skb", &["skbaddr", "rx_sk", "reason"]).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_offsets_on_this_kernel() {
        // A fresh host may not have tracefs mounted yet: tcptrace mounts it
        // before it resolves offsets, and so does this test.
        crate::kernel::ensure_filesystems().expect("tracefs");
        let btf = KernelBtf::from_sys().expect("kernel BTF");
        let o = offsets(&btf).expect("SYN offsets");
        assert!(o.sk_max_ack_backlog > 0 && o.sk_ack_backlog > 0);
        assert!(o.net_syncookies > 0 && o.net_abort_on_overflow > 0);
        assert_eq!(o.synack_cookie, 2);
        assert_eq!(o.synack_fastopen, 1);
        assert_eq!(o.tp_rtx_skaddr, 8);
        assert!(o.treq_rcv_isn > 0);
    }
}
