//! Loading the embedded object with this kernel's offsets and attaching
//! every hook through the attach table.

use std::time::Instant;

use anyhow::{anyhow, bail, Context as _, Result};
use aya::{Ebpf, EbpfLoader};
use tcptrace_common::{globals, paws::PawsOffsets, Config};

use crate::{
    btf::{kernel_offsets, KernelBtf},
    hooks::{self, AttachMode, HookStatus},
    kernel::{self, KernelSymbols},
    paws,
};

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tcptrace"));

pub struct Loaded {
    pub ebpf: Ebpf,
    pub hooks: Vec<HookStatus>,
    /// Label of each slot of the RSTs-sent counters.
    pub rst_slot_names: Vec<String>,
}

/// Checks privileges, loads the programs and attaches every hook that can be.
pub fn load(mode: AttachMode, config: Config) -> Result<Loaded> {
    load_only(mode, config, &[])
}

/// [`load`], restricted to the hooks named in `only` unless it is empty
/// (the hidden `--bench-hooks`).
pub fn load_only(mode: AttachMode, config: Config, only: &[String]) -> Result<Loaded> {
    let started = Instant::now();
    kernel::check_privileges()?;
    kernel::raise_memlock();
    kernel::ensure_filesystems()?;
    // aya's parse of the kernel BTF runs beside our own.
    let aya_btf_job = std::thread::spawn(|| aya::Btf::from_sys_fs().ok());
    let btf = KernelBtf::from_sys()?;
    let btf_read = started.elapsed();
    let offsets = kernel_offsets(&btf).context("resolving struct offsets from kernel BTF")?;
    // The SYN family's own offsets: without them its hooks stay off, the
    // others still run.
    let (syn_offsets, syn_error) = match crate::syn::offsets(&btf) {
        Ok(o) => (o, None),
        Err(e) => (tcptrace_common::syn::SynOffsets::default(), Some(e)),
    };
    // The PAWS/RST hooks report their own unavailability if this fails.
    let paws_offsets = paws::kernel_offsets(&btf).unwrap_or(PawsOffsets::UNSET);
    let rst_slot_names = paws::rst_slot_names(&btf, paws_offsets.tp_send_reset_reason != 0);
    let aya_btf = aya_btf_job
        .join()
        .map_err(|_| anyhow!("parsing kernel BTF (aya) panicked"))?;
    let mut ebpf = EbpfLoader::new()
        .btf(aya_btf.as_ref())
        .override_global(globals::OFFSETS, &offsets, true)
        .override_global(globals::CONFIG, &config, true)
        .override_global(globals::SYN_OFFSETS, &syn_offsets, true)
        .override_global(globals::PAWS_OFFSETS, &paws_offsets, true)
        .load(OBJECT)
        .context("loading the tcptrace eBPF object")?;
    let object_loaded = started.elapsed();
    let syms = KernelSymbols::lazy();
    let mut specs = hooks::table(&btf);
    if !only.is_empty() {
        specs.retain(|s| only.iter().any(|o| o == s.name));
    }
    let mut off = Vec::new();
    if let Some(e) = &syn_error {
        specs.retain(|s| {
            let syn = hooks::syn::HOOKS.contains(&s.name);
            if syn {
                off.push(HookStatus {
                    hook: s.name,
                    about: s.about,
                    mechanism: None,
                    notes: vec![format!("kernel BTF lacks what it reads: {e:#}")],
                });
            }
            !syn
        });
    }
    let mut statuses = hooks::attach_all(&mut ebpf, aya_btf.as_ref(), &syms, &specs, mode);
    statuses.extend(off);
    log::debug!(
        "loaded and attached in {:?} (BTF read at {btf_read:?}, object loaded at {object_loaded:?})",
        started.elapsed()
    );
    // Freeing the parsed BTF (and symbols, if read) takes milliseconds: not
    // on the way to tracing. Then the heap they used goes back to the system.
    std::thread::spawn(move || {
        drop((btf, aya_btf, syms));
        // SAFETY: malloc_trim only releases free heap memory.
        unsafe { libc::malloc_trim(0) };
    });
    if !statuses.iter().any(HookStatus::attached) {
        let why: Vec<String> = statuses
            .iter()
            .map(|s| format!("{}: {}", s.hook, s.notes.join("; ")))
            .collect();
        bail!("no hook could attach on this kernel ({})", why.join(" | "));
    }
    Ok(Loaded {
        ebpf,
        hooks: statuses,
        rst_slot_names,
    })
}

/// One line per hook for stderr or `tcptrace check`.
pub fn describe(status: &HookStatus) -> String {
    match status.mechanism {
        Some(m) => format!(
            "{:<12} {:<11} {}",
            status.hook,
            m.to_string(),
            status.notes.join("; ")
        ),
        None => format!(
            "{:<12} {:<11} {}",
            status.hook,
            "UNAVAILABLE",
            status.notes.join("; ")
        ),
    }
}
