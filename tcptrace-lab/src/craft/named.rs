//! Named network namespaces (`ip netns add`): where their files are, their
//! inodes, running code or nftables rules inside one, and removing those a
//! killed process left behind.

use std::{
    fs::File,
    io::Write as _,
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{anyhow, bail, Context as _, Result};

/// Where `ip netns add` puts namespace files: /run/netns (iproute2
/// default) or /var/run/netns (older builds, or systems without the
/// /var/run link).
const NETNS_DIRS: [&str; 2] = ["/run/netns", "/var/run/netns"];

/// Where `ip netns add` put namespace `ns`.
pub fn netns_path(ns: &str) -> Result<String> {
    NETNS_DIRS
        .iter()
        .map(|dir| format!("{dir}/{ns}"))
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| anyhow!("network namespace {ns} not found under /run or /var/run"))
}

/// Inode of named network namespace `ns` (what events carry as `netns`).
pub fn netns_inode(ns: &str) -> Result<u64> {
    use std::os::unix::fs::MetadataExt as _;
    let path = netns_path(ns)?;
    Ok(std::fs::metadata(&path)
        .with_context(|| path.clone())?
        .ino())
}

/// Runs `ip ARGS…`; its stderr is the error.
pub fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Loads nftables `rules` (an `nft -f` script) in network namespace `ns`.
pub fn nft(ns: &str, rules: &str) -> Result<()> {
    let mut nft = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .context("running nft in a namespace")?;
    let mut stdin = nft.stdin.take().context("nft's stdin")?;
    stdin
        .write_all(rules.as_bytes())
        .context("writing nft rules")?;
    drop(stdin);
    let status = nft.wait().context("waiting for nft")?;
    if !status.success() {
        bail!("nft rules in {ns} failed ({status}): {rules}");
    }
    Ok(())
}

/// Runs `f` on a thread that joined network namespace `ns` (a name given
/// to `ip netns add`). Sockets created there stay in that namespace. A
/// panic in `f` is resumed here.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let path = netns_path(ns)?;
    let joined = std::thread::Builder::new()
        .name("tcptrace-lab-ns".into())
        .spawn(move || -> Result<T> {
            let file = File::open(&path).with_context(|| format!("opening {path}"))?;
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("setns into {path}"))?;
            Ok(f())
        })
        .context("starting a thread for a namespace")?
        .join();
    match joined {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// The names of a lab's two namespaces: `<prefix><pid>-<counter>`, so
/// concurrent users (tests, a selftest) never collide and a name tells
/// which process made it.
#[derive(Clone, Copy, Debug)]
pub struct Prefix {
    /// Prefix of the server namespace's name.
    pub server: &'static str,
    /// Prefix of the client namespace's name.
    pub client: &'static str,
}

impl Prefix {
    /// The scenario tests' namespaces.
    pub const TESTS: Prefix = Prefix {
        server: "ttps-",
        client: "ttpc-",
    };
    /// `tcptrace selftest`'s namespaces.
    pub const SELFTEST: Prefix = Prefix {
        server: "ttselfs-",
        client: "ttselfc-",
    };

    /// The process that named `ns` with this prefix, if it did.
    fn owner(&self, ns: &str) -> Option<u32> {
        let rest = ns
            .strip_prefix(self.server)
            .or_else(|| ns.strip_prefix(self.client))?;
        let (pid, counter) = rest.split_once('-')?;
        counter.parse::<u32>().ok()?;
        pid.parse().ok()
    }
}

/// Deletes the namespaces named with `prefix` whose process no longer
/// runs (one killed before its labs' Drop ran); returns their names.
pub fn remove_stale(prefix: &Prefix) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for dir in NETNS_DIRS {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {dir}"))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = prefix.owner(&name) else {
                continue;
            };
            if Path::new(&format!("/proc/{pid}")).exists() || removed.contains(&name) {
                continue;
            }
            ip(&["netns", "del", &name])
                .with_context(|| format!("removing stale namespace {name}"))?;
            removed.push(name);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_tells_its_process() {
        let p = Prefix::SELFTEST;
        assert_eq!(p.owner("ttselfs-1234-0"), Some(1234));
        assert_eq!(p.owner("ttselfc-99-12"), Some(99));
        assert_eq!(p.owner("ttps-1234-0"), None);
        assert_eq!(p.owner("ttselfs-1234"), None);
        assert_eq!(p.owner("ttselfs-x-1"), None);
        assert_eq!(Prefix::TESTS.owner("ttpc-7-3"), Some(7));
    }
}
