//! One selftest at a time per host: an abstract unix socket bound for the
//! run, released by the kernel however the process ends.

use std::os::{linux::net::SocketAddrExt as _, unix::net::UnixListener};

use anyhow::{bail, Context as _, Result};

/// The abstract socket's name (network-namespace wide: the host's).
const NAME: &[u8] = b"tcptrace-selftest";

/// Held for the run.
pub struct Lock {
    _held: UnixListener,
}

/// Takes the lock, or says another selftest holds it.
pub fn take() -> Result<Lock> {
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(NAME)
        .context("naming the selftest lock")?;
    match UnixListener::bind_addr(&addr) {
        Ok(l) => Ok(Lock { _held: l }),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            bail!("another tcptrace selftest is running on this host (it holds @tcptrace-selftest)")
        }
        Err(e) => Err(e).context("binding the selftest lock @tcptrace-selftest"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_second_lock_is_refused_until_the_first_is_gone() {
        let first = super::take().unwrap();
        let err = super::take().err().unwrap().to_string();
        assert!(
            err.contains("another tcptrace selftest is running"),
            "{err}"
        );
        drop(first);
        drop(super::take().unwrap());
    }
}
