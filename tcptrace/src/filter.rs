//! `--pid --comm --port --addr --netns --cgroup`: parsed once, applied in the
//! kernel (see tcptrace-ebpf/src/filter.rs) and, with the same rules, to
//! recordings on replay. `--pod --k8s-namespace` are applied in userspace
//! only, after container attribution ([`FilterArgs::matches`]): a pod is
//! several cgroups, is named only by the kubelet's directories, and one
//! started after tcptrace (a restarted pod has a new UID and new cgroups)
//! must match too, which a cgroup id fixed at load time cannot do.

use std::{net::IpAddr, os::unix::fs::MetadataExt as _, path::Path};

use clap::Args;
use ipnet::IpNet;
use tcptrace_common::{
    config::filter_flags as F,
    event::{AF_INET, AF_INET6},
};

use crate::event::Event;

#[derive(Args, Clone, Debug, Default)]
pub struct FilterArgs {
    /// Only this process (thread-group id).
    #[arg(long)]
    pub pid: Option<u32>,
    /// Only tasks with this name (the kernel's comm, at most 15 bytes).
    #[arg(long, value_parser = parse_comm)]
    pub comm: Option<String>,
    /// Only connections with this local or remote port.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Only connections whose local or remote address is in this CIDR (v4 or v6; a bare address means /32 or /128).
    #[arg(long, value_parser = parse_cidr)]
    pub addr: Option<IpNet>,
    /// Only this network namespace: inode number, /proc/PID/ns/net, or a name under /run/netns.
    #[arg(long, value_parser = parse_netns)]
    pub netns: Option<u32>,
    /// Only tasks in this cgroup (v2): cgroup id, or a path (relative paths are under the cgroup2 mount, /sys/fs/cgroup or /sys/fs/cgroup/unified).
    #[arg(long, value_parser = parse_cgroup)]
    pub cgroup: Option<u64>,
    /// Only tasks in the pod of this name (Kubernetes; applied after container attribution, so kernel histograms still count every pod).
    #[arg(long, value_parser = parse_pod)]
    pub pod: Option<String>,
    /// Only tasks in pods of this Kubernetes namespace (applied like --pod).
    #[arg(long = "k8s-namespace", value_parser = parse_k8s_namespace)]
    pub k8s_namespace: Option<String>,
    #[command(flatten)]
    pub containers: crate::container::ContainerArgs,
}

/// Kubernetes names: lowercase letters, digits, `-`, and `.` between
/// labels of a pod name (DNS-1123), starting and ending alphanumeric.
fn dns_name(s: &str, max: usize, dots: bool) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (1..=max).contains(&s.len())
        && s.bytes()
            .all(|b| alnum(b) || b == b'-' || (dots && b == b'.'))
        && s.bytes().next().is_some_and(alnum)
        && s.bytes().last().is_some_and(alnum)
}

fn parse_pod(s: &str) -> Result<String, String> {
    if !dns_name(s, crate::container::pods::MAX_POD_NAME, true) {
        return Err("a pod name is 1 to 253 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit".into());
    }
    Ok(s.to_owned())
}

fn parse_k8s_namespace(s: &str) -> Result<String, String> {
    if !dns_name(s, crate::container::pods::MAX_LABEL, false) {
        return Err("a namespace is 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit".into());
    }
    Ok(s.to_owned())
}

fn parse_comm(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 15 {
        return Err("process names are 1 to 15 bytes (the kernel's TASK_COMM_LEN - 1)".into());
    }
    Ok(s.to_owned())
}

fn parse_cidr(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| "expected an address or CIDR such as 10.0.0.0/8 or 2001:db8::/32".into())
}

fn inode_of(path: &Path) -> Result<u64, String> {
    std::fs::metadata(path)
        .map(|m| m.ino())
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn parse_netns(s: &str) -> Result<u32, String> {
    if let Ok(n) = s.parse::<u32>() {
        return Ok(n);
    }
    let path = if s.contains('/') {
        Path::new(s).to_path_buf()
    } else {
        Path::new("/run/netns").join(s)
    };
    let ino = inode_of(&path).map_err(|e| {
        format!("{e} (give an inode number, /proc/PID/ns/net or a name under /run/netns)")
    })?;
    u32::try_from(ino)
        .map_err(|_| format!("{}: inode {ino} is not a namespace inode", path.display()))
}

fn parse_cgroup(s: &str) -> Result<u64, String> {
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    // Relative paths are under the cgroup2 mount: /sys/fs/cgroup, or
    // /sys/fs/cgroup/unified on hybrid hosts.
    let root = crate::container::cgroupfs::find_root()
        .unwrap_or_else(|| Path::new("/sys/fs/cgroup").to_path_buf());
    let path = if s.starts_with('/') && Path::new(s).starts_with("/sys/fs/cgroup") {
        Path::new(s).to_path_buf()
    } else {
        root.join(s.trim_start_matches('/'))
    };
    inode_of(&path).map_err(|e| format!("{e} (give a cgroup id or a cgroup v2 directory)"))
}

impl FilterArgs {
    /// The kernel's form of the filter (read-only global).
    pub fn to_kernel(&self) -> tcptrace_common::Filter {
        let mut f = tcptrace_common::Filter::default();
        if let Some(pid) = self.pid {
            f.flags |= F::PID;
            f.pid = pid;
        }
        if let Some(comm) = &self.comm {
            f.flags |= F::COMM;
            f.comm[..comm.len()].copy_from_slice(comm.as_bytes());
        }
        if let Some(port) = self.port {
            f.flags |= F::PORT;
            f.port = port;
        }
        if let Some(net) = self.addr {
            f.flags |= F::ADDR;
            f.prefix_len = u32::from(net.prefix_len());
            match net.addr() {
                IpAddr::V4(a) => {
                    f.addr_family = AF_INET;
                    f.addr[..4].copy_from_slice(&a.octets());
                }
                IpAddr::V6(a) => {
                    f.addr_family = AF_INET6;
                    f.addr = a.octets();
                }
            }
        }
        if let Some(netns) = self.netns {
            f.flags |= F::NETNS;
            f.netns = netns;
        }
        if let Some(cgroup) = self.cgroup {
            f.flags |= F::CGROUP;
            f.cgroup = cgroup;
        }
        f
    }

    /// The same rules as the kernel's, for events read back from a recording.
    pub fn matches(&self, ev: &Event) -> bool {
        let e = &ev.endpoints;
        self.pid.is_none_or(|p| p == ev.pid)
            && self.comm.as_deref().is_none_or(|c| c == ev.comm)
            && self.port.is_none_or(|p| p == e.sport || p == e.dport)
            && self
                .addr
                .is_none_or(|n| n.contains(&e.saddr) || n.contains(&e.daddr))
            && self.netns.is_none_or(|n| n == ev.netns)
            && self.cgroup.is_none_or(|c| c == ev.cgroup)
            && self.matches_pod(ev)
    }

    /// `--pod` and `--k8s-namespace`, the filters the kernel cannot apply:
    /// the live run asks this of every event after attribution.
    pub fn matches_pod(&self, ev: &Event) -> bool {
        let c = ev.container.as_deref();
        self.pod
            .as_deref()
            .is_none_or(|p| c.and_then(|c| c.pod.as_deref()) == Some(p))
            && self
                .k8s_namespace
                .as_deref()
                .is_none_or(|n| c.and_then(|c| c.namespace.as_deref()) == Some(n))
    }

    /// `--flag value` form, for headers and messages; empty when unfiltered.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(v) = self.pid {
            parts.push(format!("--pid {v}"));
        }
        if let Some(v) = &self.comm {
            parts.push(format!("--comm {v}"));
        }
        if let Some(v) = self.port {
            parts.push(format!("--port {v}"));
        }
        if let Some(v) = self.addr {
            parts.push(format!("--addr {v}"));
        }
        if let Some(v) = self.netns {
            parts.push(format!("--netns {v}"));
        }
        if let Some(v) = self.cgroup {
            parts.push(format!("--cgroup {v}"));
        }
        if let Some(v) = &self.pod {
            parts.push(format!("--pod {v}"));
        }
        if let Some(v) = &self.k8s_namespace {
            parts.push(format!("--k8s-namespace {v}"));
        }
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{decode, tests::raw_latency};
    use tcptrace_common::{config::prefix_match, EventKind};

    fn ev() -> Event {
        // pid 42, comm curl, 127.0.0.1:40000 -> 10.1.2.3:8080, netns 4026531840, cgroup 7
        decode(&raw_latency(EventKind::Connect, AF_INET, 0)).unwrap()
    }

    #[test]
    fn empty_filter_matches_everything() {
        let f = FilterArgs::default();
        assert!(f.matches(&ev()));
        assert_eq!(f.to_kernel().flags, 0);
        assert_eq!(f.describe(), "");
    }

    #[test]
    fn each_criterion_matches_and_excludes() {
        let cases: Vec<(FilterArgs, bool)> = vec![
            (
                FilterArgs {
                    pid: Some(42),
                    ..Default::default()
                },
                true,
            ),
            (
                FilterArgs {
                    pid: Some(43),
                    ..Default::default()
                },
                false,
            ),
            (
                FilterArgs {
                    comm: Some("curl".into()),
                    ..Default::default()
                },
                true,
            ),
            (
                FilterArgs {
                    comm: Some("cur".into()),
                    ..Default::default()
                },
                false,
            ),
            (
                FilterArgs {
                    port: Some(40000),
                    ..Default::default()
                },
                true,
            ),
            (
                FilterArgs {
                    port: Some(8080),
                    ..Default::default()
                },
                true,
            ),
            (
                FilterArgs {
                    port: Some(80),
                    ..Default::default()
                },
                false,
            ),
            (
                FilterArgs {
                    addr: Some(parse_cidr("10.0.0.0/8").unwrap()),
                    ..Default::default()
                },
                true,
            ),
            (
                FilterArgs {
                    addr: Some(parse_cidr("127.0.0.1").unwrap()),
                    ..Default::default()
                },
                true,
            ),
            (
                FilterArgs {
                    addr: Some(parse_cidr("192.168.0.0/16").unwrap()),
                    ..Default::default()
                },
                false,
            ),
            (
                FilterArgs {
                    addr: Some(parse_cidr("::1").unwrap()),
                    ..Default::default()
                },
                false,
            ),
            (
                FilterArgs {
                    netns: Some(4026531840),
                    ..Default::default()
                },
                true,
            ),
            (
                FilterArgs {
                    netns: Some(1),
                    ..Default::default()
                },
                false,
            ),
            (
                FilterArgs {
                    cgroup: Some(7),
                    ..Default::default()
                },
                true,
            ),
            (
                FilterArgs {
                    cgroup: Some(8),
                    ..Default::default()
                },
                false,
            ),
        ];
        for (f, want) in cases {
            assert_eq!(f.matches(&ev()), want, "{}", f.describe());
        }
    }

    #[test]
    fn pod_filters_match_attributed_events() {
        use crate::container::{Container, ContainerId, Runtime};
        let mut e = ev();
        let f = |pod: Option<&str>, ns: Option<&str>| FilterArgs {
            pod: pod.map(Into::into),
            k8s_namespace: ns.map(Into::into),
            ..Default::default()
        };
        // Not in a container: only the unfiltered run keeps it.
        assert!(f(None, None).matches(&e));
        assert!(!f(Some("web"), None).matches(&e));
        assert!(!f(None, Some("prod")).matches(&e));
        e.container = Some(std::sync::Arc::new(Container {
            runtime: Runtime::Crio,
            id: ContainerId::parse(&"a".repeat(64)).unwrap(),
            pod_uid: None,
            pod: Some("web".into()),
            namespace: Some("prod".into()),
            name: Some("app".into()),
        }));
        for (pod, ns, want) in [
            (Some("web"), None, true),
            (Some("web"), Some("prod"), true),
            (None, Some("prod"), true),
            (Some("we"), None, false),
            (Some("web"), Some("dev"), false),
            (None, Some("dev"), false),
        ] {
            let f = f(pod, ns);
            assert_eq!(f.matches(&e), want, "{}", f.describe());
            assert_eq!(f.matches_pod(&e), want, "{}", f.describe());
            assert_eq!(f.to_kernel().flags, 0);
        }
    }

    #[test]
    fn kernel_form_agrees_with_userspace_on_addresses() {
        let e = ev();
        for cidr in [
            "10.0.0.0/8",
            "10.1.2.3/32",
            "10.1.2.0/23",
            "127.0.0.0/8",
            "11.0.0.0/8",
            "0.0.0.0/0",
        ] {
            let f = FilterArgs {
                addr: Some(parse_cidr(cidr).unwrap()),
                ..Default::default()
            };
            let k = f.to_kernel();
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            if let (IpAddr::V4(sa), IpAddr::V4(da)) = (e.endpoints.saddr, e.endpoints.daddr) {
                s[..4].copy_from_slice(&sa.octets());
                d[..4].copy_from_slice(&da.octets());
            }
            let kernel =
                prefix_match(&s, &k.addr, k.prefix_len) || prefix_match(&d, &k.addr, k.prefix_len);
            assert_eq!(kernel, f.matches(&e), "{cidr}");
        }
    }

    #[test]
    fn bad_values_are_explained() {
        assert!(parse_comm("a-name-longer-than-15")
            .unwrap_err()
            .contains("15"));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("not-an-address").unwrap_err().contains("CIDR"));
        assert!(parse_netns("no-such-netns-name")
            .unwrap_err()
            .contains("/run/netns"));
        assert!(parse_cgroup("no/such/cgroup")
            .unwrap_err()
            .contains("cgroup"));
        // Relative to the cgroup2 mount, wherever it is (on hybrid hosts
        // /sys/fs/cgroup is a tmpfs without cgroup.controllers).
        if let Some(root) = crate::container::cgroupfs::find_root() {
            let want = std::fs::metadata(root.join("cgroup.controllers")).map(|m| m.ino());
            assert_eq!(parse_cgroup("cgroup.controllers").ok(), want.ok());
            assert_eq!(parse_cgroup("cgroup.controllers").map(|_| ()), Ok(()));
        }
        assert_eq!(parse_netns("4026531840"), Ok(4026531840));
        for bad in [
            "",
            "Web",
            "web_1",
            "-web",
            "web-",
            "we\x1bb",
            &"a".repeat(254),
        ] {
            assert!(parse_pod(bad).unwrap_err().contains("pod name"), "{bad:?}");
        }
        assert_eq!(
            parse_pod("web-7d4b9c-x2x.v1"),
            Ok("web-7d4b9c-x2x.v1".into())
        );
        assert_eq!(parse_pod(&"a".repeat(253)).map(|p| p.len()), Ok(253));
        for bad in ["", "kube.system", "Kube", &"n".repeat(64)] {
            assert!(
                parse_k8s_namespace(bad).unwrap_err().contains("namespace"),
                "{bad:?}"
            );
        }
        assert_eq!(parse_k8s_namespace("kube-system"), Ok("kube-system".into()));
        assert!(parse_netns("/proc/self/ns/net").is_ok());
    }
}
