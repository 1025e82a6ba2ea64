//! The attach table: every hook tcptrace knows, the kernel targets behind it,
//! and the mechanism chosen for each on this kernel (tracepoint, fentry/fexit,
//! kprobe/kretprobe), with the reason whenever one cannot be used.

mod connect;
mod paws;
mod port_search;
pub mod syn;

use std::{
    fmt,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{anyhow, Context as _, Result};
use aya::{
    programs::{BtfTracePoint, FEntry, FExit, KProbe, Program, ProgramError, TracePoint},
    Btf, Ebpf,
};

use crate::{btf::KernelBtf, kernel::KernelSymbols};

/// How function hooks may attach (`--attach`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// fentry/fexit where the kernel allows it, else kprobe/kretprobe.
    Auto,
    Fentry,
    Kprobe,
    /// Only the tracepoint fallbacks of function hooks (drop reasons).
    Tracepoint,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    Tracepoint,
    Fentry,
    Kprobe,
    /// BTF-typed tracepoints (with plain tracepoints beside them): the
    /// fallback of function hooks.
    TpBtf,
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tracepoint => "tracepoint",
            Self::Fentry => "fentry",
            Self::Kprobe => "kprobe",
            Self::TpBtf => "tp_btf",
        })
    }
}

/// A kernel function and the programs that trace it under each mechanism.
pub struct FnTarget {
    pub function: &'static str,
    /// fentry (or fexit when `ret`) program name.
    pub fentry: &'static str,
    /// kprobe (or kretprobe when `ret`) program name.
    pub kprobe: &'static str,
    /// Whether this is the return side (fexit / kretprobe).
    pub ret: bool,
    /// A hook still works without an optional target, with less detail.
    pub optional: bool,
}

pub struct TpTarget {
    pub category: &'static str,
    pub name: &'static str,
    pub program: &'static str,
}

/// A BTF-typed tracepoint (`tp_btf/<name>`) and its program.
pub struct BtfTpTarget {
    pub name: &'static str,
    pub program: &'static str,
}

/// What a function hook falls back to when neither fentry nor kprobe works.
#[derive(Default)]
pub enum Fallback {
    #[default]
    None,
    /// This kernel lacks what the fallback needs (the text says what).
    Unavailable(String),
    /// tp_btf programs and plain tracepoints, attached together.
    Tracepoints {
        tp_btf: Vec<BtfTpTarget>,
        tracepoints: Vec<TpTarget>,
    },
}

/// One hook: what the user sees in `tcptrace check` and in the recording.
#[derive(Default)]
pub struct HookSpec {
    pub name: &'static str,
    pub about: &'static str,
    pub tracepoints: Vec<TpTarget>,
    pub functions: Vec<FnTarget>,
    /// Plain tracepoints attached along with `functions`, whichever function
    /// mechanism they use.
    pub companions: Vec<TpTarget>,
    pub fallback: Fallback,
    /// fentry/fexit targets that take over from `tracepoints` where the
    /// kernel allows BPF trampolines (`--attach auto|fentry`): cheaper than
    /// the tracepoints, which attach first so that events flow at once.
    pub upgrade: Vec<FnTarget>,
    /// Set when the hook cannot run on this kernel at all, with why.
    pub unavailable: Option<String>,
}

impl HookSpec {
    /// Whether the hook needs only plain tracepoints: no function target, no
    /// fallback, so neither the kernel BTF nor the verifier's BTF checks.
    pub fn plain_tracepoints(&self) -> bool {
        !self.tracepoints.is_empty()
            && self.functions.is_empty()
            && self.companions.is_empty()
            && matches!(self.fallback, Fallback::None)
    }

    /// Every program this hook may run, under any mechanism.
    pub fn programs(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        let fns = self.functions.iter().chain(&self.upgrade);
        out.extend(fns.flat_map(|t| [t.fentry, t.kprobe]));
        let tps = self.tracepoints.iter().chain(&self.companions);
        out.extend(tps.map(|t| t.program));
        if let Fallback::Tracepoints {
            tp_btf,
            tracepoints,
        } = &self.fallback
        {
            out.extend(tp_btf.iter().map(|t| t.program));
            out.extend(tracepoints.iter().map(|t| t.program));
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Where one hook ended up.
#[derive(Clone, Debug, serde::Serialize)]
pub struct HookStatus {
    pub hook: &'static str,
    pub about: &'static str,
    /// `None` when the hook could not attach at all.
    pub mechanism: Option<Mechanism>,
    /// Targets attached, and targets or mechanisms that failed with why.
    pub notes: Vec<String>,
    /// Every program the hook may run (the diagnosis sums their kernel skips).
    #[serde(skip)]
    pub programs: Vec<&'static str>,
}

impl HookStatus {
    pub fn attached(&self) -> bool {
        self.mechanism.is_some()
    }
}

/// Every hook, in display order, specialised for this kernel's BTF.
pub fn table(btf: &KernelBtf) -> Vec<HookSpec> {
    let mut specs = vec![connect::spec(), port_search::spec(btf)];
    specs.extend(syn::specs(btf));
    specs.extend(paws::specs(btf));
    specs
}

/// Attaches every hook in `specs`, falling back per hook, and reports what
/// happened. A hook that cannot attach is reported, never fatal here.
pub fn attach_all(
    ebpf: &mut Ebpf,
    aya_btf: Option<&Btf>,
    syms: &KernelSymbols,
    specs: &[HookSpec],
    mode: AttachMode,
) -> Vec<HookStatus> {
    specs
        .iter()
        .map(|spec| attach_hook(ebpf, aya_btf, syms, spec, mode))
        .collect()
}

fn attach_hook(
    ebpf: &mut Ebpf,
    aya_btf: Option<&Btf>,
    syms: &KernelSymbols,
    spec: &HookSpec,
    mode: AttachMode,
) -> HookStatus {
    let mut status = HookStatus {
        hook: spec.name,
        about: spec.about,
        mechanism: None,
        notes: Vec::new(),
        programs: spec.programs(),
    };
    if let Some(why) = &spec.unavailable {
        status.notes.push(why.clone());
        return status;
    }
    // A stable tracepoint comes first. A hook that also has function targets
    // falls back to them when the tracepoint fails, and an explicit
    // `--attach fentry|kprobe` selects them directly.
    let use_tracepoints = !spec.tracepoints.is_empty()
        && (spec.functions.is_empty() || matches!(mode, AttachMode::Auto | AttachMode::Tracepoint));
    if use_tracepoints {
        match attach_tracepoints(ebpf, &spec.tracepoints) {
            Ok(()) => {
                status.mechanism = Some(Mechanism::Tracepoint);
                status.notes.push(
                    spec.tracepoints
                        .iter()
                        .map(|t| format!("{}:{}", t.category, t.name))
                        .collect::<Vec<_>>()
                        .join(", "),
                );
                return status;
            }
            Err(e) => status.notes.push(format!("tracepoint: {e:#}")),
        }
    }
    if spec.functions.is_empty() {
        return status;
    }
    let mechanisms: &[Mechanism] = match mode {
        AttachMode::Auto => &[Mechanism::Fentry, Mechanism::Kprobe, Mechanism::TpBtf],
        AttachMode::Fentry => &[Mechanism::Fentry],
        AttachMode::Kprobe => &[Mechanism::Kprobe],
        AttachMode::Tracepoint => &[Mechanism::TpBtf],
    };
    for &mech in mechanisms {
        let attempt = if mech == Mechanism::TpBtf {
            match &spec.fallback {
                Fallback::None => continue,
                Fallback::Unavailable(why) => Err(anyhow!("{why}")),
                Fallback::Tracepoints {
                    tp_btf,
                    tracepoints,
                } => attach_fallback(ebpf, aya_btf, tp_btf, tracepoints),
            }
        } else {
            attach_functions(ebpf, aya_btf, syms, &spec.functions, mech).and_then(|mut notes| {
                attach_tracepoints(ebpf, &spec.companions)
                    .map(|()| {
                        notes.extend(spec.companions.iter().map(TpTarget::label));
                        notes
                    })
                    .inspect_err(|_| {
                        let programs = spec.functions.iter().map(|t| {
                            if mech == Mechanism::Fentry {
                                t.fentry
                            } else {
                                t.kprobe
                            }
                        });
                        unload(ebpf, programs);
                    })
            })
        };
        match attempt {
            Ok(notes) => {
                status.mechanism = Some(mech);
                status.notes.extend(notes);
                return status;
            }
            Err(e) => status.notes.push(format!("{mech}: {e:#}")),
        }
    }
    status
}

/// Moves a hook attached through its tracepoints onto its fentry/fexit
/// `upgrade` targets where the mode and the kernel allow it. The programs of
/// both share their state, so a call in flight during the swap is counted
/// once. On failure the tracepoints stay and the status says why.
pub fn upgrade(
    ebpf: &mut Ebpf,
    aya_btf: Option<&Btf>,
    syms: &KernelSymbols,
    spec: &HookSpec,
    mode: AttachMode,
    status: &mut HookStatus,
) {
    if spec.upgrade.is_empty()
        || status.mechanism != Some(Mechanism::Tracepoint)
        || !matches!(mode, AttachMode::Auto | AttachMode::Fentry)
    {
        return;
    }
    match attach_functions(ebpf, aya_btf, syms, &spec.upgrade, Mechanism::Fentry) {
        Ok(notes) => {
            unload(ebpf, spec.tracepoints.iter().map(|t| t.program));
            status.mechanism = Some(Mechanism::Fentry);
            status.notes = notes;
        }
        Err(e) => status.notes.push(format!("fentry: {e:#}")),
    }
}

impl TpTarget {
    fn label(&self) -> String {
        format!("{}:{}", self.category, self.name)
    }
}

/// Attaches a fallback's tp_btf programs and tracepoints, or none of them.
fn attach_fallback(
    ebpf: &mut Ebpf,
    aya_btf: Option<&Btf>,
    tp_btf: &[BtfTpTarget],
    tracepoints: &[TpTarget],
) -> Result<Vec<String>> {
    let btf = aya_btf.ok_or_else(|| anyhow!("no kernel BTF"))?;
    for (i, t) in tp_btf.iter().enumerate() {
        let result = (|| -> Result<()> {
            let prog: &mut BtfTracePoint = program(ebpf, t.program)?.try_into()?;
            prog.load(t.name, btf)?;
            prog.attach()?;
            Ok(())
        })();
        if let Err(e) = result {
            unload(ebpf, tp_btf[..=i].iter().map(|t| t.program));
            return Err(e.context(format!("tp_btf/{}", t.name)));
        }
    }
    if let Err(e) = attach_tracepoints(ebpf, tracepoints) {
        unload(ebpf, tp_btf.iter().map(|t| t.program));
        return Err(e);
    }
    Ok(tp_btf
        .iter()
        .map(|t| format!("tp_btf/{} ({})", t.name, t.program))
        .chain(tracepoints.iter().map(TpTarget::label))
        .collect())
}

fn attach_tracepoints(ebpf: &mut Ebpf, targets: &[TpTarget]) -> Result<()> {
    for (i, t) in targets.iter().enumerate() {
        let result = (|| -> Result<()> {
            let prog: &mut TracePoint = program(ebpf, t.program)?.try_into()?;
            prog.load()?;
            prog.attach(t.category, t.name)?;
            Ok(())
        })();
        if let Err(e) = result {
            unload(ebpf, targets[..=i].iter().map(|t| t.program));
            return Err(e.context(format!("{}:{}", t.category, t.name)));
        }
    }
    Ok(())
}

/// Attaches all function targets with one mechanism, or none of them.
fn attach_functions(
    ebpf: &mut Ebpf,
    aya_btf: Option<&Btf>,
    syms: &KernelSymbols,
    targets: &[FnTarget],
    mech: Mechanism,
) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    let mut loaded = Vec::new();
    for t in targets {
        let name = if mech == Mechanism::Fentry {
            t.fentry
        } else {
            t.kprobe
        };
        let result = attach_function(ebpf, aya_btf, syms, t, mech, &mut loaded);
        match result {
            Ok(()) => notes.push(format!(
                "{}{}",
                t.function,
                if t.ret { " (return)" } else { "" }
            )),
            Err(e) if t.optional => notes.push(format!("{} skipped: {e:#}", t.function)),
            Err(e) => {
                unload(ebpf, loaded.iter().copied().chain([name]));
                return Err(e.context(t.function));
            }
        }
    }
    Ok(notes)
}

fn attach_function(
    ebpf: &mut Ebpf,
    aya_btf: Option<&Btf>,
    syms: &KernelSymbols,
    t: &FnTarget,
    mech: Mechanism,
    loaded: &mut Vec<&'static str>,
) -> Result<()> {
    // kallsyms is read only to explain a failure: a function the kernel
    // has no symbol for (inlined or absent) is named as such.
    attach_function_to(ebpf, aya_btf, t, mech, loaded).map_err(|failure| match failure {
        Failure::Mechanism(e) => e,
        Failure::Target(_) if !syms.contains(t.function) => {
            anyhow!("not in /proc/kallsyms (inlined or absent on this kernel)")
        }
        Failure::Target(e) => e,
    })
}

/// Why a function target did not attach: the mechanism is unavailable on
/// this kernel, or this target could not take it.
enum Failure {
    Mechanism(anyhow::Error),
    Target(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Self::Target(e.into())
    }
}

fn attach_function_to(
    ebpf: &mut Ebpf,
    aya_btf: Option<&Btf>,
    t: &FnTarget,
    mech: Mechanism,
    loaded: &mut Vec<&'static str>,
) -> Result<(), Failure> {
    match mech {
        Mechanism::Fentry => {
            let btf = aya_btf.ok_or_else(|| Failure::Mechanism(anyhow!("no kernel BTF")))?;
            if FENTRY_REFUSED.load(Ordering::Relaxed) {
                // Known from an earlier hook: no BTF lookup and load again.
                return Err(Failure::Mechanism(fentry_refused()));
            }
            let prog = program(ebpf, t.fentry)?;
            if !loaded.contains(&t.fentry) {
                let result = if t.ret {
                    let p: &mut FExit = prog.try_into()?;
                    p.load(t.function, btf)
                } else {
                    let p: &mut FEntry = prog.try_into()?;
                    p.load(t.function, btf)
                };
                result.map_err(explain_fentry_load)?;
                loaded.push(t.fentry);
            }
            let prog = program(ebpf, t.fentry)?;
            if t.ret {
                let p: &mut FExit = prog.try_into()?;
                p.attach().map_err(explain_fentry_attach)?;
            } else {
                let p: &mut FEntry = prog.try_into()?;
                p.attach().map_err(explain_fentry_attach)?;
            }
        }
        Mechanism::Kprobe => {
            if !kprobes_available() {
                return Err(Failure::Mechanism(anyhow!(
                    "this kernel has no kprobe support (no kprobe PMU and no kprobe_events)"
                )));
            }
            let p: &mut KProbe = program(ebpf, t.kprobe)?.try_into()?;
            if !loaded.contains(&t.kprobe) {
                p.load()?;
                loaded.push(t.kprobe);
            }
            p.attach(t.function, 0)?;
        }
        Mechanism::Tracepoint | Mechanism::TpBtf => {
            return Err(Failure::Mechanism(anyhow!(
                "not a function target mechanism"
            )))
        }
    }
    Ok(())
}

/// Set once this kernel refused an fentry/fexit load with EPERM: it refuses
/// them all, so later hooks skip the attempt (each costs a BTF lookup and
/// a verifier pass).
static FENTRY_REFUSED: AtomicBool = AtomicBool::new(false);

fn fentry_refused() -> anyhow::Error {
    anyhow!("fentry/fexit refused by this kernel (EPERM at load: no BPF trampoline support or locked down)")
}

/// Names the common reason fentry cannot load instead of echoing an empty
/// verifier log.
fn explain_fentry_load(e: ProgramError) -> Failure {
    match &e {
        ProgramError::LoadError { io_error, .. }
            if io_error.raw_os_error() == Some(libc::EPERM) =>
        {
            FENTRY_REFUSED.store(true, Ordering::Relaxed);
            Failure::Mechanism(fentry_refused())
        }
        _ => Failure::Target(anyhow::Error::from(e)),
    }
}

/// ENOTSUPP (524) when attaching: the kernel cannot build a trampoline for
/// this function, most often because it has more than six parameters
/// (x86 kernels before 6.4). kprobes still work there.
fn explain_fentry_attach(e: ProgramError) -> anyhow::Error {
    const ENOTSUPP: i32 = 524;
    match &e {
        ProgramError::SyscallError(se) if se.io_error.raw_os_error() == Some(ENOTSUPP) => anyhow!(
            "this kernel cannot build a BPF trampoline for it (ENOTSUPP; x86 kernels \
             before 6.4 take at most 6 arguments): use kprobes"
        ),
        _ => anyhow::Error::from(e),
    }
}

fn kprobes_available() -> bool {
    use std::path::Path;
    Path::new("/sys/bus/event_source/devices/kprobe/type").exists()
        || Path::new("/sys/kernel/tracing/kprobe_events").exists()
        || Path::new("/sys/kernel/debug/tracing/kprobe_events").exists()
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Program> {
    ebpf.program_mut(name)
        .with_context(|| format!("program {name} missing from the embedded object"))
}

/// Unloads programs (detaching their links) after a failed attempt.
fn unload<'a>(ebpf: &mut Ebpf, names: impl IntoIterator<Item = &'a str>) {
    for name in names {
        if let Some(prog) = ebpf.program_mut(name) {
            let _ = match prog {
                Program::TracePoint(p) => p.unload(),
                Program::FEntry(p) => p.unload(),
                Program::FExit(p) => p.unload(),
                Program::KProbe(p) => p.unload(),
                Program::BtfTracePoint(p) => p.unload(),
                _ => Ok(()),
            };
        }
    }
}
