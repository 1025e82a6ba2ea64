//! A socket shut for reading that still receives data aborts: the kernel
//! counts TCPAbortOnData, calls `tcp_reset` on it (no RST was received) and
//! resets its peer, which accepts that RST.

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{Shutdown, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::{
    netns::{in_private_netns, thread_netns, NetnsKeeper},
    netstat::Netstat,
};

/// What [`abort_on_data`] did.
#[derive(Debug)]
pub struct Aborted {
    pub netns: u64,
    /// The aborting socket's port (the listener's).
    pub server_port: u16,
    /// The peer's port: its socket received the one RST.
    pub client_port: u16,
    /// TcpExt TCPAbortOnData delta.
    pub abort_on_data: u64,
    /// Tcp EstabResets delta: the peer, reset from CLOSE-WAIT.
    pub estab_resets: u64,
    /// Tcp OutRsts delta: the aborting side's RST.
    pub out_rsts: u64,
}

/// On loopback in a namespace of its own: the server shuts its accepted
/// socket both ways (FIN sent, reading shut, the socket still open); the
/// client reads the FIN, then sends data; the server aborts and resets the
/// client, whose socket then holds the error of a reset in CLOSE-WAIT.
pub fn abort_on_data() -> Result<(Aborted, NetnsKeeper)> {
    in_private_netns(|| {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        let addr = listener.local_addr().context("listener address")?;
        let before = Netstat::read()?;
        let mut client = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
        let (server, _) = listener.accept().context("accept")?;
        server
            .shutdown(Shutdown::Both)
            .context("shutdown the server socket")?;
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .context("client read timeout")?;
        let mut buf = [0u8; 64];
        let n = client.read(&mut buf).context("reading the server's FIN")?;
        if n != 0 {
            bail!("read {n} bytes where the server's FIN was expected");
        }
        client
            .write_all(b"data after the server shut reading")
            .context("client write")?;
        // Reads return 0 after the FIN whatever follows: the reset shows
        // as the socket's pending error, EPIPE for a reset in CLOSE-WAIT.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match client.take_error().context("SO_ERROR of the client")? {
                Some(e) if e.kind() == ErrorKind::BrokenPipe => break,
                Some(e) => bail!("the client's socket failed with {e}, not EPIPE"),
                None if Instant::now() > deadline => {
                    bail!("the client was not reset within 5 s of its data")
                }
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        let after = Netstat::read()?;
        let client_port = client.local_addr().context("client address")?.port();
        drop((client, server));
        Ok(Aborted {
            netns: thread_netns()?,
            server_port: addr.port(),
            client_port,
            abort_on_data: after.since(&before, "TCPAbortOnData"),
            estab_resets: after.since(&before, "EstabResets"),
            out_rsts: after.since(&before, "OutRsts"),
        })
    })
}
