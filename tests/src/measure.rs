//! Wall time and peak memory of a child process, for the benchmarks: the peak resident set
//! (`VmHWM` in `/proc/<pid>/status`, Linux) sampled while it runs.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How often the child's peak RSS is sampled.
const RSS_POLL: Duration = Duration::from_millis(20);

/// A finished run.
#[derive(Debug)]
pub struct MeasuredRun {
    pub elapsed: Duration,
    /// The highest `VmHWM` seen, in KiB.
    pub peak_kib: u64,
    pub stdout: Vec<u8>,
}

/// Runs `command` to completion (stdout and stderr captured), sampling its peak RSS. Panics,
/// with its stderr, when it fails: a benchmark of a failed run measures nothing.
pub fn run_measured(command: &mut Command) -> MeasuredRun {
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    loop {
        if let Ok(status) = std::fs::read_to_string(&status_path)
            && let Some(kib) = status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        {
            peak_kib = peak_kib.max(kib);
        }
        if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
            break;
        }
        std::thread::sleep(RSS_POLL);
    }
    let elapsed = started.elapsed();
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    MeasuredRun {
        elapsed,
        peak_kib,
        stdout: output.stdout,
    }
}

/// CPU seconds (user + system) process `pid` has used so far, from `/proc/<pid>/stat` (Linux);
/// `None` when the process is gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    stat_cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU seconds this process (all its threads) has used so far.
pub fn own_cpu_seconds() -> Option<f64> {
    stat_cpu_seconds(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

fn stat_cpu_seconds(stat: &str) -> Option<f64> {
    // Fields after the command name (which may hold spaces) start after the last ')';
    // utime and stime are the 14th and 15th fields of the line, 12th and 13th after it.
    let mut fields = stat.rsplit(')').next()?.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// `getconf CLK_TCK`, the unit of `/proc/<pid>/stat`'s times (100 on Linux unless told).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// CPU time the hypervisor gave to other guests while this machine's CPUs wanted to run
/// (`steal` of `/proc/stat`), measured from [`Steal::start`]: on a shared virtual machine it
/// explains a slow or stalled row that nothing in the row did.
#[derive(Debug, Clone, Copy)]
pub struct Steal {
    stolen: f64,
    started: std::time::Instant,
}

impl Steal {
    pub fn start() -> Steal {
        Steal {
            stolen: stolen_seconds().unwrap_or(0.0),
            started: std::time::Instant::now(),
        }
    }

    /// The share of all CPUs' time since the start that was stolen (0.0–1.0); `None` where
    /// `/proc/stat` does not tell.
    pub fn share(&self) -> Option<f64> {
        let stolen = stolen_seconds()? - self.stolen;
        let cpus = std::thread::available_parallelism().ok()?.get() as f64;
        Some(stolen / (self.started.elapsed().as_secs_f64() * cpus))
    }
}

/// `steal` (the 8th value) of `/proc/stat`'s `cpu` line, all CPUs together, in seconds.
fn stolen_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let steal: f64 = line.split_whitespace().nth(8)?.parse().ok()?;
    Some(steal / clock_ticks())
}

/// A benchmark size from the environment (`ABSTORE_BENCH_…`), else `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
