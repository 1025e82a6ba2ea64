//! Booting one kernel under QEMU/TCG and reading the serial console.
//!
//! KVM is never used: on this machine kind /dev/kvm exists but KVM guests
//! hang, and TCG needs `-cpu max` (the default model lacks cmpxchg16b).

use std::{
    env,
    fs::File,
    io::{BufRead, BufReader, Read, Write},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use super::{initramfs::RESULT_MARKER, tools, Kernel, Outcome};

/// How long QEMU may take to power off after the result line.
const POWEROFF_GRACE: Duration = Duration::from_secs(10);

/// What the console reader saw.
#[derive(Default)]
struct Console {
    result: Option<String>,
    panic: Option<String>,
    last: Option<String>,
}

pub fn boot(kernel: &Kernel, initrd: &Path, log_path: &Path, timeout: Duration) -> Result<Outcome> {
    let qemu = tools::require("qemu-system-x86_64", "qemu-system-x86")?;
    let mut cmd = Command::new(qemu);
    // Single-threaded TCG: with one host thread per vCPU, the kernel's live
    // text patching (static keys, static calls) raced other vCPUs running
    // the same code and oopsed on int3 at boot or at first use; round-robin
    // vCPUs keep SMP semantics without that race.
    cmd.args([
        "-accel",
        "tcg,thread=single",
        "-cpu",
        "max",
        "-m",
        "2048",
        "-smp",
        "2",
        "-nographic",
        "-no-reboot",
        "-nic",
        "none",
    ])
    .arg("-kernel")
    .arg(&kernel.vmlinuz)
    .arg("-initrd")
    .arg(initrd)
    .args(["-append", "console=ttyS0 panic=-1"])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut log =
        File::create(log_path).with_context(|| format!("creating {}", log_path.display()))?;
    writeln!(
        log,
        "# kernel {} ({})\n# {}",
        kernel.name,
        kernel.package,
        tools::show(&cmd)
    )
    .with_context(|| format!("writing {}", log_path.display()))?;

    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("kernel {}: starting QEMU", kernel.name))?;
    let stdout = child.stdout.take().context("QEMU stdout not captured")?;
    let mut stderr = child.stderr.take().context("QEMU stderr not captured")?;
    let (seen_tx, seen_rx) = mpsc::channel();
    let prefix = env::var("TCPTRACE_VM_VERBOSE")
        .is_ok_and(|v| v == "1")
        .then(|| format!("[{}] ", kernel.name));
    let reader = thread::spawn(move || read_console(stdout, log, prefix, seen_tx));
    let errors = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let mut deadline = start + timeout;
    let mut result_seen = false;
    let mut killed = false;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for QEMU")? {
            break status;
        }
        if !result_seen && seen_rx.try_recv().is_ok() {
            result_seen = true;
            deadline = deadline.min(Instant::now() + POWEROFF_GRACE);
        }
        if Instant::now() >= deadline {
            killed = true;
            let _ = child.kill();
            break child.wait().context("waiting for QEMU after kill")?;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let duration = start.elapsed();
    let (console, mut log) = reader
        .join()
        .map_err(|_| anyhow::anyhow!("console reader thread panicked"))??;
    let qemu_errors = errors.join().unwrap_or_default();
    if !qemu_errors.trim().is_empty() {
        let _ = writeln!(log, "# QEMU stderr:\n{}", qemu_errors.trim_end());
    }

    let (passed, summary) = match &console.result {
        Some(line) => (line == &format!("{RESULT_MARKER}: PASS"), line.clone()),
        None => {
            let why = if killed {
                format!(
                    "timed out after {}s without a result line (QEMU killed)",
                    timeout.as_secs()
                )
            } else {
                format!("no result line: QEMU exited ({status})")
            };
            let detail = console
                .panic
                .or(console.last)
                .or_else(|| qemu_errors.lines().last().map(str::to_string))
                .map(|l| format!("; last: {l}"))
                .unwrap_or_default();
            (false, format!("{why}{detail}"))
        }
    };
    let _ = writeln!(log, "# {summary} after {:.1}s", duration.as_secs_f64());
    Ok(Outcome {
        passed,
        summary,
        log: log_path.to_path_buf(),
        duration,
    })
}

/// Copies console lines to the log until QEMU closes its output, noting the
/// last result line (the guest prints one; a job echoing the marker earlier
/// cannot win) and any kernel panic.
fn read_console(
    stdout: impl Read,
    mut log: File,
    echo: Option<String>,
    seen: mpsc::Sender<()>,
) -> Result<(Console, File)> {
    let mut console = Console::default();
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader
            .read_until(b'\n', &mut buf)
            .context("reading the serial console")?
            == 0
        {
            break;
        }
        let text = String::from_utf8_lossy(&buf);
        let line = text.trim_end_matches(['\r', '\n']).replace('\r', "");
        writeln!(log, "{line}").context("writing the console log")?;
        if let Some(p) = &echo {
            eprintln!("{p}{line}");
        }
        if let Some(at) = line.find(RESULT_MARKER) {
            console.result = Some(line[at..].trim_end().to_string());
            let _ = seen.send(());
        } else if line.contains("Kernel panic") {
            console.panic.get_or_insert(line.clone());
        }
        if !line.trim().is_empty() {
            console.last = Some(line);
        }
    }
    Ok((console, log))
}
