//! The `--metrics` address: parsed with a one-line error, loopback unless
//! the user names another address, bound before the tracer starts.

use std::{
    fmt,
    io::ErrorKind,
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener},
    str::FromStr,
};

use anyhow::{anyhow, Result};

/// Where the endpoint listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsAddr(pub SocketAddr);

const FORM: &str = "expected PORT, :PORT, IPV4:PORT or [IPV6]:PORT, e.g. 9464 or 127.0.0.1:9464";

impl FromStr for MetricsAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let port = |p: &str| -> Result<u16, String> {
            p.parse::<u16>()
                .map_err(|_| format!("{p:?} is not a port (0-65535): {FORM}"))
        };
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        if let Some(p) = s.strip_prefix(':') {
            return Ok(Self(SocketAddr::new(loopback, port(p)?)));
        }
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(Self(SocketAddr::new(loopback, port(s)?)));
        }
        s.parse::<SocketAddr>()
            .map(Self)
            .map_err(|_| format!("not an address and port: {FORM}"))
    }
}

impl fmt::Display for MetricsAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The endpoint's socket, bound and listening.
#[derive(Debug)]
pub struct Bound {
    pub listener: TcpListener,
    pub addr: SocketAddr,
}

impl MetricsAddr {
    pub fn bind(&self) -> Result<Bound> {
        let a = self.0;
        let listener = TcpListener::bind(a).map_err(|e| match e.kind() {
            ErrorKind::AddrInUse => anyhow!("--metrics {a}: the port is taken (another process listens there)"),
            ErrorKind::PermissionDenied => anyhow!(
                "--metrics {a}: port {} is privileged: binding it needs root or CAP_NET_BIND_SERVICE; choose a port from 1024 up",
                a.port()
            ),
            ErrorKind::AddrNotAvailable => {
                anyhow!("--metrics {a}: no interface of this host has address {}", a.ip())
            }
            _ => anyhow!("--metrics {a}: {e}"),
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| anyhow!("--metrics {a}: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| anyhow!("--metrics {a}: {e}"))?;
        Ok(Bound { listener, addr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<SocketAddr, String> {
        s.parse::<MetricsAddr>().map(|a| a.0)
    }

    #[test]
    fn a_bare_port_is_loopback_and_other_addresses_must_be_named() {
        assert_eq!(parse("9464").unwrap(), "127.0.0.1:9464".parse().unwrap());
        assert_eq!(parse(":9464").unwrap(), "127.0.0.1:9464".parse().unwrap());
        assert_eq!(parse("0.0.0.0:80").unwrap(), "0.0.0.0:80".parse().unwrap());
        assert_eq!(parse("[::1]:9464").unwrap(), "[::1]:9464".parse().unwrap());
    }

    #[test]
    fn malformed_addresses_say_what_is_expected() {
        for bad in [
            "",
            "localhost:9464",
            "1.2.3:80",
            "99999",
            ":x",
            "[::1]",
            "127.0.0.1",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("e.g. 9464 or 127.0.0.1:9464"), "{bad}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn a_taken_port_is_one_line() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = MetricsAddr(held.local_addr().unwrap());
        let e = a.bind().unwrap_err().to_string();
        assert_eq!(
            e,
            format!("--metrics {a}: the port is taken (another process listens there)")
        );
    }
}
