//! `addr:port` as every text output writes it (event lines, summaries,
//! findings, pcapng comments): `10.0.0.1:80`, `[::1]:80`. An IPv4-mapped
//! IPv6 address keeps its IPv6 form (`[::ffff:10.0.0.1]:80`), as the
//! kernel reported it. An address or port that is not known prints `*`.

use std::{fmt, net::IpAddr};

/// An address and port to print; `None` prints `*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: Option<IpAddr>,
    pub port: Option<u16>,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            Some(IpAddr::V6(a)) => write!(f, "[{a}]:")?,
            Some(IpAddr::V4(a)) => write!(f, "{a}:")?,
            None => f.write_str("*:")?,
        }
        match self.port {
            Some(p) => write!(f, "{p}"),
            None => f.write_str("*"),
        }
    }
}

/// `addr:port` with both known.
pub fn endpoint(addr: IpAddr, port: u16) -> String {
    Endpoint {
        addr: Some(addr),
        port: Some(port),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v4_and_v6() {
        assert_eq!(endpoint(ip("127.0.0.1"), 8080), "127.0.0.1:8080");
        assert_eq!(endpoint(ip("::1"), 443), "[::1]:443");
        assert_eq!(endpoint(ip("fe80::1:2"), 0), "[fe80::1:2]:0");
        assert_eq!(endpoint(ip("0.0.0.0"), 0), "0.0.0.0:0");
    }

    #[test]
    fn v4_mapped_v6_stays_v6() {
        assert_eq!(endpoint(ip("::ffff:10.0.0.1"), 80), "[::ffff:10.0.0.1]:80");
    }

    #[test]
    fn unknown_parts_print_a_star() {
        let any_port = Endpoint {
            addr: Some(ip("10.0.0.2")),
            port: None,
        };
        assert_eq!(any_port.to_string(), "10.0.0.2:*");
        let any_v6_port = Endpoint {
            addr: Some(ip("::1")),
            port: None,
        };
        assert_eq!(any_v6_port.to_string(), "[::1]:*");
        let any_addr = Endpoint {
            addr: None,
            port: Some(5432),
        };
        assert_eq!(any_addr.to_string(), "*:5432");
    }
}
