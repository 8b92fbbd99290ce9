//! `backup`: SCAN → pipelined typed reads → JSON-lines/zstd encoder → uploader, four stages
//! joined by bounded channels so memory stays flat whatever the keyspace size. The manifest is
//! written only after every part is stored; any failure aborts the open upload and writes none.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use abstore::connection::Connection;
use chrono::Utc;
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::error::{JobError, Result};
use crate::format::{
    Blob, Counts, FORMAT_NAME, FORMAT_VERSION, MANIFEST_NAME, Manifest, NOT_POINT_IN_TIME_NOTE,
    PartInfo, PartWriter, Skipped, Source, Timings, backup_folder, part_name,
};
use crate::progress::Progress;
use crate::redis::{self as redis_io, ReadBatch, glob_match};
use crate::storage::{Location, Storage, StorageOptions};

/// Records per part before a new part starts.
pub const PART_MAX_RECORDS: u64 = 250_000;
/// Uncompressed JSON bytes per part before a new part starts: bounds what restore and verify
/// hold in memory for one part.
pub const PART_MAX_BYTES: u64 = 128 * 1024 * 1024;
/// Read batches in flight on the shared connection: enough to hide round-trip latency.
const READ_CONCURRENCY: usize = 4;
/// Capacity of each channel between stages, in batches (of up to `SCAN_COUNT` keys).
const CHANNEL_BATCHES: usize = 4;
/// Unsupported keys named one by one in the logs before only counting them.
const UNSUPPORTED_LOGGED: u64 = 20;

/// What to back up, from where, to where.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// `redis://`, `rediss://`, `redis+sentinel://` or `redis+cluster://` URL (a cluster: every
    /// shard is read, in parallel).
    pub redis_url: String,
    /// The destination; the backup goes into a dated folder under it.
    pub to: Location,
    pub storage: StorageOptions,
    /// Globs (SCAN MATCH syntax); empty means every key.
    pub match_patterns: Vec<String>,
    /// Read from a replica (found through Sentinel, or one per shard of a cluster) instead of
    /// the primary.
    pub from_replica: bool,
    pub part_max_records: u64,
    pub part_max_bytes: u64,
}

impl BackupOptions {
    /// Every key, from the primary, with the default part size.
    pub fn new(redis_url: impl Into<String>, to: Location) -> BackupOptions {
        BackupOptions {
            redis_url: redis_url.into(),
            to,
            storage: StorageOptions::default(),
            match_patterns: Vec::new(),
            from_replica: false,
            part_max_records: PART_MAX_RECORDS,
            part_max_bytes: PART_MAX_BYTES,
        }
    }
}

/// What a finished backup reports (the summary line).
#[derive(Clone, Debug, Serialize)]
pub struct BackupSummary {
    /// URL of the backup folder (what `restore --from` and `verify --from` take).
    pub backup: String,
    pub run_id: String,
    pub keys: u64,
    pub bytes: u64,
    pub parts: usize,
    pub counts: Counts,
    pub skipped: Skipped,
    pub source: Source,
    pub started_at: String,
    pub duration_ms: u64,
}

/// Runs a backup to completion: parts, then the manifest.
pub async fn run(options: &BackupOptions) -> Result<BackupSummary> {
    if options.part_max_records == 0 || options.part_max_bytes == 0 {
        return Err(JobError::InvalidArgument {
            field: "part size",
            reason: "part limits must be positive".to_owned(),
        });
    }
    let started_at = Utc::now();
    let clock = Instant::now();
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let folder = backup_folder(started_at, &run_id);
    let url = options.to.url_of(&folder);

    let storage = Arc::new(Storage::open(&options.to, &options.storage).await?);
    // One server, or every shard of a cluster (its primary, or a replica of it).
    let conns = redis_io::connect_nodes(&options.redis_url, options.from_replica).await?;
    let Some(first) = conns.first() else {
        return Err(JobError::InvalidArgument {
            field: "url",
            reason: "the cluster names no shard".to_owned(),
        });
    };
    let redacted = first.spec().redacted_url.clone();
    let redis_version = redis_io::info_field(first, "server", "redis_version")
        .await?
        .unwrap_or_default();
    let mut servers = Vec::with_capacity(conns.len());
    let mut total = Some(0u64);
    for conn in &conns {
        if let Some(server) = conn.current_server().await {
            servers.push(server.to_string());
        }
        total = match (total, redis_io::dbsize(conn).await) {
            (Some(sum), Ok(n)) => Some(sum + n),
            _ => None,
        };
    }
    let server = servers.join(",");
    tracing::info!(backup = %url, redis = %redacted, %server, %redis_version, "backup started");

    let progress = Progress::start("backup", total);
    let (keys_tx, keys_rx) = mpsc::channel(CHANNEL_BATCHES);
    let (batches_tx, batches_rx) = mpsc::channel(CHANNEL_BATCHES);
    let (chunks_tx, chunks_rx) = mpsc::channel(CHANNEL_BATCHES * 4);

    // Every server is scanned at once (a cluster's shards in parallel); pages carry the index
    // of the server that holds their keys.
    let scanner = {
        let scans =
            conns.iter().cloned().enumerate().map(|(node, conn)| {
                scan(conn, node, options.match_patterns.clone(), keys_tx.clone())
            });
        let scans = futures::future::try_join_all(scans);
        drop(keys_tx);
        tokio::spawn(async move { scans.await.map(|_| ()) })
    };
    let reader = tokio::spawn(read(conns, redacted.clone(), keys_rx, batches_tx));
    let encoder = {
        let limits = (options.part_max_records, options.part_max_bytes);
        let counter = progress.counter();
        tokio::task::spawn_blocking(move || encode(batches_rx, chunks_tx, limits, &counter))
    };
    let uploader = tokio::spawn(upload(Arc::clone(&storage), folder.clone(), chunks_rx));

    let scanned = joined("scan", scanner.await);
    let read_result = joined("read", reader.await);
    let encoded = joined("encode", encoder.await);
    let uploaded = joined("upload", uploader.await);
    progress.finish();
    // The first real error wins; `Cancelled` only says a neighbour stopped.
    let (encoded, encode_error) = split(encoded);
    let (uploaded, upload_error) = split(uploaded);
    let errors = [scanned.err(), read_result.err(), encode_error, upload_error];
    if let Some(error) = pick_error(errors) {
        tracing::error!(backup = %url, error = %error, "backup failed; no manifest written");
        return Err(error);
    }
    let (Some((counts, skipped)), Some(parts)) = (encoded, uploaded) else {
        return Err(JobError::Task {
            stage: "backup",
            reason: "a stage ended without a result".to_owned(),
        });
    };

    let finished_at = Utc::now();
    let duration_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
    let source = Source {
        url: redacted,
        server,
        redis_version,
        from_replica: options.from_replica,
    };
    let manifest = Manifest {
        format: FORMAT_NAME.to_owned(),
        format_version: FORMAT_VERSION,
        run_id: run_id.clone(),
        point_in_time: false,
        note: NOT_POINT_IN_TIME_NOTE.to_owned(),
        source: source.clone(),
        match_patterns: options.match_patterns.clone(),
        keys: parts.iter().map(|p| p.records).sum(),
        bytes: parts.iter().map(|p| p.bytes).sum(),
        counts: counts.clone(),
        skipped: skipped.clone(),
        timings: Timings {
            started_at: started_at.to_rfc3339(),
            finished_at: finished_at.to_rfc3339(),
            duration_ms,
        },
        parts,
    };
    let json = manifest.to_json().map_err(|reason| JobError::Format {
        context: options.to.url_of(&format!("{folder}/{MANIFEST_NAME}")),
        reason,
    })?;
    storage
        .put(&format!("{folder}/{MANIFEST_NAME}"), json)
        .await?;
    tracing::info!(backup = %url, keys = manifest.keys, bytes = manifest.bytes, duration_ms, "backup complete");
    Ok(BackupSummary {
        backup: url,
        run_id,
        keys: manifest.keys,
        bytes: manifest.bytes,
        parts: manifest.parts.len(),
        counts,
        skipped,
        source,
        started_at: manifest.timings.started_at,
        duration_ms,
    })
}

/// Stage 1: one SCAN pass over server `node`. A single pattern goes to the server (MATCH);
/// several are applied here, so one pass serves them all and no key is backed up twice.
async fn scan(
    conn: Connection,
    node: usize,
    patterns: Vec<String>,
    tx: mpsc::Sender<(usize, Vec<Vec<u8>>)>,
) -> Result<()> {
    let server_pattern = match patterns.as_slice() {
        [one] => Some(one.as_str()),
        _ => None,
    };
    let filter = patterns.len() > 1;
    let mut cursor = 0;
    loop {
        let (next, mut keys) = redis_io::scan_page(&conn, cursor, server_pattern).await?;
        if filter {
            keys.retain(|k| patterns.iter().any(|p| glob_match(p.as_bytes(), k)));
        }
        if !keys.is_empty() && tx.send((node, keys)).await.is_err() {
            return Err(JobError::Cancelled { stage: "scan" });
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// Stage 2: pipelined reads, a few batches in flight, each from the server its keys came from.
async fn read(
    conns: Vec<Connection>,
    url: String,
    rx: mpsc::Receiver<(usize, Vec<Vec<u8>>)>,
    tx: mpsc::Sender<ReadBatch>,
) -> Result<()> {
    let keys =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|k| (k, rx)) });
    let mut batches = std::pin::pin!(
        keys.map(|(node, keys)| {
            let conn = conns.get(node).cloned();
            let url = url.clone();
            async move {
                let conn = conn.ok_or_else(|| JobError::Task {
                    stage: "read",
                    reason: format!("no connection for server {node}"),
                })?;
                redis_io::read_batch(&conn, &url, keys).await
            }
        })
        .buffered(READ_CONCURRENCY)
    );
    while let Some(batch) = batches.next().await {
        if tx.send(batch?).await.is_err() {
            return Err(JobError::Cancelled { stage: "read" });
        }
    }
    Ok(())
}

/// What the encoder hands the uploader.
#[derive(Debug)]
enum Chunk {
    Start(String),
    Data(bytes::Bytes),
    End(PartInfo),
}

/// Stage 3 (a blocking thread: JSON and zstd are CPU work): records into parts.
fn encode(
    mut rx: mpsc::Receiver<ReadBatch>,
    tx: mpsc::Sender<Chunk>,
    (max_records, max_bytes): (u64, u64),
    progress: &AtomicU64,
) -> Result<(Counts, Skipped)> {
    let cancelled = || JobError::Cancelled { stage: "encode" };
    let format_error = |reason: String| JobError::Format {
        context: "encoding the backup".to_owned(),
        reason,
    };
    let mut counts = Counts::default();
    let mut skipped = Skipped::default();
    let mut part: Option<PartWriter> = None;
    let mut next_index = 0;
    while let Some(batch) = rx.blocking_recv() {
        skipped.vanished += batch.vanished;
        for (key, kind) in &batch.unsupported {
            log_unsupported(skipped.unsupported, key, kind);
            skipped.unsupported += 1;
        }
        progress.fetch_add(
            batch.vanished + batch.unsupported.len() as u64,
            Ordering::Relaxed,
        );
        for record in &batch.records {
            let writer = match &mut part {
                Some(writer) => writer,
                None => {
                    let name = part_name(next_index);
                    next_index += 1;
                    tx.blocking_send(Chunk::Start(name.clone()))
                        .map_err(|_| cancelled())?;
                    part.insert(PartWriter::new(name).map_err(format_error)?)
                }
            };
            writer.push(record).map_err(format_error)?;
            counts.add(record);
            if (writer.records() >= max_records || writer.uncompressed() >= max_bytes)
                && let Some(full) = part.take()
            {
                finish_part(full, &tx)?;
            }
        }
        progress.fetch_add(batch.records.len() as u64, Ordering::Relaxed);
        if let Some(writer) = &mut part {
            let data = writer.take_output();
            if !data.is_empty() {
                tx.blocking_send(Chunk::Data(data))
                    .map_err(|_| cancelled())?;
            }
        }
    }
    if let Some(last) = part.take() {
        finish_part(last, &tx)?;
    }
    Ok((counts, skipped))
}

fn finish_part(writer: PartWriter, tx: &mpsc::Sender<Chunk>) -> Result<()> {
    let name = writer.name().to_owned();
    let (tail, info) = writer.finish().map_err(|reason| JobError::Format {
        context: format!("encoding {name}"),
        reason,
    })?;
    let cancelled = |_| JobError::Cancelled { stage: "encode" };
    tx.blocking_send(Chunk::Data(tail)).map_err(cancelled)?;
    tx.blocking_send(Chunk::End(info)).map_err(cancelled)
}

fn log_unsupported(seen: u64, key: &Blob, kind: &str) {
    if seen < UNSUPPORTED_LOGGED {
        tracing::warn!(key = %key.display(), r#type = kind, "key of an unsupported type is not backed up");
    } else if seen == UNSUPPORTED_LOGGED {
        tracing::warn!("more keys of unsupported types; only counting them from now on");
    }
}

/// Stage 4: streams parts to storage. On any failure (here or upstream) the open upload is
/// aborted, so nothing half-written is left under a part's name.
async fn upload(
    storage: Arc<Storage>,
    folder: String,
    mut rx: mpsc::Receiver<Chunk>,
) -> Result<Vec<PartInfo>> {
    let mut parts = Vec::new();
    let mut open = None;
    let result = async {
        while let Some(chunk) = rx.recv().await {
            match chunk {
                Chunk::Start(name) => {
                    open = Some(storage.upload(&format!("{folder}/{name}")).await?);
                }
                Chunk::Data(data) => {
                    if let Some(upload) = &mut open {
                        upload.write(data).await?;
                    }
                }
                Chunk::End(info) => {
                    if let Some(upload) = open.take() {
                        upload.finish().await?;
                        tracing::debug!(part = %info.name, records = info.records, bytes = info.bytes, "part stored");
                        parts.push(info);
                    }
                }
            }
        }
        if open.is_some() {
            return Err(JobError::Cancelled { stage: "upload" });
        }
        Ok(())
    }
    .await;
    if let Some(upload) = open.take()
        && let Err(e) = upload.abort().await
    {
        tracing::warn!(error = %e, "aborting the unfinished part failed");
    }
    result.map(|()| parts)
}

fn joined<T>(
    stage: &'static str,
    outcome: std::result::Result<Result<T>, tokio::task::JoinError>,
) -> Result<T> {
    outcome.unwrap_or_else(|e| {
        Err(JobError::Task {
            stage,
            reason: e.to_string(),
        })
    })
}

fn split<T>(result: Result<T>) -> (Option<T>, Option<JobError>) {
    match result {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e)),
    }
}

fn pick_error(errors: [Option<JobError>; 4]) -> Option<JobError> {
    let mut cancelled = None;
    for error in errors.into_iter().flatten() {
        match error {
            JobError::Cancelled { .. } => cancelled = cancelled.or(Some(error)),
            real => return Some(real),
        }
    }
    cancelled
}
