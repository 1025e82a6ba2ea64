//! Container attribution: the container, and on Kubernetes nodes the pod,
//! an event's task ran in, from the event's cgroup v2 id:
//! id → cgroup path ([`cgroupfs`]) → runtime, container id and pod UID
//! ([`path`]) → pod name, namespace and container name ([`pods`]).
//! Cached per cgroup id, bounded, refreshed on a miss. Everything read
//! from the host is data: only hex ids and UUIDs come from cgroup paths,
//! names from the kubelet's directories are bounded, and the text outputs
//! escape them.
//!
//! Live runs resolve ([`Attributor::fill`]) and hand each new resolution
//! to the recorder; replay resolves only from what the recording holds
//! ([`Attributor::offline`], [`Attributor::learn`]), as it does for SYN
//! listener owners: cgroup ids mean nothing on another host or a day later.

pub mod cgroupfs;
pub mod path;
pub mod pods;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use clap::Args;
use serde::{Deserialize, Serialize};

pub use self::path::{ContainerId, PodUid, Runtime};
use self::{cgroupfs::CgroupFs, pods::PodIndex};
use crate::event::Event;

/// The container an event's task ran in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub runtime: Runtime,
    pub id: ContainerId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<PodUid>,
    /// Pod name (Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Container name in the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Container {
    /// `pod=ns/name container=name id=<12 hex>` for the text output, names
    /// escaped.
    pub fn text(&self) -> String {
        use crate::escape::Escaped;
        let mut out = String::new();
        if let Some(pod) = &self.pod {
            let ns = self.namespace.as_deref().unwrap_or("?");
            out.push_str(&format!("pod={}/{} ", Escaped(ns), Escaped(pod)));
        }
        if let Some(name) = &self.name {
            out.push_str(&format!("container={} ", Escaped(name)));
        }
        out.push_str(&format!("id={}", self.id.short()));
        out
    }
}

/// Hidden flags (tests, unusual hosts): where the trees are.
#[derive(Args, Clone, Debug, Default)]
pub struct ContainerArgs {
    /// The cgroup v2 mount (default: found in /proc/self/mountinfo).
    #[arg(long, hide = true, env = "TCPTRACE_CGROUP_ROOT")]
    pub cgroup_root: Option<PathBuf>,
    /// The kubelet's pod log directory; container links are read from
    /// `containers` beside it.
    #[arg(
        long,
        hide = true,
        env = "TCPTRACE_PODS_LOG_ROOT",
        default_value = "/var/log/pods"
    )]
    pub pods_log_root: PathBuf,
}

/// A resolution the live run made, for the recording: the cgroup id and
/// what it resolved to (None: not a container).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub cgroup: u64,
    pub container: Option<Container>,
}

impl Resolution {
    /// The form a recording stores (JSON: the format is versioned by its
    /// field names, not by byte offsets).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let r: Self =
            serde_json::from_str(text).context("container resolution in the recording")?;
        Ok(r.bounded())
    }

    /// A recording is input too: names longer than Kubernetes allows are
    /// dropped.
    fn bounded(mut self) -> Self {
        if let Some(c) = &mut self.container {
            let cut = |s: &mut Option<String>, max: usize| {
                if s.as_ref().is_some_and(|v| v.len() > max) {
                    *s = None;
                }
            };
            cut(&mut c.pod, pods::MAX_POD_NAME);
            cut(&mut c.namespace, pods::MAX_LABEL);
            cut(&mut c.name, pods::MAX_LABEL);
        }
        self
    }
}

/// Most cgroup ids remembered; past it the cache starts over.
pub const MAX_CACHED: usize = 16_384;
/// The tree is walked at most this often (a miss in between waits).
const WALK_EVERY: Duration = Duration::from_secs(1);
/// A container whose pod was not (yet) named is looked up again after this.
const RETRY: Duration = Duration::from_secs(5);

struct Entry {
    container: Option<Arc<Container>>,
    /// Set when the pod part is missing and worth another look.
    retry_at: Option<Instant>,
}

/// Fills [`Event::container`], cached per cgroup id.
pub struct Attributor {
    cgroups: Option<CgroupFs>,
    pods: Option<PodIndex>,
    cache: HashMap<u64, Entry>,
    /// The last walk of the tree: container cgroups by id.
    walked: HashMap<u64, path::PathInfo>,
    walked_at: Option<Instant>,
    /// The last cgroup served from a settled cache entry, and its answer:
    /// events come in runs from one cgroup, and this spares each a hash
    /// and a clock read. Cleared whenever the cache changes.
    last: Option<(u64, Option<Arc<Container>>)>,
}

impl Attributor {
    /// Live: reads this host's cgroup tree and kubelet directories.
    pub fn new(args: &ContainerArgs) -> Self {
        let root = args.cgroup_root.clone().or_else(cgroupfs::find_root);
        if root.is_none() {
            log::debug!("container attribution off: cgroup v2 is not mounted");
        }
        Self {
            cgroups: root.map(CgroupFs::new),
            pods: Some(PodIndex::new(args.pods_log_root.clone())),
            cache: HashMap::new(),
            walked: HashMap::new(),
            walked_at: None,
            last: None,
        }
    }

    /// Replay: only what the recording says ([`Attributor::learn`]).
    pub fn offline() -> Self {
        Self {
            cgroups: None,
            pods: None,
            cache: HashMap::new(),
            walked: HashMap::new(),
            walked_at: None,
            last: None,
        }
    }

    /// A resolution the live run made (from a recording).
    pub fn learn(&mut self, r: Resolution) {
        self.bound();
        self.last = None;
        self.cache.insert(
            r.cgroup,
            Entry {
                container: r.container.map(Arc::new),
                retry_at: None,
            },
        );
    }

    /// Sets `ev.container`; returns the resolution when a lookup was made
    /// (the recorder stores it, so replay attributes the same way).
    pub fn fill(&mut self, ev: &mut Event) -> Option<Resolution> {
        if ev.cgroup == 0 {
            return None;
        }
        if let Some((cgroup, container)) = &self.last {
            if *cgroup == ev.cgroup {
                ev.container = container.clone();
                return None;
            }
        }
        if let Some(e) = self.cache.get(&ev.cgroup) {
            // A settled entry needs no clock read.
            let settled = e.retry_at.is_none() || self.cgroups.is_none();
            if settled || e.retry_at.is_some_and(|t| Instant::now() < t) {
                ev.container = e.container.clone();
                if settled {
                    self.last = Some((ev.cgroup, e.container.clone()));
                }
                return None;
            }
        }
        let now = Instant::now();
        let (info, known) = self.locate(ev.cgroup, ev.pid, now)?;
        let found = info.map(|info| self.name(info));
        let incomplete = found
            .as_ref()
            .is_some_and(|c| c.pod_uid.is_some() && (c.pod.is_none() || c.name.is_none()));
        let retry_at = if !known {
            Some(now + WALK_EVERY)
        } else {
            incomplete.then(|| now + RETRY)
        };
        let container = found.map(Arc::new);
        self.bound();
        self.last = None;
        self.cache.insert(
            ev.cgroup,
            Entry {
                container: container.clone(),
                retry_at,
            },
        );
        ev.container = container.clone();
        Some(Resolution {
            cgroup: ev.cgroup,
            container: container.map(|c| (*c).clone()),
        })
    }

    /// What the cgroup's path says, and whether that is settled (false:
    /// not found, the tree was walked too recently to look again).
    fn locate(
        &mut self,
        id: u64,
        pid: u32,
        now: Instant,
    ) -> Option<(Option<path::PathInfo>, bool)> {
        let cgroups = self.cgroups.as_ref()?;
        if let Some(rel) = cgroups.via_proc(id, pid) {
            return Some((path::parse(&rel), true));
        }
        if let Some(info) = self.walked.get(&id) {
            return Some((Some(info.clone()), true));
        }
        if self
            .walked_at
            .is_some_and(|t| now.duration_since(t) < WALK_EVERY)
        {
            return Some((None, false));
        }
        self.walked = cgroups.containers();
        self.walked_at = Some(now);
        // Walked just now: not there is not a container (or gone).
        Some((self.walked.get(&id).cloned(), true))
    }

    fn name(&mut self, info: path::PathInfo) -> Container {
        let mut c = Container {
            runtime: info.runtime,
            id: info.id,
            pod_uid: info.pod_uid,
            pod: None,
            namespace: None,
            name: None,
        };
        if let (Some(uid), Some(pods)) = (&c.pod_uid, &mut self.pods) {
            if let Some(p) = pods.pod(uid) {
                c.pod = Some(p.name.clone());
                c.namespace = Some(p.namespace.clone());
            }
            c.name = pods.container(&c.id, uid);
        }
        c
    }

    fn bound(&mut self) {
        if self.cache.len() >= MAX_CACHED {
            self.cache.clear();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::event::{decode, tests::raw_latency};
    use tcptrace_common::EventKind;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    pub fn container() -> Container {
        Container {
            runtime: Runtime::Containerd,
            id: ContainerId::parse(ID).unwrap(),
            pod_uid: PodUid::parse("6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"),
            pod: Some("web\x1b[2J".into()),
            namespace: Some("prod".into()),
            name: Some("app".into()),
        }
    }

    #[test]
    fn text_form_is_escaped() {
        assert_eq!(
            container().text(),
            r"pod=prod/web\x1b[2J container=app id=0123456789ab"
        );
        let bare = Container {
            pod_uid: None,
            pod: None,
            namespace: None,
            name: None,
            ..container()
        };
        assert_eq!(bare.text(), "id=0123456789ab");
    }

    #[test]
    fn replay_uses_only_what_was_recorded() {
        let mut a = Attributor::offline();
        let mut ev = decode(&raw_latency(EventKind::Connect, 2, 0)).unwrap();
        assert_eq!(a.fill(&mut ev), None);
        assert_eq!(ev.container, None);
        let r = Resolution {
            cgroup: ev.cgroup,
            container: Some(container()),
        };
        a.learn(Resolution::from_json(&r.to_json()).unwrap());
        assert_eq!(a.fill(&mut ev), None);
        assert_eq!(ev.container.as_deref(), Some(&container()));
    }

    /// A tree laid out like a node's (cgroupfs driver) in a temporary
    /// directory: ids are directory inodes, as on cgroup v2.
    #[test]
    fn live_lookup_walks_names_and_caches() {
        use std::os::unix::fs::MetadataExt as _;
        let uid = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b";
        let root = std::env::temp_dir().join(format!("tcptrace-attrib-{}", std::process::id()));
        let cg = root.join("cgroup");
        let dir = cg.join(format!("kubepods/burstable/pod{uid}/{ID}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(cg.join("system.slice/ssh.service")).unwrap();
        std::fs::create_dir_all(root.join(format!("log/pods/prod_web_{uid}/app"))).unwrap();
        let mut a = Attributor::new(&ContainerArgs {
            cgroup_root: Some(cg.clone()),
            pods_log_root: root.join("log/pods"),
        });
        let mut ev = decode(&raw_latency(EventKind::Connect, 2, 0)).unwrap();
        ev.pid = 0;
        ev.cgroup = std::fs::metadata(&dir).unwrap().ino();
        let made = a.fill(&mut ev).unwrap();
        let want = Container {
            runtime: Runtime::Unknown,
            id: ContainerId::parse(ID).unwrap(),
            pod_uid: PodUid::parse(uid),
            pod: Some("web".into()),
            namespace: Some("prod".into()),
            name: Some("app".into()),
        };
        assert_eq!(made.container.as_ref(), Some(&want));
        assert_eq!(ev.container.as_deref(), Some(&want));
        // Cached: no lookup to record the second time.
        ev.container = None;
        assert_eq!(a.fill(&mut ev), None);
        assert_eq!(ev.container.as_deref(), Some(&want));
        // A host cgroup is not a container; an unknown id right after a
        // walk waits for the next one instead of walking again.
        let mut host = ev.clone();
        host.cgroup = std::fs::metadata(cg.join("system.slice/ssh.service"))
            .unwrap()
            .ino();
        assert_eq!(a.fill(&mut host).map(|r| r.container), Some(None));
        assert_eq!(host.container, None);
        assert!(a.cache[&host.cgroup].retry_at.is_some());
        // cgroup 0 (no task) is never looked up.
        let mut none = ev.clone();
        none.cgroup = 0;
        none.container = None;
        assert_eq!(a.fill(&mut none), None);
        assert_eq!(none.container, None);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn recorded_resolutions_are_bounded() {
        let mut c = container();
        c.pod = Some("p".repeat(300));
        let r = Resolution {
            cgroup: 7,
            container: Some(c),
        };
        let back = Resolution::from_json(&r.to_json()).unwrap();
        assert_eq!(back.container.unwrap().pod, None);
        assert!(Resolution::from_json("{\"cgroup\":1,\"container\":{\"id\":\"xyz\"}}").is_err());
    }
}
