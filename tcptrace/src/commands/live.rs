//! The live run, the default command and the engine of `record` and
//! `diagnose`: drain the ring buffer, print events, summarise on a timer
//! and at exit (Ctrl-C, SIGTERM or --duration).

use std::{io::BufWriter, path::Path};

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
    event::decode,
    hist,
    loader::{self, Loaded},
    metrics::{Endpoint, KernelReader},
    pipeline::{self, Outputs, Pipeline},
    record::{sink::RecordSink, Recorder},
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

/// The default command: trace until Ctrl-C or `--duration`.
pub fn run(args: LiveArgs) -> Result<()> {
    runtime().and_then(|rt| rt.block_on(session(&args, None)))
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

/// The live run; with `record`, also the recording (`tcptrace record`).
pub async fn session(args: &LiveArgs, record: Option<&Recording<'_>>) -> Result<()> {
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
    ) = loader::load_staged(args.attach, config, args.bench.only_hooks())?;
    crate::bench_flood::attach(&mut ebpf, &args.bench)?;
    // The endpoint reads the kernel maps through its own handles, taken
    // before the counters below take theirs.
    let metrics = match metrics_bound {
        Some(bound) => {
            let addr = bound.addr;
            let reader = KernelReader::open(&ebpf, rst_slot_names.clone())?;
            let endpoint = Endpoint::start(bound, Some(reader), args.metrics.bounds())?;
            eprintln!("tcptrace: metrics on http://{addr}/metrics");
            Some(endpoint)
        }
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
    let mut attaching = tokio::task::spawn_blocking(move || {
        let hooks = rest.attach(&mut ebpf, hooks);
        (ebpf, hooks)
    });

    let boot_offset = crate::kernel::boot_to_unix_offset_ns();
    // `record` prints the live view only when asked (--print or --json).
    let show_events = !args.bench.bench_quiet && record.is_none_or(|r| r.print || args.json);
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
        findings_log: false,
    };
    let mut printer = pipeline::build(
        BufWriter::new(std::io::stdout().lock()),
        &outputs,
        Some(diagnosis),
        boot_offset,
    )?;
    let mut owners = crate::syn::Owners::default();
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;

    // The programs wake this loop only once per WAKEUP_BYTES of unread
    // records; below that it polls, often while events flow, less when idle.
    let mut poll_every = POLL_MIN;
    let poll = sleep(poll_every);
    tokio::pin!(poll);

    // A recording starts with every hook's status, so its events wait in
    // the ring buffer until the attach is done.
    let show_early = record.is_none();
    let (ebpf, hooks) = loop {
        tokio::select! {
            joined = &mut attaching => break joined.context("attaching hooks")?,
            guard = ring.readable_mut(), if show_early => {
                let mut guard = guard.context("waiting on the ring buffer")?;
                drain(guard.get_inner_mut(), &counters, &mut printer, &mut owners)?;
                guard.clear_ready();
            }
            _ = &mut poll, if show_early => {
                drain(ring.get_mut(), &counters, &mut printer, &mut owners)?;
                poll.as_mut().reset(Instant::now() + poll_every);
            }
        }
    };
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
                drain(guard.get_inner_mut(), &counters, &mut printer, &mut owners)?;
                guard.clear_ready();
            }
            _ = &mut poll => {
                let n = drain(ring.get_mut(), &counters, &mut printer, &mut owners)?;
                poll_every = if n > 0 { POLL_MIN } else { (poll_every * 2).min(POLL_MAX) };
                poll.as_mut().reset(Instant::now() + poll_every);
            }
            _ = ticker.tick() => printer.summary(&counters.read()?, false)?,
            // The recorder writes its block; it says when the recording is
            // full or stopped (a full disk), and the run stops.
            _ = record_tick.tick(), if printer.records() => {
                if printer.tick(&counters.read()?)? {
                    break;
                }
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = &mut deadline => break,
        }
    }
    drain(ring.get_mut(), &counters, &mut printer, &mut owners)?;
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

/// Every record waiting in the ring buffer: to the recorders as received,
/// then decoded into the sinks.
pub(crate) fn drain(
    ring: &mut RingBuf<MapData>,
    counters: &CounterMaps,
    printer: &mut Pipeline,
    owners: &mut crate::syn::Owners,
) -> Result<usize> {
    let mut n = 0;
    while let Some(item) = ring.next() {
        n += 1;
        let mut ev = decode(&item);
        let found = match &mut ev {
            Ok(ev) => owners.fill(ev),
            Err(_) => None,
        };
        if printer.raw(&item, found.as_ref()) {
            // A full block closes with a counter snapshot.
            printer.tick(&counters.read()?)?;
        }
        match ev {
            Ok(ev) => printer.event(&ev)?,
            Err(e) => printer.undecodable(&e),
        }
    }
    printer.flush()?;
    Ok(n)
}
