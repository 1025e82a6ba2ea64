//! The attach table: every hook tcptrace knows, the kernel targets behind it,
//! and the mechanism chosen for each on this kernel (tracepoint, fentry/fexit,
//! kprobe/kretprobe), with the reason whenever one cannot be used.
//!
//! Every stable tracepoint with a BTF form is attached as tp_btf where the
//! kernel allows it, the plain tracepoint staying as the fallback: plain
//! tracepoint and kprobe programs share the per-CPU recursion guard
//! (`bpf_prog_active`), so the kernel skips them whenever any other BPF
//! program (another tracer's) runs on that CPU, e.g. a busy bpftrace on
//! `raw_syscalls:sys_enter` interrupted by the softirq that overflows an
//! accept queue. tp_btf (and fentry) programs have a guard of their own.
//! Syscall tracepoints have no tp_btf form and stay plain.

pub mod connect;
#[cfg(test)]
mod contract;
mod paws;
mod port_search;
pub mod syn;

use std::{
    fmt,
    sync::{
        atomic::{AtomicBool, Ordering},
        OnceLock,
    },
};

use anyhow::{anyhow, Context as _, Result};
use aya::{
    programs::{BtfTracePoint, FEntry, FExit, KProbe, Program, ProgramError, TracePoint},
    Btf, Ebpf,
};
use tcptrace_common::{
    maps,
    programs::{self, Kind},
};

use crate::{btf::KernelBtf, kernel::KernelSymbols};

/// How function hooks may attach (`--attach`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// fentry/fexit where the kernel allows it, else kprobe/kretprobe.
    #[default]
    Auto,
    Fentry,
    Kprobe,
    /// Only the tracepoint fallbacks of function hooks (drop reasons), and
    /// plain tracepoints rather than their tp_btf form for tracepoint hooks.
    Tracepoint,
}

/// How hooks attach, as the user chose: the flags every tracing command
/// takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::Args)]
pub struct HookArgs {
    /// How function hooks attach: fentry/fexit where allowed, else kprobe.
    #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
    pub attach: AttachMode,
    /// Also time handshakes where only the state-change tracepoint
    /// (sock:inet_sock_set_state) can: no fentry and no kprobes, or --attach
    /// tracepoint. It runs on every TCP state change of every socket, about
    /// 10 programs per connection.
    #[arg(long)]
    pub handshake_state_changes: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    Tracepoint,
    Fentry,
    Kprobe,
    /// BTF-typed tracepoints: the tracepoints of tracepoint hooks where the
    /// kernel has their BTF, and the drop-reason fallback of function hooks
    /// (with plain tracepoints beside them where these have no BTF form).
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
    /// The plain tracepoint program.
    pub program: &'static str,
    /// Its tp_btf twin, tried first.
    pub typed: Typed,
    /// Non-zero: the tp_btf twin is the one `kfree_skb` program shared by
    /// every hook that reads drop reasons, serving this family bit
    /// (`maps::kfree_skb_families`).
    pub family: u32,
}

/// The tp_btf form of a tracepoint target: the same tracepoint, its typed
/// arguments, the same records, and a recursion guard of its own.
#[derive(Clone, Debug, Default)]
pub enum Typed {
    /// None: syscall tracepoints are not BTF tracepoints (the raw
    /// `sys_enter`/`sys_exit` ones are, but run for every syscall).
    #[default]
    None,
    /// A tp_btf program reading the first `args` arguments of the
    /// tracepoint's `TP_PROTO`.
    Program { program: &'static str, args: usize },
    /// This kernel's BTF rules it out (set by [`table`]), with why.
    Unavailable(String),
}

impl TpTarget {
    /// A tracepoint with no tp_btf form.
    pub const fn plain(category: &'static str, name: &'static str, program: &'static str) -> Self {
        Self {
            category,
            name,
            program,
            typed: Typed::None,
            family: 0,
        }
    }

    /// A tracepoint attached as tp_btf (`typed`, reading `args` arguments)
    /// where the kernel allows it, else as `program`.
    pub const fn typed(
        category: &'static str,
        name: &'static str,
        program: &'static str,
        typed: &'static str,
        args: usize,
    ) -> Self {
        Self {
            category,
            name,
            program,
            typed: Typed::Program {
                program: typed,
                args,
            },
            family: 0,
        }
    }

    /// The same target whose tp_btf twin is the shared `kfree_skb`
    /// program, serving `family`.
    pub const fn serving(mut self, family: u32) -> Self {
        self.family = family;
        self
    }

    /// Every program this target may load.
    fn programs(&self) -> impl Iterator<Item = &'static str> {
        self.program_kinds().map(|(name, _)| name)
    }

    /// Every program this target may load, with the kind it is loaded as.
    fn program_kinds(&self) -> impl Iterator<Item = (&'static str, Kind)> {
        let typed = match self.typed {
            Typed::Program { program, .. } => Some((program, Kind::TpBtf)),
            _ => None,
        };
        [(self.program, Kind::Tracepoint)].into_iter().chain(typed)
    }

    /// Rules out the tp_btf form where this kernel's BTF has no
    /// `btf_trace_<name>` or passes fewer arguments than the program reads.
    fn resolve(&mut self, btf: &KernelBtf) {
        let Typed::Program { args, .. } = self.typed else {
            return;
        };
        self.typed = match btf.tracepoint_args(self.name) {
            None => Typed::Unavailable(format!("no btf_trace_{} in kernel BTF", self.name)),
            Some(n) if n < args => Typed::Unavailable(format!(
                "{} passes {n} arguments on this kernel, the program reads {args}",
                self.name
            )),
            Some(_) => return,
        };
    }
}

/// A BTF-typed tracepoint (`tp_btf/<name>`) and its program.
pub struct BtfTpTarget {
    pub name: &'static str,
    pub program: &'static str,
    /// As [`TpTarget::family`]: non-zero for the shared `kfree_skb` program.
    pub family: u32,
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
        /// Function targets that stand in for `tracepoints` under `--attach
        /// auto` where fentry or kprobes attach: the same events, with
        /// what the tracepoints do not pass.
        functions: Vec<FnTarget>,
    },
}

impl Fallback {
    /// This fallback, with `functions` standing in for its tracepoints
    /// where they attach.
    pub fn preferring(self, functions: Vec<FnTarget>) -> Self {
        match self {
            Self::Tracepoints {
                tp_btf,
                tracepoints,
                ..
            } => Self::Tracepoints {
                tp_btf,
                tracepoints,
                functions,
            },
            other => other,
        }
    }
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
    /// `--attach auto` tries the tracepoint `fallback` before the function
    /// targets: it reports the same fields and runs only on the event
    /// (a dropped segment), where the functions run per segment.
    pub fallback_first: bool,
}

impl HookSpec {
    /// Whether the hook needs only plain tracepoints under `mode`: no
    /// function target, no fallback, no tp_btf form this kernel could take,
    /// so neither the kernel BTF nor the verifier's BTF checks.
    pub fn plain_tracepoints(&self, mode: AttachMode) -> bool {
        !self.tracepoints.is_empty()
            && self.functions.is_empty()
            && self.companions.is_empty()
            && matches!(self.fallback, Fallback::None)
            && (mode == AttachMode::Tracepoint
                || !self
                    .tracepoints
                    .iter()
                    .any(|t| matches!(t.typed, Typed::Program { .. })))
    }

    fn tracepoint_targets_mut(&mut self) -> impl Iterator<Item = &mut TpTarget> {
        let fallback = match &mut self.fallback {
            Fallback::Tracepoints { tracepoints, .. } => Some(tracepoints.iter_mut()),
            _ => None,
        };
        self.tracepoints
            .iter_mut()
            .chain(self.companions.iter_mut())
            .chain(fallback.into_iter().flatten())
    }

    /// Every program this hook may run, under any mechanism.
    pub fn programs(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = self
            .program_kinds()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Every program this hook may run, with the kind of program each
    /// target loads it as (the contract test checks these against the
    /// object).
    pub fn program_kinds(&self) -> Vec<(&'static str, Kind)> {
        let mut out = Vec::new();
        let fallback_functions = match &self.fallback {
            Fallback::Tracepoints { functions, .. } => functions.as_slice(),
            _ => &[],
        };
        for t in self
            .functions
            .iter()
            .chain(&self.upgrade)
            .chain(fallback_functions)
        {
            let (fentry, kprobe) = if t.ret {
                (Kind::FExit, Kind::KRetProbe)
            } else {
                (Kind::FEntry, Kind::KProbe)
            };
            out.push((t.fentry, fentry));
            // An empty name: no kprobe form (connect's upgrade targets).
            if !t.kprobe.is_empty() {
                out.push((t.kprobe, kprobe));
            }
        }
        let tps = self.tracepoints.iter().chain(&self.companions);
        out.extend(tps.flat_map(TpTarget::program_kinds));
        if let Fallback::Tracepoints {
            tp_btf,
            tracepoints,
            ..
        } = &self.fallback
        {
            out.extend(tp_btf.iter().map(|t| (t.program, Kind::TpBtf)));
            out.extend(tracepoints.iter().flat_map(TpTarget::program_kinds));
        }
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

/// Every hook, in display order, specialised for this kernel's BTF and
/// what the user allowed (`choice`).
pub fn table(btf: &KernelBtf, choice: HookArgs) -> Vec<HookSpec> {
    let mut specs = vec![
        connect::spec(),
        connect::handshake_spec(btf, choice.handshake_state_changes),
        connect::handshake_rtx_spec(),
        port_search::spec(btf),
    ];
    specs.extend(syn::specs(btf));
    specs.extend(paws::specs(btf));
    for spec in &mut specs {
        for t in spec.tracepoint_targets_mut() {
            t.resolve(btf);
        }
    }
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
        match attach_tracepoints(ebpf, aya_btf, &spec.tracepoints, mode) {
            Ok(attached) => {
                status.mechanism = Some(if attached.all_typed {
                    Mechanism::TpBtf
                } else {
                    Mechanism::Tracepoint
                });
                status.notes.push(attached.notes.join(", "));
                return status;
            }
            Err(e) => status.notes.push(format!("tracepoint: {e:#}")),
        }
    }
    if spec.functions.is_empty() {
        return status;
    }
    // Where the kernel names the drop reason (and the receiving socket),
    // `auto` takes the drop-reason form first for hooks whose fallback
    // reports the same fields: it runs only when a segment is dropped,
    // where fentry and kprobes on the deciding function run for every
    // segment that reaches it.
    let by_reason_first =
        spec.fallback_first && matches!(spec.fallback, Fallback::Tracepoints { .. });
    let mechanisms: &[Mechanism] = match mode {
        AttachMode::Auto if by_reason_first => {
            &[Mechanism::TpBtf, Mechanism::Fentry, Mechanism::Kprobe]
        }
        AttachMode::Auto => &[Mechanism::Fentry, Mechanism::Kprobe, Mechanism::TpBtf],
        AttachMode::Fentry => &[Mechanism::Fentry],
        AttachMode::Kprobe => &[Mechanism::Kprobe],
        AttachMode::Tracepoint => &[Mechanism::TpBtf],
    };
    let mut plain = false;
    for &mech in mechanisms {
        let attempt = if mech == Mechanism::TpBtf {
            match &spec.fallback {
                Fallback::None => continue,
                Fallback::Unavailable(why) => Err(anyhow!("{why}")),
                Fallback::Tracepoints {
                    tp_btf,
                    tracepoints,
                    functions,
                } => attach_fallback(
                    ebpf,
                    (aya_btf, syms),
                    tp_btf,
                    (tracepoints, functions),
                    mode,
                )
                .map(|attached| {
                    // Plain tracepoints alone (a tracepoint hook's
                    // fallback under --attach tracepoint) are no tp_btf.
                    if !attached.all_typed && tp_btf.is_empty() {
                        plain = true;
                    }
                    attached.notes
                }),
            }
        } else {
            attach_functions(ebpf, aya_btf, syms, &spec.functions, mech).and_then(|mut notes| {
                attach_tracepoints(ebpf, aya_btf, &spec.companions, mode)
                    .map(|attached| {
                        notes.extend(attached.notes);
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
                status.mechanism = Some(if plain { Mechanism::Tracepoint } else { mech });
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
            unload(ebpf, spec.tracepoints.iter().flat_map(TpTarget::programs));
            status.mechanism = Some(Mechanism::Fentry);
            status.notes = notes;
        }
        Err(e) => status.notes.push(format!("fentry: {e:#}")),
    }
}

/// Attaches a fallback's tp_btf programs and its tracepoints (or, under
/// `auto`, the function targets standing in for them), or none of them.
fn attach_fallback(
    ebpf: &mut Ebpf,
    (aya_btf, syms): (Option<&Btf>, &KernelSymbols),
    tp_btf: &[BtfTpTarget],
    (tracepoints, functions): (&[TpTarget], &[FnTarget]),
    mode: AttachMode,
) -> Result<Attached> {
    let undo = |ebpf: &mut Ebpf, done: &[BtfTpTarget]| {
        unload(ebpf, done.iter().map(|t| t.program));
        for t in done.iter().filter(|t| t.family != 0) {
            release_family(ebpf, t.family);
        }
    };
    for (i, t) in tp_btf.iter().enumerate() {
        let btf = aya_btf.ok_or_else(|| anyhow!("no kernel BTF"))?;
        let result = if t.family != 0 {
            attach_shared(ebpf, btf, t.name, t.program, t.family)
        } else {
            (|| -> Result<()> {
                let prog: &mut BtfTracePoint = program(ebpf, t.program)?.try_into()?;
                prog.load(t.name, btf)?;
                prog.attach()?;
                Ok(())
            })()
        };
        if let Err(e) = result {
            undo(ebpf, &tp_btf[..i]);
            if t.family == 0 {
                unload(ebpf, [t.program]);
            }
            return Err(e.context(format!("tp_btf/{}", t.name)));
        }
    }
    let typed = tp_btf
        .iter()
        .map(|t| format!("tp_btf/{} ({})", t.name, t.program));
    let mut instead = Vec::new();
    if !functions.is_empty() && mode == AttachMode::Auto {
        for mech in [Mechanism::Fentry, Mechanism::Kprobe] {
            match attach_functions(ebpf, aya_btf, syms, functions, mech) {
                Ok(notes) => {
                    let notes = notes.into_iter().map(|n| format!("{n} ({mech})"));
                    return Ok(Attached {
                        notes: typed.chain(notes).collect(),
                        all_typed: true,
                    });
                }
                Err(e) => instead.push(format!("{mech}: {e:#}")),
            }
        }
    }
    let attached = match attach_tracepoints(ebpf, aya_btf, tracepoints, mode) {
        Ok(attached) => attached,
        Err(e) => {
            undo(ebpf, tp_btf);
            return Err(e);
        }
    };
    let instead = (!instead.is_empty()).then(|| {
        let names: Vec<&str> = functions.iter().map(|t| t.function).collect();
        format!("not {} ({})", names.join(", "), instead.join("; "))
    });
    Ok(Attached {
        notes: typed.chain(attached.notes).chain(instead).collect(),
        all_typed: attached.all_typed,
    })
}

/// What [`attach_tracepoints`] attached.
struct Attached {
    /// One per target: `tp_btf/<name>`, or `<category>:<name>` with why its
    /// tp_btf form was not used.
    notes: Vec<String>,
    /// Every target went on as tp_btf.
    all_typed: bool,
}

/// Attaches every target, each as tp_btf where it has that form, the kernel
/// allows it and `mode` is not `tracepoint`, else as a plain tracepoint; or
/// none of them.
fn attach_tracepoints(
    ebpf: &mut Ebpf,
    aya_btf: Option<&Btf>,
    targets: &[TpTarget],
    mode: AttachMode,
) -> Result<Attached> {
    let mut attached = Attached {
        notes: Vec::new(),
        all_typed: !targets.is_empty(),
    };
    for (i, t) in targets.iter().enumerate() {
        let label = format!("{}:{}", t.category, t.name);
        let typed = match (&t.typed, aya_btf) {
            (Typed::None, _) => Err(None),
            (Typed::Unavailable(why), _) => Err(Some(why.clone())),
            (Typed::Program { .. }, _) if mode == AttachMode::Tracepoint => {
                Err(Some("not with --attach tracepoint".to_owned()))
            }
            (Typed::Program { .. }, None) => Err(Some("no kernel BTF".to_owned())),
            (Typed::Program { program: typed, .. }, Some(btf)) if t.family != 0 => {
                attach_shared(ebpf, btf, t.name, typed, t.family)
                    .map_err(|e| Some(format!("{e:#}")))
            }
            (Typed::Program { program: typed, .. }, Some(btf)) => {
                attach_typed(ebpf, btf, t.name, typed).map_err(|e| {
                    unload(ebpf, [*typed]);
                    Some(format!("{e:#}"))
                })
            }
        };
        let why_plain = match typed {
            Ok(()) => {
                attached.notes.push(format!("tp_btf/{}", t.name));
                continue;
            }
            Err(why) => why,
        };
        attached.all_typed = false;
        let result = (|| -> Result<()> {
            let prog: &mut TracePoint = program(ebpf, t.program)?.try_into()?;
            prog.load()?;
            prog.attach(t.category, t.name)?;
            Ok(())
        })();
        if let Err(e) = result {
            unload(ebpf, targets[..=i].iter().flat_map(TpTarget::programs));
            for t in targets[..i].iter().filter(|t| t.family != 0) {
                release_family(ebpf, t.family);
            }
            return Err(e.context(match why_plain {
                Some(why) => format!("{label} (tp_btf: {why})"),
                None => label,
            }));
        }
        attached.notes.push(match why_plain {
            Some(why) => format!("{label} (tp_btf: {why})"),
            None => label,
        });
    }
    Ok(attached)
}

/// Loads and attaches the tp_btf program `prog` on tracepoint `name`.
fn attach_typed(ebpf: &mut Ebpf, btf: &Btf, name: &str, prog: &str) -> Result<()> {
    let p: &mut BtfTracePoint = program(ebpf, prog)?.try_into()?;
    p.load(name, btf)
        .with_context(|| format!("loading {prog} on tp_btf/{name}"))?;
    p.attach()
        .with_context(|| format!("attaching {prog} to tp_btf/{name}"))?;
    Ok(())
}

/// The `kfree_skb` program shared by every hook that reads drop reasons:
/// attached by the first such hook, then only told to serve one family
/// more (`KFREE_SKB_FAMILIES`), so one freed skb runs one program.
fn attach_shared(ebpf: &mut Ebpf, btf: &Btf, name: &str, prog: &str, family: u32) -> Result<()> {
    let served = families(ebpf)?;
    if served == 0 {
        if let Err(e) = attach_typed(ebpf, btf, name, prog) {
            unload_program(ebpf, prog);
            return Err(e);
        }
    }
    set_families(ebpf, served | family)
}

/// A hook that attached through the shared `kfree_skb` program failed
/// later: the program stops serving it, and is unloaded once it serves
/// none.
fn release_family(ebpf: &mut Ebpf, family: u32) {
    let Ok(served) = families(ebpf) else {
        return;
    };
    let left = served & !family;
    let _ = set_families(ebpf, left);
    if left == 0 {
        unload_program(ebpf, programs::KFREE_SKB_BTF);
    }
}

fn families_map(ebpf: &mut Ebpf) -> Result<aya::maps::Array<&mut aya::maps::MapData, u32>> {
    let map = ebpf
        .map_mut(maps::KFREE_SKB_FAMILIES)
        .with_context(|| format!("map {} missing from the object", maps::KFREE_SKB_FAMILIES))?;
    Ok(aya::maps::Array::try_from(map)?)
}

fn families(ebpf: &mut Ebpf) -> Result<u32> {
    Ok(families_map(ebpf)?.get(&0, 0)?)
}

fn set_families(ebpf: &mut Ebpf, value: u32) -> Result<()> {
    Ok(families_map(ebpf)?.set(0, value, 0)?)
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
            if let Some((_, why)) = FEXIT_RET_UNUSABLE
                .get()
                .and_then(|u| u.iter().find(|(p, _)| *p == t.fentry))
            {
                return Err(Failure::Target(anyhow!("{why}")));
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

/// fexit programs of the thread-hash object that cannot read their
/// function's return value on this kernel (its parameter count is not the
/// one the object reads after), with why; set once by the loader.
static FEXIT_RET_UNUSABLE: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();

/// Records, for the thread-hash object (kernels without `bpf_get_func_ret`),
/// which fexit programs read their return value from the wrong slot here.
pub fn check_fexit_ret_slots(btf: &KernelBtf) {
    let unusable = programs::FEXIT_RET_SLOTS
        .iter()
        .filter_map(|&(program, function, slot)| {
            let n = btf.func_params(function)?;
            (n != slot).then(|| {
                (
                    program,
                    format!(
                        "without bpf_get_func_ret (5.17+) fexit reads the return value after \
                         {slot} arguments, and {function} has {n} on this kernel: use kprobes"
                    ),
                )
            })
        })
        .collect();
    let _ = FEXIT_RET_UNUSABLE.set(unusable);
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

/// Unloads programs (detaching their links) after a failed attempt; the
/// shared `kfree_skb` program goes only through [`release_family`].
fn unload<'a>(ebpf: &mut Ebpf, names: impl IntoIterator<Item = &'a str>) {
    for name in names {
        if name != programs::KFREE_SKB_BTF {
            unload_program(ebpf, name);
        }
    }
}

fn unload_program(ebpf: &mut Ebpf, name: &str) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hook_name_fits_the_check_column() {
        let btf = KernelBtf::from_sys().expect("kernel BTF");
        for spec in table(&btf, HookArgs::default()) {
            assert!(
                spec.name.len() <= crate::loader::HOOK_COLUMN,
                "{}",
                spec.name
            );
        }
    }

    /// The state-change form is the handshake hook's fallback only when
    /// asked for; otherwise the fallback says how to ask.
    #[test]
    fn handshake_state_changes_are_opt_in() {
        let btf = KernelBtf::from_sys().expect("kernel BTF");
        let functions = |s: &HookSpec| s.functions.iter().map(|t| t.function).collect::<Vec<_>>();
        let off = connect::handshake_spec(&btf, false);
        assert!(matches!(
            &off.fallback,
            Fallback::Unavailable(why) if why.contains("--handshake-state-changes")
        ));
        assert!(!off.programs().contains(&programs::HANDSHAKE_STATE));
        let on = connect::handshake_spec(&btf, true);
        let Fallback::Tracepoints { tracepoints, .. } = &on.fallback else {
            panic!("no state-change fallback");
        };
        assert_eq!(tracepoints[0].name, "inet_sock_set_state");
        assert!(on.tracepoints.is_empty());
        // Failures at sk_error_report (6.1+), else at tcp_done (5.10).
        let error = if std::fs::read_to_string("/proc/kallsyms")
            .expect("/proc/kallsyms")
            .lines()
            .any(|l| l.ends_with(" sk_error_report"))
        {
            "sk_error_report"
        } else {
            "tcp_done"
        };
        assert_eq!(
            functions(&on),
            [
                "tcp_connect",
                "tcp_finish_connect",
                error,
                "tcp_close",
                "tcp_disconnect"
            ]
        );
        assert_eq!(functions(&off), functions(&on));
    }

    /// validate_incoming's drop-reason form follows kfree_skb's arguments:
    /// the shared program with the receiving socket (6.11+), its own program
    /// reading the segment where only the reason is passed (6.0-6.10, with
    /// tcp_validate_incoming's address from kallsyms), none before.
    #[test]
    fn validate_drop_reason_form_follows_kfree_skb() {
        let btf = KernelBtf::from_sys().expect("kernel BTF");
        let spec = paws::specs(&btf)
            .into_iter()
            .find(|s| s.name == "validate_incoming")
            .expect("validate_incoming");
        let (program, why) = match &spec.fallback {
            Fallback::Tracepoints { tp_btf, .. } => (Some(tp_btf[0].program), ""),
            Fallback::Unavailable(why) => (None, why.as_str()),
            Fallback::None => (None, "none"),
        };
        let want = match btf.tracepoint_args("kfree_skb") {
            Some(4..) => Some(programs::KFREE_SKB_BTF),
            Some(3) => Some(programs::KFREE_SKB_SEGMENT),
            _ => None,
        };
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        assert_eq!(program, want, "{release}: {why}");
        if want == Some(programs::KFREE_SKB_SEGMENT) {
            let text = crate::paws::kernel_offsets(&btf)
                .expect("PAWS offsets")
                .validate_text;
            assert!(text[0] != 0 && text[0] < text[1], "{text:x?}");
            assert!(text[1] - text[0] < 1 << 16, "{text:x?}");
        }
    }

    #[test]
    fn typed_forms_follow_the_kernel_btf() {
        let btf = KernelBtf::from_sys().expect("kernel BTF");
        let mut t = TpTarget::typed("tcp", "tcp_receive_reset", "a", "b", 1);
        t.resolve(&btf);
        assert!(matches!(t.typed, Typed::Program { .. }));
        let mut t = TpTarget::typed("tcp", "tcp_receive_reset", "a", "b", 5);
        t.resolve(&btf);
        assert!(
            matches!(&t.typed, Typed::Unavailable(w) if w.contains("passes 1 arguments")),
            "{:?}",
            t.typed
        );
        let mut t = TpTarget::typed("x", "no_such_tracepoint", "a", "b", 1);
        t.resolve(&btf);
        assert!(matches!(&t.typed, Typed::Unavailable(w) if w.contains("btf_trace_no_such")));
        let spec = HookSpec {
            tracepoints: vec![TpTarget::typed("tcp", "tcp_receive_reset", "a", "b", 1)],
            ..HookSpec::default()
        };
        assert!(!spec.plain_tracepoints(AttachMode::Auto));
        assert!(spec.plain_tracepoints(AttachMode::Tracepoint));
    }
}
