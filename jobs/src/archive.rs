//! Finding and checking a stored backup: resolve `--from` (a backup folder, or a destination
//! whose newest complete backup is meant), read its manifest, and check every part against it.
//! Shared by verify and restore, so both refuse exactly the same archives.

use std::ops::ControlFlow;

use bytes::Bytes;
use futures::StreamExt;

use crate::error::{JobError, Result};
use crate::format::{
    MANIFEST_NAME, Manifest, PartInfo, Record, check_part, check_part_records, decode_part_batches,
    folder_start,
};
use crate::storage::{Location, Storage, StorageError, StorageOptions};

/// Parts fetched and decoded at the same time while verifying: two overlap a download with a
/// decode while holding at most two compressed parts in memory.
const VERIFY_PARTS_IN_FLIGHT: usize = 2;

/// A complete backup (one with a manifest) and where it lives.
#[derive(Debug)]
pub struct Backup {
    pub storage: Storage,
    pub location: Location,
    /// Folder of the backup relative to the location's root (`""` when `--from` is the folder).
    pub folder: String,
    pub manifest: Manifest,
}

impl Backup {
    /// Opens the backup at `from`, or the newest complete one under it.
    pub async fn open(from: &Location, options: &StorageOptions) -> Result<Backup> {
        let storage = Storage::open(from, options).await?;
        let folder = match storage.get(MANIFEST_NAME).await {
            Ok(_) => String::new(),
            Err(StorageError::NotFound { .. }) => {
                newest_folder(&storage)
                    .await?
                    .ok_or_else(|| JobError::NoBackup {
                        url: from.to_string(),
                    })?
            }
            Err(e) => return Err(e.into()),
        };
        let manifest_key = join(&folder, MANIFEST_NAME);
        let data = storage.get(&manifest_key).await?;
        let manifest = Manifest::parse(&data).map_err(|reason| JobError::BadArchive {
            url: from.url_of(&manifest_key),
            reason,
        })?;
        Ok(Backup {
            storage,
            location: from.clone(),
            folder,
            manifest,
        })
    }

    /// URL of the backup folder.
    pub fn url(&self) -> String {
        self.location.url_of(&self.folder)
    }

    /// URL of one part, for messages.
    pub fn part_url(&self, part: &PartInfo) -> String {
        self.location.url_of(&join(&self.folder, &part.name))
    }

    /// Downloads one part and checks its size and sha256 against the manifest; the error names
    /// the part.
    pub async fn fetch_part(&self, part: &PartInfo) -> Result<Bytes> {
        let data = match self.storage.get(&join(&self.folder, &part.name)).await {
            Ok(data) => data,
            Err(StorageError::NotFound { .. }) => {
                return Err(self.bad_part(part, "the part is missing".to_owned()));
            }
            Err(e) => return Err(e.into()),
        };
        check_part(&data, part).map_err(|reason| self.bad_part(part, reason))?;
        Ok(data)
    }

    /// Decodes a fetched part on a blocking thread (JSON and zstd are CPU work), handing its
    /// records to `each` in batches; checks decodability and the record count.
    pub async fn decode_part(
        &self,
        part: &PartInfo,
        data: Bytes,
        batch: usize,
        each: impl FnMut(Vec<Record>) -> ControlFlow<()> + Send + 'static,
    ) -> Result<()> {
        let info = part.clone();
        let decoded =
            tokio::task::spawn_blocking(move || decode_part_batches(&data, &info, batch, each))
                .await
                .map_err(|e| JobError::Task {
                    stage: "decode",
                    reason: e.to_string(),
                })?;
        decoded.map_err(|reason| self.bad_part(part, reason))
    }

    /// Checks every part (size, sha256, decodability, record count) without keeping them: one
    /// part downloads while the previous one is checked, on a blocking thread.
    pub async fn verify_all(&self, mut on_part: impl FnMut(&PartInfo)) -> Result<()> {
        let parts = futures::stream::iter(&self.manifest.parts)
            .map(|part| async move {
                let data = self.fetch_part(part).await?;
                let info = part.clone();
                tokio::task::spawn_blocking(move || check_part_records(&data, &info))
                    .await
                    .map_err(|e| JobError::Task {
                        stage: "verify",
                        reason: e.to_string(),
                    })?
                    .map_err(|reason| self.bad_part(part, reason))?;
                Ok::<_, JobError>(part)
            })
            .buffered(VERIFY_PARTS_IN_FLIGHT);
        let mut parts = std::pin::pin!(parts);
        while let Some(part) = parts.next().await {
            on_part(part?);
        }
        Ok(())
    }

    fn bad_part(&self, part: &PartInfo, reason: String) -> JobError {
        JobError::BadArchive {
            url: self.part_url(part),
            reason,
        }
    }
}

/// The newest folder under the root that holds a manifest and has the layout's dated name.
/// Folder names have one-second resolution, so ties are broken by the manifests' exact start.
async fn newest_folder(storage: &Storage) -> Result<Option<String>> {
    let suffix = format!("/{MANIFEST_NAME}");
    let dated: Vec<_> = storage
        .list("")
        .await?
        .into_iter()
        .filter_map(|object| object.key.strip_suffix(&suffix).map(str::to_owned))
        .filter_map(|folder| folder_start(&folder).map(|start| (start, folder)))
        .collect();
    let Some(latest) = dated.iter().map(|(start, _)| *start).max() else {
        return Ok(None);
    };
    let mut newest: Option<(String, String)> = None;
    for (_, folder) in dated.into_iter().filter(|(start, _)| *start == latest) {
        let started = match storage.get(&join(&folder, MANIFEST_NAME)).await {
            Ok(data) => Manifest::parse(&data)
                .ok()
                .and_then(|m| chrono::DateTime::parse_from_rfc3339(&m.timings.started_at).ok())
                .map(|t| {
                    t.with_timezone(&chrono::Utc)
                        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                })
                .unwrap_or_default(),
            Err(_) => String::new(),
        };
        if newest.as_ref().is_none_or(|(best, _)| started > *best) {
            newest = Some((started, folder));
        }
    }
    Ok(newest.map(|(_, folder)| folder))
}

/// `folder/name`, or `name` at the root.
pub fn join(folder: &str, name: &str) -> String {
    if folder.is_empty() {
        name.to_owned()
    } else {
        format!("{folder}/{name}")
    }
}
