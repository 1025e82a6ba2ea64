//! An accept queue full at the SYN: a listener with a small backlog nobody
//! accepts from, and more non-blocking clients than it holds.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use anyhow::{bail, Result};
use socket2::{Domain, Socket, Type};

use crate::{
    netns::{in_private_netns, thread_netns, NetnsKeeper},
    netstat::Netstat,
    sock::{addr_of, backlog_listener},
};

/// The listener's backlog.
pub const BACKLOG: i32 = 2;
/// Clients connecting to it.
pub const CLIENTS: usize = 8;

/// What [`full_at_syn`] did.
#[derive(Debug)]
pub struct FullAtSyn {
    pub netns: u64,
    /// The listener's address (loopback).
    pub listener: SocketAddr,
    /// The namespace's counter deltas over the scenario.
    pub listen_overflows: u64,
    pub listen_drops: u64,
    pub cookies: u64,
}

/// [`CLIENTS`] non-blocking clients to a loopback listener with backlog
/// [`BACKLOG`] in a private namespace, held for two SYN tries each (at 0 s
/// and 1 s), then closed: B+1 are admitted, the others are dropped at the
/// SYN (or turned away at the third ACK) while the queue is full.
pub fn full_at_syn(v6: bool) -> Result<(FullAtSyn, NetnsKeeper)> {
    in_private_netns(move || {
        let host: IpAddr = if v6 {
            Ipv6Addr::LOCALHOST.into()
        } else {
            Ipv4Addr::LOCALHOST.into()
        };
        let before = Netstat::read()?;
        let l = backlog_listener(SocketAddr::new(host, 0), BACKLOG)?;
        let listener = SocketAddr::new(host, addr_of(&l)?.port());
        let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
        let clients = (0..CLIENTS)
            .map(|_| {
                let c = Socket::new(domain, Type::STREAM, None)?;
                c.set_nonblocking(true)?;
                match c.connect(&listener.into()) {
                    Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(c),
                    other => bail!("non-blocking connect: {other:?}, not EINPROGRESS"),
                }
            })
            .collect::<Result<Vec<Socket>>>()?;
        std::thread::sleep(Duration::from_millis(2500));
        drop(clients);
        drop(l);
        std::thread::sleep(Duration::from_millis(200));
        let after = Netstat::read()?;
        Ok(FullAtSyn {
            netns: thread_netns()?,
            listener,
            listen_overflows: after.since(&before, "ListenOverflows"),
            listen_drops: after.since(&before, "ListenDrops"),
            cookies: after.since(&before, "TCPReqQFullDoCookies"),
        })
    })
}
