//! `cargo xtask bench`: tcptrace measured against bpftrace and against no
//! tracer in the same run, on this machine's kernel and in the VM kernels;
//! the results go to BENCHMARKS.md at the repository root.
//!
//! The benchmark executables (`tcptrace/benches/*.rs`) print `bench ...`
//! lines for people and `benchdata {json}` lines with every sample; this
//! driver collects both, computes the comparisons (see `bench_report`) and
//! keeps the raw lines in the report.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use crate::{
    artifacts,
    sh::{cargo, root, run},
    vm,
};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Kernels to boot for the function hooks; default: the whole matrix.
    #[arg(long = "kernel")]
    pub kernels: Vec<String>,
    /// Skip the VM kernels.
    #[arg(long)]
    pub no_vm: bool,
    /// A git revision whose tcptrace is measured beside this tree
    /// (before/after in the same run), e.g. `main` or a commit, optionally
    /// `REV=NAME` to name it in the report; repeatable.
    #[arg(long)]
    pub baseline: Vec<String>,
    /// Rounds of the host hot-path bench (each runs every tracer once).
    #[arg(long, default_value_t = 12)]
    pub rounds: usize,
    /// Starts of each tracer in the time-to-first-event bench.
    #[arg(long, default_value_t = 15)]
    pub starts: usize,
    /// Runs per rate in the pipeline bench.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Rounds of the hot-path bench in each VM (emulated: slow).
    #[arg(long, default_value_t = 3)]
    pub vm_rounds: usize,
    /// Only the metrics scrape bench, its section replaced in the report.
    #[arg(long)]
    pub scrape_only: bool,
    /// The report, relative to the repository root.
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub output: PathBuf,
    /// Only the daemon soak (`soak.rs`), this long (e.g. 10m): its
    /// section of the report is replaced, the rest kept.
    #[arg(long, value_name = "DURATION", value_parser = parse_minutes)]
    pub soak: Option<Duration>,
    /// Run only these benches (e.g. `cost`, `pipeline`, `report`); the
    /// report then keeps every other section and gets only theirs replaced.
    #[arg(long)]
    pub only: Vec<String>,
}

/// "10m", "90s", "1h".
fn parse_minutes(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: use e.g. 10m, 90s or 1h"))?;
    match unit {
        "s" => Ok(Duration::from_secs(n)),
        "m" | "" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{s:?}: use e.g. 10m, 90s or 1h")),
    }
}

/// Output of the benches at one place (this machine, or one VM kernel).
#[derive(Debug, Default)]
pub struct Place {
    pub name: String,
    /// `bench ...` lines.
    pub lines: Vec<String>,
    /// `benchdata` objects, each with `bench` set.
    pub data: Vec<Value>,
    /// Benches or VMs that failed, with why.
    pub failures: Vec<String>,
}

impl Place {
    fn take(&mut self, line: &str) {
        let line = line.trim_end_matches('\r');
        if let Some(json) = line.strip_prefix("benchdata ") {
            match serde_json::from_str(json) {
                Ok(v) => self.data.push(v),
                Err(e) => self
                    .failures
                    .push(format!("unreadable benchdata line ({e})")),
            }
        } else if line.starts_with("bench ") {
            self.lines.push(line.to_owned());
        }
    }
}

/// What else the machine was doing: load and the busiest processes.
#[derive(Debug, Default)]
pub struct Activity {
    pub loadavg: String,
    pub top: Vec<String>,
}

fn activity() -> Activity {
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned();
    // ps's %CPU is over each process's lifetime; good enough to name them.
    let top = Command::new("ps")
        .args(["-eo", "pcpu,etime,comm", "--sort=-pcpu"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .skip(1)
                .filter(|l| {
                    l.split_whitespace()
                        .next()
                        .and_then(|c| c.parse::<f64>().ok())
                        .is_some_and(|c| c >= 5.0)
                })
                .take(8)
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect()
        })
        .unwrap_or_default();
    Activity { loadavg, top }
}

fn output_of(cmd: &mut Command) -> String {
    cmd.output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Runs one bench executable, echoing its `bench` lines, and collects them.
pub fn run_bench(place: &mut Place, name: &str, cmd: &mut Command) {
    eprintln!("bench: {name} on {}", place.name);
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            place.failures.push(format!("{name}: could not start: {e}"));
            return;
        }
    };
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.starts_with("bench ") {
                println!("{}: {line}", place.name);
            }
            place.take(&line);
        }
    }
    match child.wait() {
        Ok(s) if s.success() => {}
        Ok(s) => place.failures.push(format!("{name}: exited with {s}")),
        Err(e) => place.failures.push(format!("{name}: {e}")),
    }
}

/// The order benches run in: start-up first (nothing else warm), the
/// long pipeline last.
fn order(name: &str) -> usize {
    ["startup", "hotpath", "port_search", "pipeline"]
        .iter()
        .position(|n| *n == name)
        .unwrap_or(9)
}

/// An older build measured beside this tree.
pub struct Baseline {
    pub bin: PathBuf,
    /// Name in the tables (`tcptrace@NAME`).
    pub name: String,
    /// The commit and its subject, for the report.
    pub what: String,
}

/// Builds tcptrace (static) from `spec` (`REV` or `REV=NAME`) in its own
/// directory.
fn build_baseline(spec: &str) -> Result<Baseline> {
    let (rev, name) = spec.split_once('=').unwrap_or((spec, ""));
    let label = output_of(
        Command::new("git")
            .args(["rev-parse", "--short=8", rev])
            .current_dir(root()),
    );
    if label.is_empty() {
        bail!("--baseline {rev}: not a git revision of this repository");
    }
    let subject = output_of(
        Command::new("git")
            .args(["log", "-1", "--format=%s", &label])
            .current_dir(root()),
    );
    let base = root().join("target/bench-baseline");
    let src = base.join(&label);
    if !src.join("Cargo.toml").exists() {
        std::fs::create_dir_all(&src).with_context(|| format!("creating {}", src.display()))?;
        run(Command::new("sh")
            .arg("-c")
            .arg(format!(
                "git archive {label} | tar -x -C '{}'",
                src.display()
            ))
            .current_dir(root()))?;
    }
    eprintln!("build: baseline tcptrace at {label} (static)");
    // Its own target directory: cargo hashes workspace members by their
    // path inside the workspace, so two checkouts would share artifacts.
    let target_dir = src.join("target");
    run(cargo()
        .current_dir(&src)
        .args(["build", "--release", "--target", "x86_64-unknown-linux-gnu"])
        .args(["-p", "tcptrace", "--bin", "tcptrace"])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static"))?;
    let built = target_dir.join("x86_64-unknown-linux-gnu/release/tcptrace");
    let bin = base.join(format!("tcptrace-{label}"));
    std::fs::copy(&built, &bin).with_context(|| format!("copying {}", built.display()))?;
    let name = if name.is_empty() {
        label.clone()
    } else {
        name.to_owned()
    };
    Ok(Baseline {
        bin,
        what: format!("`tcptrace@{name}`: commit {label}, \"{subject}\""),
        name,
    })
}

pub fn run_all(args: &BenchArgs) -> Result<()> {
    if let Some(d) = args.soak {
        let section = crate::soak::run(d)?;
        println!("{section}");
        return crate::report_section::write(
            &root().join(&args.output),
            crate::soak::HEADING,
            &section,
        );
    }
    if args.scrape_only {
        return crate::bench_scrape::run_alone(args);
    }
    if let Err(e) = crate::setup::apt_install(&["bpftrace"]) {
        eprintln!("bench: bpftrace unavailable ({e:#}): tcptrace is measured alone");
    }
    let tcptrace = artifacts::static_tcptrace()?;
    let mut benches = artifacts::static_benches()?;
    if !args.only.is_empty() {
        benches.retain(|(name, _)| args.only.contains(name));
    }
    benches.sort_by_key(|(name, _)| order(name));
    let baselines = args
        .baseline
        .iter()
        .map(|rev| build_baseline(rev))
        .collect::<Result<Vec<_>>>()?;
    let started = output_of(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]));

    let mut host = Place {
        name: "host".into(),
        ..Place::default()
    };
    let before = activity();
    for (name, path) in &benches {
        let mut cmd = Command::new(path);
        cmd.env("TCPTRACE_BIN", &tcptrace)
            .env("TCPTRACE_BENCH_ROUNDS", args.rounds.to_string())
            .env("TCPTRACE_BENCH_STARTS", args.starts.to_string())
            .env("TCPTRACE_BENCH_REPS", args.reps.to_string());
        if !baselines.is_empty() {
            let list: Vec<String> = baselines
                .iter()
                .map(|b| format!("{}={}", b.bin.display(), b.name))
                .collect();
            cmd.env("TCPTRACE_BENCH_BASELINE", list.join(";"));
        }
        run_bench(&mut host, name, &mut cmd);
    }
    let after = activity();

    let mut places = vec![host];
    if !args.no_vm {
        places.extend(vm_places(args, &tcptrace, &benches, &baselines)?);
    }
    if !args.only.is_empty() {
        let path = root().join(&args.output);
        if args.only.iter().any(|o| o == "report") {
            crate::bench_page::write_only(&path, &places)?;
        }
        if args.only.iter().any(|o| o == "pipeline") {
            let mut section = String::new();
            crate::bench_report::pipeline_section(&mut section, &places[0]);
            let heading = crate::bench_report::PIPELINE_HEADING;
            crate::report_section::write(&path, heading, &section)?;
        }
        if args.only.iter().all(|o| o == "report" || o == "pipeline") {
            return Ok(());
        }
        return crate::bench_runs::write_only(&path, &places);
    }
    // Rendered from the places below, which the render takes.
    let page_section = crate::bench_page::section(&places);
    let report = crate::bench_report::render(&crate::bench_report::Run {
        command: command_line(),
        started,
        commit: output_of(
            Command::new("git")
                .args(["describe", "--always", "--dirty"])
                .current_dir(root()),
        ),
        baselines: baselines.iter().map(|b| b.what.clone()).collect(),
        cpu: std::fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_default(),
        activity: (before, after),
        places,
    });
    let path = root().join(&args.output);
    // The soak is a run of its own (`--soak`): its section is kept.
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let report = match crate::report_section::find(&old, crate::soak::HEADING) {
        Some(soak) => crate::report_section::splice(&report, crate::soak::HEADING, soak),
        None => report,
    };
    let report = crate::bench_page::keep(report, page_section, &old);
    std::fs::write(&path, report).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("cargo xtask {}", args.join(" "))
}

/// The hot-path and port-search benches in each VM kernel: tcptrace with
/// `--attach fentry` and with `--attach kprobe`, against no tracer; the cost
/// bench also with `--attach auto`, what a production host gets.
fn vm_places(
    args: &BenchArgs,
    tcptrace: &Path,
    benches: &[(String, PathBuf)],
    baselines: &[Baseline],
) -> Result<Vec<Place>> {
    crate::setup::vm_tools()?;
    let kernels: Vec<String> = if args.kernels.is_empty() {
        vm::matrix().iter().map(|s| (*s).to_owned()).collect()
    } else {
        args.kernels.clone()
    };
    let in_vm: Vec<&(String, PathBuf)> = benches
        .iter()
        .filter(|(n, _)| n == "hotpath" || n == "port_search" || n == "cost")
        .collect();
    // Older builds go in as /bin/tcptrace-NAME (the cost bench counts
    // their runs beside this tree's).
    let vm_baselines: Vec<String> = baselines
        .iter()
        .map(|b| format!("/bin/tcptrace-{}={}", b.name, b.name))
        .collect();
    let mut script = format!(
        "export TCPTRACE_BIN=/bin/tcptrace TCPTRACE_ATTACH=fentry TCPTRACE_BENCH_NO_BPFTRACE=1 \
         TCPTRACE_BENCH_ATTACH=fentry,kprobe TCPTRACE_BENCH_ROUNDS={} TCPTRACE_BENCH_BATCHES=4 \
         {} TCPTRACE_BENCH_BASELINE='{}'\n\
         rc=0\n",
        args.vm_rounds,
        crate::bench_runs::VM_ENV,
        vm_baselines.join(";")
    );
    for (name, _) in &in_vm {
        let modes = if name == "cost" {
            "TCPTRACE_BENCH_ATTACH=auto,fentry,kprobe "
        } else {
            ""
        };
        script.push_str(&format!("{modes}/benches/{name} || rc=1\n"));
    }
    script.push_str("[ $rc -eq 0 ]\n");
    let mut places = Vec::new();
    for (name, kernel) in vm::resolve(&kernels) {
        let mut place = Place {
            name: format!("VM {name}"),
            ..Place::default()
        };
        let kernel = match kernel {
            Ok(k) => k,
            Err(e) => {
                place.failures.push(format!("SKIPPED: {e:#}"));
                places.push(place);
                continue;
            }
        };
        place.name = format!("VM {name} ({})", kernel.release);
        eprintln!("bench: {}", place.name);
        let mut job = vm::Job::new(script.clone(), Duration::from_secs(3600));
        job.files
            .push((tcptrace.to_path_buf(), "/bin/tcptrace".into()));
        for b in baselines {
            job.files
                .push((b.bin.clone(), format!("/bin/tcptrace-{}", b.name)));
        }
        for (bench, path) in &in_vm {
            job.files.push((path.clone(), format!("/benches/{bench}")));
        }
        match vm::run(&kernel, &job) {
            Ok(outcome) => {
                let log = std::fs::read_to_string(&outcome.log).unwrap_or_default();
                for line in log.lines() {
                    if line.starts_with("bench ") {
                        println!("{}: {line}", place.name);
                    }
                    place.take(line);
                }
                if !outcome.passed {
                    place.failures.push(format!(
                        "{} (log: {})",
                        outcome.summary,
                        outcome.log.display()
                    ));
                }
            }
            Err(e) => place.failures.push(format!("{e:#}")),
        }
        places.push(place);
    }
    Ok(places)
}
