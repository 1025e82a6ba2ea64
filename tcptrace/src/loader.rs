//! Loading the embedded object with this kernel's offsets and attaching
//! every hook through the attach table; forwarding the programs' own log
//! records (aya-log) to stderr.

use std::{os::fd::AsRawFd as _, time::Instant};

use anyhow::{bail, Context as _, Result};
use aya::{Ebpf, EbpfLoader};
use aya_log::EbpfLogger;
use tcptrace_common::{globals, paws::PawsOffsets, Config};

use crate::{
    btf::{kernel_offsets, KernelBtf},
    hooks::{self, AttachMode, HookArgs, HookSpec, HookStatus},
    kernel::{self, KernelSymbols},
    paws,
};

pub(crate) static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tcptrace"));

/// The same programs with the per-thread connect() state in an LRU hash
/// (tcptrace-ebpf's `thread-hash` feature), for kernels without task
/// storage (before 5.11), which cannot create `CONNECT_TASK` as
/// [`OBJECT`] declares it.
pub(crate) static OBJECT_THREAD_HASH: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tcptrace-thread-hash"));

/// Which object this kernel loads, and why when not the first choice.
pub fn object() -> (&'static [u8], Option<&'static str>) {
    match aya::sys::is_map_supported(aya::maps::MapType::TaskStorage) {
        Ok(true) => (OBJECT, None),
        Ok(false) => (
            OBJECT_THREAD_HASH,
            Some(
                "no task storage on this kernel (5.11+): connect() state in an LRU hash by thread",
            ),
        ),
        // The probe itself failed: try task storage, the load says why if not.
        Err(e) => {
            log::debug!("probing for task storage: {e}");
            (OBJECT, None)
        }
    }
}

pub struct Loaded {
    pub ebpf: Ebpf,
    pub hooks: Vec<HookStatus>,
    /// Label of each slot of the RSTs-sent counters.
    pub rst_slot_names: Vec<String>,
}

/// Checks privileges, loads the programs and attaches every hook that can
/// be, all before returning (`tcptrace check`).
pub fn load(hooks: HookArgs, config: Config) -> Result<Loaded> {
    let (mut loaded, rest) = load_staged(hooks, config, None)?;
    let early = std::mem::take(&mut loaded.hooks);
    loaded.hooks = rest.attach(&mut loaded.ebpf, early);
    ensure_any_attached(&loaded.hooks)?;
    Ok(loaded)
}

/// Loads the object and attaches the hooks that need nothing but plain
/// tracepoints (connect() among them), so events flow within milliseconds
/// of start; [`Rest::attach`] attaches the others, which wait for aya's
/// parse of the kernel BTF and for the verifier, while the caller already
/// reads events. Only the hooks named in `only` when it is given (the
/// hidden `--bench-hooks` and `--bench-floor`).
pub fn load_staged(
    choice: HookArgs,
    config: Config,
    only: Option<&[String]>,
) -> Result<(Loaded, Rest)> {
    let started = Instant::now();
    let mode = choice.attach;
    kernel::check_privileges()?;
    kernel::raise_memlock();
    kernel::ensure_filesystems()?;
    // aya's parse of the kernel BTF runs beside our own; only fentry and
    // tp_btf programs need it, and they are attached last.
    let aya_btf_job = std::thread::Builder::new()
        .name("tcptrace-btf".into())
        .spawn(|| aya::Btf::from_sys_fs().ok())
        .context("starting the BTF parser thread")?;
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
    // The programs write log records only at the levels `log` shows (the
    // same numbering: 0 off .. 5 trace), so without -v they write none.
    let kernel_log_level = log::max_level() as u8;
    // The object relocates no kernel types (offsets come as globals), so it
    // loads without aya's BTF (which the loader would otherwise parse here).
    // Task storage has no userspace type in aya; the programs alone use it.
    let (object, object_note) = object();
    if object_note.is_some() {
        hooks::check_fexit_ret_slots(&btf);
    }
    let mut ebpf = EbpfLoader::new()
        .btf(None)
        .allow_unsupported_maps()
        .override_global(globals::OFFSETS, &offsets, true)
        .override_global(globals::CONFIG, &config, true)
        .override_global(globals::SYN_OFFSETS, &syn_offsets, true)
        .override_global(globals::PAWS_OFFSETS, &paws_offsets, true)
        .override_global(aya_log::LEVEL, &kernel_log_level, false)
        .load(object)
        .context("loading the tcptrace eBPF object")?;
    // Before any program loads: they refer to the log map the logger takes.
    forward_kernel_log(&mut ebpf);
    let object_loaded = started.elapsed();
    let mut specs = hooks::table(&btf, choice);
    if let Some(only) = only {
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
                    programs: s.programs(),
                });
            }
            !syn
        });
    }
    let syms = KernelSymbols::lazy();
    // Hooks whose tracepoints go on as tp_btf wait for aya's BTF parse.
    let (early, later): (Vec<_>, Vec<_>) =
        specs.into_iter().partition(|s| s.plain_tracepoints(mode));
    let hooks = hooks::attach_all(&mut ebpf, None, &syms, &early, mode);
    let upgrades = early
        .into_iter()
        .filter(|s| !s.upgrade.is_empty())
        .collect();
    log::debug!(
        "first hooks attached in {:?} (BTF read at {btf_read:?}, object loaded at {object_loaded:?})",
        started.elapsed()
    );
    // Freeing our parsed BTF takes milliseconds: not on the way to tracing.
    std::thread::spawn(move || drop(btf));
    Ok((
        Loaded {
            ebpf,
            hooks,
            rst_slot_names,
        },
        Rest {
            specs: later,
            upgrades,
            off,
            aya_btf_job,
            syms,
            mode,
            started,
            object_note,
        },
    ))
}

/// The hooks [`load_staged`] left to attach.
pub struct Rest {
    specs: Vec<HookSpec>,
    /// Hooks attached early whose fentry targets may replace their
    /// tracepoints ([`hooks::upgrade`]).
    upgrades: Vec<HookSpec>,
    /// Hooks already known to be off, with why.
    off: Vec<HookStatus>,
    aya_btf_job: std::thread::JoinHandle<Option<aya::Btf>>,
    syms: KernelSymbols,
    mode: AttachMode,
    started: Instant,
    /// Why the thread-hash object was loaded, for the connect hook's line.
    object_note: Option<&'static str>,
}

impl Rest {
    /// Attaches the remaining hooks to `ebpf` (the object [`load_staged`]
    /// returned), moves early hooks onto fentry where they can, and says
    /// where every hook ended up, the `early` ones first.
    pub fn attach(self, ebpf: &mut Ebpf, mut early: Vec<HookStatus>) -> Vec<HookStatus> {
        // A panicked parse is the same as no BTF: fentry and tp_btf hooks
        // then say "no kernel BTF".
        let aya_btf = self.aya_btf_job.join().ok().flatten();
        let later = hooks::attach_all(ebpf, aya_btf.as_ref(), &self.syms, &self.specs, self.mode);
        // After the other hooks: a kernel that refuses fentry is known by now.
        for spec in &self.upgrades {
            if let Some(status) = early.iter_mut().find(|s| s.hook == spec.name) {
                hooks::upgrade(ebpf, aya_btf.as_ref(), &self.syms, spec, self.mode, status);
            }
        }
        let mut statuses = early;
        statuses.extend(later);
        statuses.extend(self.off);
        if let Some(note) = self.object_note {
            for s in statuses
                .iter_mut()
                .filter(|s| s.hook == hooks::connect::HOOK)
            {
                s.notes.push(note.to_owned());
            }
        }
        log::debug!("every hook attached in {:?}", self.started.elapsed());
        // The parsed BTF and symbols are not needed again: free them and give
        // the heap back to the system.
        drop((aya_btf, self.syms));
        // SAFETY: malloc_trim only releases free heap memory.
        unsafe { libc::malloc_trim(0) };
        statuses
    }
}

/// Fails, naming every hook's reason, when none could attach.
pub fn ensure_any_attached(statuses: &[HookStatus]) -> Result<()> {
    if statuses.iter().any(HookStatus::attached) {
        return Ok(());
    }
    let why: Vec<String> = statuses
        .iter()
        .map(|s| format!("{}: {}", s.hook, s.notes.join("; ")))
        .collect();
    bail!("no hook could attach on this kernel ({})", why.join(" | "));
}

/// Width of the hook column of [`describe`]: the longest hook name
/// (`validate_incoming`).
pub const HOOK_COLUMN: usize = 17;

/// One line per hook for stderr or `tcptrace check`.
pub fn describe(status: &HookStatus) -> String {
    match status.mechanism {
        Some(m) => format!(
            "{:<w$} {:<11} {}",
            status.hook,
            m.to_string(),
            status.notes.join("; "),
            w = HOOK_COLUMN
        ),
        None => format!(
            "{:<w$} {:<11} {}",
            status.hook,
            "UNAVAILABLE",
            status.notes.join("; "),
            w = HOOK_COLUMN
        ),
    }
}

/// Forwards the programs' aya-log records (rare diagnostics: a kernel read
/// that failed, a state that should not happen) to the `log` crate, which
/// shows them on stderr with `-v`, for the rest of the process.
///
/// The logger owns the log ring buffer, whose fd the programs were
/// relocated against: dropping it before a program loads makes that load
/// fail ("fd is not pointing to valid bpf_map"), so it is leaked, alive
/// until the process exits. A thread of its own drains it, woken by the
/// ring buffer: `check` has no async runtime, and the live run's
/// single-threaded runtime keeps its time for the events.
fn forward_kernel_log(ebpf: &mut Ebpf) {
    let logger = match EbpfLogger::init(ebpf) {
        Ok(logger) => logger,
        // An object without log statements has no log map: nothing to show.
        Err(e) => {
            log::debug!("kernel programs' log not forwarded: {e}");
            return;
        }
    };
    let logger: &'static mut EbpfLogger<_> = Box::leak(Box::new(logger));
    let fd = logger.as_raw_fd();
    let drain = move || loop {
        let mut pending = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd that outlives the call; `fd` stays open
        // because the logger owning it is never dropped.
        // A timeout, so that a capability drop asked after this thread
        // started reaches it within a second (privilege.rs).
        if unsafe { libc::poll(&mut pending, 1, 1000) } < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                // Not expected for a ring buffer fd: fall back to a timer.
                log::debug!("polling the kernel programs' log: {e}");
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
        logger.flush();
        crate::privilege::apply_pending();
    };
    if let Err(e) = std::thread::Builder::new()
        .name("tcptrace-klog".into())
        .spawn(drain)
    {
        log::debug!("kernel programs' log not forwarded: starting its thread: {e}");
    }
}
