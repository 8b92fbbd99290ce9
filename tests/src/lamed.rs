//! The real Lamed backend (PyPI `lamed==0.4.3`, installed by scripts/install-test-deps.sh): its
//! own `track()` called from Python by scripts/bench/lamed_track.py against a harness
//! redis-server. The record benchmark's peer; the test suite checks it really records.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::error::HarnessError;
use crate::python::repo_root;
use crate::server::RedisServer;

/// The Lamed release the peer runs.
pub const LAMED_VERSION: &str = "0.4.3";

/// Where install-test-deps puts Lamed (`pip install --no-deps --target`), or `$ABSTORE_LAMED_DIR`.
pub fn lamed_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ABSTORE_LAMED_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(format!(".cache/abstore/tools/lamed-{LAMED_VERSION}"))
}

/// The Gimel release the tracking API's unique counts are compared with.
pub const GIMEL_VERSION: &str = "1.5.0";

/// Where install-test-deps puts Gimel, or `$ABSTORE_GIMEL_DIR`.
pub fn gimel_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ABSTORE_GIMEL_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(format!(".cache/abstore/tools/gimel-{GIMEL_VERSION}"))
}

/// What one run of the peer reports.
#[derive(Debug, serde::Deserialize)]
pub struct LamedRun {
    pub events: u64,
    pub seconds: f64,
    pub cpu_seconds: f64,
    /// The redis-py Lamed ran with (its vendored copy).
    pub redis_py: String,
}

/// Starts one peer process that tracks `events` events (ids `<run>-<i>`) into `server`.
pub fn spawn_lamed_track(
    server: &RedisServer,
    events: u64,
    run: &str,
) -> Result<Child, HarnessError> {
    let dir = lamed_dir();
    if !dir.join("lamed/lamed.py").is_file() {
        return Err(HarnessError::Invalid(format!(
            "Lamed {LAMED_VERSION} is not installed in {} (scripts/install-test-deps.sh installs it; or set ABSTORE_LAMED_DIR)",
            dir.display()
        )));
    }
    Command::new("python3")
        .arg(repo_root().join("scripts/bench/lamed_track.py"))
        .arg(&dir)
        .arg(server.host())
        .arg(server.port().to_string())
        .arg(events.to_string())
        .arg(run)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| HarnessError::Spawn {
            binary: "python3 scripts/bench/lamed_track.py".into(),
            source,
        })
}

/// Waits for a peer process and reads its report.
pub fn wait_lamed_track(child: Child) -> Result<LamedRun, HarnessError> {
    let out = child
        .wait_with_output()
        .map_err(|source| HarnessError::Process {
            action: "waiting for",
            process: "lamed_track.py".into(),
            source,
        })?;
    if !out.status.success() {
        return Err(HarnessError::Invalid(format!(
            "lamed_track.py failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| {
        HarnessError::Invalid(format!(
            "lamed_track.py printed {:?}: {e}",
            String::from_utf8_lossy(&out.stdout)
        ))
    })
}

/// What [`run_lamed_processes`] measured.
#[derive(Debug, Clone, Copy)]
pub struct LamedLoad {
    /// Events tracked, all processes together.
    pub events: u64,
    /// Events per second: each process's events over its own tracking time (from its first
    /// `track()` to its last, so interpreter start and imports are not counted against Lamed),
    /// summed over the processes, which ran side by side.
    pub per_second: f64,
    /// The processes' CPU seconds over the same spans.
    pub cpu_seconds: f64,
    /// Mean duration of one `track()` call.
    pub mean_call_seconds: f64,
}

/// Runs `processes` peer processes side by side, each tracking `events / processes` events
/// (ids `<run>-<p>-<i>`) into `server`, and waits for all of them.
pub fn run_lamed_processes(
    server: &RedisServer,
    events: u64,
    processes: u64,
    run: &str,
) -> Result<LamedLoad, HarnessError> {
    let children = (0..processes)
        .map(|p| spawn_lamed_track(server, events / processes, &format!("{run}-{p}")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut load = LamedLoad {
        events: 0,
        per_second: 0.0,
        cpu_seconds: 0.0,
        mean_call_seconds: 0.0,
    };
    for child in children {
        let done = wait_lamed_track(child)?;
        load.events += done.events;
        load.per_second += done.events as f64 / done.seconds;
        load.cpu_seconds += done.cpu_seconds;
        load.mean_call_seconds += done.seconds / done.events as f64 / processes as f64;
    }
    Ok(load)
}
