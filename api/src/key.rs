//! The API key that reports, delete and the results page require: read from a file and followed
//! while the process runs, so a new key (a Kubernetes Secret the kubelet refreshes in the mounted
//! volume, or a file edited by hand) is taken without a restart. Never printed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How often the key file is read again.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// Why the key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the API key file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the API key file {} is empty", path.display())]
    Empty { path: PathBuf },
}

/// Reads a key file: its content without surrounding white space, never empty.
pub fn read_key_file(path: &Path) -> Result<String, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let key = text.trim();
    if key.is_empty() {
        return Err(KeyFileError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(key.to_owned())
}

/// The current key, or none (every read refused: never open by accident).
#[derive(Default)]
pub struct ApiKey(RwLock<Option<Arc<str>>>);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = self.get().is_some();
        f.write_str(if set { "ApiKey(set)" } else { "ApiKey(none)" })
    }
}

impl ApiKey {
    pub fn new(key: Option<String>) -> ApiKey {
        ApiKey(RwLock::new(key.map(Arc::from)))
    }

    /// The key now.
    pub fn get(&self) -> Option<Arc<str>> {
        self.0.read().map_or(None, |key| key.clone())
    }

    /// Replaces the key; true when it changed.
    pub fn set(&self, key: &str) -> bool {
        let Ok(mut current) = self.0.write() else {
            return false;
        };
        if current.as_deref() == Some(key) {
            return false;
        }
        *current = Some(Arc::from(key));
        true
    }

    /// Reads `path` every [`RELOAD_INTERVAL`] and takes a new key. An unreadable or empty file
    /// keeps the key in use (a Secret being rewritten is briefly absent) and is logged.
    pub async fn follow(&self, path: &Path) {
        let mut complained = false;
        loop {
            tokio::time::sleep(RELOAD_INTERVAL).await;
            match read_key_file(path) {
                Ok(key) => {
                    complained = false;
                    if self.set(&key) {
                        tracing::info!(file = %path.display(), "the API key changed; the new one is in use");
                    }
                }
                Err(error) if !complained => {
                    complained = true;
                    tracing::warn!(%error, "keeping the API key in use");
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_trimmed_never_empty_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "  secret-key\n").unwrap();
        let key = ApiKey::new(Some(read_key_file(&path).unwrap()));
        assert_eq!(key.get().as_deref(), Some("secret-key"));
        assert_eq!(format!("{key:?}"), "ApiKey(set)");
        assert!(!key.set("secret-key"));
        assert!(key.set("other"));
        std::fs::write(&path, "\n").unwrap();
        let error = read_key_file(&path).unwrap_err().to_string();
        assert!(
            error.contains("is empty") && error.contains("key"),
            "{error}"
        );
    }
}
