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

/// A benchmark size from the environment (`ABSTORE_BENCH_…`), else `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
