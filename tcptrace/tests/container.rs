//! Container attribution against real cgroup v2 directories: the test
//! creates cgroups with the layouts containerd, CRI-O (systemd driver),
//! the cgroupfs driver and Docker use, a kubelet log tree
//! (`pods/<ns>_<pod>_<uid>/<container>/`, `containers/…-<id>.log`) in a
//! temporary directory, moves a child that calls connect() into each, and
//! checks what tcptrace says of every event; `--pod` and `--k8s-namespace`
//! keep exactly that pod's or namespace's events; hostile names (control
//! characters, non-UTF-8, a cgroup path of almost 4 KB) come out escaped
//! in text and exact in JSON. Needs root and BPF (run by `cargo xtask
//! test`); skipped, saying so, where cgroup v2 is not mounted or usable.

mod support;

use std::{
    ffi::CString,
    fs,
    net::SocketAddr,
    os::unix::{ffi::OsStrExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;
use support::Tracer;

/// Where cgroup v2 is mounted (`/sys/fs/cgroup`, or
/// `/sys/fs/cgroup/unified` on hybrid hosts), from mountinfo.
fn cgroup2_root() -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (before, after) = l.split_once(" - ")?;
        if after.split(' ').next()? != "cgroup2" {
            return None;
        }
        before.split(' ').nth(4).map(PathBuf::from)
    })
}

const UID_A: &str = "0a1b2c3d-0000-4000-8000-00000000000a";
const UID_B: &str = "0a1b2c3d-0000-4000-8000-00000000000b";
const UID_C: &str = "0a1b2c3d-0000-4000-8000-00000000000c";
const UID_EVIL: &str = "0a1b2c3d-0000-4000-8000-0000000000ee";

fn id(c: char) -> String {
    c.to_string().repeat(64)
}

/// One cgroup the test made, and what tcptrace must say of its tasks.
struct Layout {
    /// Relative to the test's top cgroup.
    path: String,
    container_id: String,
    /// pod, pod_namespace, container (None outside Kubernetes).
    pod: Option<(&'static str, &'static str, String)>,
    /// Where its child connects (one port per layout tells them apart).
    port: u16,
}

const EVIL_POD: &str = "\x1b[2Jevil\u{9b}pod";

fn layouts(ports: &[u16]) -> Vec<Layout> {
    let sd = |u: &str| u.replace('-', "_");
    let long: String = (0..14)
        .map(|i| format!("{}/", char::from(b'a' + i).to_string().repeat(250)))
        .collect();
    vec![
        Layout {
            path: format!(
                "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{}.scope",
                sd(UID_A),
                id('a')
            ),
            container_id: id('a'),
            pod: Some(("web-a", "prod", "app".into())),
            port: ports[0],
        },
        Layout {
            path: format!(
                "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/crio-{}.scope",
                sd(UID_B),
                id('b')
            ),
            container_id: id('b'),
            pod: Some(("web-b", "prod", "sidecar".into())),
            port: ports[1],
        },
        Layout {
            path: format!("kubepods/burstable/pod{UID_C}/{}", id('c')),
            container_id: id('c'),
            pod: Some(("db", "data", "postgres".into())),
            port: ports[2],
        },
        Layout {
            path: format!("system.slice/docker-{}.scope", id('d')),
            container_id: id('d'),
            pod: None,
            port: ports[3],
        },
        // Almost 4 KB of path above a pod whose directory names are hostile.
        Layout {
            path: format!(
                "{long}kubepods-pod{}.slice/cri-containerd-{}.scope",
                sd(UID_EVIL),
                id('e')
            ),
            container_id: id('e'),
            pod: Some((EVIL_POD, "evil", "app\u{fffd}".into())),
            port: ports[4],
        },
        // Not a cgroup of its own: this test process connects there.
        Layout {
            path: String::new(),
            container_id: String::new(),
            pod: None,
            port: ports[5],
        },
    ]
}

/// The test's cgroups and kubelet tree, removed at drop (also when an
/// assertion failed): cgroups deepest first, once their tasks are gone.
struct Fixture {
    top: PathBuf,
    logs: PathBuf,
    dirs: Vec<PathBuf>,
}

impl Fixture {
    fn new(root: &Path) -> std::io::Result<Fixture> {
        let top = root.join(format!("tcptrace-test-{}", std::process::id()));
        fs::create_dir(&top)?;
        let logs = std::env::temp_dir().join(format!("tcptrace-kubelet-{}", std::process::id()));
        Ok(Fixture {
            dirs: vec![top.clone()],
            top,
            logs,
        })
    }

    fn cgroup(&mut self, rel: &str) -> PathBuf {
        let mut at = self.top.clone();
        for c in rel.split('/').filter(|c| !c.is_empty()) {
            at.push(c);
            if !at.exists() {
                fs::create_dir(&at).unwrap_or_else(|e| panic!("mkdir {}: {e}", at.display()));
                self.dirs.push(at.clone());
            }
        }
        at
    }

    /// The kubelet's directories for one container.
    fn pod(&self, ns: &[u8], pod: &[u8], uid: &str, container: &[u8], id: &str, link: bool) {
        let mut dir = ns.to_vec();
        dir.push(b'_');
        dir.extend_from_slice(pod);
        dir.push(b'_');
        dir.extend_from_slice(uid.as_bytes());
        let pods = self
            .logs
            .join("pods")
            .join(std::ffi::OsStr::from_bytes(&dir));
        fs::create_dir_all(pods.join(std::ffi::OsStr::from_bytes(container)))
            .expect("pod log directory");
        if link {
            let mut name = pod.to_vec();
            name.push(b'_');
            name.extend_from_slice(ns);
            name.push(b'_');
            name.extend_from_slice(container);
            name.extend_from_slice(format!("-{id}.log").as_bytes());
            let dir = self.logs.join("containers");
            fs::create_dir_all(&dir).expect("containers log directory");
            fs::write(dir.join(std::ffi::OsStr::from_bytes(&name)), "")
                .expect("container log link");
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for d in self.dirs.iter().rev() {
            // A task that just exited may hold its cgroup a moment longer.
            let mut tries = 0;
            while let Err(e) = fs::remove_dir(d) {
                tries += 1;
                if tries == 50 {
                    eprintln!("cleanup: rmdir {}: {e}", d.display());
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        let _ = fs::remove_dir_all(&self.logs);
    }
}

/// A child that joins `cgroup` (writing 0, "this process", to its
/// cgroup.procs), calls connect() to `addr` (refused) and exits: the
/// connect event is the child's, in that cgroup.
fn connect_from(cgroup: &Path, addr: SocketAddr) {
    let procs =
        CString::new(cgroup.join("cgroup.procs").as_os_str().as_bytes()).expect("no NUL in a path");
    let SocketAddr::V4(a) = addr else {
        panic!("v4")
    };
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.ip().octets()),
        },
        sin_zero: [0; 8],
    };
    let mut cmd = Command::new("true");
    // SAFETY: between fork and exec only raw syscalls on memory prepared
    // before the fork (no allocation, no lock).
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            let r = libc::connect(
                s,
                (&raw const sin).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            );
            if r == 0 {
                return Err(std::io::Error::other("connect() should have been refused"));
            }
            libc::close(s);
            Ok(())
        });
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("child in {}: {e}", cgroup.display()));
    assert!(status.success(), "{status}");
}

/// Sets up every layout, or says why not.
fn setup() -> Option<(Fixture, Vec<Layout>, Vec<socket2::Socket>)> {
    let Some(root) = cgroup2_root() else {
        eprintln!("skipped: cgroup v2 is not mounted");
        return None;
    };
    let mut fx = match Fixture::new(&root) {
        Ok(fx) => fx,
        Err(e) => {
            eprintln!(
                "skipped: cannot create a cgroup under {}: {e}",
                root.display()
            );
            return None;
        }
    };
    let (socks, ports): (Vec<_>, Vec<_>) = (0..6)
        .map(|_| {
            let (s, a) = support::refused_addr();
            (s, a.port())
        })
        .unzip();
    let layouts = layouts(&ports);
    for l in layouts.iter().take(5) {
        fx.cgroup(&l.path);
    }
    // Pod A: one container directory, no link (named by the directory).
    fx.pod(b"prod", b"web-a", UID_A, b"app", &id('a'), false);
    // Pod B: two containers, the kubelet's link says which is ours.
    fx.pod(b"prod", b"web-b", UID_B, b"app", &id('9'), true);
    fx.pod(b"prod", b"web-b", UID_B, b"sidecar", &id('b'), true);
    fx.pod(b"data", b"db", UID_C, b"postgres", &id('c'), true);
    fx.pod(
        b"evil",
        EVIL_POD.as_bytes(),
        UID_EVIL,
        b"app\xff",
        &id('e'),
        false,
    );
    Some((fx, layouts, socks))
}

/// Two connects from each layout's cgroup, under `tcptrace PRE… EXTRA…`.
fn trace(fx: &Fixture, layouts: &[Layout], pre: &[&str], extra: &[&str]) -> Vec<Value> {
    let pods = fx.logs.join("pods");
    let mut args = vec!["--pods-log-root", pods.to_str().expect("UTF-8 temp dir")];
    args.extend_from_slice(extra);
    let t = Tracer::start_with(pre, &args);
    for l in layouts.iter().take(5) {
        for _ in 0..2 {
            connect_from(
                &fx.top.join(&l.path),
                SocketAddr::from(([127, 0, 0, 1], l.port)),
            );
        }
    }
    // And one from this process, in its own cgroup.
    let host = SocketAddr::from(([127, 0, 0, 1], layouts[5].port));
    assert!(std::net::TcpStream::connect(host).is_err());
    t.stop()
}

fn connects_to(objs: &[Value], port: u16) -> Vec<&Value> {
    support::events(objs, "connect")
        .filter(|e| e["dport"] == port)
        .collect()
}

#[test]
#[ignore = "needs root, BPF and cgroup v2: run by cargo xtask test"]
fn events_carry_container_and_pod_from_the_cgroup() {
    let Some((fx, layouts, _socks)) = setup() else {
        return;
    };
    let dir = support::tempdir::TempDir::new("container-replay");
    let rec = dir.file("run.rec");
    let rec = rec.to_str().expect("UTF-8 temp dir");
    let objs = trace(&fx, &layouts, &["record", "-o", rec], &[]);
    check_attribution(&layouts, &objs);
    // Replay attributes from what the recording holds, the same way, also
    // with the fixture's cgroups and kubelet directories gone.
    drop(fx);
    let replayed = replay(&[rec, "--json"]);
    check_attribution(&layouts, &replayed);
    let port = |i: usize| layouts[i].port;
    let web_a = replay(&[rec, "--json", "--pod", "web-a"]);
    assert_eq!(connects_to(&web_a, port(0)).len(), 2);
    assert_eq!(support::events(&web_a, "connect").count(), 2, "{web_a:?}");
}

fn replay(args: &[&str]) -> Vec<Value> {
    let out = Command::new(support::tcptrace_bin())
        .arg("replay")
        .args(args)
        .output()
        .expect("run tcptrace replay");
    assert!(
        out.status.success(),
        "replay {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// Each layout's two connects carry its container (and pod); a task of
/// the root cgroup none.
fn check_attribution(layouts: &[Layout], objs: &[Value]) {
    for l in layouts.iter().take(5) {
        let evs = connects_to(objs, l.port);
        assert_eq!(evs.len(), 2, "{}: {evs:?}", l.path);
        for e in evs {
            assert_eq!(e["errno"], 111);
            assert_eq!(e["container_id"], l.container_id.as_str(), "{e}");
            match &l.pod {
                Some((pod, ns, container)) => {
                    assert_eq!(e["pod"], *pod, "{e}");
                    assert_eq!(e["pod_namespace"], *ns, "{e}");
                    assert_eq!(e["container"], container.as_str(), "{e}");
                }
                None => {
                    for k in ["pod", "pod_namespace", "container"] {
                        assert!(e.get(k).is_none(), "{k} outside Kubernetes: {e}");
                    }
                }
            }
        }
    }
    // A task outside any container (this test, where it runs in the root
    // cgroup) carries none of the fields.
    let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    if own.lines().any(|l| l == "0::/") {
        let host = connects_to(objs, layouts[5].port);
        assert_eq!(host.len(), 1, "{host:?}");
        for k in ["container_id", "pod", "pod_namespace", "container"] {
            assert!(host[0].get(k).is_none(), "{k}: {}", host[0]);
        }
    }
}

#[test]
#[ignore = "needs root, BPF and cgroup v2: run by cargo xtask test"]
fn pod_and_namespace_filters_keep_exactly_their_events() {
    let Some((fx, layouts, _socks)) = setup() else {
        return;
    };
    let ports = |objs: &[Value]| -> Vec<u64> {
        let mut p: Vec<u64> = support::events(objs, "connect")
            .filter_map(|e| e["dport"].as_u64())
            .filter(|p| layouts.iter().any(|l| u64::from(l.port) == *p))
            .collect();
        p.sort_unstable();
        p
    };
    let port = |i: usize| u64::from(layouts[i].port);
    let objs = trace(&fx, &layouts, &[], &["--pod", "web-a"]);
    assert_eq!(ports(&objs), [port(0), port(0)]);
    // Nothing but that pod's events at all.
    assert!(support::events(&objs, "connect").all(|e| e["pod"] == "web-a"));
    let objs = trace(&fx, &layouts, &[], &["--k8s-namespace", "prod"]);
    let mut want = vec![port(0), port(0), port(1), port(1)];
    want.sort_unstable();
    assert_eq!(ports(&objs), want);
    let objs = trace(
        &fx,
        &layouts,
        &[],
        &["--pod", "db", "--k8s-namespace", "prod"],
    );
    assert_eq!(ports(&objs), Vec::<u64>::new());
    let objs = trace(
        &fx,
        &layouts,
        &[],
        &["--pod", "db", "--k8s-namespace", "data"],
    );
    assert_eq!(ports(&objs), [port(2), port(2)]);
}

#[test]
#[ignore = "needs root, BPF and cgroup v2: run by cargo xtask test"]
fn hostile_pod_names_are_escaped_in_text() {
    let Some((fx, layouts, _socks)) = setup() else {
        return;
    };
    let evil = &layouts[4];
    let pods = fx.logs.join("pods");
    let mut cmd = Command::new(support::tcptrace_bin());
    cmd.args([
        "--interval",
        "0",
        "--attach",
        &support::attach_mode(),
        "--pods-log-root",
    ])
    .arg(&pods);
    let s = support::Spawned::until_tracing(cmd, "tcptrace");
    for _ in 0..2 {
        connect_from(
            &fx.top.join(&evil.path),
            SocketAddr::from(([127, 0, 0, 1], evil.port)),
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(s.child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let mut child = s.child;
    assert!(child.wait().unwrap().success());
    let text = s.stdout.join().unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&format!(":{} ", evil.port)))
        .collect();
    // Two connect lines (and, where the kernel has the hook, the port
    // searches of those connects): every one attributed.
    let connects = lines
        .iter()
        .filter(|l| l.split_whitespace().nth(1) == Some("connect"))
        .count();
    assert_eq!(connects, 2, "{text}");
    for l in lines {
        assert!(
            l.ends_with(r"pod=evil/\x1b[2Jevil\u{9b}pod container=app� id=eeeeeeeeeeee"),
            "{l:?}"
        );
    }
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "control characters reached the terminal"
    );
}
