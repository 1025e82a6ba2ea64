//! Captures the IP and TCP headers (with options) of an skb into a record's
//! [`Packet`], through the skb's `head` and header offsets.

use aya_ebpf::helpers::bpf_probe_read_kernel_buf;
use tcptrace_common::{
    event::{AF_INET, AF_INET6},
    packet::{Packet, PACKET_BYTES},
    Flow,
};

use crate::{kernel::read, maps::global};

/// Where the headers of `skb` start: (`head`, network header offset,
/// transport header offset).
#[inline(always)]
pub fn headers(skb: u64) -> Result<(u64, u16, u16), i64> {
    Ok((
        read(skb, global!(OFFSETS.skb_head))?,
        read(skb, global!(OFFSETS.skb_network_header))?,
        read(skb, global!(OFFSETS.skb_transport_header))?,
    ))
}

/// Fills `out` with the headers of `skb`; `out.len` stays 0 when there is no
/// skb or its headers cannot be read. One fixed-size read from the start of
/// the IP header covers both headers (they are contiguous in the linear part
/// of a received skb, which `skb_shared_info` follows, so the read stays in
/// the allocation); the length comes from the header offsets and the TCP
/// data offset.
#[inline(always)]
pub fn capture(skb: u64, out: &mut Packet) {
    out.len = 0;
    out._pad = [0; 6];
    if skb == 0 || capture_len(skb, out).is_err() {
        out.len = 0;
    }
}

#[inline(always)]
fn capture_len(skb: u64, out: &mut Packet) -> Result<(), i64> {
    let (head, nh, th) = headers(skb)?;
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
    // SAFETY: the helper checks the kernel source address itself and fails
    // on memory it cannot read; the destination is `out.data`, a byte array
    // we hold a unique reference to, and exactly its length is copied.
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
pub fn local_port(skb: u64) -> u16 {
    let Ok((head, _, th)) = headers(skb) else {
        return 0;
    };
    read::<[u8; 2]>(head + th as u64, 2).map_or(0, u16::from_be_bytes)
}

/// The 4-tuple of a received segment, local side (its destination) first.
#[inline(always)]
pub fn segment_flow(skb: u64) -> Result<Flow, i64> {
    let (head, nh, th) = headers(skb)?;
    let ip = head + nh as u64;
    let version: u8 = read(ip, 0)?;
    let mut flow = Flow::default();
    if version >> 4 == 6 {
        flow.family = AF_INET6;
        flow.daddr = read(ip, 8)?;
        flow.saddr = read(ip, 24)?;
    } else {
        flow.family = AF_INET;
        let src: [u8; 4] = read(ip, 12)?;
        let dst: [u8; 4] = read(ip, 16)?;
        flow.daddr[..4].copy_from_slice(&src);
        flow.saddr[..4].copy_from_slice(&dst);
    }
    let ports: [u8; 4] = read(head + th as u64, 0)?;
    flow.dport = u16::from_be_bytes([ports[0], ports[1]]);
    flow.sport = u16::from_be_bytes([ports[2], ports[3]]);
    Ok(flow)
}

/// The sequence number of a received segment, from its TCP header.
#[inline(always)]
pub fn segment_seq(skb: u64) -> Result<u32, i64> {
    let (head, _, th) = headers(skb)?;
    read::<[u8; 4]>(head + th as u64, 4).map(u32::from_be_bytes)
}
