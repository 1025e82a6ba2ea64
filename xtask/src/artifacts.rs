//! Building what the VM matrix and `dist` ship: the static tcptrace binary and
//! static scenario test executables (x86_64-unknown-linux-gnu, crt-static), so
//! they run in a busybox initramfs on any kernel.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

use crate::sh::{cargo, root, run};

const TARGET: &str = "x86_64-unknown-linux-gnu";

fn static_cargo(args: &[&str]) -> Command {
    let mut c = cargo();
    c.args(args)
        .args(["--release", "--target", TARGET, "-p", "tcptrace"])
        .env("RUSTFLAGS", "-C target-feature=+crt-static");
    c
}

/// Builds the static tcptrace binary and returns its path.
pub fn static_tcptrace() -> Result<PathBuf> {
    eprintln!("build: static tcptrace ({TARGET}, crt-static)");
    run(&mut static_cargo(&["build", "--bin", "tcptrace"]))?;
    let bin = root().join("target").join(TARGET).join("release/tcptrace");
    ensure_static(&bin)?;
    Ok(bin)
}

/// Builds the static test executables of the tcptrace crate (unit tests and
/// every scenario file) and returns (name, path) pairs.
pub fn static_tests() -> Result<Vec<(String, PathBuf)>> {
    eprintln!("build: static test executables");
    static_executables(&["test", "--no-run"], |_| true)
}

/// Builds the static benchmark executables (`tcptrace/benches/*.rs`).
pub fn static_benches() -> Result<Vec<(String, PathBuf)>> {
    eprintln!("build: static benchmark executables");
    static_executables(&["build", "--benches"], |kinds| {
        kinds.iter().any(|k| k == "bench")
    })
}

fn static_executables(
    args: &[&str],
    keep: impl Fn(&[serde_json::Value]) -> bool,
) -> Result<Vec<(String, PathBuf)>> {
    let out = static_cargo(args)
        .arg("--message-format=json")
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !out.status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let kinds = msg["target"]["kind"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !keep(&kinds) || (args[0] == "test" && msg["profile"]["test"] != true) {
            continue;
        }
        if let (Some(exe), Some(name)) =
            (msg["executable"].as_str(), msg["target"]["name"].as_str())
        {
            found.push((name.to_owned(), PathBuf::from(exe)));
        }
    }
    if found.is_empty() {
        bail!("cargo {} produced no executables", args.join(" "));
    }
    Ok(found)
}

/// Fails unless `bin` is an ELF64 executable without a program interpreter
/// (PT_INTERP), i.e. it needs no shared libraries.
pub fn ensure_static(bin: &std::path::Path) -> Result<()> {
    const PT_INTERP: u32 = 3;
    let b = std::fs::read(bin).with_context(|| format!("reading {}", bin.display()))?;
    let u16_at = |o: usize| {
        b.get(o..o + 2)
            .map(|s| u16::from_le_bytes([s[0], s[1]]) as usize)
    };
    let u64_at = |o: usize| {
        b.get(o..o + 8)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_le_bytes)
    };
    if b.get(..5) != Some(b"\x7fELF\x02") {
        bail!("{} is not an ELF64 file", bin.display());
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        bail!("{}: truncated ELF header", bin.display());
    };
    for i in 0..phnum {
        let at = phoff as usize + i * phentsize;
        let p_type = b
            .get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_le_bytes);
        if p_type == Some(PT_INTERP) {
            bail!("{} is dynamically linked (has PT_INTERP)", bin.display());
        }
    }
    Ok(())
}

/// `cargo xtask dist`: target/dist/tcptrace.
pub fn dist() -> Result<PathBuf> {
    let bin = static_tcptrace()?;
    let dir = root().join("target/dist");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dest = dir.join("tcptrace");
    std::fs::copy(&bin, &dest).with_context(|| format!("copying to {}", dest.display()))?;
    Ok(dest)
}
