//! Host programs the harness needs, each named with the Debian package that
//! provides it, and small helpers to run them.

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use anyhow::{bail, Context, Result};

/// Directories searched after `$PATH`: root's tools live in sbin.
const EXTRA_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// Where `program` lives on the host (a name with a `/` is taken as a path).
pub fn find(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Like [`find`], but a missing program is an error naming its package.
pub fn require(program: &str, package: &str) -> Result<PathBuf> {
    find(program).with_context(|| {
        format!("host tool `{program}` not found: install the Debian package `{package}` (cargo xtask setup does)")
    })
}

/// Runs `cmd`, failing with its stderr when it exits non-zero.
pub fn output(cmd: &mut Command) -> Result<Output> {
    let shown = show(cmd);
    let out = cmd
        .output()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            tail(&String::from_utf8_lossy(&out.stdout), 5),
        );
    }
    Ok(out)
}

/// `cmd` as a readable line (program and arguments).
pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// The last `n` non-empty lines of `text`, each on its own line.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("\n  {l}"))
        .collect()
}

/// Decompresses a module or other file by its extension into memory.
pub fn decompress(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let (tool, package) = if name.ends_with(".xz") {
        ("xz", "xz-utils")
    } else if name.ends_with(".zst") {
        ("zstd", "zstd")
    } else if name.ends_with(".gz") {
        ("gzip", "gzip")
    } else {
        return std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    };
    let exe = require(tool, package)?;
    let out = output(Command::new(exe).arg("-dc").arg(path))
        .with_context(|| format!("decompressing {}", path.display()))?;
    Ok(out.stdout)
}
