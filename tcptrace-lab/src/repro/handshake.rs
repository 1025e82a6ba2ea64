//! A non-blocking connect() whose handshake completes only after one SYN
//! retransmission: the listener's accept queue is full when the first SYN
//! arrives and has room again before the retransmission.

use std::time::Duration;

use anyhow::{bail, Context as _, Result};

use crate::{
    netns::{in_private_netns, thread_netns, NetnsKeeper},
    netstat::Netstat,
    sock::{addr_of, connect_nonblocking, full_listener, wait_connected},
};

/// What [`after_one_syn_retransmit`] did.
#[derive(Debug)]
pub struct SlowHandshake {
    pub netns: u64,
    /// Source port of the slow handshake.
    pub sport: u16,
    /// Source port of the connection that filled the accept queue (an
    /// ordinary handshake).
    pub filler_port: u16,
    /// The namespace's TCPSynRetrans delta (1: the slow one's SYN).
    pub syn_retransmits: u64,
}

/// Two active opens in a private namespace: the filler's, at once, and a
/// non-blocking one whose first SYN is dropped and whose retransmission
/// (the SYN timer's first expiry, about 1 s later) completes.
pub fn after_one_syn_retransmit() -> Result<(SlowHandshake, NetnsKeeper)> {
    in_private_netns(|| {
        let before = Netstat::read()?;
        let (l, addr, filler) = full_listener()?;
        let s = connect_nonblocking(addr)?;
        // The first SYN is dropped; free the queue before the retransmission.
        std::thread::sleep(Duration::from_millis(300));
        let _accepted = l.accept().context("accepting the filler")?;
        let err = wait_connected(&s, 5000)?;
        if err != 0 {
            bail!("the retransmitted handshake failed: errno {err}");
        }
        Ok(SlowHandshake {
            netns: thread_netns()?,
            sport: addr_of(&s)?.port(),
            filler_port: filler.local_addr().context("filler address")?.port(),
            syn_retransmits: Netstat::read()?.since(&before, "TCPSynRetrans"),
        })
    })
}
