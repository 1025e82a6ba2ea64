//! Pod name, namespace and container name from the kubelet's log
//! directories, the one place on a node that names them without asking the
//! API server:
//!
//! ```text
//! /var/log/pods/<namespace>_<pod>_<uid>/<container>/0.log
//! /var/log/containers/<pod>_<namespace>_<container>-<container id>.log
//! ```
//!
//! The first maps a pod UID to its namespace and name; the second (the
//! kubelet's links into the first) a container id to its container name.
//! A pod with one container directory names it without the second.
//! Directory names are hostile input: lengths are bounded by Kubernetes'
//! own limits, anything longer or malformed is skipped, non-UTF-8 is read
//! lossily, and control characters are kept as data (every text output
//! escapes them; JSON escapes them itself).

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::path::{ContainerId, PodUid};

/// Longest pod name (a DNS-1123 subdomain).
pub const MAX_POD_NAME: usize = 253;
/// Longest namespace or container name (a DNS-1123 label).
pub const MAX_LABEL: usize = 63;
/// Most directory entries one index reads.
pub const MAX_ENTRIES: usize = 65_536;
/// A miss re-reads the directories at most this often.
pub const REFRESH: Duration = Duration::from_secs(1);

/// A pod as its log directory names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodName {
    pub namespace: String,
    pub name: String,
    /// The container directories under it.
    pub containers: Vec<String>,
}

/// The pods and containers the log directories name, re-read on a miss.
pub struct PodIndex {
    pods_dir: PathBuf,
    containers_dir: PathBuf,
    pods: HashMap<PodUid, PodName>,
    containers: HashMap<ContainerId, String>,
    read_at: Option<Instant>,
}

impl PodIndex {
    /// `pods_dir` is the kubelet's `/var/log/pods`; the container links
    /// are in `containers` beside it.
    pub fn new(pods_dir: PathBuf) -> Self {
        let containers_dir = pods_dir
            .parent()
            .unwrap_or_else(|| Path::new("/"))
            .join("containers");
        Self {
            pods_dir,
            containers_dir,
            pods: HashMap::new(),
            containers: HashMap::new(),
            read_at: None,
        }
    }

    /// The pod with this UID, re-reading the directories on a miss (at
    /// most once per [`REFRESH`]).
    pub fn pod(&mut self, uid: &PodUid) -> Option<&PodName> {
        if !self.pods.contains_key(uid) {
            self.refresh();
        }
        self.pods.get(uid)
    }

    /// The container name of this id in this pod.
    pub fn container(&mut self, id: &ContainerId, pod: &PodUid) -> Option<String> {
        if !self.containers.contains_key(id) {
            self.refresh();
        }
        if let Some(name) = self.containers.get(id) {
            return Some(name.clone());
        }
        match self.pods.get(pod).map(|p| p.containers.as_slice()) {
            Some([only]) => Some(only.clone()),
            _ => None,
        }
    }

    fn refresh(&mut self) {
        if self.read_at.is_some_and(|t| t.elapsed() < REFRESH) {
            return;
        }
        self.read_at = Some(Instant::now());
        self.pods = names(&self.pods_dir)
            .filter_map(|n| {
                let (uid, pod) = parse_pod_dir(&n)?;
                let containers = names(&self.pods_dir.join(&n))
                    .filter(|c| c.len() <= MAX_LABEL)
                    .collect();
                Some((uid, PodName { containers, ..pod }))
            })
            .collect();
        self.containers = names(&self.containers_dir)
            .filter_map(|n| parse_container_log(&n))
            .collect();
    }
}

/// The entry names of a directory, lossy UTF-8, bounded in number; none
/// when it cannot be read.
fn names(dir: &Path) -> impl Iterator<Item = String> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .take(MAX_ENTRIES)
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
}

/// `<namespace>_<pod>_<uid>`. Namespaces and pod names cannot hold `_`.
pub fn parse_pod_dir(name: &str) -> Option<(PodUid, PodName)> {
    let mut parts = name.splitn(3, '_');
    let (namespace, pod, uid) = (parts.next()?, parts.next()?, parts.next()?);
    let ok = (1..=MAX_LABEL).contains(&namespace.len()) && (1..=MAX_POD_NAME).contains(&pod.len());
    ok.then_some(())?;
    Some((
        PodUid::parse(uid).filter(|u| u.as_str() == uid)?,
        PodName {
            namespace: namespace.to_owned(),
            name: pod.to_owned(),
            containers: Vec::new(),
        },
    ))
}

/// `<pod>_<namespace>_<container>-<64 hex>.log` → (id, container name).
pub fn parse_container_log(name: &str) -> Option<(ContainerId, String)> {
    let stem = name.strip_suffix(".log")?;
    let (rest, id) = stem.rsplit_once('-')?;
    let id = ContainerId::parse(id)?;
    let container = rest.splitn(3, '_').nth(2)?;
    (1..=MAX_LABEL)
        .contains(&container.len())
        .then(|| (id, container.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b";

    #[test]
    fn pod_directory_names() {
        let (uid, pod) =
            parse_pod_dir(&format!("kube-system_coredns-5d78c9869d-abcde_{UID}")).unwrap();
        assert_eq!(uid.as_str(), UID);
        assert_eq!(
            (pod.namespace.as_str(), pod.name.as_str()),
            ("kube-system", "coredns-5d78c9869d-abcde")
        );
        for bad in [
            format!("_pod_{UID}"),
            format!("ns__{UID}"),
            "ns_pod".to_owned(),
            format!("ns_pod_{}", UID.replace('-', "_")),
            format!("ns_pod_{UID}x"),
            format!("{}_pod_{UID}", "n".repeat(64)),
            format!("ns_{}_{UID}", "p".repeat(254)),
        ] {
            assert_eq!(parse_pod_dir(&bad), None, "{bad}");
        }
        // Control characters are data, kept for the outputs to escape.
        let (_, pod) = parse_pod_dir(&format!("ns_\x1b[2Jevil_{UID}")).unwrap();
        assert_eq!(pod.name, "\x1b[2Jevil");
    }

    #[test]
    fn container_log_names() {
        assert_eq!(
            parse_container_log(&format!(
                "coredns-5d78c9869d-abcde_kube-system_coredns-{ID}.log"
            )),
            Some((ContainerId::parse(ID).unwrap(), "coredns".to_owned()))
        );
        assert_eq!(
            parse_container_log(&format!("web_default_istio-proxy-{ID}.log")).map(|c| c.1),
            Some("istio-proxy".to_owned())
        );
        for bad in [
            format!("web_default_app-{ID}"),
            format!("web_default_app-{}.log", &ID[1..]),
            format!("web_default-{ID}.log"),
            format!("web_default_-{ID}.log"),
            format!("web_default_{}-{ID}.log", "c".repeat(64)),
        ] {
            assert_eq!(parse_container_log(&bad), None, "{bad}");
        }
    }

    #[test]
    fn index_reads_the_tree_and_refreshes_on_a_miss() {
        let root = std::env::temp_dir().join(format!("tcptrace-pods-{}", std::process::id()));
        let pods = root.join("pods");
        fs::create_dir_all(pods.join(format!("prod_web_{UID}/app"))).unwrap();
        let mut idx = PodIndex::new(pods.clone());
        let uid = PodUid::parse(UID).unwrap();
        let id = ContainerId::parse(ID).unwrap();
        let pod = idx.pod(&uid).unwrap();
        assert_eq!((pod.namespace.as_str(), pod.name.as_str()), ("prod", "web"));
        // One container directory names it.
        assert_eq!(idx.container(&id, &uid).as_deref(), Some("app"));
        // Two: only the kubelet's link says which.
        fs::create_dir_all(pods.join(format!("prod_web_{UID}/sidecar"))).unwrap();
        fs::create_dir_all(root.join("containers")).unwrap();
        fs::write(
            root.join(format!("containers/web_prod_sidecar-{ID}.log")),
            "",
        )
        .unwrap();
        idx.read_at = None;
        assert_eq!(idx.container(&id, &uid).as_deref(), Some("sidecar"));
        let other = PodUid::parse("00000000-0000-0000-0000-000000000000").unwrap();
        assert_eq!(idx.pod(&other), None);
        fs::remove_dir_all(&root).unwrap();
    }
}
