//! Builds the kernel programs (tcptrace-ebpf) and embeds the object.
//!
//! The eBPF target needs `-Z build-std=core`, so it is built with a toolchain
//! that has the standard library's source: a rustup nightly with rust-src when
//! there is one, otherwise the `bpf-debian` toolchain that `cargo xtask setup`
//! links to Debian's rustc-web and rust-web-src. `TCPTRACE_BPF_TOOLCHAIN`
//! overrides the choice.
//!
//! Two objects: `tcptrace` (the per-thread connect() state in task storage)
//! and `tcptrace-thread-hash` (the same programs with that state in an LRU
//! hash, feature `thread-hash`), which the loader takes on kernels without
//! task storage (before 5.11). The second build shares the first's target
//! directory, so only tcptrace-ebpf itself is compiled and linked again.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};
use aya_build::{Package, Toolchain};

const SETUP_HINT: &str = "run `cargo xtask setup` (installs Debian's rust-web-src and bpf-linker)";

fn has_rust_src(toolchain: &str) -> bool {
    let Ok(out) = Command::new("rustup")
        .args(["run", toolchain, "rustc", "--print", "sysroot"])
        .output()
    else {
        return false;
    };
    out.status.success()
        && Path::new(String::from_utf8_lossy(&out.stdout).trim())
            .join("lib/rustlib/src/rust/library/core")
            .is_dir()
}

fn pick_toolchain() -> anyhow::Result<String> {
    println!("cargo:rerun-if-env-changed=TCPTRACE_BPF_TOOLCHAIN");
    if let Ok(toolchain) = env::var("TCPTRACE_BPF_TOOLCHAIN") {
        return Ok(toolchain);
    }
    for toolchain in ["nightly", "bpf-debian"] {
        if has_rust_src(toolchain) {
            return Ok(toolchain.to_owned());
        }
    }
    bail!("no toolchain with rust-src for the eBPF build: {SETUP_HINT}")
}

fn main() -> anyhow::Result<()> {
    let toolchain = pick_toolchain()?;
    if toolchain != "nightly" {
        // Debian's compiler is a stable one: allow -Z build-std for it.
        // SAFETY: build scripts are single-threaded at this point.
        unsafe { env::set_var("RUSTC_BOOTSTRAP", "1") };
    }
    let which = Command::new("bpf-linker").arg("--version").output();
    if !which.map(|o| o.status.success()).unwrap_or(false) {
        bail!("bpf-linker not found on PATH: {SETUP_HINT}");
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    // aya-build writes the object as OUT_DIR/tcptrace whatever the features:
    // the thread-hash build goes first and is moved aside.
    for (features, object) in [
        (&["thread-hash"][..], Some("tcptrace-thread-hash")),
        (&[][..], None),
    ] {
        let package = Package {
            name: "tcptrace-ebpf",
            root_dir: "../tcptrace-ebpf",
            features,
            ..Default::default()
        };
        aya_build::build_ebpf([package], Toolchain::Custom(&toolchain)).with_context(|| {
            format!("building tcptrace-ebpf (features {features:?}) with toolchain {toolchain}")
        })?;
        if let Some(object) = object {
            let (from, to) = (out_dir.join("tcptrace"), out_dir.join(object));
            fs::rename(&from, &to)
                .with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
        }
    }
    Ok(())
}
