//! Captures the IP and TCP headers (with options) of an skb into a record's
//! [`Packet`], through the skb's `head` and header offsets.

use aya_ebpf::helpers::bpf_probe_read_kernel_buf;
use tcptrace_common::packet::{Packet, PACKET_BYTES};

use crate::kernel::read;

/// Offsets of `sk_buff.head`, `.network_header`, `.transport_header`
/// (from the calling family's offsets global).
#[derive(Clone, Copy)]
pub struct SkbOffsets {
    pub head: u32,
    pub network_header: u32,
    pub transport_header: u32,
}

/// Fills `out` with the headers of `skb`; `out.len` stays 0 when there is no
/// skb or its headers cannot be read. One fixed-size read from the start of
/// the IP header covers both headers (they are contiguous in the linear part
/// of a received skb, which `skb_shared_info` follows, so the read stays in
/// the allocation); the length comes from the header offsets and the TCP
/// data offset.
#[inline(always)]
pub fn capture(skb: u64, off: SkbOffsets, out: &mut Packet) {
    out.len = 0;
    out._pad = [0; 6];
    if skb == 0 || capture_len(skb, off, out).is_err() {
        out.len = 0;
    }
}

#[inline(always)]
fn capture_len(skb: u64, off: SkbOffsets, out: &mut Packet) -> Result<(), i64> {
    let head: u64 = read(skb, off.head)?;
    let nh: u16 = read(skb, off.network_header)?;
    let th: u16 = read(skb, off.transport_header)?;
    if head == 0 || th <= nh {
        return Err(-1);
    }
    let ip_len = (th - nh) as usize;
    let doff: u8 = read(head + th as u64, 12)?;
    let tcp_len = ((doff >> 4) as usize) * 4;
    if !(20..=PACKET_BYTES - 20).contains(&ip_len) || tcp_len < 20 {
        return Err(-1);
    }
    let total = ip_len + tcp_len;
    if total > PACKET_BYTES {
        return Err(-1);
    }
    unsafe { bpf_probe_read_kernel_buf((head + nh as u64) as *const u8, &mut out.data) }
        .map_err(|e| e as i64)?;
    let version = out.data[0] >> 4;
    if version != 4 && version != 6 {
        return Err(-1);
    }
    out.len = total as u16;
    Ok(())
}

/// The destination port of a received segment (the local port), from its
/// TCP header; 0 when unreadable.
#[inline(always)]
pub fn local_port(skb: u64, off: SkbOffsets) -> u16 {
    let Ok(head) = read::<u64>(skb, off.head) else {
        return 0;
    };
    let Ok(th) = read::<u16>(skb, off.transport_header) else {
        return 0;
    };
    read::<[u8; 2]>(head + th as u64, 2).map_or(0, u16::from_be_bytes)
}
