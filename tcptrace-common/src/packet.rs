//! Packet headers captured with an event: the IP header and the TCP header
//! with its options, as the kernel had them in the skb.

use core::mem::size_of;

/// Bytes captured per packet: room for a 60-byte IPv4 header (or a 40-byte
/// IPv6 header) plus a 60-byte TCP header with options.
pub const PACKET_BYTES: usize = 128;

/// Captured headers, appended to the records of events driven by a packet.
/// `len` is 0 when the probe had no skb (or could not read it); bytes past
/// `len` are meaningless.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Captured bytes: IP header + TCP header, at most [`PACKET_BYTES`].
    pub len: u16,
    pub _pad: [u8; 6],
    pub data: [u8; PACKET_BYTES],
}

impl Default for Packet {
    fn default() -> Self {
        Self {
            len: 0,
            _pad: [0; 6],
            data: [0; PACKET_BYTES],
        }
    }
}

impl Packet {
    /// The captured bytes (empty when nothing was captured).
    pub fn bytes(&self) -> &[u8] {
        &self.data[..(self.len as usize).min(PACKET_BYTES)]
    }
}

const _: () = assert!(size_of::<Packet>() == 136);
