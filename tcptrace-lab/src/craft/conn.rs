//! One crafted connection: the peer's side of a handshake, data and a
//! close, with the sequence numbers and timestamps it chooses.

use anyhow::{Context as _, Result};

use super::wire::{Segment, Wire, WAIT};

/// One crafted connection from `peer:sport` to the server.
pub struct Conn<'a> {
    pub wire: &'a Wire,
    pub sport: u16,
    pub dport: u16,
    /// Next sequence number we send.
    pub snd_nxt: u32,
    /// Next sequence number we expect from the server (its rcv side is our
    /// snd side: the server's rcv_nxt is `snd_nxt`).
    pub rcv_nxt: u32,
    /// Our timestamp clock: TSval = base + ticks we choose; None = no TS.
    pub ts_base: Option<u32>,
    /// The server's last TSval (what we echo).
    pub ts_recent: u32,
    /// The server's window from the SYN-ACK.
    pub server_window: u16,
}

impl<'a> Conn<'a> {
    /// SYN, SYN-ACK read off the wire, ACK.
    pub fn handshake(
        wire: &'a Wire,
        sport: u16,
        dport: u16,
        iss: u32,
        ts_base: Option<u32>,
    ) -> Result<Conn<'a>> {
        let mut c = Conn {
            wire,
            sport,
            dport,
            snd_nxt: iss,
            rcv_nxt: 0,
            ts_base,
            ts_recent: 0,
            server_window: 0,
        };
        c.send(Segment {
            syn: true,
            mss: Some(1400),
            ..c.segment(0)
        })?;
        let synack = wire
            .recv(sport, WAIT, |r| {
                r.syn && r.ack_flag && r.ack == iss.wrapping_add(1)
            })
            .with_context(|| format!("no SYN-ACK from the server to port {sport}"))?;
        c.snd_nxt = iss.wrapping_add(1);
        c.rcv_nxt = synack.seq.wrapping_add(1);
        c.ts_recent = synack.tsval.unwrap_or(0);
        c.server_window = synack.window;
        c.send(c.segment(1))?;
        Ok(c)
    }

    /// A segment at `snd_nxt`, acknowledging `rcv_nxt`, stamped `base + tick`.
    pub fn segment(&self, tick: u32) -> Segment {
        Segment {
            sport: self.sport,
            dport: self.dport,
            seq: self.snd_nxt,
            ack: (self.rcv_nxt != 0).then_some(self.rcv_nxt),
            ts: self.ts_base.map(|b| (b.wrapping_add(tick), self.ts_recent)),
            window: 64000,
            ..Segment::default()
        }
    }

    pub fn send(&self, s: Segment) -> Result<()> {
        self.wire.send(&s)
    }

    /// Sends data stamped `base + tick` and advances `snd_nxt`.
    pub fn send_data(&mut self, tick: u32, data: &[u8]) -> Result<()> {
        let s = Segment {
            psh: true,
            payload: data.to_vec(),
            ..self.segment(tick)
        };
        self.send(s)?;
        self.snd_nxt = self.snd_nxt.wrapping_add(data.len() as u32);
        Ok(())
    }

    /// Waits for the server's FIN, then acknowledges it with our own FIN.
    pub fn answer_fin(&mut self, tick: u32) -> Result<()> {
        let fin = self
            .wire
            .recv(self.sport, WAIT, |r| r.fin)
            .context("no FIN from the server")?;
        self.rcv_nxt = fin.seq.wrapping_add(fin.payload_len as u32).wrapping_add(1);
        if let Some(t) = fin.tsval {
            self.ts_recent = t;
        }
        let s = Segment {
            fin: true,
            ..self.segment(tick)
        };
        self.send(s)?;
        self.snd_nxt = self.snd_nxt.wrapping_add(1);
        // The server's last ACK: it is in TIME_WAIT now.
        let want = self.snd_nxt;
        self.wire
            .recv(self.sport, WAIT, move |r| r.ack_flag && r.ack == want)
            .context("no ACK of our FIN from the server")?;
        Ok(())
    }
}
