//! apt, driven two ways: the system configuration (bookworm, as the host is
//! configured) and private configurations under the harness cache for suites
//! the host does not track (trixie-backports, sid). A private configuration
//! has its own sources list, lists, cache and empty dpkg status, so the
//! system's apt state is never touched.
//!
//! Keys: a private suite is verified with the system's Debian archive keyring
//! first. When that keyring is too old for the suite (NO_PUBKEY and friends),
//! the newer `debian-archive-keyring` package is fetched from a suite the
//! current keys can verify (see [`KEYRING_HOPS`]), unpacked in the cache, and
//! added to the suite's `signed-by` list; each hop is itself verified by the
//! keys gathered so far, so trust always chains back to the system keyring.

use std::{
    collections::HashMap,
    env,
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
};

use anyhow::{anyhow, bail, Context, Result};

use super::tools;

pub const MIRROR: &str = "http://deb.debian.org/debian";
/// Where `<suite>-security` suites are (bullseye-security).
pub const SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";
const SYSTEM_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// Suites to take a newer `debian-archive-keyring` from, one per hop, in
/// order, while the keys at hand cannot verify a private suite. Keys
/// accumulate, so a later hop may be verified by an earlier hop's keyring.
const KEYRING_HOPS: &[&str] = &[
    "trixie",
    "trixie-updates",
    "stable",
    "stable-updates",
    "testing",
];
/// Markers apt prints when a Release file cannot be verified.
const SIGNATURE_ERRORS: &[&str] = &[
    "NO_PUBKEY",
    "EXPKEYSIG",
    "REVKEYSIG",
    "GPG error",
    "is not signed",
    "couldn't be verified",
];

/// `apt-get update` results of this run, by configuration (lists are
/// refreshed at most once per run).
static UPDATED: Mutex<Option<HashMap<String, Result<(), String>>>> = Mutex::new(None);

/// One apt configuration.
pub struct Apt {
    private: Option<Private>,
}

struct Private {
    cache: PathBuf,
    root: PathBuf,
    suites: Vec<String>,
}

/// The candidate version's control fields of one package.
pub struct Fields(Vec<(String, String)>);

impl Fields {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Names in `Depends`, the first alternative of each, without versions.
    pub fn depends(&self) -> Vec<String> {
        self.get("Depends")
            .unwrap_or_default()
            .split(',')
            .filter_map(|d| d.split('|').next())
            .filter_map(|d| d.split_whitespace().next())
            .map(|d| d.split(':').next().unwrap_or(d).to_string())
            .filter(|d| !d.is_empty())
            .collect()
    }
}

impl Apt {
    pub fn system() -> Self {
        Self { private: None }
    }

    /// The private configuration for `suites` (component main) of [`MIRROR`]
    /// ([`SECURITY_MIRROR`] for `*-security`).
    pub fn private(cache: &Path, suites: &[&str]) -> Self {
        Self {
            private: Some(Private {
                cache: cache.to_path_buf(),
                root: cache.join("apt").join(suites.join("+")),
                suites: suites.iter().map(|s| s.to_string()).collect(),
            }),
        }
    }

    fn label(&self) -> String {
        match &self.private {
            None => "system apt".into(),
            Some(p) => format!("private apt ({})", p.suites.join(", ")),
        }
    }

    fn command(&self, program: &str) -> Result<Command> {
        let exe = tools::require(program, "apt")?;
        let mut cmd = Command::new(exe);
        cmd.env("LC_ALL", "C");
        cmd.args(["-o", "APT::Sandbox::User=root"]);
        if let Some(p) = &self.private {
            for opt in p.options() {
                cmd.arg("-o").arg(opt);
            }
        }
        Ok(cmd)
    }

    /// Refreshes this configuration's lists, once per run.
    pub fn update_once(&self) -> Result<()> {
        let key = self.label();
        {
            let guard = UPDATED.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(done) = guard.as_ref().and_then(|m| m.get(&key)) {
                return done.clone().map_err(|e| anyhow!(e));
            }
        }
        let result = match &self.private {
            None => self.run_update().map_err(|e| format!("{e:#}")),
            Some(p) => p.update(self).map_err(|e| format!("{e:#}")),
        };
        let mut guard = UPDATED.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .get_or_insert_with(HashMap::new)
            .insert(key, result.clone());
        result.map_err(|e| anyhow!(e))
    }

    /// Whether this run already refreshed the lists.
    pub fn updated(&self) -> bool {
        let guard = UPDATED.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .as_ref()
            .is_some_and(|m| m.contains_key(&self.label()))
    }

    /// `apt-get update`; signature problems count as failures even when apt
    /// falls back to older lists and exits 0.
    fn run_update(&self) -> Result<()> {
        let mut cmd = self.command("apt-get")?;
        cmd.arg("update");
        let shown = tools::show(&cmd);
        let out = cmd
            .output()
            .with_context(|| format!("cannot start `{shown}`"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if SIGNATURE_ERRORS.iter().any(|m| text.contains(m)) {
            return Err(SignatureError(tools::tail(&text, 6)).into());
        }
        let failed = text.lines().any(|l| {
            l.starts_with("E:")
                || l.starts_with("W: Failed to fetch")
                || l.starts_with("W: Some index files failed")
        });
        if !out.status.success() || failed {
            bail!(
                "`{shown}` failed ({}):{}",
                out.status,
                tools::tail(&text, 6)
            );
        }
        Ok(())
    }

    /// Control fields of the candidate version of `package`.
    pub fn show(&self, package: &str) -> Result<Fields> {
        let mut cmd = self.command("apt-cache")?;
        cmd.args(["show", "--no-all-versions", package]);
        let out = tools::output(&mut cmd)
            .with_context(|| format!("{}: no package {package}", self.label()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            if line.is_empty() {
                break;
            }
            if line.starts_with([' ', '\t']) {
                if let Some(last) = fields.last_mut() {
                    last.1.push('\n');
                    last.1.push_str(line.trim());
                }
            } else if let Some((k, v)) = line.split_once(':') {
                fields.push((k.to_string(), v.trim().to_string()));
            }
        }
        if fields.is_empty() {
            bail!("{}: package {package} has no candidate", self.label());
        }
        Ok(Fields(fields))
    }

    /// Names of the real packages that start with `prefix`.
    pub fn package_names(&self, prefix: &str) -> Result<Vec<String>> {
        let mut cmd = self.command("apt-cache")?;
        cmd.args(["pkgnames", prefix]);
        let out = tools::output(&mut cmd)
            .with_context(|| format!("{}: listing packages", self.label()))?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// Downloads `package` at `version` into `dir`; returns the .deb path.
    pub fn download(&self, package: &str, version: &str, dir: &Path) -> Result<PathBuf> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut cmd = self.command("apt-get")?;
        cmd.current_dir(dir)
            .arg("download")
            .arg(format!("{package}={version}"));
        tools::output(&mut cmd)
            .with_context(|| format!("{}: downloading {package}={version}", self.label()))?;
        let prefix = format!("{package}_{}_", version.replace(':', "%3a"));
        fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
            })
            .with_context(|| {
                format!(
                    "apt-get download left no {prefix}*.deb in {}",
                    dir.display()
                )
            })
    }
}

/// apt could not verify a Release file with the keys it was given.
#[derive(Debug)]
struct SignatureError(String);

impl std::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "signature verification failed:{}", self.0)
    }
}

impl std::error::Error for SignatureError {}

impl Private {
    fn options(&self) -> Vec<OsString> {
        let r = &self.root;
        let path = |key: &str, p: PathBuf| {
            let mut s = OsString::from(format!("{key}="));
            s.push(p);
            s
        };
        vec![
            path("Dir::Etc::SourceList", r.join("sources.list")),
            "Dir::Etc::SourceParts=/dev/null".into(),
            "Dir::Etc::Preferences=/dev/null".into(),
            "Dir::Etc::PreferencesParts=/dev/null".into(),
            path("Dir::State::Lists", r.join("lists")),
            path("Dir::State::status", r.join("status")),
            path("Dir::State::extended_states", r.join("extended_states")),
            path("Dir::Cache", r.join("cache")),
            "Dir::Cache::pkgcache=pkgcache.bin".into(),
            "Dir::Cache::srcpkgcache=srcpkgcache.bin".into(),
            "APT::Architectures::=amd64".into(),
            "Acquire::Languages=none".into(),
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".into(),
        ]
    }

    /// Updates the lists, growing the keyring list along [`KEYRING_HOPS`]
    /// while the suite's signatures cannot be verified.
    fn update(&self, apt: &Apt) -> Result<()> {
        let mut keyrings = initial_keyrings(&self.cache);
        let mut hops = KEYRING_HOPS.iter();
        let mut notes = Vec::new();
        loop {
            self.write_config(&keyrings)?;
            let err = match apt.run_update() {
                Ok(()) => return Ok(()),
                Err(e) if e.is::<SignatureError>() => e,
                Err(e) => return Err(e),
            };
            let Some(hop) = hops.next() else {
                bail!(
                    "{err:#}\n  keyrings tried: {}{}",
                    keyrings
                        .iter()
                        .map(|k| k.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    notes.concat()
                );
            };
            match fetch_keyring(&self.cache, hop, &keyrings) {
                Ok(k) if !keyrings.contains(&k) => keyrings.push(k),
                Ok(k) => notes.push(format!(
                    "\n  keyring from {hop} adds nothing new ({})",
                    k.display()
                )),
                Err(e) => notes.push(format!("\n  keyring from {hop}: {e:#}")),
            }
        }
    }

    fn write_config(&self, keyrings: &[PathBuf]) -> Result<()> {
        let r = &self.root;
        for d in [r.join("lists/partial"), r.join("cache/archives/partial")] {
            fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        let signed_by = keyrings
            .iter()
            .map(|k| k.display().to_string())
            .collect::<Vec<_>>()
            .join(",");
        let sources: String = self
            .suites
            .iter()
            .map(|s| {
                let mirror = if s.ends_with("-security") {
                    SECURITY_MIRROR
                } else {
                    MIRROR
                };
                format!("deb [arch=amd64 signed-by={signed_by}] {mirror} {s} main\n")
            })
            .collect();
        let list = r.join("sources.list");
        fs::write(&list, sources).with_context(|| format!("writing {}", list.display()))?;
        let status = r.join("status");
        if !status.exists() {
            fs::write(&status, "").with_context(|| format!("writing {}", status.display()))?;
        }
        Ok(())
    }
}

/// The keyrings a private suite starts with: `TCPTRACE_VM_APT_KEYRING`
/// (comma separated) or the system archive keyring, plus keyrings fetched
/// and verified by earlier runs.
fn initial_keyrings(cache: &Path) -> Vec<PathBuf> {
    let mut keyrings: Vec<PathBuf> = match env::var("TCPTRACE_VM_APT_KEYRING") {
        Ok(v) if !v.is_empty() => v.split(',').map(PathBuf::from).collect(),
        _ => vec![PathBuf::from(SYSTEM_KEYRING)],
    };
    if let Ok(dirs) = fs::read_dir(cache.join("apt/keyrings")) {
        let mut found: Vec<PathBuf> = dirs
            .filter_map(|e| e.ok())
            .filter_map(|e| keyring_in(&e.path()))
            .collect();
        found.sort();
        keyrings.extend(found);
    }
    keyrings
}

/// The archive keyring inside an unpacked `debian-archive-keyring` package.
fn keyring_in(root: &Path) -> Option<PathBuf> {
    ["debian-archive-keyring.gpg", "debian-archive-keyring.pgp"]
        .iter()
        .map(|n| root.join("usr/share/keyrings").join(n))
        .find(|p| p.is_file())
}

/// Fetches `debian-archive-keyring` from `suite`, verified with `keyrings`.
fn fetch_keyring(cache: &Path, suite: &str, keyrings: &[PathBuf]) -> Result<PathBuf> {
    let apt = Apt::private(cache, &[suite]);
    let Some(p) = &apt.private else {
        bail!("internal: private apt without a root");
    };
    p.write_config(keyrings)?;
    apt.run_update()?;
    let fields = apt.show("debian-archive-keyring")?;
    let version = fields
        .get("Version")
        .context("debian-archive-keyring without a Version")?;
    let dest = cache
        .join("apt/keyrings")
        .join(format!("debian-archive-keyring_{version}"));
    if let Some(k) = keyring_in(&dest) {
        return Ok(k);
    }
    let debs = cache.join("debs");
    let deb = apt.download("debian-archive-keyring", version, &debs)?;
    super::kernels::extract(&deb, &dest)?;
    let _ = fs::remove_file(&deb);
    keyring_in(&dest).with_context(|| format!("no archive keyring in {}", dest.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_takes_first_alternatives_without_versions() {
        let f = Fields(vec![(
            "Depends".into(),
            "dracut | initramfs-tools (>= 0.120+deb8u2), linux-binary-7.2.13+deb14-cloud-amd64 (= 7.2.13-1), kmod:any".into(),
        )]);
        assert_eq!(
            f.depends(),
            ["dracut", "linux-binary-7.2.13+deb14-cloud-amd64", "kmod"]
        );
    }
}
