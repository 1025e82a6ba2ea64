//! `tcptrace selftest`: every hook attached, the reproductions run in
//! private network namespaces, and each hook's events compared with what
//! was injected and the namespaces' counters ([`verdict`]).

mod lock;
mod scenarios;
pub mod verdict;

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use aya::maps::RingBuf;
use tcptrace_common::{maps, Config};

use crate::{
    event::{decode_into, Event},
    hooks::{HookArgs, HookStatus},
    loader,
};
use verdict::{HookVerdict, Verdict};

/// How long events may take to reach the ring buffer after the last
/// reproduction ended.
const SETTLE: Duration = Duration::from_millis(300);
/// Ring buffer polling period.
const POLL: Duration = Duration::from_millis(5);

/// Runs the selftest: one verdict per hook, in the attach table's order.
pub fn run(hooks: HookArgs) -> Result<Vec<HookVerdict>> {
    let _lock = lock::take()?;
    // A selftest killed before its labs' Drop ran left their namespaces.
    match tcptrace_lab::craft::remove_stale(&tcptrace_lab::craft::Prefix::SELFTEST) {
        Ok(gone) if !gone.is_empty() => {
            log::info!("selftest: removed stale namespaces {}", gone.join(", "));
        }
        Ok(_) => {}
        Err(e) => log::warn!("selftest: stale namespaces: {e:#}"),
    }
    let loaded = loader::load(hooks, Config::default())?;
    let mut ebpf = loaded.ebpf;
    let ring = ebpf
        .take_map(maps::EVENTS)
        .context("map EVENTS missing from the object")?;
    let mut ring = RingBuf::try_from(ring).context("map EVENTS")?;
    let programs = crate::progstats::ProgramStats::new(&ebpf);
    let rsts = crate::paws::maps::RstSentMap::take(&mut ebpf, loaded.rst_slot_names.clone())?;
    let mut events = Vec::new();
    let attached_hooks: Vec<&'static str> = loaded
        .hooks
        .iter()
        .filter(|h| h.attached())
        .map(|h| h.hook)
        .collect();
    let worker = std::thread::Builder::new()
        .name("tcptrace-selftest".into())
        .spawn(move || scenarios::run(&attached_hooks, &rsts))
        .context("starting the reproductions' thread")?;
    let mut settle_until = None;
    loop {
        drain(&mut ring, &mut events);
        match settle_until {
            None if worker.is_finished() => settle_until = Some(Instant::now() + SETTLE),
            Some(t) if Instant::now() >= t => break,
            _ => {}
        }
        std::thread::sleep(POLL);
    }
    let runs = worker
        .join()
        .map_err(|_| anyhow::anyhow!("the reproductions' thread panicked"))?;
    drain(&mut ring, &mut events);
    let attached = |hook: &str| loaded.hooks.iter().any(|h| h.hook == hook && h.attached());
    let skipped = programs.missed();
    Ok(loaded
        .hooks
        .iter()
        .map(|status| {
            let verdict = match status.mechanism {
                // The first line of each reason (a verifier log follows it).
                None => Verdict::Unavailable(
                    status
                        .notes
                        .iter()
                        .map(|n| n.lines().next().unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
                Some(_) => {
                    let v = runs.verdict(status.hook, &events, &attached);
                    explain_skips(v, status, &skipped)
                }
            };
            HookVerdict::new(status, verdict)
        })
        .collect())
}

/// A hook that missed events whose programs the kernel skipped (another
/// run of the same program on that CPU) says how often.
fn explain_skips(v: Verdict, status: &HookStatus, skipped: &[(String, u64)]) -> Verdict {
    let Verdict::Missed(what) = v else {
        return v;
    };
    let n: u64 = skipped
        .iter()
        .filter(|(name, _)| status.programs.contains(&name.as_str()))
        .map(|(_, n)| n)
        .sum();
    if n == 0 {
        return Verdict::Missed(what);
    }
    Verdict::Missed(format!(
        "{what}; the kernel skipped its programs {n} times (another run of them on that CPU)"
    ))
}

/// Decodes every record waiting in the ring buffer; one that does not
/// decode is kept out (the verdicts count what the hooks said).
fn drain(ring: &mut RingBuf<aya::maps::MapData>, events: &mut Vec<Event>) {
    while let Some(item) = ring.next() {
        let mut ev = Event::blank();
        match decode_into(&item, &mut ev) {
            Ok(()) => events.push(ev),
            Err(e) => log::warn!("selftest: an event did not decode: {e}"),
        }
    }
}
