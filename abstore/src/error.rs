//! The crate's error type. Every variant says what failed and where (URL, file, key, server), and
//! never carries a password: URLs are redacted before they are stored in an error.

use std::path::PathBuf;

use crate::assignment::AssignmentError;
use crate::keys::KeyError;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to ABStore's Redis.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A connection URL could not be understood. `url` is already redacted.
    #[error("invalid Redis URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    /// A file named by the configuration (password file, CA file) could not be read.
    #[error("cannot read {what} file {}: {source}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// An environment variable named by the configuration is missing or not UTF-8.
    #[error("environment variable {var} (named by {what}) is not set or not valid UTF-8")]
    MissingEnv { what: &'static str, var: String },

    /// A key could not be built or parsed.
    #[error(transparent)]
    Key(#[from] KeyError),

    /// A variation could not be chosen.
    #[error(transparent)]
    Assignment(#[from] AssignmentError),

    /// An argument to an API call is out of range or inconsistent.
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },

    /// No sentinel could tell us the current primary before the deadline.
    #[error(
        "no primary for master {master:?} from sentinels {sentinels} after trying for {waited_ms} ms: {last_error}"
    )]
    NoPrimary {
        master: String,
        sentinels: String,
        waited_ms: u128,
        last_error: String,
    },

    /// The server answered with an error, or the connection failed in a way that is known to have
    /// had no effect, and retrying did not help before the deadline.
    #[error("redis {server}: {context}: {source}")]
    Redis {
        server: String,
        context: &'static str,
        #[source]
        source: redis::RedisError,
    },

    /// The connection broke after a non-idempotent request was sent, so it may or may not have
    /// been applied. Retrying could count it twice; the caller decides (dedup makes it safe).
    #[error(
        "redis {server}: {context}: connection lost after the request was sent, outcome unknown (not retried, it is not idempotent): {source}"
    )]
    OutcomeUnknown {
        server: String,
        context: &'static str,
        #[source]
        source: redis::RedisError,
    },

    /// The server refused one event's write (e.g. a key holding another type); nothing of that
    /// event was applied, and its dedup flag was removed so that a retry counts it.
    #[error("redis {server}: refused writing {key}: {message}")]
    Refused {
        server: String,
        key: String,
        message: String,
    },

    /// A batching recorder's queue is full (see [`crate::batching`]); nothing was queued.
    #[error("the recording queue is full ({queue} events waiting); try again later")]
    Overloaded { queue: usize },

    /// The batching recorder has shut down; the event was not recorded.
    #[error("the batching recorder has shut down; the event was not recorded")]
    Closed,

    /// A batch could not be sent at all; its events were not recorded.
    #[error("the batch holding the event failed: {reason}")]
    BatchFailed { reason: String },

    /// The event is on the primary, but fewer replicas than requested confirmed it before the
    /// `WAIT` timeout, so it is not yet safe from the primary's crash. Resending it with its
    /// event id is harmless (a duplicate).
    #[error(
        "recorded on the primary but acknowledged by {acknowledged} of {requested} replicas before the WAIT timeout"
    )]
    NotReplicated { requested: u32, acknowledged: u32 },

    /// A reply did not have the shape the schema expects (e.g. a counter that is not an integer).
    #[error("unexpected reply for {key}: {reason}")]
    UnexpectedReply { key: String, reason: String },
}
