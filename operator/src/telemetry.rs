//! Logging set-up for `run`: tracing-subscriber with plain or JSON lines, level from `RUST_LOG`.
//! JSON is for clusters whose log pipeline parses fields; plain is for people reading a
//! terminal or `kubectl logs`.

use tracing_subscriber::EnvFilter;

/// Filter used when `RUST_LOG` is unset: our crates at info, kube's internals at warn so a
/// watch reconnect does not flood the log.
pub const DEFAULT_LOG_FILTER: &str = "info,kube=warn,tower=warn,hyper=warn";

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Plain,
    /// One JSON object per line.
    Json,
}

/// Errors setting up logging.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("RUST_LOG is not a valid filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    #[error("a global tracing subscriber is already installed: {0}")]
    AlreadyInstalled(String),
}

/// Installs the global subscriber. `RUST_LOG` (if set) wins over [`DEFAULT_LOG_FILTER`].
pub fn init(format: LogFormat) -> Result<(), TelemetryError> {
    let filter = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(spec)?,
        _ => EnvFilter::try_new(DEFAULT_LOG_FILTER)?,
    };
    // Colours only on a terminal: `kubectl logs` and log pipelines would get escape codes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
    result.map_err(|error| TelemetryError::AlreadyInstalled(error.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_default_filter_parses() {
        // A typo here would make every `run` without RUST_LOG fail at start-up.
        EnvFilter::try_new(DEFAULT_LOG_FILTER).unwrap();
    }
}
