//! Sockets the reproductions (and the scenario tests) build their cases from.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd as _,
};

use anyhow::{bail, Context as _, Result};
use socket2::{Domain, Socket, Type};

/// A listener on `addr` with accept backlog `backlog` (SO_REUSEADDR set).
pub fn backlog_listener(addr: SocketAddr, backlog: i32) -> Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None).context("socket")?;
    s.set_reuse_address(true).context("SO_REUSEADDR")?;
    s.bind(&addr.into())
        .with_context(|| format!("binding {addr}"))?;
    s.listen(backlog)
        .with_context(|| format!("listen({backlog}) on {addr}"))?;
    Ok(s)
}

/// The local address of an inet socket.
pub fn addr_of(s: &Socket) -> Result<SocketAddr> {
    s.local_addr()
        .context("getsockname")?
        .as_socket()
        .context("not an inet socket")
}

/// A listener on 127.0.0.1 of the calling thread's namespace whose accept
/// queue is full (backlog 0, one connection waiting in it): every further
/// SYN is dropped (ListenOverflows) until the waiting one is accepted.
/// Returns the listener, its address and the waiting connection.
pub fn full_listener() -> Result<(TcpListener, SocketAddr, TcpStream)> {
    let s = backlog_listener(SocketAddr::from(([127, 0, 0, 1], 0)), 0)?;
    let addr = addr_of(&s)?;
    let l: TcpListener = s.into();
    let filler = TcpStream::connect(addr).context("connecting the filler")?;
    Ok((l, addr, filler))
}

/// A non-blocking connect() to `addr` (it must return EINPROGRESS).
pub fn connect_nonblocking(addr: SocketAddr) -> Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None).context("socket")?;
    s.set_nonblocking(true).context("O_NONBLOCK")?;
    match s.connect(&addr.into()) {
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(s),
        other => bail!("non-blocking connect to {addr}: {other:?}, not EINPROGRESS"),
    }
}

/// Waits at most `ms` for a non-blocking connect to finish: its socket
/// error (0 when connected).
pub fn wait_connected(s: &Socket, ms: i32) -> Result<i32> {
    let mut p = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd that outlives the call.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    if n != 1 {
        bail!("connect did not finish within {ms} ms");
    }
    Ok(s.take_error()
        .context("SO_ERROR")?
        .map_or(0, |e| e.raw_os_error().unwrap_or(-1)))
}
