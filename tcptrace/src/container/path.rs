//! What a cgroup v2 path says about the container in it: the runtime, the
//! container id and, on Kubernetes nodes, the pod UID, as containerd, CRI-O,
//! Docker and Podman lay their cgroups out under the systemd and cgroupfs
//! drivers:
//!
//! ```text
//! kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope
//! kubepods.slice/kubepods-pod<uid_>.slice/crio-<id>.scope
//! kubepods/burstable/pod<uid>/<id>            (cgroupfs driver, any runtime)
//! system.slice/docker-<id>.scope              docker/<id>
//! machine.slice/libpod-<id>.scope
//! ```
//!
//! The path is hostile input (anyone with a delegated cgroup names its
//! directories): only 64-hex ids and UUIDs are taken from it, so nothing
//! else of it ever reaches an output.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A container id: 64 lowercase hex digits (containerd, CRI-O, Docker,
/// Podman all use a SHA-256).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContainerId(String);

impl TryFrom<String> for ContainerId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).ok_or_else(|| "a container id is 64 lowercase hex digits".to_owned())
    }
}

impl From<ContainerId> for String {
    fn from(id: ContainerId) -> Self {
        id.0
    }
}

impl ContainerId {
    pub const LEN: usize = 64;

    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == Self::LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 12-digit form `docker ps` and `crictl ps` print.
    pub fn short(&self) -> &str {
        self.0.get(..12).unwrap_or(&self.0)
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A pod UID in its canonical form (`8-4-4-4-12` lowercase hex).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PodUid(String);

impl TryFrom<String> for PodUid {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).ok_or_else(|| "a pod UID is a lowercase hex UUID".to_owned())
    }
}

impl From<PodUid> for String {
    fn from(uid: PodUid) -> Self {
        uid.0
    }
}

impl PodUid {
    /// Accepts the canonical form or the systemd driver's (`_` for `-`).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.replace('_', "-");
        let groups: Vec<&str> = s.split('-').collect();
        let lens = [8, 4, 4, 4, 12];
        let ok = groups.len() == lens.len()
            && groups.iter().zip(lens).all(|(g, n)| {
                g.len() == n && g.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            });
        ok.then_some(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which runtime's naming the path used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Containerd,
    Crio,
    Docker,
    Podman,
    /// A bare id under a pod (cgroupfs driver): the runtime is not named.
    Unknown,
}

/// What a cgroup path says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathInfo {
    pub runtime: Runtime,
    pub id: ContainerId,
    pub pod_uid: Option<PodUid>,
}

/// Systemd-driver scope prefixes. `crio-conmon-` (the monitor beside a
/// CRI-O container) does not match: its id is not 64 hex after `crio-`.
const SCOPES: [(&str, Runtime); 5] = [
    ("cri-containerd-", Runtime::Containerd),
    ("crio-", Runtime::Crio),
    ("docker-", Runtime::Docker),
    ("libpod-", Runtime::Podman),
    ("cri-o-", Runtime::Crio),
];

/// The container id a path component names, if it names one.
fn container_in(component: &str, parent: Option<&str>) -> Option<(Runtime, ContainerId)> {
    if let Some(scope) = component.strip_suffix(".scope") {
        return SCOPES.iter().find_map(|(prefix, rt)| {
            let id = ContainerId::parse(scope.strip_prefix(prefix)?)?;
            Some((*rt, id))
        });
    }
    let id = ContainerId::parse(component)?;
    let runtime = match parent {
        Some("docker") => Runtime::Docker,
        Some("libpod_parent") => Runtime::Podman,
        _ => Runtime::Unknown,
    };
    Some((runtime, id))
}

/// The pod UID a path component names (`pod<uid>` under cgroupfs,
/// `kubepods[-<qos>]-pod<uid_>.slice` under systemd).
fn pod_in(component: &str) -> Option<PodUid> {
    if let Some(slice) = component.strip_suffix(".slice") {
        let (_, uid) = slice.rsplit_once("-pod")?;
        return PodUid::parse(uid);
    }
    PodUid::parse(component.strip_prefix("pod")?)
}

/// The container a cgroup path (relative to the cgroup v2 root, or
/// absolute) belongs to: the innermost component naming a container id
/// (a container's own sub-cgroups, e.g. systemd inside it, stay its own),
/// and the pod UID of a component above it. None for host cgroups.
pub fn parse(path: &str) -> Option<PathInfo> {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let (at, (runtime, id)) =
        components.iter().enumerate().rev().find_map(|(i, c)| {
            Some((i, container_in(c, i.checked_sub(1).map(|p| components[p]))?))
        })?;
    let pod_uid = components[..at].iter().rev().find_map(|c| pod_in(c));
    Some(PathInfo {
        runtime,
        id,
        pod_uid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b";
    const UID_: &str = "6f1c2a3b_4d5e_4f60_8a7b_9c0d1e2f3a4b";

    fn info(path: &str) -> Option<(Runtime, String, Option<String>)> {
        parse(path).map(|i| {
            (
                i.runtime,
                i.id.as_str().to_owned(),
                i.pod_uid.map(|u| u.as_str().to_owned()),
            )
        })
    }

    #[test]
    fn kubernetes_layouts() {
        let pod = Some(UID.to_owned());
        for (path, rt) in [
            (format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope"), Runtime::Containerd),
            (format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{ID}.scope"), Runtime::Crio),
            (format!("/kubepods.slice/kubepods-pod{UID_}.slice/docker-{ID}.scope"), Runtime::Docker),
            (format!("/kubepods/burstable/pod{UID}/{ID}"), Runtime::Unknown),
            (format!("/kubepods/pod{UID}/{ID}"), Runtime::Unknown),
            // A sub-cgroup inside the container is still the container.
            (format!("kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope/init.scope"), Runtime::Containerd),
        ] {
            assert_eq!(info(&path), Some((rt, ID.to_owned(), pod.clone())), "{path}");
        }
    }

    #[test]
    fn plain_container_layouts() {
        for (path, rt) in [
            (format!("/system.slice/docker-{ID}.scope"), Runtime::Docker),
            (format!("/docker/{ID}"), Runtime::Docker),
            (format!("/machine.slice/libpod-{ID}.scope"), Runtime::Podman),
            (
                format!("/machine.slice/libpod-{ID}.scope/container"),
                Runtime::Podman,
            ),
            (format!("/system.slice/crio-{ID}.scope"), Runtime::Crio),
        ] {
            assert_eq!(info(&path), Some((rt, ID.to_owned(), None)), "{path}");
        }
    }

    #[test]
    fn the_innermost_container_wins() {
        let inner = "f".repeat(64);
        assert_eq!(
            info(&format!("/docker/{ID}/docker/{inner}")),
            Some((Runtime::Docker, inner, None))
        );
    }

    #[test]
    fn host_and_lookalike_paths_are_not_containers() {
        for path in [
            "/".to_owned(),
            String::new(),
            "/system.slice/ssh.service".to_owned(),
            "/user.slice/user-0.slice/session-1.scope".to_owned(),
            format!("/kubepods.slice/kubepods-pod{UID_}.slice"),
            // conmon, CRI-O's monitor, is not the container.
            format!("/system.slice/crio-conmon-{ID}.scope"),
            // Uppercase, short, long, non-hex ids.
            format!("/docker/{}", ID.to_uppercase()),
            format!("/docker/{}", &ID[1..]),
            format!("/docker/{ID}0"),
            format!("/docker-{}.scope", "g".repeat(64)),
            format!("/system.slice/docker-{ID}.service"),
            "/docker/\u{1b}[2J".to_owned(),
        ] {
            assert_eq!(info(&path), None, "{path:?}");
        }
    }

    #[test]
    fn malformed_pod_uids_are_dropped_not_trusted() {
        for pod in [
            "pod1234",
            "podnot-a-uid",
            "pod6F1C2A3B-4D5E-4F60-8A7B-9C0D1E2F3A4B",
        ] {
            assert_eq!(
                info(&format!("/kubepods/{pod}/{ID}")),
                Some((Runtime::Unknown, ID.to_owned(), None)),
                "{pod}"
            );
        }
    }

    #[test]
    fn hostile_paths_do_not_panic() {
        let long = format!("/{}", "x/".repeat(4096));
        assert_eq!(info(&long), None);
        assert_eq!(info(&"é".repeat(3000)), None);
        assert_eq!(
            info(&format!("/kubepods-pod{}.slice/{ID}", "\u{9b}".repeat(36))),
            Some((Runtime::Unknown, ID.to_owned(), None))
        );
        assert_eq!(ContainerId::parse(ID).unwrap().short(), "0123456789ab");
    }
}
