//! Least privilege for `tcptrace daemon`: a check at start that names the
//! capability that is missing, and, once every hook is attached, the drop
//! of every capability the run no longer needs (`--drop-caps`).
//!
//! Capabilities are per thread: the drop is applied by the thread that
//! asks for it, every thread started after it inherits the reduced sets,
//! and the long-lived threads started before it (the kernel log's) apply
//! it themselves at their next wake-up ([`apply_pending`]). docs/daemon.md
//! lists what each mode needs and why.

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context as _, Result};
use caps::{CapSet, Capability, CapsHashSet};

/// Loading and attaching the programs: BPF objects, and perf events
/// (kprobes, tracepoints), fentry and the kernel's BTF.
pub const TO_START: [Capability; 2] = [Capability::CAP_BPF, Capability::CAP_PERFMON];

/// Kept after attach: reading other processes' `/proc/PID/fd` (the
/// listener owners: the directory is the owner's, mode 0500, and its links
/// are behind a ptrace read check) and `/proc/PID/net` and
/// `/proc/PID/ns/net` of every namespace (the diagnosis, the metrics'
/// host namespace). Reading the BPF maps goes through descriptors opened
/// at load and needs none.
pub const KEPT: [Capability; 2] = [Capability::CAP_DAC_READ_SEARCH, Capability::CAP_SYS_PTRACE];

/// Bitmask of the effective set the other threads should drop to; 0: no
/// drop asked.
static PENDING: AtomicU64 = AtomicU64::new(0);

/// One line naming the first capability of `TO_START` this process lacks
/// (CAP_SYS_ADMIN stands for both, as on kernels before 5.8), or
/// CAP_DAC_READ_SEARCH when tracefs is closed to this user.
pub fn check_start() -> Result<()> {
    let eff = caps::read(None, CapSet::Effective).context("reading this process' capabilities")?;
    if eff.contains(&Capability::CAP_SYS_ADMIN) {
        return Ok(());
    }
    if let Some(missing) = TO_START.iter().find(|c| !eff.contains(c)) {
        bail!(
            "missing capability {missing}: tcptrace daemon needs {} to load and attach its \
             programs (and keeps {} after attach); run it as root or grant them",
            names(&TO_START),
            names(&KEPT)
        );
    }
    // tracefs is mode 0700, root's: a non-root user reads the tracepoint
    // ids in it only through CAP_DAC_READ_SEARCH (or CAP_DAC_OVERRIDE).
    let denied = std::fs::read_dir(TRACEFS_EVENTS)
        .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied);
    if denied
        && !eff.contains(&Capability::CAP_DAC_READ_SEARCH)
        && !eff.contains(&Capability::CAP_DAC_OVERRIDE)
    {
        bail!(
            "missing capability CAP_DAC_READ_SEARCH: {TRACEFS_EVENTS} is not readable by this \
             user, and tcptrace daemon reads the tracepoint ids there; run it as root or grant it"
        );
    }
    Ok(())
}

/// Where the tracepoint ids are (the loader mounts tracefs here when the
/// host has not; nothing to check then).
const TRACEFS_EVENTS: &str = "/sys/kernel/tracing/events";

fn names(caps: &[Capability]) -> String {
    caps.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn mask(set: &CapsHashSet) -> u64 {
    set.iter().fold(0, |m, c| m | c.bitmask())
}

/// Reduces this thread's capabilities to `KEPT` (those of them it has):
/// the bounding and ambient sets first (while CAP_SETPCAP is still
/// effective), then inheritable, effective and permitted. Later threads
/// inherit it; [`apply_pending`] does it in the older ones. Returns the
/// capabilities kept.
///
/// `reads_maps` reads a BPF map through a descriptor the run holds. It is
/// first tried with only `KEPT` effective, on a thread of its own
/// (capabilities are per thread): kernels before 5.19 refuse every `bpf()`
/// call without CAP_BPF while `kernel.unprivileged_bpf_disabled` is set
/// (Debian 11's 5.10 does), and there CAP_BPF is kept too, or the first
/// summary could not read the kernel's counters.
pub fn drop_after_attach(reads_maps: impl Fn() -> bool + Sync) -> Result<CapsHashSet> {
    let permitted =
        caps::read(None, CapSet::Permitted).context("reading this process' capabilities")?;
    let mut keep: CapsHashSet = KEPT
        .iter()
        .copied()
        .filter(|c| permitted.contains(c))
        .collect();
    let without = std::thread::scope(|s| {
        s.spawn(|| caps::set(None, CapSet::Effective, &keep).is_ok() && reads_maps())
            .join()
            .unwrap_or(false)
    });
    if !without && permitted.contains(&Capability::CAP_BPF) {
        keep.insert(Capability::CAP_BPF);
    }
    PENDING.store(mask(&keep) | 1 << 63, Ordering::Release);
    apply(&keep)?;
    Ok(keep)
}

fn apply(keep: &CapsHashSet) -> Result<()> {
    // Without CAP_SETPCAP the bounding set cannot shrink; the permitted
    // set below still bounds what the process can ever regain.
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false) {
        for c in caps::all() {
            if !keep.contains(&c) {
                let _ = caps::drop(None, CapSet::Bounding, c);
            }
        }
    }
    caps::clear(None, CapSet::Ambient).context("clearing the ambient capabilities")?;
    caps::clear(None, CapSet::Inheritable).context("clearing the inheritable capabilities")?;
    caps::set(None, CapSet::Effective, keep).context("dropping effective capabilities")?;
    caps::set(None, CapSet::Permitted, keep).context("dropping permitted capabilities")?;
    Ok(())
}

/// In a long-lived thread started before the drop: applies it to this
/// thread too, once it was asked for. Cheap when there is nothing to do.
pub fn apply_pending() {
    let pending = PENDING.load(Ordering::Acquire);
    if pending == 0 {
        return;
    }
    let keep: CapsHashSet = caps::all()
        .into_iter()
        .filter(|c| pending & c.bitmask() != 0)
        .collect();
    let done = caps::read(None, CapSet::Effective).is_ok_and(|eff| mask(&eff) == mask(&keep))
        && caps::read(None, CapSet::Permitted).is_ok_and(|p| mask(&p) == mask(&keep));
    if !done {
        if let Err(e) = apply(&keep) {
            log::warn!("dropping capabilities in this thread: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_set_is_small_and_names_read_as_the_kernel_spells_them() {
        assert_eq!(names(&TO_START), "CAP_BPF, CAP_PERFMON");
        assert_eq!(names(&KEPT), "CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE");
        let keep: CapsHashSet = KEPT.iter().copied().collect();
        assert_eq!(mask(&keep), 1 << 2 | 1 << 19);
    }
}
