//! pcapng output for Wireshark: events that carry packet bytes (IP + TCP
//! headers captured by the SYN, PAWS and RST probes) become Enhanced Packet
//! Blocks with the event described in the packet comment.
//!
//! Layout written (all little endian, every block 32-bit aligned):
//! Section Header Block, one Interface Description Block with
//! LINKTYPE_RAW (101, each packet starts with an IPv4 or IPv6 header) and
//! nanosecond timestamps (`if_tsresol` = 9), then one Enhanced Packet Block per
//! packet with an `opt_comment`.

use std::io::{self, Write};

use crate::{endpoint::endpoint, escape::escaped, event::Event};

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 0x0000_0001;
const EPB: u32 = 0x0000_0006;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
/// Raw IPv4/IPv6 packets, no link-layer header.
pub const LINKTYPE_RAW: u16 = 101;

const OPT_ENDOFOPT: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_TSRESOL: u16 = 9;

/// The packet an event carries and the comment naming the kernel's verdict,
/// or None for events without captured bytes. Wireshark shows comments as
/// text: anything in one that came from the traced system is escaped.
pub fn packet(ev: &Event) -> Option<(&[u8], String)> {
    if ev.packet.is_empty() || !ev.carries_packet() {
        return None;
    }
    Some((&ev.packet, escaped(&comment(ev)?)))
}

/// One line saying what the kernel did with the packet.
fn comment(ev: &Event) -> Option<String> {
    let e = &ev.endpoints;
    let local = endpoint(e.saddr, e.sport);
    let peer = endpoint(e.daddr, e.dport);
    ev.detail.family().pcap_comment(ev, &local, &peer)
}

/// Length of the whole packet as its IP header states (the capture holds
/// only the headers), at least the captured length.
fn wire_len(data: &[u8]) -> usize {
    let stated = match data.first().map(|b| b >> 4) {
        Some(4) if data.len() >= 4 => usize::from(u16::from_be_bytes([data[2], data[3]])),
        Some(6) if data.len() >= 6 => 40 + usize::from(u16::from_be_bytes([data[4], data[5]])),
        _ => 0,
    };
    stated.max(data.len())
}

/// Appends one option (code, length, value padded to 4 bytes).
fn option(buf: &mut Vec<u8>, code: u16, value: &[u8]) {
    // Option values longer than u16::MAX cannot be expressed: cut them.
    let value = &value[..value.len().min(u16::MAX as usize - 3)];
    buf.extend_from_slice(&code.to_le_bytes());
    buf.extend_from_slice(&(value.len() as u16).to_le_bytes());
    buf.extend_from_slice(value);
    pad(buf);
}

fn pad(buf: &mut Vec<u8>) {
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

/// Wraps a block body into type, total length, body, total length.
fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    let total = (body.len() + 12) as u32;
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&total.to_le_bytes());
    out
}

pub struct PcapngWriter<W: Write> {
    out: W,
    packets: u64,
}

impl<W: Write> PcapngWriter<W> {
    /// Writes the section header and the one raw-IP interface.
    pub fn new(mut out: W) -> io::Result<Self> {
        let mut shb = Vec::new();
        shb.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
        shb.extend_from_slice(&1u16.to_le_bytes());
        shb.extend_from_slice(&0u16.to_le_bytes());
        shb.extend_from_slice(&(-1i64).to_le_bytes());
        let app = format!("tcptrace {}", env!("CARGO_PKG_VERSION"));
        option(&mut shb, SHB_USERAPPL, app.as_bytes());
        option(&mut shb, OPT_ENDOFOPT, &[]);
        out.write_all(&block(SHB, &shb))?;

        let mut idb = Vec::new();
        idb.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
        idb.extend_from_slice(&0u16.to_le_bytes());
        idb.extend_from_slice(&0u32.to_le_bytes()); // snaplen: no limit
        option(&mut idb, IF_NAME, b"tcptrace");
        option(&mut idb, IF_TSRESOL, &[9]);
        option(&mut idb, OPT_ENDOFOPT, &[]);
        out.write_all(&block(IDB, &idb))?;
        Ok(Self { out, packets: 0 })
    }

    /// One Enhanced Packet Block: `data` starts with an IP header,
    /// `unix_ns` is the wall-clock time in nanoseconds.
    pub fn write_packet(&mut self, unix_ns: i64, data: &[u8], comment: &str) -> io::Result<()> {
        let ts = unix_ns.max(0) as u64;
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let data = &data[..len as usize];
        let orig = u32::try_from(wire_len(data)).unwrap_or(u32::MAX);
        let mut epb = Vec::with_capacity(data.len() + comment.len() + 40);
        epb.extend_from_slice(&0u32.to_le_bytes()); // interface 0
        epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ts as u32).to_le_bytes());
        epb.extend_from_slice(&len.to_le_bytes());
        epb.extend_from_slice(&orig.to_le_bytes());
        epb.extend_from_slice(data);
        pad(&mut epb);
        if !comment.is_empty() {
            option(&mut epb, OPT_COMMENT, comment.as_bytes());
            option(&mut epb, OPT_ENDOFOPT, &[]);
        }
        self.out.write_all(&block(EPB, &epb))?;
        self.packets += 1;
        Ok(())
    }

    pub fn packets(&self) -> u64 {
        self.packets
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;
    use tcptrace_common::paws::RstVerdict;

    fn syn_v4() -> Vec<u8> {
        let b = PacketBuilder::ipv4([127, 0, 0, 1], [127, 0, 0, 2], 64)
            .tcp(40000, 8080, 1000, 64240)
            .syn();
        let mut out = Vec::with_capacity(b.size(0));
        b.write(&mut out, &[]).unwrap();
        out
    }

    fn rst_v6() -> Vec<u8> {
        let lo = std::net::Ipv6Addr::LOCALHOST.octets();
        let b = PacketBuilder::ipv6(lo, lo, 64)
            .tcp(8080, 40000, 5000, 0)
            .rst()
            .ack(1001);
        let mut out = Vec::with_capacity(b.size(0));
        b.write(&mut out, &[]).unwrap();
        out
    }

    fn sample() -> Vec<u8> {
        let mut w = PcapngWriter::new(Vec::new()).unwrap();
        w.write_packet(
            1_700_000_000_123_456_789,
            &syn_v4(),
            "syn_drop reason=LISTEN_OVERFLOW",
        )
        .unwrap();
        w.write_packet(
            1_700_000_001_000_000_000,
            &rst_v6(),
            "rst ignored: seq out of window",
        )
        .unwrap();
        assert_eq!(w.packets(), 2);
        w.out
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn blocks_are_well_formed() {
        let bytes = sample();
        let mut at = 0;
        let mut kinds = Vec::new();
        while at < bytes.len() {
            let kind = u32_at(&bytes, at);
            let len = u32_at(&bytes, at + 4) as usize;
            assert_eq!(len % 4, 0, "block at {at} is not 32-bit aligned");
            assert_eq!(
                u32_at(&bytes, at + len - 4) as usize,
                len,
                "trailing length"
            );
            kinds.push(kind);
            if kind == EPB {
                let ts =
                    (u64::from(u32_at(&bytes, at + 12)) << 32) | u64::from(u32_at(&bytes, at + 16));
                assert!(ts == 1_700_000_000_123_456_789 || ts == 1_700_000_001_000_000_000);
            }
            at += len;
        }
        assert_eq!(at, bytes.len());
        assert_eq!(kinds, [SHB, IDB, EPB, EPB]);
        assert_eq!(u32_at(&bytes, 8), BYTE_ORDER_MAGIC);
    }

    #[test]
    fn captured_headers_become_the_packet_with_the_verdict() {
        use crate::event::{decode, tests::raw_rst};
        use tcptrace_common::{packet::Packet, paws::RstEvent};
        let mut raw = raw_rst(RstVerdict::Ignored, 1);
        let at = std::mem::size_of::<RstEvent>() - std::mem::size_of::<Packet>();
        let pkt = rst_v6();
        raw[at..at + 2].copy_from_slice(&(pkt.len() as u16).to_le_bytes());
        raw[at + 8..at + 8 + pkt.len()].copy_from_slice(&pkt);
        let ev = decode(&raw).unwrap();
        let (bytes, comment) = packet(&ev).unwrap();
        assert_eq!(bytes, &pkt[..]);
        assert_eq!(comment, "RST ignored: seq 1 outside window by -899");
        // A record from before packets were captured decodes without one.
        let ev = decode(&raw[..at]).unwrap();
        assert!(ev.packet.is_empty() && packet(&ev).is_none());
        assert_eq!(wire_len(&pkt), pkt.len());
        let mut long = syn_v4();
        long[2..4].copy_from_slice(&1500u16.to_be_bytes());
        assert_eq!(wire_len(&long), 1500);
    }

    #[test]
    fn kinds_without_captured_bytes_carry_no_packet() {
        use crate::event::{
            decode,
            tests::{raw_handshake, raw_latency, raw_paws, raw_rst},
        };
        use tcptrace_common::{
            paws::{PawsSite, RstVerdict},
            EventKind,
        };
        for kind in EventKind::ALL {
            let raw = match kind {
                EventKind::Connect | EventKind::PortSearch => raw_latency(kind, 2, 0),
                EventKind::PawsReject => raw_paws(PawsSite::Established, [10, 0, 0, 2], 5, 9, 0),
                EventKind::Rst => raw_rst(RstVerdict::Ignored, 1),
                EventKind::Handshake => raw_handshake(1, 0, 0),
                _ => crate::syn::tests::raw_syn(kind, 0, 0),
            };
            let ev = decode(&raw).unwrap();
            assert!(packet(&ev).is_none(), "{}", kind.name());
        }
    }

    /// Wireshark's own reader agrees: packets, flags, comments and times.
    /// Needs tshark (`cargo xtask setup` installs it).
    #[test]
    fn tshark_reads_packets_and_comments() {
        let version = std::process::Command::new("tshark")
            .arg("--version")
            .output()
            .expect("tshark is needed for this test: run `cargo xtask setup`");
        assert!(version.status.success());
        let dir = std::env::temp_dir().join(format!("tcptrace-pcapng-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("sample.pcapng");
        std::fs::write(&file, sample()).unwrap();
        let out = std::process::Command::new("tshark")
            .arg("-r")
            .arg(&file)
            .args(["-T", "fields", "-E", "separator=|"])
            .args([
                "-e",
                "frame.comment",
                "-e",
                "tcp.flags",
                "-e",
                "ip.src",
                "-e",
                "ipv6.src",
            ])
            .args(["-e", "tcp.srcport", "-e", "frame.time_epoch"])
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "tshark: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<Vec<&str>> = stdout.lines().map(|l| l.split('|').collect()).collect();
        assert_eq!(lines.len(), 2, "{stdout}");
        assert_eq!(lines[0][0], "syn_drop reason=LISTEN_OVERFLOW");
        assert_eq!(lines[0][1], "0x0002", "SYN flag");
        assert_eq!(lines[0][2], "127.0.0.1");
        assert_eq!(lines[0][4], "40000");
        assert!(lines[0][5].starts_with("1700000000.123456789"), "{stdout}");
        assert_eq!(lines[1][0], "rst ignored: seq out of window");
        assert_eq!(lines[1][1], "0x0014", "RST+ACK flags");
        assert_eq!(lines[1][3], "::1");
    }
}
