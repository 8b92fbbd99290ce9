//! Finding and checking a stored backup: resolve `--from` (a backup folder, or a destination
//! whose newest complete backup is meant), read its manifest, and check every part against it.
//! Shared by verify and restore, so both refuse exactly the same archives.

use crate::error::{JobError, Result};
use crate::format::{MANIFEST_NAME, Manifest, PartInfo, Record, decode_part, folder_start};
use crate::storage::{Location, Storage, StorageError, StorageOptions};

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

    /// Downloads one part and checks it against the manifest; the error names the part.
    pub async fn read_part(&self, part: &PartInfo) -> Result<Vec<Record>> {
        let bad = |reason: String| JobError::BadArchive {
            url: self.part_url(part),
            reason,
        };
        let data = match self.storage.get(&join(&self.folder, &part.name)).await {
            Ok(data) => data,
            Err(StorageError::NotFound { .. }) => {
                return Err(bad("the part is missing".to_owned()));
            }
            Err(e) => return Err(e.into()),
        };
        decode_part(&data, part).map_err(bad)
    }

    /// Checks every part (size, sha256, decodability, record count) without keeping them.
    pub async fn verify_all(&self, mut on_part: impl FnMut(&PartInfo)) -> Result<()> {
        for part in &self.manifest.parts {
            self.read_part(part).await?;
            on_part(part);
        }
        Ok(())
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
