//! `verify`: checks a backup without Redis: the manifest, then every part's size, sha256,
//! decodability and record count, exactly as restore checks them before its first write.

use std::time::Instant;

use serde::Serialize;

use crate::archive::Backup;
use crate::error::Result;
use crate::format::Counts;
use crate::storage::{Location, StorageOptions};

/// Which backup to check.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// A backup folder, or a destination (then its newest complete backup).
    pub from: Location,
    pub storage: StorageOptions,
}

/// What a successful verify reports.
#[derive(Clone, Debug, Serialize)]
pub struct VerifySummary {
    pub backup: String,
    pub format_version: u32,
    /// When the backup started.
    pub started_at: String,
    pub keys: u64,
    pub bytes: u64,
    pub parts: usize,
    pub counts: Counts,
    pub duration_ms: u64,
}

pub async fn run(options: &VerifyOptions) -> Result<VerifySummary> {
    let clock = Instant::now();
    let backup = Backup::open(&options.from, &options.storage).await?;
    backup
        .verify_all(
            |part| tracing::info!(part = %part.name, records = part.records, "part verified"),
        )
        .await?;
    let manifest = &backup.manifest;
    tracing::info!(backup = %backup.url(), keys = manifest.keys, "backup verified");
    Ok(VerifySummary {
        backup: backup.url(),
        format_version: manifest.format_version,
        started_at: manifest.timings.started_at.clone(),
        keys: manifest.keys,
        bytes: manifest.bytes,
        parts: manifest.parts.len(),
        counts: manifest.counts.clone(),
        duration_ms: u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}
