//! Where backups live: one small interface over a local directory, S3 and GCS. Keys are
//! relative to the location's root (`file:///root`, `s3://bucket/prefix`, `gs://bucket/prefix`)
//! and use `/` separators. Large objects are streamed through an `Upload` (S3 multipart, GCS
//! resumable, file written then fsynced and renamed), so nothing half-written is ever visible
//! under its final key.

use std::fmt;

use bytes::Bytes;

pub mod file;
pub mod gcs;
pub mod s3;

/// A storage location given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// `file:///absolute/path`
    File { root: std::path::PathBuf },
    /// `s3://bucket[/prefix]`
    S3 { bucket: String, prefix: String },
    /// `gs://bucket[/prefix]`
    Gcs { bucket: String, prefix: String },
}

impl Location {
    /// Parses a `file://`, `s3://` or `gs://` URL; the error names the URL and what is wrong.
    pub fn parse(url: &str) -> Result<Location, StorageError> {
        let invalid = |reason: &str| StorageError::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let parsed = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        match parsed.scheme() {
            "file" => {
                if parsed
                    .host_str()
                    .is_some_and(|h| !h.is_empty() && h != "localhost")
                {
                    return Err(invalid("a file URL has no host: use file:///absolute/path"));
                }
                let root = parsed
                    .to_file_path()
                    .map_err(|()| invalid("not an absolute path"))?;
                Ok(Location::File { root })
            }
            scheme @ ("s3" | "gs") => {
                let bucket = parsed
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| invalid("the bucket name is missing"))?
                    .to_owned();
                let prefix = parsed.path().trim_matches('/').to_owned();
                if parsed.query().is_some() || parsed.fragment().is_some() {
                    return Err(invalid("query strings and fragments are not supported"));
                }
                Ok(if scheme == "s3" {
                    Location::S3 { bucket, prefix }
                } else {
                    Location::Gcs { bucket, prefix }
                })
            }
            other => Err(invalid(&format!(
                "unsupported scheme {other:?}: use file://, s3:// or gs://"
            ))),
        }
    }

    /// The URL of `key` under this location, for messages and summaries.
    pub fn url_of(&self, key: &str) -> String {
        let join = |base: String| {
            if key.is_empty() {
                base
            } else {
                format!("{}/{key}", base.trim_end_matches('/'))
            }
        };
        match self {
            Location::File { root } => join(format!("file://{}", root.display())),
            Location::S3 { bucket, prefix } => join(format!("s3://{bucket}/{prefix}")),
            Location::Gcs { bucket, prefix } => join(format!("gs://{bucket}/{prefix}")),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url_of(""))
    }
}

/// Endpoint settings for S3-compatible servers and GCS emulators (`--s3-endpoint`,
/// `--s3-path-style`, `--gcs-endpoint`); production uses the defaults and the standard
/// credential chains (IRSA / EKS Pod Identity, GKE Workload Identity).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StorageOptions {
    pub s3_endpoint: Option<String>,
    pub s3_path_style: bool,
    pub gcs_endpoint: Option<String>,
}

/// An object under a location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the location's root.
    pub key: String,
    pub size: u64,
}

/// A connected storage backend.
#[derive(Debug)]
pub enum Storage {
    File(file::FileStore),
    S3(s3::S3Store),
    Gcs(gcs::GcsStore),
}

impl Storage {
    /// Connects to the location (credentials are resolved here, so a bad configuration fails
    /// before any work starts).
    pub async fn open(
        location: &Location,
        options: &StorageOptions,
    ) -> Result<Storage, StorageError> {
        Ok(match location {
            Location::File { root } => Storage::File(file::FileStore::open(root.clone())?),
            Location::S3 { bucket, prefix } => {
                Storage::S3(s3::S3Store::open(bucket, prefix, options).await?)
            }
            Location::Gcs { bucket, prefix } => {
                Storage::Gcs(gcs::GcsStore::open(bucket, prefix, options).await?)
            }
        })
    }

    /// Writes a small object in one request (manifests).
    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        match self {
            Storage::File(s) => s.put(key, data).await,
            Storage::S3(s) => s.put(key, data).await,
            Storage::Gcs(s) => s.put(key, data).await,
        }
    }

    /// Reads a whole object. `StorageError::NotFound` when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        match self {
            Storage::File(s) => s.get(key).await,
            Storage::S3(s) => s.get(key).await,
            Storage::Gcs(s) => s.get(key).await,
        }
    }

    /// Every object whose key starts with `prefix` (relative to the root), sorted by key.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        match self {
            Storage::File(s) => s.list(prefix).await,
            Storage::S3(s) => s.list(prefix).await,
            Storage::Gcs(s) => s.list(prefix).await,
        }
    }

    /// Starts a streamed upload of `key`; nothing is visible under `key` until `finish`.
    pub async fn upload(&self, key: &str) -> Result<Upload, StorageError> {
        Ok(match self {
            Storage::File(s) => Upload::File(s.upload(key).await?),
            Storage::S3(s) => Upload::S3(s.upload(key).await?),
            Storage::Gcs(s) => Upload::Gcs(s.upload(key).await?),
        })
    }
}

/// A streamed upload in progress.
#[derive(Debug)]
pub enum Upload {
    File(file::FileUpload),
    S3(s3::S3Upload),
    Gcs(gcs::GcsUpload),
}

impl Upload {
    /// Appends bytes; backends buffer to their part size.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        match self {
            Upload::File(u) => u.write(chunk).await,
            Upload::S3(u) => u.write(chunk).await,
            Upload::Gcs(u) => u.write(chunk).await,
        }
    }

    /// Completes the upload and returns the object's size in bytes.
    pub async fn finish(self) -> Result<u64, StorageError> {
        match self {
            Upload::File(u) => u.finish().await,
            Upload::S3(u) => u.finish().await,
            Upload::Gcs(u) => u.finish().await,
        }
    }

    /// Abandons the upload, leaving nothing behind where the backend allows it (S3 aborts the
    /// multipart upload, a file's temporary is removed).
    pub async fn abort(self) -> Result<(), StorageError> {
        match self {
            Upload::File(u) => u.abort().await,
            Upload::S3(u) => u.abort().await,
            Upload::Gcs(u) => u.abort().await,
        }
    }
}

/// What went wrong with storage; every variant names the URL at fault.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid storage URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("{url} does not exist")]
    NotFound { url: String },
    #[error("access to {url} denied: {reason}")]
    AccessDenied { url: String, reason: String },
    #[error("{action} {url}: {reason}")]
    Backend {
        action: &'static str,
        url: String,
        reason: String,
    },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl StorageError {
    /// A short category for the job summary.
    pub fn category(&self) -> &'static str {
        match self {
            StorageError::InvalidUrl { .. } => "invalid-url",
            StorageError::NotFound { .. } => "not-found",
            StorageError::AccessDenied { .. } => "access-denied",
            StorageError::Backend { .. } => "storage",
            StorageError::Io { .. } => "io",
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_of_the_three_backends_parse_into_locations() {
        assert_eq!(
            Location::parse("s3://backups/abstore/prod").unwrap(),
            Location::S3 {
                bucket: "backups".into(),
                prefix: "abstore/prod".into()
            }
        );
        assert_eq!(
            Location::parse("gs://b").unwrap(),
            Location::Gcs {
                bucket: "b".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            Location::parse("file:///var/backups").unwrap(),
            Location::File {
                root: "/var/backups".into()
            }
        );
    }

    #[test]
    fn bad_urls_are_refused_naming_the_url() {
        for url in [
            "ftp://x/y",
            "s3:///nobucket",
            "file://host/path",
            "not a url",
        ] {
            let error = Location::parse(url).unwrap_err().to_string();
            assert!(error.contains(url), "{error}");
        }
    }

    #[test]
    fn url_of_joins_keys_under_the_prefix() {
        let location = Location::parse("s3://b/p/").unwrap();
        assert_eq!(
            location.url_of("x/manifest.json"),
            "s3://b/p/x/manifest.json"
        );
    }
}
