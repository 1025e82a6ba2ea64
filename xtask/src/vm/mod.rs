//! The kernel test matrix: Debian kernels booted under QEMU/TCG with an
//! initramfs holding the static binaries and a scenario script.
//!
//! Interface used by `main.rs` (the implementation fills this module):
//! - [`Kernel`]: a kernel of the matrix, resolved to a Debian package at run time.
//! - [`resolve`]: turns names (`6.1`, `6.12`, `6.18`, `newest`) into kernels,
//!   downloading and caching them; one that cannot be had is `Err` by name.
//! - [`run`]: boots one kernel with a [`Job`] and reports the result line.

use std::{path::PathBuf, time::Duration};

use anyhow::Result;

/// A kernel ready to boot.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// Matrix name: "6.1", "6.12", "6.18", "newest".
    pub name: String,
    /// Debian package it came from, with version.
    pub package: String,
    pub vmlinuz: PathBuf,
    /// Directory with the kernel's modules (decompressed .ko files we need).
    pub modules: PathBuf,
}

/// What to run inside the VM.
#[derive(Debug, Clone)]
pub struct Job {
    /// (host file, absolute guest path); static binaries or data files.
    pub files: Vec<(PathBuf, String)>,
    /// Shell lines run by /init (busybox sh) after mounts and module loads.
    /// The job passes when the last command exits 0.
    pub script: String,
    pub timeout: Duration,
}

/// Outcome of one VM run.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub passed: bool,
    /// The result line the guest printed, or why there was none.
    pub summary: String,
    /// Full serial console log on the host.
    pub log: PathBuf,
}

pub fn resolve(_names: &[String]) -> Vec<(String, Result<Kernel>)> {
    unimplemented!("vm::resolve")
}

pub fn run(_kernel: &Kernel, _job: &Job) -> Result<Outcome> {
    unimplemented!("vm::run")
}
