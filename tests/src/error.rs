//! The harness's single error type. Every variant names the process (binary and port) or the
//! condition involved, and carries the tail of the server's log where that explains the failure.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Everything that can go wrong while starting, stopping or waiting on harness processes.
#[derive(thiserror::Error, Debug)]
pub enum HarnessError {
    /// A file or directory the harness manages could not be created, read or written.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The binary could not be executed at all (missing, not executable).
    #[error("could not spawn {binary}: {source}")]
    Spawn {
        binary: String,
        #[source]
        source: std::io::Error,
    },

    /// The process exited (or never became ready) while it was being started.
    #[error(
        "{process} did not start after {attempts} attempt(s): {reason}\n--- log tail ---\n{log_tail}"
    )]
    StartFailed {
        process: String,
        attempts: u32,
        reason: String,
        log_tail: String,
    },

    /// Stopping or inspecting a child process failed at the OS level.
    #[error("{action} {process}: {source}")]
    Process {
        action: &'static str,
        process: String,
        #[source]
        source: std::io::Error,
    },

    /// The operation needs a running process, but it had been stopped (e.g. by `kill9`).
    #[error("{process} is not running")]
    NotRunning { process: String },

    /// A polled condition did not become true before its deadline.
    #[error(
        "timed out after {within:?} waiting for {awaited}; last observed: {last_observed}\n--- log tail ---\n{log_tail}"
    )]
    Timeout {
        awaited: String,
        within: Duration,
        last_observed: String,
        log_tail: String,
    },

    /// A command to a server failed.
    #[error("{command} on {addr}: {source}")]
    Redis {
        command: String,
        addr: String,
        #[source]
        source: redis::RedisError,
    },

    /// A server answered, but not in the shape the harness expected.
    #[error("unexpected reply to {command} from {addr}: {reply}")]
    UnexpectedReply {
        command: String,
        addr: String,
        reply: String,
    },

    /// The caller asked for something the harness cannot do (e.g. a topology without sentinels).
    #[error("invalid harness request: {0}")]
    Invalid(String),
}

impl HarnessError {
    pub(crate) fn exited(
        process: &str,
        attempts: u32,
        status: ExitStatus,
        log_tail: String,
    ) -> Self {
        HarnessError::StartFailed {
            process: process.to_owned(),
            attempts,
            reason: format!("exited with {status}"),
            log_tail,
        }
    }
}
