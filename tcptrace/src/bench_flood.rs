//! Bench-only switches (`cargo xtask bench`), hidden from `--help`: an event
//! source that floods the ring buffer with synthetic records for one process,
//! a sink that decodes and summarises every event without printing it, a
//! choice of hooks, and empty programs on the connect() syscall tracepoints
//! in place of every hook.
//! Normal runs never load the source program.

use anyhow::{bail, Context as _, Result};
use aya::{maps::Array, programs::TracePoint, Ebpf};
use tcptrace_common::bench::{FLOOD_MAP, FLOOD_PROGRAM, FLOOR_PROGRAMS, MAX_PER_CALL};

#[derive(Debug, Default, clap::Args)]
pub struct BenchArgs {
    /// Bench only: PID:N emits N synthetic records per getppid() call of PID.
    #[arg(long, hide = true, value_parser = parse_flood)]
    pub bench_flood: Option<(u32, u32)>,
    /// Bench only: the flood's records vary as real connects do (time,
    /// ports, addresses, latency, errors), so a recording has a real size.
    #[arg(long, hide = true, requires = "bench_flood")]
    pub bench_flood_varied: bool,
    /// Bench only: decode and count every event, print only the final summary.
    #[arg(long, hide = true)]
    pub bench_quiet: bool,
    /// Bench only: attach only these hooks (comma-separated names), to
    /// compare with a peer tracer running the same hooks.
    #[arg(long, hide = true, value_delimiter = ',')]
    pub bench_hooks: Vec<String>,
    /// Bench only: no hook, empty programs on the connect() syscall
    /// tracepoints instead (the floor under any tracer there).
    #[arg(long, hide = true, conflicts_with = "bench_hooks")]
    pub bench_floor: bool,
}

impl BenchArgs {
    /// The hooks to attach: every one (`None`), or only these.
    pub fn only_hooks(&self) -> Option<&[String]> {
        (self.bench_floor || !self.bench_hooks.is_empty()).then_some(self.bench_hooks.as_slice())
    }
}

fn parse_flood(s: &str) -> Result<(u32, u32), String> {
    let (pid, n) = s.split_once(':').ok_or("expected PID:N")?;
    let pid: u32 = pid.parse().map_err(|e| format!("PID: {e}"))?;
    let n: u32 = n.parse().map_err(|e| format!("N: {e}"))?;
    if pid == 0 || n == 0 || n > MAX_PER_CALL {
        return Err(format!("need PID > 0 and 1 <= N <= {MAX_PER_CALL}"));
    }
    Ok((pid, n))
}

/// Configures and attaches the flood source and the floor programs when
/// asked. The links live as long as `ebpf`.
pub fn attach(ebpf: &mut Ebpf, args: &BenchArgs) -> Result<()> {
    if args.bench_floor {
        for (name, tracepoint) in FLOOR_PROGRAMS {
            let prog: &mut TracePoint = ebpf
                .program_mut(name)
                .with_context(|| format!("program {name} missing from the object"))?
                .try_into()?;
            prog.load()
                .with_context(|| format!("loading bench program {name}"))?;
            prog.attach("syscalls", tracepoint)
                .with_context(|| format!("attaching {name} to syscalls:{tracepoint}"))?;
        }
        eprintln!("tcptrace: bench floor: empty programs on the connect() syscall tracepoints");
    }
    let Some((pid, n)) = args.bench_flood else {
        return Ok(());
    };
    let mut map: Array<_, u32> = ebpf
        .map_mut(FLOOD_MAP)
        .with_context(|| format!("map {FLOOD_MAP} missing from the object"))?
        .try_into()
        .with_context(|| format!("map {FLOOD_MAP}"))?;
    map.set(0, pid, 0).context("configuring the bench source")?;
    map.set(1, n, 0).context("configuring the bench source")?;
    map.set(2, u32::from(args.bench_flood_varied), 0)
        .context("configuring the bench source")?;
    let Some(prog) = ebpf.program_mut(FLOOD_PROGRAM) else {
        bail!("program {FLOOD_PROGRAM} missing from the object");
    };
    let prog: &mut TracePoint = prog.try_into()?;
    prog.load().context("loading the bench source")?;
    prog.attach("syscalls", "sys_enter_getppid")
        .context("attaching the bench source to syscalls:sys_enter_getppid")?;
    eprintln!("tcptrace: bench source: {n} records per getppid() of pid {pid}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flood_spec_is_checked() {
        assert_eq!(parse_flood("12:64"), Ok((12, 64)));
        for bad in ["0:1", "1:0", "1:257", "x:1", "12", ""] {
            assert!(parse_flood(bad).is_err(), "{bad}");
        }
    }
}
