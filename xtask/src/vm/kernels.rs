//! The kernels of the matrix: which Debian package each name means today,
//! and fetching and unpacking it into the cache.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context, Result};

use super::{apt::Apt, tools, Kernel};

/// Matrix names, oldest first; every name `--kernel` takes (5.10: Debian
/// 11's kernel, no task storage).
pub const MATRIX: &[&str] = &["5.10", "6.1", "6.12", "6.18", "newest"];

/// Hooks a kernel of `name` cannot attach under any mechanism, which the
/// scenario tests then require to be reported UNAVAILABLE with the reason
/// (`TCPTRACE_UNAVAILABLE`) instead of attached. 5.10: validate_incoming
/// needs `tcp_send_challenge_ack`, inlined there, and its drop-reason forms
/// need drop reasons (6.0).
pub fn known_unavailable(name: &str) -> &'static [&'static str] {
    match name {
        "5.10" => &["validate_incoming"],
        _ => &[],
    }
}

/// Where a matrix name is looked up.
enum Source {
    /// A meta package of the system's (bookworm) apt that depends on the
    /// concrete image, which must start with `linux-image-<prefix>`.
    SystemMeta {
        meta: &'static str,
        prefix: &'static str,
    },
    /// The newest `linux-image-<version>-cloud-amd64` of private suites whose
    /// version starts with `series` (empty: any).
    Newest {
        suites: &'static [&'static str],
        series: &'static [u64],
    },
}

fn source(name: &str) -> Result<Source> {
    Ok(match name {
        // Debian 11: the point release's kernel and its security updates.
        "5.10" => Source::Newest {
            suites: &["bullseye", "bullseye-security"],
            series: &[5, 10],
        },
        "6.1" => Source::SystemMeta {
            meta: "linux-image-cloud-amd64",
            prefix: "6.1.",
        },
        "6.12" => Source::SystemMeta {
            meta: "linux-image-6.12-cloud-amd64",
            prefix: "6.12.",
        },
        "6.18" => Source::Newest {
            suites: &["trixie-backports"],
            series: &[6, 18],
        },
        "newest" => Source::Newest {
            suites: &["sid"],
            series: &[],
        },
        _ => bail!("unknown kernel `{name}` (known: {})", MATRIX.join(", ")),
    })
}

/// Resolves `name` to a package and makes sure it is unpacked in `cache`.
pub fn resolve(name: &str, cache: &Path) -> Result<Kernel> {
    match source(name)? {
        Source::SystemMeta { meta, prefix } => {
            let apt = Apt::system();
            let attempt = || -> Result<Kernel> {
                let deps = apt.show(meta)?.depends();
                let image = deps
                    .iter()
                    .find(|d| d.starts_with("linux-image-"))
                    .with_context(|| format!("{meta} depends on no linux-image package"))?;
                if !image.starts_with(&format!("linux-image-{prefix}")) {
                    bail!("{meta} now depends on {image}, not a {prefix}x kernel");
                }
                prepare(name, &apt, image, cache)
            };
            match attempt() {
                // Missing or stale system lists: refresh once and retry.
                Err(first) if !apt.updated() => {
                    apt.update_once()
                        .with_context(|| format!("after: {first:#}"))
                        .context("apt-get update (system)")?;
                    attempt()
                }
                other => other,
            }
        }
        Source::Newest { suites, series } => {
            let apt = Apt::private(cache, suites);
            let suite = suites.join(", ");
            apt.update_once()
                .with_context(|| format!("updating the {suite} lists"))?;
            let names = apt.package_names("linux-image-")?;
            let image = newest_image(&names, series).with_context(|| {
                format!(
                    "no linux-image-{}*-cloud-amd64 in {suite}",
                    series.iter().map(|n| format!("{n}.")).collect::<String>()
                )
            })?;
            prepare(name, &apt, &image, cache)
        }
    }
}

/// The newest `linux-image-<version>-cloud-amd64` in `names` (not meta
/// packages, not -dbg/-unsigned) whose version starts with `series`.
pub fn newest_image(names: &[String], series: &[u64]) -> Option<String> {
    names
        .iter()
        .filter_map(|n| {
            let middle = n
                .strip_prefix("linux-image-")?
                .strip_suffix("-cloud-amd64")?;
            if !middle.starts_with(|c: char| c.is_ascii_digit()) {
                return None;
            }
            let numbers: Vec<u64> = middle
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty())
                .filter_map(|s| s.parse().ok())
                .collect();
            (numbers.len() >= 3 && numbers.starts_with(series)).then_some((numbers, n))
        })
        .max()
        .map(|(_, n)| n.clone())
}

/// Unpacks `image` and its same-ABI companions into the cache unless the
/// same set of packages is there already.
fn prepare(name: &str, apt: &Apt, image: &str, cache: &Path) -> Result<Kernel> {
    let parts = parts(apt, image)?;
    let (_, version) = &parts[0];
    let package = format!("{image}={version}");
    let dir = cache
        .join("kernels")
        .join(format!("{image}_{version}").replace(':', "%3a"));
    let listing: String = parts.iter().map(|(p, v)| format!("{p}={v}\n")).collect();
    if fs::read_to_string(dir.join("ready")).ok().as_deref() != Some(listing.as_str()) {
        fetch(name, apt, &parts, &dir).with_context(|| format!("fetching {package}"))?;
        fs::write(dir.join("ready"), listing)
            .with_context(|| format!("writing {}", dir.display()))?;
    }
    load(name, &package, &dir)
}

/// `image` and, for split packaging (trixie-backports, sid), the
/// `linux-binary-`, `linux-modules-` and `linux-base-` packages of the same
/// ABI it depends on (vmlinuz, modules, modules.builtin and config), each
/// with its candidate version.
fn parts(apt: &Apt, image: &str) -> Result<Vec<(String, String)>> {
    let fields = apt.show(image)?;
    let version = fields
        .get("Version")
        .with_context(|| format!("{image} has no Version"))?;
    let mut parts = vec![(image.to_string(), version.to_string())];
    let abi = image.trim_start_matches("linux-image-");
    for dep in fields.depends() {
        let companion = ["linux-binary-", "linux-modules-", "linux-base-"]
            .iter()
            .any(|p| dep.strip_prefix(p) == Some(abi));
        // A companion may be virtual (6.18 depends on a linux-base-<abi>
        // that nothing real provides); a missing vmlinuz or modules tree is
        // reported by `load` anyway.
        if companion {
            if let Ok(f) = apt.show(&dep) {
                let v = f
                    .get("Version")
                    .with_context(|| format!("{dep} has no Version"))?;
                parts.push((dep.clone(), v.to_string()));
            }
        }
    }
    Ok(parts)
}

/// Downloads and unpacks `parts` into `dir` (replaced atomically).
fn fetch(name: &str, apt: &Apt, parts: &[(String, String)], dir: &Path) -> Result<()> {
    let cache = dir
        .parent()
        .and_then(Path::parent)
        .context("kernel dir outside the cache")?;
    let debs = cache.join("debs");
    let tmp = dir.with_extension(format!("partial-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    for (pkg, version) in parts {
        let start = Instant::now();
        let deb = apt.download(pkg, version, &debs)?;
        let size = fs::metadata(&deb).map(|m| m.len()).unwrap_or(0);
        let fetched = start.elapsed();
        extract(&deb, &tmp.join("root"))?;
        eprintln!(
            "vm {name}: {pkg}={version}: {:.1} MB downloaded in {:.1}s, unpacked in {:.1}s",
            size as f64 / 1e6,
            fetched.as_secs_f64(),
            (start.elapsed() - fetched).as_secs_f64()
        );
        let _ = fs::remove_file(&deb);
    }
    let _ = fs::remove_dir_all(dir);
    fs::rename(&tmp, dir)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))
}

/// `dpkg-deb -x deb dest`.
pub fn extract(deb: &Path, dest: &Path) -> Result<()> {
    let dpkg_deb = tools::require("dpkg-deb", "dpkg")?;
    fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    tools::output(Command::new(dpkg_deb).arg("-x").arg(deb).arg(dest))
        .with_context(|| format!("unpacking {}", deb.display()))?;
    Ok(())
}

/// A [`Kernel`] from an unpacked package tree: vmlinuz is
/// `boot/vmlinuz-<release>` or, in split packaging,
/// `usr/lib/modules/<release>/vmlinuz`.
fn load(name: &str, package: &str, dir: &Path) -> Result<Kernel> {
    let root = dir.join("root");
    let module_dirs: Vec<PathBuf> = ["lib/modules", "usr/lib/modules"]
        .iter()
        .filter_map(|d| fs::read_dir(root.join(d)).ok())
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("kernel").is_dir())
        .collect();
    let from_boot = fs::read_dir(root.join("boot"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| file_name(p).starts_with("vmlinuz-"));
    let (vmlinuz, release) = match from_boot {
        Some(p) => {
            let release = file_name(&p).trim_start_matches("vmlinuz-").to_string();
            (p, release)
        }
        None => module_dirs
            .iter()
            .map(|d| d.join("vmlinuz"))
            .find(|p| p.is_file())
            .map(|p| {
                let release = p.parent().map(file_name).unwrap_or_default();
                (p, release)
            })
            .with_context(|| {
                format!(
                    "no boot/vmlinuz-* or usr/lib/modules/*/vmlinuz in {}",
                    root.display()
                )
            })?,
    };
    let modules = module_dirs
        .into_iter()
        .find(|d| file_name(d) == release)
        .with_context(|| format!("no modules tree for {release} in {}", root.display()))?;
    Ok(Kernel {
        name: name.to_string(),
        package: package.to_string(),
        release,
        vmlinuz,
        modules,
    })
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_newest_concrete_image() {
        let names: Vec<String> = [
            "linux-image-cloud-amd64",
            "linux-image-6.12-cloud-amd64",
            "linux-image-6.18.9+deb13-cloud-amd64",
            "linux-image-6.18.15+deb13-cloud-amd64",
            "linux-image-6.18.15+deb13-cloud-amd64-dbg",
            "linux-image-6.19.14+deb13-cloud-amd64",
            "linux-image-7.2.13+deb14-cloud-amd64-unsigned",
            "linux-image-6.1.0-9-cloud-amd64",
            "linux-image-6.1.0-56-cloud-amd64",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            newest_image(&names, &[6, 18]).as_deref(),
            Some("linux-image-6.18.15+deb13-cloud-amd64")
        );
        assert_eq!(
            newest_image(&names, &[]).as_deref(),
            Some("linux-image-6.19.14+deb13-cloud-amd64")
        );
        assert_eq!(
            newest_image(&names, &[6, 1]).as_deref(),
            Some("linux-image-6.1.0-56-cloud-amd64")
        );
        assert_eq!(newest_image(&names, &[5]), None);
        let bullseye: Vec<String> = [
            "linux-image-5.10.0-30-cloud-amd64",
            "linux-image-5.10.0-35-cloud-amd64",
            "linux-image-5.10.0-35-cloud-amd64-dbg",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            newest_image(&bullseye, &[5, 10]).as_deref(),
            Some("linux-image-5.10.0-35-cloud-amd64")
        );
    }
}
