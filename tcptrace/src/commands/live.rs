//! The live run, the default command and the engine of `record`,
//! `diagnose` and `daemon`: drain the ring buffer into the sinks (the
//! recorders among them), summarise on a timer and at exit (Ctrl-C,
//! SIGTERM or --duration); as the daemon, also the capability drop after
//! attach, its health every second and its status line on SIGUSR1.

use std::{
    io::{BufWriter, Write},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context as _, Result};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use tcptrace_common::{maps, Config, EventKind, Stat};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, SignalKind},
    time::{interval_at, sleep, Instant, MissedTickBehavior},
};

use crate::{
    args::LiveArgs,
    diagnose::session::Session,
    escape::Escaped,
    event::{decode_into, Event},
    hist,
    loader::{self, Loaded},
    metrics::{Endpoint, Health, KernelReader},
    pipeline::{self, Outputs, Pipeline},
    record::{
        segments::{SegmentConfig, SegmentStats, SegmentWriter},
        sink::RecordSink,
        Recorder,
    },
    sink::Lookups,
    summary::KernelCounters,
};

/// Kernel-side counter maps, read for every summary.
struct CounterMaps {
    hists: PerCpuArray<MapData, u64>,
    lost: PerCpuArray<MapData, u64>,
    stats: PerCpuArray<MapData, u64>,
    rst_sent: crate::paws::maps::RstSentMap,
    syn: crate::syn::SynMaps,
    programs: crate::progstats::ProgramStats,
    maps: crate::mapstats::StateMaps,
}

impl CounterMaps {
    fn take(ebpf: &mut aya::Ebpf, rst_slot_names: Vec<String>) -> Result<Self> {
        let maps = crate::mapstats::StateMaps::take(ebpf)?;
        let syn = crate::syn::SynMaps::take(ebpf)?;
        let rst_sent = crate::paws::maps::RstSentMap::take(ebpf, rst_slot_names)?;
        let mut take = |name: &str| -> Result<PerCpuArray<MapData, u64>> {
            let map = ebpf
                .take_map(name)
                .with_context(|| format!("map {name} missing from the object"))?;
            PerCpuArray::try_from(map).with_context(|| format!("map {name}"))
        };
        Ok(Self {
            hists: take(maps::HISTOGRAMS)?,
            lost: take(maps::LOST)?,
            stats: take(maps::STATS)?,
            rst_sent,
            syn,
            // Filled once every program is loaded (`session`).
            programs: crate::progstats::ProgramStats::default(),
            maps,
        })
    }

    fn read(&self) -> Result<KernelCounters> {
        let sum = |map: &PerCpuArray<MapData, u64>, i: u32| -> Result<u64> {
            Ok(map
                .get(&i, 0)
                .context("reading a counter map")?
                .iter()
                .sum())
        };
        Ok(KernelCounters {
            hists: hist::read_all(&self.hists)?,
            lost: EventKind::ALL
                .iter()
                .map(|&k| Ok((k, sum(&self.lost, k as u32)?)))
                .collect::<Result<_>>()?,
            stats: Stat::ALL
                .iter()
                .map(|&s| Ok((s, sum(&self.stats, s as u32)?)))
                .collect::<Result<_>>()?,
            rst_sent: self.rst_sent.read()?,
            syn: self.syn.read()?,
            missed: self.programs.missed(),
            maps: self.maps.read()?,
        })
    }
}

/// What `tcptrace record` adds to the live run.
pub struct Recording<'a> {
    pub output: &'a Path,
    pub max_size: Option<u64>,
    pub rotate: u32,
    /// Also write the packets to this pcapng file.
    pub pcap: Option<&'a Path>,
    /// Also print the live view (`--json` implies it).
    pub print: bool,
}

/// What `tcptrace daemon` adds to the live run.
pub struct Daemon {
    /// Findings log; `None`: stdout.
    pub findings_log: Option<PathBuf>,
    /// `--record-dir`: the flight recorder.
    pub segments: Option<SegmentConfig>,
    /// Drop the capabilities not needed after attach.
    pub drop_caps: bool,
}

/// Which command the run serves.
#[derive(Clone, Copy)]
pub enum Mode<'a> {
    Live,
    Record(&'a Recording<'a>),
    Daemon(&'a Daemon),
}

/// The default command: trace until Ctrl-C or `--duration`.
pub fn run(args: LiveArgs) -> Result<()> {
    runtime().and_then(|rt| rt.block_on(session(&args, Mode::Live)))
}

/// The single-threaded runtime the live run polls the ring buffer on.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Ring buffer polling period while events flow, and its ceiling when idle.
const POLL_MIN: std::time::Duration = std::time::Duration::from_millis(5);
const POLL_MAX: std::time::Duration = std::time::Duration::from_millis(40);

/// The live run; with `record`, also the recording (`tcptrace record`);
/// as the daemon, findings only, the flight recorder, health and the
/// capability drop.
pub async fn session(args: &LiveArgs, mode: Mode<'_>) -> Result<()> {
    let record = match mode {
        Mode::Record(r) => Some(r),
        _ => None,
    };
    let daemon = match mode {
        Mode::Daemon(d) => Some(d),
        _ => None,
    };
    // A taken or privileged --metrics port fails here, before any loading.
    let metrics_bound = args.metrics.bind()?;
    let config = Config {
        min_latency_ns: args.min_latency.as_nanos().min(u64::MAX as u128) as u64,
        filter: args.filter.to_kernel(),
    };
    // The diagnosis baseline (/proc counters of every namespace) is taken
    // while the programs load.
    let diagnosis = {
        let filter = args.filter.clone();
        std::thread::Builder::new()
            .name("tcptrace-diag".into())
            .spawn(move || Session::start(&filter))
            .context("starting the diagnosis baseline thread")?
    };
    let (
        Loaded {
            mut ebpf,
            hooks,
            rst_slot_names,
        },
        rest,
    ) = loader::load_staged(args.hooks, config, args.bench.only_hooks())?;
    crate::bench_flood::attach(&mut ebpf, &args.bench)?;
    // The endpoint reads the kernel maps through its own handles, taken
    // before the counters below take theirs.
    let metrics_reader = match &metrics_bound {
        Some(_) => Some(KernelReader::open(&ebpf, rst_slot_names.clone())?),
        None => None,
    };
    let start_metrics = |bound: crate::metrics::Bound, reader| -> Result<Endpoint> {
        let addr = bound.addr;
        let endpoint = Endpoint::start(bound, reader, args.metrics.bounds())?;
        eprintln!("tcptrace: metrics on http://{addr}/metrics");
        Ok(endpoint)
    };
    // The daemon starts its endpoint's thread once the capabilities are
    // dropped, so that thread never holds them.
    let mut metrics_later = None;
    let mut metrics = match metrics_bound {
        Some(bound) if daemon.is_some_and(|d| d.drop_caps) => {
            metrics_later = Some((bound, metrics_reader));
            None
        }
        Some(bound) => Some(start_metrics(bound, metrics_reader)?),
        None => None,
    };
    let mut counters = CounterMaps::take(&mut ebpf, rst_slot_names)?;
    let ring = ebpf
        .take_map(maps::EVENTS)
        .context("map EVENTS missing from the object")?;
    let ring = RingBuf::try_from(ring).context("map EVENTS")?;
    // SAFETY: the AsyncFd owns the ring buffer and with it the fd it
    // registers, so the fd stays open for as long as it is registered.
    let mut ring = unsafe { AsyncFd::register(ring) }.context("polling the EVENTS ring buffer")?;
    // The other hooks attach on a blocking thread while the first ones'
    // events are already shown.
    // A thread of its own, joined once done: no pool thread outlives it
    // with the capabilities the daemon drops after attach.
    let (attached_tx, mut attaching) = tokio::sync::oneshot::channel();
    let attach_thread = std::thread::Builder::new()
        .name("tcptrace-attach".into())
        .spawn(move || {
            let hooks = rest.attach(&mut ebpf, hooks);
            let _ = attached_tx.send((ebpf, hooks));
        })
        .context("starting the attach thread")?;

    let boot_offset = crate::kernel::boot_to_unix_offset_ns();
    // `record` prints the live view only when asked (--print or --json).
    let show_events =
        !args.bench.bench_quiet && record.is_none_or(|r| r.print || args.json) && daemon.is_none();
    let diagnosis = diagnosis
        .join()
        .map_err(|_| anyhow::anyhow!("taking the diagnosis baseline panicked"))?;
    let outputs = Outputs {
        json: args.json,
        show_events,
        only_findings: args.diagnose,
        pcap: record.and_then(|r| r.pcap),
        report_packets: false,
        metrics: metrics.as_ref(),
        findings_log: daemon.is_some(),
    };
    let out: Box<dyn Write> = match daemon.and_then(|d| d.findings_log.as_deref()) {
        Some(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                // Findings name real addresses and processes.
                .mode(0o600)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut printer = pipeline::build(BufWriter::new(out), &outputs, Some(diagnosis), boot_offset)?;
    let mut lookup = HostLookup {
        owners: crate::syn::Owners::default(),
        containers: crate::container::Attributor::new(&args.filter.containers),
        filter: &args.filter,
    };
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;

    // The programs wake this loop only once per WAKEUP_BYTES of unread
    // records; below that it polls, often while events flow, less when idle.
    let mut poll_every = POLL_MIN;
    let poll = sleep(poll_every);
    tokio::pin!(poll);

    // A recording starts with every hook's status, so its events wait in
    // the ring buffer until the attach is done.
    let show_early = record.is_none() && daemon.is_none_or(|d| d.segments.is_none());
    let (ebpf, hooks) = loop {
        tokio::select! {
            joined = &mut attaching => break joined.context("attaching hooks: the thread died")?,
            guard = ring.readable_mut(), if show_early => {
                let mut guard = guard.context("waiting on the ring buffer")?;
                drain(guard.get_inner_mut(), &counters, &mut printer, &mut lookup)?;
                guard.clear_ready();
            }
            _ = &mut poll, if show_early => {
                drain(ring.get_mut(), &counters, &mut printer, &mut lookup)?;
                poll.as_mut().reset(Instant::now() + poll_every);
            }
        }
    };
    attach_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the attach thread panicked"))?;
    if !args.bench.bench_floor {
        loader::ensure_any_attached(&hooks)?;
    }
    // Every program is loaded now: watch all of them for kernel skips.
    counters.programs = crate::progstats::ProgramStats::new(&ebpf);
    if let Some(m) = &metrics {
        m.attached(&ebpf, &hooks);
    }
    printer.set_hooks(crate::diagnose::hookset::HookSet::from(hooks.as_slice()));
    for status in &hooks {
        eprintln!("tcptrace: {}", loader::describe(status));
    }
    let filter = args.filter.describe();
    if !filter.is_empty() {
        eprintln!("tcptrace: filter (in the kernel): {filter}");
    }
    if let Some(r) = record {
        let rec = Recorder::start(
            r.output,
            r.max_size,
            r.rotate,
            &args.filter,
            &hooks,
            boot_offset,
        )?;
        printer.add_recorder(Box::new(RecordSink::new(rec)));
    }
    // Before the daemon's recorder and endpoint start their threads,
    // which inherit the reduced sets.
    if daemon.is_some_and(|d| d.drop_caps) {
        let hists = &counters.hists;
        let kept = crate::privilege::drop_after_attach(|| hists.get(&0, 0).is_ok())?;
        let bpf = kept.contains(&caps::Capability::CAP_BPF);
        let mut kept: Vec<String> = kept.iter().map(|c| c.to_string()).collect();
        kept.sort();
        eprintln!(
            "tcptrace: capabilities after attach: {}{}",
            kept.join(", "),
            if bpf {
                " (this kernel refuses the map reads without CAP_BPF while \
                 kernel.unprivileged_bpf_disabled is set)"
            } else {
                ""
            }
        );
    }
    let segment_stats = Arc::new(SegmentStats::default());
    if let Some(cfg) = daemon.and_then(|d| d.segments.as_ref()) {
        let meta = crate::record::metadata(&hooks, &args.filter, boot_offset);
        let writer = SegmentWriter::start(cfg.clone(), meta, segment_stats.clone())?;
        let rec = Recorder::with_writer(Box::new(writer), &cfg.dir, false)?;
        printer.add_recorder(Box::new(RecordSink::new(rec)));
        eprintln!(
            "tcptrace: recording to {}",
            Escaped(&cfg.dir.display().to_string())
        );
    }
    if let Some((bound, reader)) = metrics_later.take() {
        let endpoint = start_metrics(bound, reader)?;
        printer.add_metrics(&endpoint);
        endpoint.attached(&ebpf, &hooks);
        metrics = Some(endpoint);
    }
    let mut health = HealthTicker::new(&hooks, daemon.and_then(|d| d.segments.as_ref()));
    let mut sigusr1 = match daemon {
        Some(_) => {
            Some(signal(SignalKind::user_defined1()).context("installing the SIGUSR1 handler")?)
        }
        None => None,
    };
    eprintln!("tcptrace: tracing; Ctrl-C to stop");

    let period = if args.interval.is_zero() {
        std::time::Duration::from_secs(86400 * 365)
    } else {
        args.interval
    };
    let mut ticker = interval_at(Instant::now() + period, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The recorder writes a block and a counter snapshot every second.
    let second = std::time::Duration::from_secs(1);
    let mut record_tick = interval_at(Instant::now() + second, second);
    record_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let deadline = sleep(
        args.duration
            .unwrap_or(std::time::Duration::from_secs(86400 * 365 * 100)),
    );
    tokio::pin!(deadline);

    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("waiting on the ring buffer")?;
                drain(guard.get_inner_mut(), &counters, &mut printer, &mut lookup)?;
                guard.clear_ready();
            }
            _ = &mut poll => {
                let n = drain(ring.get_mut(), &counters, &mut printer, &mut lookup)?;
                poll_every = if n > 0 { POLL_MIN } else { (poll_every * 2).min(POLL_MAX) };
                poll.as_mut().reset(Instant::now() + poll_every);
            }
            _ = ticker.tick() => printer.summary(&counters.read()?, false)?,
            // The recorder writes its block; it says when the recording is
            // full or stopped (a full disk), and the run stops.
            _ = record_tick.tick(), if printer.records() || daemon.is_some() => {
                let k = counters.read()?;
                if printer.tick(&k)? {
                    break;
                }
                if daemon.is_some() {
                    let h = health.update(printer.received, &k, &segment_stats);
                    if let Some(m) = &metrics {
                        m.set_health(h);
                    }
                }
            }
            _ = usr1(&mut sigusr1) => eprintln!("tcptrace: status: {}", health.last.line()),
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = &mut deadline => break,
        }
    }
    drain(ring.get_mut(), &counters, &mut printer, &mut lookup)?;
    printer.summary.recording = printer.recording_stop();
    // The recorder notes where the summary was printed and with which
    // counters, so replay prints the same.
    printer.summary(&counters.read()?, true)?;
    printer.finish()?;
    // The endpoint stops; dropping `ebpf` detaches every link and unloads
    // the programs.
    drop(metrics);
    drop(ring);
    drop(ebpf);
    Ok(())
}

/// SIGUSR1, for the daemon; never for the other commands (the signal
/// keeps its default action there).
async fn usr1(sig: &mut Option<tokio::signal::unix::Signal>) {
    match sig {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// The daemon's health, refreshed every second.
struct HealthTicker {
    last: Health,
    at: Instant,
}

impl HealthTicker {
    fn new(hooks: &[crate::hooks::HookStatus], segments: Option<&SegmentConfig>) -> Self {
        Self {
            last: Health {
                hooks: hooks.len(),
                hooks_attached: hooks.iter().filter(|h| h.mechanism.is_some()).count(),
                record_dir: segments.map(|s| (s.dir.display().to_string(), 0)),
                ..Health::default()
            },
            at: Instant::now(),
        }
    }

    fn update(&mut self, events: u64, k: &KernelCounters, seg: &SegmentStats) -> Health {
        use std::sync::atomic::Ordering::Relaxed;
        let now = Instant::now();
        let secs = now.duration_since(self.at).as_secs_f64().max(1e-3);
        let h = &mut self.last;
        h.events_per_s = events.saturating_sub(h.events) as f64 / secs;
        h.events = events;
        h.lost = k.lost_total();
        if let Some((_, bytes)) = &mut h.record_dir {
            *bytes = seg.disk_bytes.load(Relaxed);
        }
        h.segments = seg.segments.load(Relaxed);
        h.events_not_written = seg.events_not_written.load(Relaxed);
        h.recorder_errors = seg
            .errors()
            .into_iter()
            .map(|(k, n)| (k.name(), n))
            .collect();
        self.at = now;
        h.clone()
    }
}

/// What the drain looks up on this host for each event, and the filters
/// only userspace can apply (they need those lookups).
struct HostLookup<'a> {
    owners: crate::syn::Owners,
    containers: crate::container::Attributor,
    filter: &'a crate::filter::FilterArgs,
}

/// Every record waiting in the ring buffer: to the recorders as received,
/// then decoded into the sinks. Events of other pods than `--pod` and
/// `--k8s-namespace` ask for go nowhere, not even into the recording.
fn drain(
    ring: &mut RingBuf<MapData>,
    counters: &CounterMaps,
    printer: &mut Pipeline,
    lookup: &mut HostLookup<'_>,
) -> Result<usize> {
    let mut n = 0;
    // One event decoded into over and over: its buffers are reused.
    let mut ev = Event::blank();
    while let Some(item) = ring.next() {
        n += 1;
        let decoded = decode_into(&item, &mut ev);
        let mut found = Lookups::default();
        if decoded.is_ok() {
            // A cgroup's resolution only changes when `fill` returns a new
            // one: events of a pod left out here need none recorded.
            found.container = lookup.containers.fill(&mut ev);
            if !lookup.filter.matches_pod(&ev) {
                continue;
            }
            found.owner = lookup.owners.fill(&mut ev);
        }
        if printer.raw(&item, &found) {
            // A full block closes with a counter snapshot.
            printer.tick(&counters.read()?)?;
        }
        match decoded {
            Ok(()) => printer.event(&ev)?,
            Err(e) => printer.undecodable(&e),
        }
    }
    printer.flush()?;
    Ok(n)
}
