//! What the PAWS/RST programs need from this kernel: struct offsets from
//! BTF, drop-reason values by name, tracepoint field offsets from tracefs,
//! and the labels of the `RST_SENT` slots.

use anyhow::{Context as _, Result};
use tcptrace_common::paws::{PawsOffsets, NO_REASON, RST_SENT_SLOTS};

use crate::{btf::KernelBtf, tracefs};

/// `skb_drop_reason` values by short name (without `SKB_DROP_REASON_`).
pub fn drop_reasons(btf: &KernelBtf) -> Vec<(String, u64)> {
    btf.enum_values("skb_drop_reason")
        .map(|v| {
            v.into_iter()
                .filter_map(|(n, val)| Some((n.strip_prefix("SKB_DROP_REASON_")?.to_owned(), val)))
                .collect()
        })
        .unwrap_or_default()
}

fn reason(reasons: &[(String, u64)], name: &str) -> u32 {
    reasons
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| u32::try_from(*v).ok())
        .unwrap_or(NO_REASON)
}

/// Every fact the PAWS/RST programs read, from the running kernel.
pub fn kernel_offsets(btf: &KernelBtf) -> Result<PawsOffsets> {
    let off = |s: &str, p: &str| btf.member_offset(s, p);
    let reasons = drop_reasons(btf);
    let r = |name| reason(&reasons, name);
    let rx_opt = off("tcp_sock", "rx_opt")?;
    Ok(PawsOffsets {
        skc_state: off("sock_common", "skc_state")?,
        tp_rcv_nxt: off("tcp_sock", "rcv_nxt")?,
        tp_rcv_wup: off("tcp_sock", "rcv_wup")?,
        tp_rcv_wnd: off("tcp_sock", "rcv_wnd")?,
        tp_snd_una: off("tcp_sock", "snd_una")?,
        tp_snd_nxt: off("tcp_sock", "snd_nxt")?,
        tp_ts_recent: rx_opt + off("tcp_options_received", "ts_recent")?,
        tp_ts_recent_stamp: rx_opt + off("tcp_options_received", "ts_recent_stamp")?,
        tp_retrans_stamp: off("tcp_sock", "retrans_stamp")?,
        tp_tsoffset: off("tcp_sock", "tsoffset")?,
        tw_substate: off("inet_timewait_sock", "tw_substate")?,
        tw_ts_recent: off("tcp_timewait_sock", "tw_ts_recent")?,
        tw_ts_recent_stamp: off("tcp_timewait_sock", "tw_ts_recent_stamp")?,
        req_ts_recent: off("request_sock", "ts_recent")?,
        treq_snt_isn: off("tcp_request_sock", "snt_isn")?,
        skb_cb: off("sk_buff", "cb")?,
        tcb_end_seq: off("tcp_skb_cb", "end_seq")?,
        tp_receive_reset_skaddr: tracefs::field_offset("tcp", "tcp_receive_reset", "skaddr")?
            .context("tcp:tcp_receive_reset has no skaddr field")?,
        tp_send_reset_reason: tracefs::field_offset("tcp", "tcp_send_reset", "reason")?
            .unwrap_or(0),
        reason_paws: r("TCP_RFC7323_PAWS"),
        reason_paws_ack: r("TCP_RFC7323_PAWS_ACK"),
        reason_tw_paws: r("TCP_RFC7323_TW_PAWS"),
        reason_reset: r("TCP_RESET"),
        reason_old_sequence: r("TCP_OLD_SEQUENCE"),
        reason_invalid_sequence: r("TCP_INVALID_SEQUENCE"),
        reason_invalid_end_sequence: r("TCP_INVALID_END_SEQUENCE"),
        old_ack_split: u32::from(r("TCP_RFC7323_PAWS_ACK") != NO_REASON),
        skb_dev: off("sk_buff", "dev")?,
        skb_refdst: off("sk_buff", "_skb_refdst")?,
        dst_dev: off("dst_entry", "dev")?,
        dev_nd_net: off("net_device", "nd_net.net")?,
        tp_last_oow_ack_time: off("tcp_sock", "last_oow_ack_time")?,
        validate_text: validate_text(btf),
    })
}

/// Where `tcp_validate_incoming`'s code lies, for the drop-reason form
/// that tells its drops by call site: read only where `kfree_skb` names
/// reasons but not the receiving socket (6.0-6.10); zeros elsewhere, and
/// where kallsyms cannot be read. Read once per process: the loader and
/// the attach table both ask.
fn validate_text(btf: &KernelBtf) -> [u64; 4] {
    static TEXT: std::sync::OnceLock<[u64; 4]> = std::sync::OnceLock::new();
    if btf.tracepoint_args("kfree_skb") != Some(3) {
        return [0; 4];
    }
    *TEXT.get_or_init(|| {
        std::fs::read_to_string("/proc/kallsyms")
            .map(|text| crate::kernel::text_ranges(&text, "tcp_validate_incoming"))
            .unwrap_or_default()
    })
}

/// Label of each `RST_SENT` slot: the `enum sk_rst_reason` name (without
/// `SK_RST_REASON_`) where `tcp:tcp_send_reset` has a reason field (6.10+),
/// else everything is in slot 0, labelled `unknown`.
pub fn rst_slot_names(btf: &KernelBtf, has_reason_field: bool) -> Vec<String> {
    let mut names: Vec<String> = (0..RST_SENT_SLOTS).map(|i| format!("reason_{i}")).collect();
    if !has_reason_field {
        names[0] = "unknown".into();
        return names;
    }
    for (name, val) in btf.enum_values("sk_rst_reason").unwrap_or_default() {
        if let Some(slot) = usize::try_from(val).ok().and_then(|i| names.get_mut(i)) {
            *slot = name
                .strip_prefix("SK_RST_REASON_")
                .unwrap_or(&name)
                .to_owned();
        }
    }
    if let Some(last) = names.last_mut() {
        last.push_str("_or_above");
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_on_this_kernel() {
        let btf = KernelBtf::from_sys().expect("kernel BTF");
        let reasons = drop_reasons(&btf);
        // Present since drop reasons reached TCP (5.19/6.0).
        if !crate::kernel::release_before(6, 0) {
            assert_ne!(reason(&reasons, "TCP_RFC7323_PAWS"), NO_REASON);
        }
        assert_eq!(reason(&reasons, "NO_SUCH_REASON"), NO_REASON);
        if std::path::Path::new("/sys/kernel/tracing/events/tcp").exists() {
            let o = kernel_offsets(&btf).expect("offsets");
            assert!(o.tp_rcv_wup > 0 && o.tp_rcv_nxt > 0);
            assert_eq!(o.tp_ts_recent, o.tp_ts_recent_stamp + 4);
            assert_eq!(o.tp_receive_reset_skaddr, 8);
        }
    }
}
