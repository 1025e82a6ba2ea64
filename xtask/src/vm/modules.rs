//! Kernel modules for a job: found in the kernel package's modules tree,
//! dependencies read from each module's `.modinfo` (Debian packages ship no
//! modules.dep; depmod runs at install time), decompressed on the host.

use std::{
    collections::{HashMap, HashSet},
    fs,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};

use super::{elf, tools, Kernel};

/// A module ready to insmod: its name and the decompressed .ko on the host.
pub struct Module {
    pub name: String,
    pub ko: PathBuf,
}

/// `names` and their dependencies, dependencies first, skipping modules
/// built into the kernel. Decompressed files are cached under `cache`.
pub fn prepare(kernel: &Kernel, names: &[String], cache: &Path) -> Result<Vec<Module>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let tree = Tree::scan(&kernel.modules).with_context(|| {
        format!(
            "kernel {}: scanning {}",
            kernel.name,
            kernel.modules.display()
        )
    })?;
    let out_dir = cache.join("ko").join(&kernel.release);
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    for name in names {
        tree.visit(&normalize(name), &out_dir, &mut seen, &mut order)
            .with_context(|| {
                format!("kernel {} ({}): module {name}", kernel.name, kernel.package)
            })?;
    }
    Ok(order)
}

/// Module names treat `-` and `_` alike.
fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

struct Tree {
    files: HashMap<String, PathBuf>,
    builtin: HashSet<String>,
}

impl Tree {
    fn scan(dir: &Path) -> Result<Self> {
        let mut files = HashMap::new();
        let mut stack = vec![dir.join("kernel")];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
                let path = entry
                    .with_context(|| format!("reading {}", d.display()))?
                    .path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Some(name) = module_name(&path) {
                    files.insert(name, path);
                }
            }
        }
        let builtin = fs::read_to_string(dir.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| module_name(Path::new(l)))
            .collect();
        Ok(Self { files, builtin })
    }

    fn visit(
        &self,
        name: &str,
        out_dir: &Path,
        seen: &mut HashSet<String>,
        order: &mut Vec<Module>,
    ) -> Result<()> {
        if !seen.insert(name.to_string()) || self.builtin.contains(name) {
            return Ok(());
        }
        let Some(src) = self.files.get(name) else {
            bail!("not in the kernel package and not built in");
        };
        let ko = out_dir.join(format!("{name}.ko"));
        let bytes = if ko.exists() {
            fs::read(&ko).with_context(|| format!("reading {}", ko.display()))?
        } else {
            let bytes = tools::decompress(src)?;
            // Workers of one process may decompress the same module at once:
            // each writes its own file, and the renames agree.
            let tmp = ko.with_extension(format!(
                "ko.tmp-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
            fs::rename(&tmp, &ko).with_context(|| format!("writing {}", ko.display()))?;
            bytes
        };
        for dep in
            depends(&bytes).with_context(|| format!("reading .modinfo of {}", src.display()))?
        {
            self.visit(&normalize(&dep), out_dir, seen, order)
                .with_context(|| format!("needed by {name}"))?;
        }
        order.push(Module {
            name: name.to_string(),
            ko,
        });
        Ok(())
    }
}

/// `veth` for `.../veth.ko`, `.ko.xz`, `.ko.zst` or `.ko.gz`.
fn module_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))?;
    Some(normalize(stem))
}

/// The `depends=` entry of a module's `.modinfo` section.
fn depends(ko: &[u8]) -> Result<Vec<String>> {
    let modinfo = elf::section(ko, ".modinfo").context("no .modinfo section")?;
    Ok(modinfo
        .split(|&b| b == 0)
        .filter_map(|entry| entry.strip_prefix(b"depends="))
        .flat_map(|list| {
            String::from_utf8_lossy(list)
                .split(',')
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|d| !d.is_empty())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_modules_by_file() {
        assert_eq!(
            module_name(Path::new("kernel/drivers/net/veth.ko.xz")).as_deref(),
            Some("veth")
        );
        assert_eq!(
            module_name(Path::new("x/nf-conntrack.ko")).as_deref(),
            Some("nf_conntrack")
        );
        assert_eq!(module_name(Path::new("x/modules.order")), None);
    }
}
