//! Ephemeral-port exhaustion: connect() failing with EADDRNOTAVAIL after a
//! port search through a narrowed range.

use std::net::{SocketAddr, TcpListener, TcpStream};

use anyhow::{bail, Context as _, Result};

use crate::netns::{in_private_netns, set_sysctl, thread_netns, NetnsKeeper};

/// The listener the connections go to.
pub const DPORT: u16 = 5555;

/// What [`exhaust`] did.
#[derive(Debug)]
pub struct Exhausted {
    pub netns: u64,
    /// Connections made (each held), all within the range.
    pub held: u16,
    /// The range: `first..first + held`.
    pub first: u16,
}

/// Port exhaustion in the calling thread's namespace: the ephemeral range
/// narrowed to `range` ports from `first`, every one held by a connection
/// to a listener on 127.0.0.1:[`DPORT`], and one more connect() failing
/// with EADDRNOTAVAIL. Returns the listener and the held connections.
pub fn exhaust_here(first: u16, range: u16) -> Result<(TcpListener, Vec<TcpStream>)> {
    let last = first
        .checked_add(range.saturating_sub(1))
        .context("port range past 65535")?;
    set_sysctl("net/ipv4/ip_local_port_range", &format!("{first} {last}"))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], DPORT));
    let l = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    let held = (0..range)
        .map(|i| TcpStream::connect(addr).with_context(|| format!("connect {i} within the range")))
        .collect::<Result<Vec<_>>>()?;
    match TcpStream::connect(addr) {
        Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok((l, held)),
        other => bail!(
            "connect {} of a range of {range}: {other:?}, not EADDRNOTAVAIL",
            range + 1
        ),
    }
}

/// [`exhaust_here`] in a private namespace of its own: `range` + 1 connect()
/// calls and port searches, the last one failing.
pub fn exhaust(first: u16, range: u16) -> Result<(Exhausted, NetnsKeeper)> {
    in_private_netns(move || {
        drop(exhaust_here(first, range)?);
        Ok(Exhausted {
            netns: thread_netns()?,
            held: range,
            first,
        })
    })
}
