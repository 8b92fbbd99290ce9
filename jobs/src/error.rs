//! The jobs' error type. Every variant names what is at fault (Redis URL and key, backup file,
//! storage URL), so a failed CronJob's summary line is enough to act on.

use crate::storage::StorageError;

/// Everything a backup, restore, verify, list or prune run can fail with.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Storage(#[from] StorageError),

    /// Connecting to or talking with Redis failed (the message names the server).
    #[error(transparent)]
    Redis(#[from] abstore::Error),

    /// Redis answered a command about one key with an error.
    #[error("redis {url}: {command} {key}: {reason}")]
    Key {
        url: String,
        command: &'static str,
        key: String,
        reason: String,
    },

    /// `--from-replica` was asked for but the sentinels know no healthy replica.
    #[error("no healthy replica of {url}: {reason}")]
    NoReplica { url: String, reason: String },

    /// No complete backup (folder with a manifest) exists where one was expected.
    #[error("no complete backup under {url} (a backup without manifest.json is incomplete)")]
    NoBackup { url: String },

    /// A backup is damaged, foreign or from a newer format: nothing was written.
    #[error("refusing backup {url}: {reason}")]
    BadArchive { url: String, reason: String },

    /// A record could not be encoded or a reply had an unexpected shape.
    #[error("{context}: {reason}")]
    Format { context: String, reason: String },

    /// An option is out of range or inconsistent.
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },

    /// A pipeline stage stopped because another one failed; never the error that is reported
    /// when the real cause is known.
    #[error("{stage} stopped because another stage of the pipeline failed")]
    Cancelled { stage: &'static str },

    #[error("{stage} task failed: {reason}")]
    Task { stage: &'static str, reason: String },

    /// The primary kept changing during a SCAN pass (each change restarts it, since a cursor
    /// means nothing on another server); the next scheduled run tries again.
    #[error("redis {url}: the primary changed more than {restarts} times during one pass")]
    PrimaryChanged { url: String, restarts: u32 },
}

impl JobError {
    /// A short category for the summary line and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            JobError::Storage(e) => e.category(),
            JobError::Redis(_) | JobError::Key { .. } | JobError::PrimaryChanged { .. } => "redis",
            JobError::NoReplica { .. } => "no-replica",
            JobError::NoBackup { .. } => "no-backup",
            JobError::BadArchive { .. } => "bad-archive",
            JobError::Format { .. } => "format",
            JobError::InvalidArgument { .. } => "invalid-argument",
            JobError::Cancelled { .. } | JobError::Task { .. } => "internal",
        }
    }
}

/// Result alias for the jobs.
pub type Result<T, E = JobError> = std::result::Result<T, E>;
