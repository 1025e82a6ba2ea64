//! A fake host for tests: a scratch directory laid out like `/` (proc
//! files, namespace links, fd links), and the lines of /proc files to put
//! in it.

use std::{fs, path::PathBuf};

/// A scratch directory removed on drop.
pub struct Tree(pub PathBuf);

impl Tree {
    pub fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("tcptrace-diag-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    pub fn file(&self, rel: &str, text: &str) -> &Self {
        let p = self.0.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
        self
    }

    pub fn link(&self, rel: &str, target: &str) -> &Self {
        let p = self.0.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
        self
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub const NETSTAT_HEAD: &str = "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPReqQFullDrop TCPReqQFullDoCookies PAWSEstab TCPChallengeACK\n";

pub fn netstat(values: [u64; 7]) -> String {
    let v: Vec<String> = values.iter().map(u64::to_string).collect();
    format!(
        "{NETSTAT_HEAD}TcpExt: {}\nIpExt: InNoRoutes InTruncatedPkts\nIpExt: 0 0\n",
        v.join(" ")
    )
}

pub const TCP_HEAD: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

/// One /proc/net/tcp line for an IPv4 socket.
pub fn tcp4(
    local: [u8; 4],
    lport: u16,
    remote: [u8; 4],
    rport: u16,
    st: u8,
    rx: u64,
    inode: u64,
) -> String {
    let hex = |a: [u8; 4]| format!("{:08X}", u32::from_le_bytes(a));
    format!(
        "   0: {}:{lport:04X} {}:{rport:04X} {st:02X} 00000000:{rx:08X} 00:00000000 00000000     0        0 {inode} 1 0000000000000000 100 0 0 10 0\n",
        hex(local),
        hex(remote)
    )
}

pub fn sysctls(t: &Tree, prefix: &str, somaxconn: u64, range: &str) {
    t.file(
        &format!("{prefix}/net/core/somaxconn"),
        &format!("{somaxconn}\n"),
    )
    .file(&format!("{prefix}/net/ipv4/tcp_max_syn_backlog"), "512\n")
    .file(&format!("{prefix}/net/ipv4/tcp_syncookies"), "1\n")
    .file(&format!("{prefix}/net/ipv4/tcp_abort_on_overflow"), "0\n")
    .file(&format!("{prefix}/net/ipv4/tcp_timestamps"), "1\n")
    .file(&format!("{prefix}/net/ipv4/tcp_tw_reuse"), "2\n")
    .file(&format!("{prefix}/net/ipv4/tcp_max_tw_buckets"), "262144\n")
    .file(
        &format!("{prefix}/net/ipv4/ip_local_port_range"),
        &format!("{range}\n"),
    );
}

/// A fixture host: our namespace 100 with a listener owned by pid 7 (at
/// its fd limit), and namespace 200 seen through a thread of pid 9.
pub fn fixture_host(t: &Tree) {
    t.link("proc/self/ns/net", "net:[100]");
    sysctls(t, "proc/sys", 128, "32768 60999");
    t.file("proc/self/net/netstat", &netstat([0, 10, 10, 0, 0, 0, 0]));
    let mut tcp = String::from(TCP_HEAD);
    tcp += &tcp4([0; 4], 8080, [0; 4], 0, 0x0A, 129, 555);
    for i in 0..20 {
        tcp += &tcp4([10, 0, 0, 1], 8080, [10, 0, 0, 9], 50000 + i, 0x08, 0, 0);
    }
    t.file("proc/self/net/tcp", &tcp);
    t.link("proc/7/task/7/ns/net", "net:[100]");
    t.file("proc/7/comm", "server\n");
    t.file(
        "proc/7/limits",
        "Limit                     Soft Limit           Hard Limit           Units     \nMax open files            4                    4096                 files     \n",
    );
    for fd in 0..4 {
        let target = if fd == 3 {
            "socket:[555]".to_owned()
        } else {
            format!("/dev/null{fd}")
        };
        t.link(&format!("proc/7/fd/{fd}"), &target);
    }
    t.link("proc/9/task/9/ns/net", "net:[100]");
    t.link("proc/9/task/10/ns/net", "net:[200]");
    t.file("proc/9/comm", "client\n");
    t.file(
        "proc/9/task/10/net/netstat",
        &netstat([0, 0, 0, 0, 0, 0, 3]),
    );
    let mut tcp = String::from(TCP_HEAD);
    tcp += &tcp4([127, 0, 0, 1], 33000, [127, 0, 0, 1], 5555, 0x06, 0, 0);
    t.file("proc/9/task/10/net/tcp", &tcp);
}
