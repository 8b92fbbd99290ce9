//! The reconcile error: one variant per step that can fail, each step keeping its own error
//! enum. `category()` is the short string that labels the failure metric and, as PascalCase,
//! becomes the Event reason the user sees on their ABStore.

use crate::apply::ApplyError;
use crate::build::BuildError;
use crate::pods::PodError;
use crate::status::StatusError;

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error(transparent)]
    Pods(#[from] PodError),
    /// Some objects were refused (the first one here): the rest of the reconcile ran, the
    /// status and Events name every refusal; the error only drives the retry backoff.
    #[error("incomplete: {0}")]
    Incomplete(Box<ApplyError>),
}

impl Error {
    /// The failing step's category.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Build(error) => error.category(),
            Error::Apply(error) => error.category(),
            Error::Status(error) => error.category(),
            Error::Pods(error) => error.category(),
            Error::Incomplete(error) => error.category(),
        }
    }
}

/// Result of a reconcile step.
pub type Result<T, E = Error> = std::result::Result<T, E>;
