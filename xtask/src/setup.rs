//! Installs what building and testing tcptrace needs on a fresh Debian
//! bookworm machine: Debian's rustc-web with its library source (for the
//! eBPF target's build-std), LLVM 22 and bpf-linker built against it, QEMU and
//! busybox for the VM matrix. Idempotent: installed pieces are left alone.

use std::{path::Path, process::Command};

use anyhow::{bail, Context as _, Result};

use crate::sh::{run, succeeds};

/// Debian packages and why each is needed.
const PACKAGES: &[(&str, &str)] = &[
    ("rustc-web", "compiler with LLVM 22 for the eBPF target"),
    ("cargo-web", "cargo matching rustc-web"),
    ("rust-web-src", "core library source for -Z build-std"),
    ("llvm-22-dev", "LLVM for bpf-linker"),
    ("libpolly-22-dev", "LLVM 22 link dependency"),
    ("libzstd-dev", "LLVM 22 link dependency"),
    ("zlib1g-dev", "LLVM 22 link dependency"),
    ("rust-web-clippy", "clippy for the eBPF crate"),
    ("qemu-system-x86", "VM matrix"),
    ("busybox-static", "VM initramfs"),
    ("cpio", "VM initramfs"),
    ("xz-utils", "kernel module decompression"),
    ("zstd", "kernel module decompression"),
    ("iproute2", "network namespaces in scenarios"),
    ("tshark", "checks tcptrace's pcapng output in tests"),
    ("curl", "real HTTP client in scenario tests"),
    ("nftables", "SNAT in a client namespace in scenario tests"),
    (
        "prometheus",
        "a real Prometheus server (and promtool) scraping --metrics in scenario tests",
    ),
    (
        "chromium",
        "renders tcptrace report's page headless in tests/report.rs (DOM and screenshot)",
    ),
    (
        "nginx",
        "a real master/worker server in the diagnosis scenarios",
    ),
    (
        "bpftrace",
        "cargo xtask bench: the peer tracer measured in the same run",
    ),
    (
        "systemd",
        "systemd-analyze verify of deploy/systemd/tcptrace.service in tests",
    ),
];

const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
pub const BPF_TOOLCHAIN: &str = "bpf-debian";
const BPF_TOOLCHAIN_DIR: &str = "/opt/tcptrace-bpf-toolchain";

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

pub fn apt_install(pkgs: &[&str]) -> Result<()> {
    let missing: Vec<&str> = pkgs.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "missing Debian packages {}: run as root (sudo) so setup can apt-get install them",
            missing.join(" ")
        );
    }
    eprintln!("setup: apt-get install {}", missing.join(" "));
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn bpf_linker_ok() -> bool {
    succeeds(Command::new("bpf-linker").arg("--version"))
}

fn install_bpf_linker() -> Result<()> {
    if bpf_linker_ok() {
        return Ok(());
    }
    eprintln!(
        "setup: cargo install bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (a few minutes)"
    );
    run(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--locked",
            "--version",
            BPF_LINKER_VERSION,
        ])
        .args(["--no-default-features", "--features", "llvm-22"])
        .env("LLVM_PREFIX", LLVM_PREFIX)
        .env("LLVM_SYS_221_PREFIX", LLVM_PREFIX))?;
    if !bpf_linker_ok() {
        bail!("bpf-linker was installed but does not run: is ~/.cargo/bin on PATH?");
    }
    Ok(())
}

/// Links Debian's compiler as a rustup toolchain so aya-build can select it.
fn link_toolchain() -> Result<()> {
    let has = |tool: &str| {
        Command::new("rustup")
            .args(["run", BPF_TOOLCHAIN, tool, "--version"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if has("rustc") && has("cargo-clippy") {
        return Ok(());
    }
    eprintln!("setup: linking Debian's rustc-web as rustup toolchain {BPF_TOOLCHAIN}");
    let dir = Path::new(BPF_TOOLCHAIN_DIR);
    std::fs::create_dir_all(dir.join("bin"))
        .with_context(|| format!("creating {BPF_TOOLCHAIN_DIR}"))?;
    for (link, target) in [
        ("bin/rustc", "/usr/bin/rustc"),
        ("bin/cargo", "/usr/bin/cargo"),
        ("bin/cargo-clippy", "/usr/bin/cargo-clippy"),
        ("bin/clippy-driver", "/usr/bin/clippy-driver"),
        ("lib", "/usr/lib"),
    ] {
        let link = dir.join(link);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(target, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    run(Command::new("rustup").args(["toolchain", "link", BPF_TOOLCHAIN, BPF_TOOLCHAIN_DIR]))
}

/// Everything the eBPF build needs.
pub fn build_chain() -> Result<()> {
    let pkgs: Vec<&str> = PACKAGES.iter().take(8).map(|(p, _)| *p).collect();
    apt_install(&pkgs)?;
    install_bpf_linker()?;
    link_toolchain()
}

/// Everything the VM matrix needs on top of the build chain.
pub fn vm_tools() -> Result<()> {
    let pkgs: Vec<&str> = PACKAGES.iter().skip(8).map(|(p, _)| *p).collect();
    apt_install(&pkgs)
}

pub fn describe() -> String {
    PACKAGES
        .iter()
        .map(|(p, why)| format!("  {p:<18} {why}\n"))
        .collect()
}
