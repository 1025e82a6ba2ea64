//! The deployment files (deploy/systemd/tcptrace.service,
//! deploy/kubernetes/daemonset.yaml): parsed and checked for the
//! properties the README promises — the exact capabilities (the list under
//! "Capabilities" in docs/daemon.md), a non-root systemd user, the
//! hardening options, read-only mounts, limits, the scrape annotations —
//! and `systemd-analyze verify` on the unit. The files are embedded at
//! build time, so this runs in the VM too (where systemd-analyze is not).

mod support;

use std::{collections::BTreeSet, process::Command};

use serde_json::Value;

const UNIT: &str = include_str!("../../deploy/systemd/tcptrace.service");
const DAEMONSET: &str = include_str!("../../deploy/kubernetes/daemonset.yaml");

/// The capabilities the daemon needs, measured on this project's host
/// (README "Run it on every host"). docs/daemon.md's "Capabilities"
/// section, when that file exists, must list exactly these.
const CAPABILITIES: [&str; 4] = [
    "CAP_BPF",
    "CAP_PERFMON",
    "CAP_DAC_READ_SEARCH",
    "CAP_SYS_PTRACE",
];

fn wanted() -> BTreeSet<String> {
    CAPABILITIES.iter().map(|c| c.to_string()).collect()
}

/// The capabilities docs/daemon.md says a service manager grants: in
/// the section under the heading "Capabilities" (to the next heading of
/// the same or a higher level), the first code span after "grants
/// exactly" (`` `CAP_BPF CAP_PERFMON ...` ``); without that phrase, every
/// `CAP_*` word of the section.
fn documented(doc: &str) -> Option<BTreeSet<String>> {
    let mut lines = doc.lines();
    let level = lines.by_ref().find_map(|l| {
        let hashes = l.len() - l.trim_start_matches('#').len();
        (hashes > 0 && l[hashes..].trim().starts_with("Capabilities")).then_some(hashes)
    })?;
    let section: Vec<&str> = lines
        .take_while(|l| {
            let hashes = l.len() - l.trim_start_matches('#').len();
            hashes == 0 || hashes > level
        })
        .collect();
    let section = section.join("\n");
    let text = match section.split_once("grants exactly") {
        Some((_, after)) => after.split('`').nth(1)?.to_owned(),
        None => section,
    };
    Some(
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("CAP_") && w.len() > 4)
            .map(str::to_owned)
            .collect(),
    )
}

#[test]
fn documented_capabilities_are_the_deployed_ones() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/daemon.md");
    match std::fs::read_to_string(path) {
        Ok(doc) => assert_eq!(
            documented(&doc).expect("docs/daemon.md has a \"Capabilities\" heading"),
            wanted(),
            "docs/daemon.md \"Capabilities\" vs the deployment files"
        ),
        // The VM has no source tree; before docs/daemon.md existed the
        // constant was the only list.
        Err(e) => eprintln!("skipped: {path}: {e}"),
    }
    let set = |caps: &[&str]| -> BTreeSet<String> { caps.iter().map(|c| c.to_string()).collect() };
    let doc = "# Daemon\n## Capabilities\n- `CAP_BPF`, CAP_PERFMON\n### why\nCAP_SYS_PTRACE\n## Other\nCAP_SYS_ADMIN\n";
    assert_eq!(
        documented(doc),
        Some(set(&["CAP_BPF", "CAP_PERFMON", "CAP_SYS_PTRACE"]))
    );
    let doc = "## Capabilities\n| tracefs | `CAP_SYS_ADMIN` |\n\nSo a service manager grants exactly: `CAP_BPF CAP_PERFMON CAP_SYS_PTRACE\nCAP_DAC_READ_SEARCH` (plus `CAP_NET_BIND_SERVICE` below 1024)\n## Next\n";
    assert_eq!(documented(doc), Some(wanted()));
    assert_eq!(documented("# Daemon\nCAP_BPF\n"), None);
}

/// `[Section]` → key → every value (systemd keys may repeat).
fn unit_keys(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_owned();
        } else if let Some((k, v)) = line.split_once('=') {
            out.push((section.clone(), k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    out
}

fn unit_value(keys: &[(String, String, String)], section: &str, key: &str) -> String {
    let values: Vec<&str> = keys
        .iter()
        .filter(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v.as_str())
        .collect();
    assert_eq!(values.len(), 1, "[{section}] {key}= once: {values:?}");
    values[0].to_owned()
}

#[test]
fn systemd_unit_has_least_privilege_and_hardening() {
    let keys = unit_keys(UNIT);
    let v = |k: &str| unit_value(&keys, "Service", k);
    assert_eq!(
        v("ExecStart"),
        "/usr/local/bin/tcptrace daemon --record-dir /var/lib/tcptrace --max-disk 2G --keep 24h --metrics 127.0.0.1:9850"
    );
    assert_eq!(v("Restart"), "on-failure");
    assert_eq!(v("StateDirectory"), "tcptrace");
    // Not root: a user of its own, the capabilities ambient.
    assert_eq!(v("DynamicUser"), "yes");
    assert_eq!(v("User"), "tcptrace");
    let caps =
        |k: &str| -> BTreeSet<String> { v(k).split_whitespace().map(str::to_owned).collect() };
    assert_eq!(caps("AmbientCapabilities"), wanted());
    assert_eq!(caps("CapabilityBoundingSet"), wanted());
    for (key, want) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
    ] {
        assert_eq!(v(key), want, "{key}");
    }
    assert_eq!(
        unit_value(&keys, "Install", "WantedBy"),
        "multi-user.target"
    );
}

/// `systemd-analyze verify` on the unit, in a root holding the system's
/// units and a stand-in /usr/local/bin/tcptrace (verify checks that
/// ExecStart is executable). Warnings fail it too.
#[test]
fn systemd_analyze_verify_passes() {
    if !support::have("systemd-analyze") {
        eprintln!("skipped: systemd-analyze is not installed (cargo xtask setup installs it)");
        return;
    }
    let root = std::env::temp_dir().join(format!("tcptrace-verify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for d in ["usr/local/bin", "etc/systemd/system", "usr/lib/systemd"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let cp = Command::new("cp")
        .args(["-r", "/usr/lib/systemd/system"])
        .arg(root.join("usr/lib/systemd/"))
        .status()
        .unwrap();
    assert!(cp.success());
    let bin = root.join("usr/local/bin/tcptrace");
    std::fs::write(&bin, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let verify = |unit: &str| {
        std::fs::write(root.join("etc/systemd/system/tcptrace.service"), unit).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.display()))
            .arg("tcptrace.service")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stderr) = verify(UNIT);
    // It can fail: a misspelt option is reported.
    let (_, bad) = verify(&UNIT.replace("ProtectHome=yes", "ProtectHome=maybe"));
    let _ = std::fs::remove_dir_all(&root);
    assert!(ok && stderr.is_empty(), "systemd-analyze verify: {stderr}");
    assert!(
        bad.contains("ProtectHome") || bad.contains("protect home"),
        "{bad}"
    );
}

fn daemonset() -> Value {
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(DAEMONSET)
        .map(|d| serde::Deserialize::deserialize(d).expect("daemonset.yaml parses"))
        .collect();
    docs.into_iter()
        .find(|d| d["kind"] == "DaemonSet")
        .expect("a DaemonSet in daemonset.yaml")
}

fn strs(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

#[test]
fn daemonset_drops_all_and_adds_exactly_what_is_needed() {
    let ds = daemonset();
    let pod = &ds["spec"]["template"];
    let spec = &pod["spec"];
    let containers = spec["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let sc = &c["securityContext"];
    assert_eq!(strs(&sc["capabilities"]["drop"]), ["ALL".to_owned()].into());
    // Kubernetes names capabilities without the CAP_ prefix.
    let added: BTreeSet<String> = strs(&sc["capabilities"]["add"])
        .into_iter()
        .map(|c| format!("CAP_{c}"))
        .collect();
    assert_eq!(added, wanted());
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(spec["hostPID"], true);
    assert_eq!(spec["automountServiceAccountToken"], false);
    // The host trees: read-only, except the record directory.
    let volumes: std::collections::BTreeMap<String, String> = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap().to_owned(),
                v["hostPath"]["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut mounts = std::collections::BTreeMap::new();
    for m in c["volumeMounts"].as_array().unwrap() {
        let host = volumes[m["name"].as_str().unwrap()].clone();
        assert_eq!(
            m["mountPath"].as_str(),
            Some(host.as_str()),
            "mounted where the host has it"
        );
        mounts.insert(host, m["readOnly"] == true);
    }
    let want: std::collections::BTreeMap<String, bool> = [
        ("/sys/fs/cgroup", true),
        ("/sys/kernel/btf", true),
        ("/sys/kernel/tracing", true),
        ("/var/log/pods", true),
        ("/var/log/containers", true),
        ("/var/lib/tcptrace", false),
    ]
    .into_iter()
    .map(|(p, ro)| (p.to_owned(), ro))
    .collect();
    assert_eq!(mounts, want);
    // The daemon, its record directory on the host, metrics scraped.
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            "daemon",
            "--record-dir",
            "/var/lib/tcptrace",
            "--max-disk",
            "2G",
            "--keep",
            "24h",
            "--metrics",
            "0.0.0.0:9850"
        ]
    );
    let ann = &pod["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"], "true");
    assert_eq!(ann["prometheus.io/port"], "9850");
    assert_eq!(c["ports"][0]["containerPort"], 9850);
    for kind in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(c["resources"][kind][r].is_string(), "resources.{kind}.{r}");
        }
    }
    assert_eq!(c["resources"]["limits"]["memory"], "512Mi");
}
