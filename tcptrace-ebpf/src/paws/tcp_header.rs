//! The TCP header of a segment, with its timestamp option, read from kernel
//! memory.

use crate::{kernel::read, packet::headers};

const MAX_OPTIONS: usize = 12;

/// The parts of a TCP header the checks use.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct TcpHdr {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack_seq: u32,
    pub flags: u8,
    pub has_ts: bool,
    pub tsval: u32,
    pub tsecr: u32,
}

impl TcpHdr {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Reads the TCP header at `th`, including the timestamp option.
#[inline(always)]
pub fn tcp_header(th: u64) -> Result<TcpHdr, i64> {
    let mut h = TcpHdr::default();
    match read_tcp_header(th, &mut h) {
        0 => Ok(h),
        e => Err(e),
    }
}

/// The TCP header of an skb whose transport header is set.
#[inline(always)]
pub fn skb_tcp_header(skb: u64) -> Result<TcpHdr, i64> {
    let (head, _, th) = headers(skb)?;
    tcp_header(head + th as u64)
}

/// The fixed 20 bytes of a TCP header, as on the wire (big-endian).
#[repr(C)]
#[derive(Clone, Copy)]
struct WireHeader {
    sport: u16,
    dport: u16,
    seq: u32,
    ack_seq: u32,
    doff: u8,
    flags: u8,
    _window_check_urg: [u8; 6],
}

/// Not inlined, so the verifier walks the option loop once per call site
/// instead of once per path into it; C-like signature so its BTF is one the
/// kernel accepts. It writes each field into `out` as it is decoded: held
/// in registers until the end instead, they spilled into a 192-byte frame,
/// which with the kfree_skb dispatcher's frames passed the verifier's
/// 512-byte limit for a call chain.
#[inline(never)]
fn read_tcp_header(th: u64, out: &mut TcpHdr) -> i64 {
    match parse_tcp_header(th, out) {
        Ok(()) => 0,
        Err(e) => e,
    }
}

#[inline(always)]
fn parse_tcp_header(th: u64, h: &mut TcpHdr) -> Result<(), i64> {
    let fixed: WireHeader = read(th, 0)?;
    h.sport = u16::from_be(fixed.sport);
    h.dport = u16::from_be(fixed.dport);
    h.seq = u32::from_be(fixed.seq);
    h.ack_seq = u32::from_be(fixed.ack_seq);
    h.flags = fixed.flags;
    let doff = u64::from(fixed.doff >> 4);
    if doff <= 5 {
        return Ok(());
    }
    let optlen = (doff - 5) * 4;
    // Each option is read from the kernel at its own address: no variable
    // offsets into the stack or a map, which verifiers differ on. Twelve
    // options cover every layout stacks send (SYN: MSS, SACK_PERM, TS, NOP,
    // WSCALE; data: NOP, NOP, TS, NOP, NOP, SACK).
    let opts = th + 20;
    let mut i = 0u64;
    for _ in 0..MAX_OPTIONS {
        if i >= optlen {
            break;
        }
        let [kind, len]: [u8; 2] = read(opts + i, 0)?;
        if kind == 0 {
            break;
        }
        if kind == 1 {
            i += 1;
            continue;
        }
        if len < 2 {
            break;
        }
        if kind == 8 && len == 10 {
            if i + 10 > optlen {
                break;
            }
            let [tsval, tsecr]: [u32; 2] = read(opts + i + 2, 0)?;
            h.has_ts = true;
            h.tsval = u32::from_be(tsval);
            h.tsecr = u32::from_be(tsecr);
            break;
        }
        i += u64::from(len);
    }
    Ok(())
}
