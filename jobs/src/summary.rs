//! The one JSON line every run ends with: on stdout for people and scripts, and in the
//! Kubernetes termination message (when that file exists) so the operator can put the outcome
//! of the last backup into the ABStore status.

use std::path::Path;

use serde::Serialize;

/// Kubernetes' default `terminationMessagePath`.
pub const TERMINATION_LOG: &str = "/dev/termination-log";
/// Environment variable overriding [`TERMINATION_LOG`] (tests, non-default pod specs).
pub const TERMINATION_LOG_ENV: &str = "ABSTORE_TERMINATION_LOG";

/// `{"command": …, "ok": true, …fields of the run's summary}`
#[derive(Debug, Serialize)]
pub struct Success<'a, T: Serialize> {
    pub command: &'a str,
    pub ok: bool,
    #[serde(flatten)]
    pub summary: &'a T,
}

/// `{"command": …, "ok": false, "error": …, "category": …}`
#[derive(Debug, Serialize)]
pub struct Failure<'a> {
    pub command: &'a str,
    pub ok: bool,
    pub error: String,
    pub category: &'a str,
}

/// Renders a summary as one line of JSON.
pub fn line<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| {
        format!("{{\"ok\":false,\"error\":\"cannot encode the summary: {e}\"}}")
    })
}

/// Prints the line and, when `termination_log` exists, writes it there too (Kubernetes creates
/// the file; elsewhere it is absent and nothing is written).
pub fn emit(line: &str, termination_log: &Path) {
    println!("{line}");
    if termination_log.exists()
        && let Err(e) = std::fs::write(termination_log, format!("{line}\n"))
    {
        tracing::warn!(path = %termination_log.display(), error = %e, "cannot write the termination message");
    }
}
