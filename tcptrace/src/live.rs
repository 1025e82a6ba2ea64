//! The live run: drain the ring buffer, print events, summarise on a timer
//! and at exit (Ctrl-C, SIGTERM or --duration).

use std::io::{BufWriter, Write as _};

use anyhow::{Context as _, Result};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use tcptrace_common::{maps, Config, EventKind, Stat};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, SignalKind},
    time::{interval_at, sleep, Instant, MissedTickBehavior},
};

use crate::{
    cli::LiveArgs,
    event::decode,
    hist,
    loader::{self, Loaded},
    output::{human, json},
    summary::{KernelCounters, Summary},
};

/// Kernel-side counter maps, read for every summary.
struct CounterMaps {
    hists: PerCpuArray<MapData, u64>,
    lost: PerCpuArray<MapData, u64>,
    stats: PerCpuArray<MapData, u64>,
    rst_sent: PerCpuArray<MapData, u64>,
    rst_slot_names: Vec<String>,
    syn: crate::syn::SynMaps,
}

impl CounterMaps {
    fn take(ebpf: &mut aya::Ebpf, rst_slot_names: Vec<String>) -> Result<Self> {
        let syn = crate::syn::SynMaps::take(ebpf)?;
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
            rst_sent: take(maps::RST_SENT)?,
            rst_slot_names,
            syn,
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
            rst_sent: self
                .rst_slot_names
                .iter()
                .zip(0u32..)
                .map(|(name, i)| Ok((name.clone(), sum(&self.rst_sent, i)?)))
                .collect::<Result<Vec<_>>>()?
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect(),
            syn: self.syn.read()?,
        })
    }
}

enum Sink {
    Human(human::Human),
    Json,
}

pub async fn run(args: LiveArgs) -> Result<()> {
    let config = Config {
        min_latency_ns: args.min_latency.as_nanos().min(u64::MAX as u128) as u64,
        filter: args.filter.to_kernel(),
    };
    let Loaded {
        mut ebpf,
        hooks,
        rst_slot_names,
    } = loader::load(args.attach, config)?;
    for status in &hooks {
        eprintln!("tcptrace: {}", loader::describe(status));
    }
    let filter = args.filter.describe();
    if !filter.is_empty() {
        eprintln!("tcptrace: filter (in the kernel): {filter}");
    }
    let counters = CounterMaps::take(&mut ebpf, rst_slot_names)?;
    let ring = ebpf
        .take_map(maps::EVENTS)
        .context("map EVENTS missing from the object")?;
    let ring = RingBuf::try_from(ring).context("map EVENTS")?;
    // SAFETY: the AsyncFd owns the ring buffer and with it the fd it
    // registers, so the fd stays open for as long as it is registered.
    let mut ring = unsafe { AsyncFd::register(ring) }.context("polling the EVENTS ring buffer")?;

    let boot_offset = crate::kernel::boot_to_unix_offset_ns();
    let sink = if args.json {
        Sink::Json
    } else {
        Sink::Human(human::Human::new())
    };
    let mut out = BufWriter::new(std::io::stdout().lock());
    if let Sink::Human(_) = sink {
        writeln!(out, "{}", human::HEADER)?;
    }
    out.flush()?;
    eprintln!("tcptrace: tracing; Ctrl-C to stop");

    let mut summary = Summary::default();
    let mut owners = crate::syn::Owners::default();
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let period = if args.interval.is_zero() {
        std::time::Duration::from_secs(86400 * 365)
    } else {
        args.interval
    };
    let mut ticker = interval_at(Instant::now() + period, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let deadline = sleep(
        args.duration
            .unwrap_or(std::time::Duration::from_secs(86400 * 365 * 100)),
    );
    tokio::pin!(deadline);

    let drain = |ring: &mut RingBuf<MapData>,
                 out: &mut BufWriter<std::io::StdoutLock<'_>>,
                 summary: &mut Summary,
                 owners: &mut crate::syn::Owners|
     -> Result<()> {
        while let Some(item) = ring.next() {
            match decode(&item) {
                Ok(mut ev) => {
                    owners.fill(&mut ev);
                    summary.observe(&ev);
                    match &sink {
                        Sink::Json => writeln!(out, "{}", json::event(&ev, boot_offset))?,
                        Sink::Human(h) => writeln!(out, "{}", h.line(&ev, boot_offset))?,
                    }
                }
                Err(e) => {
                    summary.decode_errors += 1;
                    log::warn!("{e}");
                }
            }
        }
        out.flush()?;
        Ok(())
    };

    let print_summary = |out: &mut BufWriter<std::io::StdoutLock<'_>>,
                         summary: &Summary,
                         final_: bool|
     -> Result<()> {
        let k = counters.read()?;
        if args.json {
            writeln!(out, "{}", summary.to_json(&k, final_))?;
        } else {
            let title = if final_ { "final summary" } else { "summary" };
            write!(out, "{}", summary.render_text(&k, title))?;
        }
        out.flush()?;
        Ok(())
    };

    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("waiting on the ring buffer")?;
                drain(guard.get_inner_mut(), &mut out, &mut summary, &mut owners)?;
                guard.clear_ready();
            }
            _ = ticker.tick() => print_summary(&mut out, &summary, false)?,
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = &mut deadline => break,
        }
    }
    drain(ring.get_mut(), &mut out, &mut summary, &mut owners)?;
    print_summary(&mut out, &summary, true)?;
    // Dropping `ebpf` detaches every link and unloads the programs.
    drop(ring);
    drop(ebpf);
    Ok(())
}
