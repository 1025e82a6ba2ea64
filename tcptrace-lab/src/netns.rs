//! Private network namespaces: a thread unshares one, brings `lo` up and
//! runs a scenario there.

use std::{os::fd::AsRawFd as _, sync::mpsc};

use anyhow::{anyhow, bail, Context as _, Result};

/// Moves the calling thread into a new network namespace with `lo` up.
pub fn enter_private_netns() -> Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .context("unshare(CLONE_NEWNET): creating a network namespace")?;
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").context("a socket in the new netns")?;
    // SAFETY: ifreq is plain data, zeroed is a valid value; the ioctls read
    // and write it in place and the socket outlives both calls.
    unsafe {
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) != 0 {
            bail!("SIOCGIFFLAGS lo: {}", std::io::Error::last_os_error());
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) != 0 {
            bail!("SIOCSIFFLAGS lo up: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Inode of the calling thread's network namespace (what events carry as
/// `netns`).
pub fn thread_netns() -> Result<u64> {
    use std::os::unix::fs::MetadataExt as _;
    Ok(std::fs::metadata("/proc/thread-self/ns/net")
        .context("/proc/thread-self/ns/net")?
        .ino())
}

/// Writes sysctl `path` (under /proc/sys) of the calling thread's network
/// namespace.
pub fn set_sysctl(path: &str, value: &str) -> Result<()> {
    std::fs::write(format!("/proc/sys/{path}"), value)
        .with_context(|| format!("writing {value:?} to sysctl {path}"))
}

/// A thread parked in a private network namespace: it keeps the namespace
/// (and what the scenario left open in it) alive until dropped, so a tracer
/// can still read its counters and sockets.
pub struct NetnsKeeper {
    release: Option<mpsc::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for NetnsKeeper {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Runs `scenario` on a thread in a new private network namespace and
/// returns its result; the thread stays in the namespace until the returned
/// [`NetnsKeeper`] is dropped. A panic in the scenario is resumed here.
pub fn in_private_netns<T: Send + 'static>(
    scenario: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<(T, NetnsKeeper)> {
    let (done, result) = mpsc::channel();
    let (release, parked) = mpsc::channel::<()>();
    let handle = std::thread::Builder::new()
        .name("tcptrace-lab".into())
        .spawn(move || {
            let r = enter_private_netns().and_then(|()| scenario());
            if done.send(r).is_ok() {
                let _ = parked.recv();
            }
        })
        .context("starting a scenario thread")?;
    match result.recv() {
        Ok(r) => r.map(|r| {
            (
                r,
                NetnsKeeper {
                    release: Some(release),
                    handle: Some(handle),
                },
            )
        }),
        Err(_) => match handle.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => Err(anyhow!("the scenario thread ended without a result")),
        },
    }
}
