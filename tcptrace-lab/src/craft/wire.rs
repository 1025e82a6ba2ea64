//! The crafted peer's side of the veth: segments built with etherparse and
//! sent on an AF_PACKET socket, and the server's replies parsed back.

use std::{
    net::{IpAddr, Ipv6Addr},
    os::fd::{AsRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};

/// How long the peer waits for an answer it needs.
pub const WAIT: Duration = Duration::from_secs(3);

/// What the peer builds: flags, numbers, timestamp, payload.
#[derive(Clone, Debug, Default)]
pub struct Segment {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: Option<u32>,
    pub syn: bool,
    pub rst: bool,
    pub fin: bool,
    pub psh: bool,
    /// (TSval, TSecr)
    pub ts: Option<(u32, u32)>,
    pub mss: Option<u16>,
    pub window: u16,
    pub payload: Vec<u8>,
}

/// A segment the server sent.
#[derive(Clone, Debug)]
pub struct Reply {
    pub sport: u16,
    /// The crafted peer's port it went to.
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub syn: bool,
    pub ack_flag: bool,
    pub fin: bool,
    pub rst: bool,
    pub window: u16,
    pub tsval: Option<u32>,
    pub payload_len: usize,
}

/// An AF_PACKET socket on the client veth, with the addresses it speaks
/// between.
pub struct Wire {
    fd: OwnedFd,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    pub peer_ip: IpAddr,
    pub server_ip: IpAddr,
}

impl Wire {
    pub(super) fn new(
        fd: OwnedFd,
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
        peer_ip: IpAddr,
        server_ip: IpAddr,
    ) -> Wire {
        Wire {
            fd,
            src_mac,
            dst_mac,
            peer_ip,
            server_ip,
        }
    }

    /// Sends `s` from the peer to the server.
    pub fn send(&self, s: &Segment) -> Result<()> {
        let eth = PacketBuilder::ethernet2(self.src_mac, self.dst_mac);
        let ipb = match (self.peer_ip, self.server_ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => eth.ipv4(a.octets(), b.octets(), 64),
            (IpAddr::V6(a), IpAddr::V6(b)) => eth.ipv6(a.octets(), b.octets(), 64),
            (a, b) => bail!("mixed address families: {a} and {b}"),
        };
        let mut tcp = ipb.tcp(s.sport, s.dport, s.seq, s.window);
        if s.syn {
            tcp = tcp.syn();
        }
        if s.rst {
            tcp = tcp.rst();
        }
        if s.fin {
            tcp = tcp.fin();
        }
        if s.psh {
            tcp = tcp.psh();
        }
        if let Some(a) = s.ack {
            tcp = tcp.ack(a);
        }
        let mut opts = Vec::new();
        if let Some(mss) = s.mss {
            opts.push(TcpOptionElement::MaximumSegmentSize(mss));
        }
        if let Some((val, ecr)) = s.ts {
            opts.push(TcpOptionElement::Noop);
            opts.push(TcpOptionElement::Noop);
            opts.push(TcpOptionElement::Timestamp(val, ecr));
        }
        let tcp = tcp
            .options(&opts)
            .map_err(|e| anyhow::anyhow!("TCP options {opts:?}: {e}"))?;
        let mut frame = Vec::new();
        tcp.write(&mut frame, &s.payload)
            .context("building the frame")?;
        // SAFETY: send(2) on a bound AF_PACKET socket we own, reading
        // `frame.len()` bytes of a live buffer.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n != frame.len() as isize {
            bail!(
                "sending a {}-byte frame: {}",
                frame.len(),
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// The next segment the server sends to `peer_port` that `want`
    /// accepts, within `timeout`.
    pub fn recv(
        &self,
        peer_port: u16,
        timeout: Duration,
        want: impl Fn(&Reply) -> bool,
    ) -> Option<Reply> {
        self.next(Some(peer_port), timeout, want)
    }

    /// Every segment the server sends to the peer (any port) for `wait`.
    pub fn collect(&self, wait: Duration) -> Vec<Reply> {
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(None, left, |_| true) {
                Some(r) => out.push(r),
                None => return out,
            }
        }
    }

    fn next(
        &self,
        peer_port: Option<u16>,
        timeout: Duration,
        want: impl Fn(&Reply) -> bool,
    ) -> Option<Reply> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            // SAFETY: sockaddr_ll holds only integers and byte arrays, for
            // which all zeroes is a valid value.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: recvfrom(2) writes at most `buf.len()` bytes into a
            // buffer we own and at most `len` bytes into `from`.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&raw mut from).cast(),
                    &mut len,
                )
            };
            if n <= 0 || from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            let Some(reply) = self.parse(&buf[..n as usize], peer_port) else {
                continue;
            };
            if want(&reply) {
                return Some(reply);
            }
        }
        None
    }

    fn parse(&self, frame: &[u8], peer_port: Option<u16>) -> Option<Reply> {
        let p = SlicedPacket::from_ethernet(frame).ok()?;
        let (src, dst): (IpAddr, IpAddr) = match p.net? {
            NetSlice::Ipv4(v4) => (
                v4.header().source_addr().into(),
                v4.header().destination_addr().into(),
            ),
            NetSlice::Ipv6(v6) => (
                Ipv6Addr::from(v6.header().source()).into(),
                Ipv6Addr::from(v6.header().destination()).into(),
            ),
            _ => return None,
        };
        let TransportSlice::Tcp(tcp) = p.transport? else {
            return None;
        };
        if src != self.server_ip
            || dst != self.peer_ip
            || peer_port.is_some_and(|p| tcp.destination_port() != p)
        {
            return None;
        }
        let tsval = tcp.options_iterator().find_map(|o| match o {
            Ok(TcpOptionElement::Timestamp(v, _)) => Some(v),
            _ => None,
        });
        Some(Reply {
            sport: tcp.source_port(),
            dport: tcp.destination_port(),
            seq: tcp.sequence_number(),
            ack: tcp.acknowledgment_number(),
            syn: tcp.syn(),
            ack_flag: tcp.ack(),
            fin: tcp.fin(),
            rst: tcp.rst(),
            window: tcp.window_size(),
            tsval,
            payload_len: tcp.payload().len(),
        })
    }
}
