//! `list`: the backups under a destination, oldest first: start time, keys, bytes, and whether
//! each is complete (has a manifest). Folders without one are shown as incomplete: they are
//! what an interrupted run leaves, and restore ignores them.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::Result;
use crate::format::{MANIFEST_NAME, Manifest, folder_start};
use crate::storage::{Location, Storage, StorageOptions};

/// Where to look.
#[derive(Clone, Debug)]
pub struct ListOptions {
    pub from: Location,
    pub storage: StorageOptions,
}

/// One backup folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackupEntry {
    pub backup: String,
    pub started_at: String,
    pub complete: bool,
    /// From the manifest; unknown for incomplete backups.
    pub keys: Option<u64>,
    /// Bytes stored in the folder.
    pub bytes: u64,
    /// Why a folder with a manifest still does not count (unreadable or foreign manifest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// What list reports.
#[derive(Clone, Debug, Serialize)]
pub struct ListSummary {
    pub location: String,
    pub complete: usize,
    pub incomplete: usize,
    pub backups: Vec<BackupEntry>,
}

pub async fn run(options: &ListOptions) -> Result<ListSummary> {
    let storage = Storage::open(&options.from, &options.storage).await?;
    // folder -> (bytes, has manifest)
    let mut folders: BTreeMap<String, (u64, bool)> = BTreeMap::new();
    for object in storage.list("").await? {
        let Some((folder, name)) = object.key.rsplit_once('/') else {
            continue;
        };
        if folder_start(folder).is_none() {
            continue;
        }
        let entry = folders.entry(folder.to_owned()).or_default();
        entry.0 += object.size;
        entry.1 |= name == MANIFEST_NAME;
    }
    let mut backups = Vec::with_capacity(folders.len());
    for (folder, (bytes, has_manifest)) in folders {
        let started_at = folder_start(&folder)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        let (complete, keys, problem) = if has_manifest {
            let manifest = storage
                .get(&format!("{folder}/{MANIFEST_NAME}"))
                .await
                .map_err(|e| e.to_string())
                .and_then(|data| Manifest::parse(&data));
            match manifest {
                Ok(m) => (true, Some(m.keys), None),
                Err(reason) => (false, None, Some(reason)),
            }
        } else {
            (false, None, None)
        };
        let backup = options.from.url_of(&folder);
        tracing::info!(%backup, %started_at, complete, keys, bytes, "backup");
        backups.push(BackupEntry {
            backup,
            started_at,
            complete,
            keys,
            bytes,
            problem,
        });
    }
    let complete = backups.iter().filter(|b| b.complete).count();
    Ok(ListSummary {
        location: options.from.to_string(),
        complete,
        incomplete: backups.len() - complete,
        backups,
    })
}
