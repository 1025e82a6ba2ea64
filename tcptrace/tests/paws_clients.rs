//! Slow handshakes behind TIME_WAIT PAWS, with real programs: nginx
//! (Debian's) as the server, answering HTTP/1.0 requests and closing first
//! (so it holds TIME_WAIT), and a client namespace with two hosts (two
//! addresses, taking turns) whose blocking connects all leave through SNAT
//! to one address and port (hosts behind a NAT gateway, as in production:
//! the server sees only the NAT's address). The
//! kernel gives each address pair its own timestamp clock (newer kernels
//! each connection), so the hosts' clocks disagree: a SYN older than the
//! TIME_WAIT's last stamp fails PAWS, and the server answers with a bare
//! ACK. What the client sees depends on that ACK:
//! - delivered: the client resets it (killing the TIME_WAIT) and resends
//!   its SYN within milliseconds; the connect succeeds after one retransmit;
//! - lost (dropped on the client's way in) or filtered (dropped by the
//!   server's own firewall on the way out): every SYN fails PAWS until the
//!   client gives up (ETIMEDOUT).
//!
//! In each, tcptrace's slow handshakes == the client's own count (TCP_INFO
//! retransmits, connect() errors), their SYN retransmits == the client
//! namespace's TCPSynRetrans delta, paws_reject events == the server's
//! PAWS counter delta, `slow_connect` names the TIME_WAIT rejects behind
//! it, and failed connects carry their 4-tuple. They need root, BPF, nginx
//! and nft (installed by `cargo xtask setup`, copied into every VM of the
//! matrix); where one is missing they say so and return.

mod support;

use std::{
    io::{Read as _, Write as _},
    net::SocketAddr,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{
    craft::{in_netns, nft, Family, Lab},
    nginx::{nginx_bin, Nginx},
    *,
};

const PORT: u16 = 8060;
/// The one source port the client namespace's SNAT maps every connection to.
const NAT_PORT: u16 = 40000;
/// The two hosts behind the NAT: the client namespace's address and a
/// second one.
const HOSTS: [&str; 2] = ["10.77.0.2", "10.77.0.5"];
/// The NAT's address, which every connection leaves with (a third address
/// of the client namespace, so the server's replies reach it).
const NAT_IP: &str = "10.77.0.6";
/// Attempts per scenario at most: one host's SYNs are behind the other's
/// stamp (about every second attempt; with a clock per connection, each
/// fails with odds of about 1/2).
const MAX_ATTEMPTS: usize = 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BareAck {
    Delivered,
    Lost,
    Filtered,
}

/// One connect() from the client namespace, as the client saw it.
#[derive(Debug)]
struct Attempt {
    /// The host (client address) it connected from.
    source: &'static str,
    local_port: u16,
    /// The errno connect() failed with.
    errno: Option<i32>,
    took: Duration,
    /// TCP_INFO's tcpi_total_retrans after a successful connect: the SYNs
    /// it resent.
    total_retrans: u32,
    /// The server namespace's PAWS counter grew during it.
    paws: u64,
}

impl Attempt {
    /// Slow in the client's own eyes: it failed or resent its SYN.
    fn slow(&self) -> bool {
        self.errno.is_some() || self.total_retrans > 0
    }
}

/// The server namespace's TIME_WAIT PAWS counter (PAWSTimewait from 6.16,
/// PAWSEstab before).
fn paws_counter(lab: &Lab) -> (&'static str, u64) {
    let c = lab.server_netstat();
    match c.get("PAWSTimewait") {
        Some(&n) => ("PAWSTimewait", n),
        None => ("PAWSEstab", c["PAWSEstab"]),
    }
}

/// TCP_INFO's `tcpi_total_retrans` of a connected socket: after connect(),
/// the SYNs it resent.
fn total_retrans(sock: &socket2::Socket) -> u32 {
    // SAFETY: tcp_info is plain integers, for which zero is a value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the local and the
    // length it wrote back.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(sock),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            std::ptr::addr_of_mut!(info).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info.tcpi_total_retrans
}

/// A blocking connect() to `dest` from address `source` of the client
/// namespace with TCP_SYNCNT 1 (it gives up after about 3 s); on success an
/// HTTP/1.0 request and the response up to nginx's FIN.
fn attempt(ns: &str, source: &str, dest: SocketAddr) -> (u16, Option<i32>, Duration, u32) {
    let source: std::net::IpAddr = source.parse().expect("client address");
    in_netns(ns, move || {
        let c = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("client");
        c.bind(&SocketAddr::new(source, 0).into())
            .expect("bind the client address");
        set_syncnt(&c, 1);
        let t = Instant::now();
        let r = c.connect(&dest.into());
        let took = t.elapsed();
        let local_port = addr_of(&c).port();
        let Err(e) = r else {
            let total_retrans = total_retrans(&c);
            let mut s: std::net::TcpStream = c.into();
            s.set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("request");
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
            return (local_port, None, took, total_retrans);
        };
        (local_port, e.raw_os_error(), took, 0)
    })
}

/// The lab's firewalls: SNAT of every connection to [`NAT_PORT`] in the
/// client namespace, and where the bare ACK is dropped. A rule drops it by
/// what sets it apart: a pure ACK from the server port on a connection
/// conntrack has not seen established (a TIME_WAIT answering a SYN).
/// Conntrack entries of finished or failed connections expire after 1 s,
/// so the next connection can take the NAT port again.
fn firewall(lab: &Lab, ack: BareAck) {
    nft(
        &lab.client_ns,
        &format!(
            "table ip tcptrace_snat {{\n chain post {{\n  type nat hook postrouting priority 100;\n  oifname \"vc\" tcp dport {PORT} snat to {NAT_IP}:{NAT_PORT}\n }}\n}}\n"
        ),
    );
    let drop = |ns: &str, hook: &str| {
        nft(
            ns,
            &format!(
                "table inet tcptrace_bare_ack {{\n chain c {{\n  type filter hook {hook} priority 10;\n  tcp sport {PORT} tcp flags == ack ct status & assured == 0 drop\n }}\n}}\n"
            ),
        );
    };
    match ack {
        BareAck::Delivered => {}
        BareAck::Lost => drop(&lab.client_ns, "input"),
        BareAck::Filtered => drop(&lab.server_ns, "output"),
    }
    let short_conntrack = |ns: &str| {
        in_netns(ns, || {
            for t in ["time_wait", "syn_sent"] {
                set_sysctl(&format!("net/netfilter/nf_conntrack_tcp_timeout_{t}"), "1");
            }
        });
    };
    short_conntrack(&lab.client_ns);
    if ack == BareAck::Filtered {
        short_conntrack(&lab.server_ns);
    }
}

fn scenario(ack: BareAck) {
    let (Some(bin), true) = (nginx_bin(), have("nft")) else {
        eprintln!("nginx or nft is not installed here: skipped");
        return;
    };
    // Everything on one CPU: nginx, the clients, the tracer and, with them,
    // the softirq work of their segments, so the veth delivers every
    // segment in the order it was sent. Across two CPUs' backlogs, a
    // client's ACK sent before its FIN could reach the server after it (a
    // stalled vCPU under emulation), fail PAWS against the TIME_WAIT the
    // FIN made, and count as a reject no SYN caused.
    pin_to_one_cpu();
    let lab = Lab::new(Family::V4);
    for addr in [HOSTS[1], NAT_IP] {
        ip(&[
            "-n",
            &lab.client_ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "vc",
        ]);
    }
    firewall(&lab, ack);
    let (server_netns, client_netns) = (lab.server_netns_inode(), lab.client_netns_inode());
    let dest = SocketAddr::new(lab.server_ip, PORT);
    let nginx = in_netns(&lab.server_ns, move || {
        Nginx::start_at(&bin, "0.0.0.0", PORT, None)
    });
    let tracer = Tracer::start(&[]);
    let paws_hook = hook(&tracer, "paws_time_wait");
    let (counter, paws_before) = paws_counter(&lab);
    let client_ns = lab.client_ns.clone();
    let rtx_before = in_netns(&client_ns, netstat);

    // Connections until enough failed PAWS (each does with odds of 1/2).
    let want = if ack == BareAck::Delivered { 3 } else { 1 };
    let mut attempts: Vec<Attempt> = Vec::new();
    while attempts.iter().filter(|a| a.paws > 0).count() < want {
        assert!(attempts.len() < MAX_ATTEMPTS, "{attempts:#?}");
        let (_, before) = paws_counter(&lab);
        let source = HOSTS[attempts.len() % 2];
        let (local_port, errno, took, total_retrans) = attempt(&lab.client_ns, source, dest);
        let (_, after) = paws_counter(&lab);
        attempts.push(Attempt {
            source,
            local_port,
            errno,
            took,
            total_retrans,
            paws: after - before,
        });
        // Past the 1 s conntrack timeouts of the connection just ended.
        thread::sleep(Duration::from_millis(1500));
    }
    let (_, paws_after) = paws_counter(&lab);
    let syn_retrans = delta(&rtx_before, &in_netns(&client_ns, netstat), "TCPSynRetrans");
    let objs = tracer.stop();
    drop(nginx);
    eprintln!("{ack:?}: {attempts:#?}");
    let rejects = paws_after - paws_before;
    assert_eq!(
        rejects,
        attempts.iter().map(|a| a.paws).sum::<u64>(),
        "{counter}"
    );

    // What the client saw, by what happened to the bare ACK.
    for a in attempts.iter().filter(|a| a.paws > 0) {
        match ack {
            BareAck::Delivered => {
                // Reset at once by the client, so its next SYN (milliseconds
                // later, not on the 1 s timer) finds no TIME_WAIT.
                assert_eq!((a.errno, a.total_retrans, a.paws), (None, 1, 1), "{a:?}");
                assert!(a.took < Duration::from_millis(500), "{a:?}");
            }
            BareAck::Lost | BareAck::Filtered => {
                assert_eq!(a.errno, Some(libc::ETIMEDOUT), "{a:?}");
                assert!(a.took >= Duration::from_secs(2), "{a:?}");
            }
        }
    }
    let slow: Vec<&Attempt> = attempts.iter().filter(|a| a.slow()).collect();

    // The client's handshakes: one per attempt; the slow ones are the
    // client's own; their SYN retransmits are the namespace's counter.
    let hs: Vec<&Value> = events(&objs, "handshake")
        .filter(|e| e["netns"] == client_netns && e["dport"] == PORT)
        .collect();
    assert_eq!(hs.len(), attempts.len(), "{hs:#?}");
    let slow_hs: Vec<&&Value> = hs
        .iter()
        .filter(|e| e["syn_retransmits"] != 0 || e["outcome"] != "established")
        .collect();
    assert_eq!(slow_hs.len(), slow.len(), "the client's own count: {hs:#?}");
    let rtx: u64 = hs
        .iter()
        .map(|e| e["syn_retransmits"].as_u64().expect("syn_retransmits"))
        .sum();
    assert_eq!(rtx, syn_retrans, "== TCPSynRetrans delta: {hs:#?}");
    for a in &slow {
        let e = hs
            .iter()
            .find(|e| e["sport"] == a.local_port)
            .unwrap_or_else(|| panic!("no handshake from port {}: {hs:#?}", a.local_port));
        let outcome = if a.errno.is_some() {
            "timeout"
        } else {
            "established"
        };
        assert_eq!(e["outcome"], outcome, "{e}");
        if ack == BareAck::Delivered && a.paws > 0 {
            // The resend follows the bare ACK within milliseconds.
            if let Some(first) = e["syn_retransmit_us"][0].as_u64() {
                assert!(first < 500_000, "{e}");
            }
        }
    }
    // Failed connects keep their 4-tuple (the kernel clears the source
    // address on failure).
    for a in slow.iter().filter(|a| a.errno.is_some()) {
        let c = events(&objs, "connect")
            .find(|e| e["netns"] == client_netns && e["sport"] == a.local_port)
            .unwrap_or_else(|| panic!("no connect event from port {}", a.local_port));
        assert_eq!(c["error"], "ETIMEDOUT", "{c}");
        assert_eq!(c["saddr"], a.source, "{c}");
        assert_eq!(c["daddr"], lab.server_ip.to_string(), "{c}");
        assert_eq!(c["dport"], PORT, "{c}");
    }
    if !paws_hook {
        eprintln!("paws_time_wait unavailable: the server side is not linked");
        return;
    }

    // The server's rejects, exactly, and the link from the client's finding.
    let paws: Vec<&Value> = events(&objs, "paws_reject")
        .filter(|e| e["netns"] == server_netns)
        .collect();
    assert_eq!(paws.len() as u64, rejects, "== {counter} delta: {paws:#?}");
    for e in &paws {
        assert_eq!(e["site"], "time_wait", "{e}");
        assert_eq!(
            (&e["daddr"], &e["dport"]),
            (&NAT_IP.into(), &NAT_PORT.into())
        );
    }
    let found = findings_in(&objs, client_netns);
    let s = the_finding(&found, "slow_connect");
    assert_eq!(
        s["subject"],
        format!("destination {dest} netns {client_netns}")
    );
    let e = &s["evidence"];
    assert_eq!(e["measured"], "handshake", "{e}");
    assert_eq!(e["slow_connects"], slow.len(), "{e}");
    assert_eq!(e["syn_retransmits"], syn_retrans, "{e}");
    let side = e["server_side"].as_array().expect("server_side");
    let tw = side
        .iter()
        .find(|c| c["id"] == "paws_time_wait_reuse")
        .unwrap_or_else(|| panic!("no TIME_WAIT cause: {e}"));
    assert_eq!(tw["netns"], server_netns, "{tw}");
    assert_eq!(tw["port"], PORT, "{tw}");
    assert_eq!(tw["time_wait_rejects"], rejects, "{tw}");
    // The server saw the NAT's address, none of the clients'.
    assert_eq!(tw["via_nat"], true, "{tw}");
    let server_found = findings_in(&objs, server_netns);
    assert_eq!(
        finding_ids(&server_found),
        ["paws_time_wait_reuse"],
        "{server_found:#?}"
    );
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn time_wait_paws_bare_ack_delivered() {
    scenario(BareAck::Delivered);
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn time_wait_paws_bare_ack_lost() {
    scenario(BareAck::Lost);
}

#[test]
#[ignore = "needs root and BPF: run by cargo xtask test"]
fn time_wait_paws_bare_ack_filtered() {
    scenario(BareAck::Filtered);
}
