//! `restore`: checks the whole backup first (every part's size, sha256, decodability and count
//! against the manifest), and only then writes, in pipelined batches. Expiry is restored as an
//! absolute time, so records that expired since the backup are skipped, never resurrected.
//!
//! Modes: `overwrite` replaces keys; `missing` writes only keys that do not exist; `merge` adds
//! the integer counters of `ec`/`gc` keys (INCRBY), unions the HyperLogLogs of `uc`/`gu` keys
//! (PFMERGE), and treats every other key as `missing` (a dedup flag, an assignment or an
//! experiment hash has no meaningful sum, and the live value is the newer one).

use std::fmt;
use std::ops::ControlFlow;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use abstore::connection::{Connection, Retry};
use abstore::keys::KeyKind;
use chrono::Utc;
use futures::StreamExt;
use redis::{Pipeline, Value};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::archive::Backup;
use crate::error::{JobError, Result};
use crate::format::{Blob, Data, Record, kind_of};
use crate::progress::Progress;
use crate::redis::key_error;
use crate::storage::{Location, StorageOptions};

/// Records written per pipeline.
pub const BATCH_RECORDS: usize = 500;
/// Pipelines in flight on the connection: enough to keep Redis busy while replies travel back.
/// Records of a backup are distinct keys, so batches commute.
const WRITES_IN_FLIGHT: usize = 4;
/// Decoded batches waiting for a writer: bounds memory to a few batches.
const QUEUED_BATCHES: usize = 8;
/// Items per HSET/SADD/RPUSH/ZADD, so a huge collection becomes several moderate commands.
const COLLECTION_CHUNK: usize = 1000;
/// Scratch key used inside one MULTI/EXEC (never visible outside it: EXEC runs atomically).
const SCRATCH_KEY_PREFIX: &str = "abstore:restore-scratch:";

/// How restored keys meet keys that already exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RestoreMode {
    Overwrite,
    Missing,
    Merge,
}

impl RestoreMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RestoreMode::Overwrite => "overwrite",
            RestoreMode::Missing => "missing",
            RestoreMode::Merge => "merge",
        }
    }
}

impl fmt::Display for RestoreMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RestoreMode {
    type Err = JobError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "overwrite" => Ok(RestoreMode::Overwrite),
            "missing" => Ok(RestoreMode::Missing),
            "merge" => Ok(RestoreMode::Merge),
            other => Err(JobError::InvalidArgument {
                field: "mode",
                reason: format!("{other:?} is not overwrite, missing or merge"),
            }),
        }
    }
}

/// What to restore where.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// A backup folder, or a destination (then its newest complete backup).
    pub from: Location,
    pub storage: StorageOptions,
    pub redis_url: String,
    pub mode: RestoreMode,
    /// Report what would be written and write nothing.
    pub dry_run: bool,
    pub batch_records: usize,
}

impl RestoreOptions {
    pub fn new(from: Location, redis_url: impl Into<String>, mode: RestoreMode) -> RestoreOptions {
        RestoreOptions {
            from,
            storage: StorageOptions::default(),
            redis_url: redis_url.into(),
            mode,
            dry_run: false,
            batch_records: BATCH_RECORDS,
        }
    }
}

/// What a restore did (or, with `dry_run`, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RestoreSummary {
    pub backup: String,
    pub mode: Option<RestoreMode>,
    pub dry_run: bool,
    pub keys_in_backup: u64,
    /// Keys created or replaced.
    pub written: u64,
    /// Keys left as they were because they exist (`missing`, and `merge` for other kinds).
    pub kept: u64,
    /// Counters added and HyperLogLogs unioned (`merge`).
    pub merged: u64,
    /// Records whose expiry passed since the backup: not restored.
    pub expired: u64,
    pub duration_ms: u64,
}

pub async fn run(options: &RestoreOptions) -> Result<RestoreSummary> {
    let clock = Instant::now();
    if options.batch_records == 0 {
        return Err(JobError::InvalidArgument {
            field: "batch size",
            reason: "must be positive".to_owned(),
        });
    }
    let backup = Backup::open(&options.from, &options.storage).await?;
    let url = backup.url();
    tracing::info!(backup = %url, keys = backup.manifest.keys, "verifying every part before writing");
    backup
        .verify_all(|part| tracing::debug!(part = %part.name, "part verified"))
        .await?;

    let conn = Connection::open(&options.redis_url).await?;
    let redis_url = conn.spec().redacted_url.clone();
    let writer = Writer {
        conn,
        url: redis_url.clone(),
        mode: options.mode,
        scratch: format!("{SCRATCH_KEY_PREFIX}{}", uuid::Uuid::new_v4().simple()),
    };
    tracing::info!(backup = %url, redis = %redis_url, mode = %options.mode, dry_run = options.dry_run, "restore started");
    let mut summary = RestoreSummary {
        backup: url.clone(),
        mode: Some(options.mode),
        dry_run: options.dry_run,
        keys_in_backup: backup.manifest.keys,
        ..RestoreSummary::default()
    };
    let progress = Progress::start("restore", Some(backup.manifest.keys));
    let backup = Arc::new(backup);
    let (tx, rx) = mpsc::channel(QUEUED_BATCHES);
    let producer = tokio::spawn(produce(Arc::clone(&backup), options.batch_records, tx));
    let batches =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    let writer = &writer;
    let dry_run = options.dry_run;
    let writes = batches
        .map(|batch: Result<Vec<Record>>| async move {
            let batch = batch?;
            let now_ms = Utc::now().timestamp_millis();
            let live: Vec<&Record> = batch.iter().filter(|r| !r.is_expired(now_ms)).collect();
            let mut tally = Tally {
                expired: (batch.len() - live.len()) as u64,
                ..Tally::default()
            };
            if dry_run {
                writer.classify(&live, &mut tally).await?;
            } else {
                writer.write(&live, &mut tally).await?;
            }
            Ok::<_, JobError>((batch.len() as u64, tally))
        })
        .buffered(WRITES_IN_FLIGHT);
    // Boxed so it can be dropped before the producer is awaited: dropping it closes the
    // channel, which stops the producer after a failure.
    let mut writes = Box::pin(writes);
    let mut result = Ok(());
    while let Some(outcome) = writes.next().await {
        match outcome {
            Ok((records, tally)) => {
                tally.add_to(&mut summary);
                progress.add(records);
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    drop(writes);
    if let Err(e) = producer.await {
        result = result.and(Err(JobError::Task {
            stage: "restore",
            reason: e.to_string(),
        }));
    }
    progress.finish();
    result?;
    summary.duration_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(backup = %url, written = summary.written, kept = summary.kept, merged = summary.merged, expired = summary.expired, "restore complete");
    Ok(summary)
}

/// Downloads and decodes the parts in order (again: the objects could have changed since
/// verification, and holding every verified part would not fit in memory), feeding batches of
/// records to the writers. An error is sent down the channel in order, after the batches before it.
async fn produce(backup: Arc<Backup>, batch: usize, tx: mpsc::Sender<Result<Vec<Record>>>) {
    for part in &backup.manifest.parts {
        let data = match backup.fetch_part(part).await {
            Ok(data) => data,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let sender = tx.clone();
        let decoded = backup
            .decode_part(part, data, batch, move |records| {
                match sender.blocking_send(Ok(records)) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(_) => ControlFlow::Break(()),
                }
            })
            .await;
        if let Err(e) = decoded {
            let _ = tx.send(Err(e)).await;
            return;
        }
        if tx.is_closed() {
            return;
        }
    }
}

/// What one batch did, added to the summary in order.
#[derive(Debug, Default)]
struct Tally {
    written: u64,
    kept: u64,
    merged: u64,
    expired: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.written += other.written;
        self.kept += other.kept;
        self.merged += other.merged;
        self.expired += other.expired;
    }

    fn add_to(&self, summary: &mut RestoreSummary) {
        summary.written += self.written;
        summary.kept += self.kept;
        summary.merged += self.merged;
        summary.expired += self.expired;
    }
}

/// What a record's reply means once it succeeded.
#[derive(Clone, Copy, Debug)]
enum Effect {
    /// OK / 1 → written; nil / 0 → the key existed and was kept.
    Write,
    Merge,
}

/// Where to find a record's outcome among the pipeline's replies.
#[derive(Debug)]
struct Expect {
    /// The record's replies: `start..end`.
    start: usize,
    end: usize,
    /// The deciding reply: `(index, Some(i))` is element `i` of the EXEC reply at `index`.
    decisive: (usize, Option<usize>),
    command: &'static str,
    effect: Effect,
}

/// A pipeline being built, with its command count (reply indices follow command order).
struct Batch {
    pipe: Pipeline,
    count: usize,
}

impl Batch {
    /// Adds a command and returns the index of its reply.
    fn add(&mut self, cmd: redis::Cmd) -> usize {
        self.pipe.add_command(cmd);
        self.count += 1;
        self.count - 1
    }
}

struct Writer {
    conn: Connection,
    url: String,
    mode: RestoreMode,
    scratch: String,
}

/// How one record is merged in `merge` mode.
enum MergeAs<'a> {
    Add(i64),
    Union(&'a [u8]),
    Missing,
}

fn merge_as(record: &Record) -> MergeAs<'_> {
    let Data::String(Blob(value)) = &record.value else {
        return MergeAs::Missing;
    };
    match KeyKind::from_tag(kind_of(&record.key.0)) {
        Some(KeyKind::EvaluationCount | KeyKind::GoalCount) => std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(MergeAs::Missing, MergeAs::Add),
        Some(KeyKind::EvaluationUsers | KeyKind::GoalUsers) => MergeAs::Union(value),
        _ => MergeAs::Missing,
    }
}

impl Writer {
    /// Writes a batch: in one pipeline, or on a cluster one per hash slot (a pipeline, and a
    /// MULTI/EXEC with its scratch key, must stay in one slot), sent concurrently.
    async fn write(&self, records: &[&Record], summary: &mut Tally) -> Result<()> {
        if !self.conn.is_cluster() {
            return self.write_slot(records, &self.scratch, summary).await;
        }
        let groups = by_slot(records);
        let tallies = futures::future::try_join_all(groups.into_iter().map(|(slot, group)| {
            let scratch = format!("{}{{{}}}", self.scratch, tag_of_slot(slot));
            async move {
                let mut tally = Tally::default();
                self.write_slot(&group, &scratch, &mut tally).await?;
                Ok::<_, JobError>(tally)
            }
        }))
        .await?;
        tallies.iter().for_each(|t| summary.add(t));
        Ok(())
    }

    async fn write_slot(
        &self,
        records: &[&Record],
        scratch: &str,
        summary: &mut Tally,
    ) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut batch = Batch {
            pipe: redis::pipe(),
            count: 0,
        };
        let expects: Vec<Expect> = records
            .iter()
            .map(|r| self.plan(&mut batch, r, scratch))
            .collect();
        let mut pipe = batch.pipe;
        pipe.ignore_errors();
        // INCRBY applied twice would double count, so merge never resends blindly.
        let retry = match self.mode {
            RestoreMode::Merge => Retry::NotIdempotent,
            _ => Retry::Idempotent,
        };
        let replies: Vec<Value> = self.conn.exec(&pipe, retry, "restore").await?;
        for (record, expect) in records.iter().zip(expects) {
            self.account(record, &expect, &replies, summary)?;
        }
        Ok(())
    }

    /// Adds a record's commands to the batch and says where its outcome will be.
    fn plan(&self, b: &mut Batch, record: &Record, scratch: &str) -> Expect {
        let start = b.count;
        let key = &record.key.0;
        let at = record.expire_at_ms;
        let merge = match self.mode {
            RestoreMode::Merge => merge_as(record),
            _ => MergeAs::Missing,
        };
        let (decisive, command, effect) = match (merge, self.mode, &record.value) {
            (MergeAs::Add(n), _, _) => {
                let index = b.add(redis::cmd("INCRBY").arg(key).arg(n).to_owned());
                if let Some(at) = at {
                    // NX: a live key keeps its own expiry (same bucket, same deadline).
                    b.add(
                        redis::cmd("PEXPIREAT")
                            .arg(key)
                            .arg(at)
                            .arg("NX")
                            .to_owned(),
                    );
                }
                ((index, None), "INCRBY", Effect::Merge)
            }
            (MergeAs::Union(value), _, _) => {
                b.add(redis::cmd("MULTI"));
                b.add(redis::cmd("SET").arg(scratch).arg(value).to_owned());
                b.add(redis::cmd("PFMERGE").arg(key).arg(scratch).to_owned());
                b.add(redis::cmd("DEL").arg(scratch).to_owned());
                if let Some(at) = at {
                    b.add(
                        redis::cmd("PEXPIREAT")
                            .arg(key)
                            .arg(at)
                            .arg("NX")
                            .to_owned(),
                    );
                }
                let exec = b.add(redis::cmd("EXEC"));
                ((exec, None), "PFMERGE", Effect::Merge)
            }
            (MergeAs::Missing, RestoreMode::Overwrite, Data::String(value)) => {
                let mut cmd = redis::cmd("SET");
                cmd.arg(key).arg(&value.0);
                if let Some(at) = at {
                    cmd.arg("PXAT").arg(at);
                }
                let index = b.add(cmd);
                ((index, None), "SET", Effect::Write)
            }
            (MergeAs::Missing, _, Data::String(value)) => {
                let mut cmd = redis::cmd("SET");
                cmd.arg(key).arg(&value.0).arg("NX");
                if let Some(at) = at {
                    cmd.arg("PXAT").arg(at);
                }
                let index = b.add(cmd);
                ((index, None), "SET NX", Effect::Write)
            }
            (MergeAs::Missing, RestoreMode::Overwrite, data) => {
                // DEL and the writes in one transaction: readers never see a half-restored key.
                b.add(redis::cmd("MULTI"));
                b.add(redis::cmd("DEL").arg(key).to_owned());
                for cmd in collection_commands(key, data) {
                    b.add(cmd);
                }
                if let Some(at) = at {
                    b.add(redis::cmd("PEXPIREAT").arg(key).arg(at).to_owned());
                }
                let exec = b.add(redis::cmd("EXEC"));
                ((exec, None), "MULTI/EXEC", Effect::Write)
            }
            (MergeAs::Missing, _, data) => {
                // Build in a scratch key, then RENAMENX: atomic "create only if absent" for
                // collections, which have no NX form of their own.
                b.add(redis::cmd("MULTI"));
                b.add(redis::cmd("DEL").arg(scratch).to_owned());
                let mut queued = 1;
                for cmd in collection_commands(scratch.as_bytes(), data) {
                    b.add(cmd);
                    queued += 1;
                }
                if let Some(at) = at {
                    b.add(redis::cmd("PEXPIREAT").arg(scratch).arg(at).to_owned());
                    queued += 1;
                }
                b.add(redis::cmd("RENAMENX").arg(scratch).arg(key).to_owned());
                b.add(redis::cmd("DEL").arg(scratch).to_owned());
                let exec = b.add(redis::cmd("EXEC"));
                ((exec, Some(queued)), "RENAMENX", Effect::Write)
            }
        };
        Expect {
            start,
            end: b.count,
            decisive,
            command,
            effect,
        }
    }

    fn account(
        &self,
        record: &Record,
        expect: &Expect,
        replies: &[Value],
        summary: &mut Tally,
    ) -> Result<()> {
        let fail = |reason: String| key_error(&self.url, expect.command, &record.key.0, reason);
        let own = replies
            .get(expect.start..expect.end)
            .ok_or_else(|| fail("fewer replies than commands".to_owned()))?;
        for reply in own {
            let nested = match reply {
                Value::Array(items) => items.as_slice(),
                other => std::slice::from_ref(other),
            };
            if let Some(Value::ServerError(e)) =
                nested.iter().find(|v| matches!(v, Value::ServerError(_)))
            {
                return Err(fail(e.to_string()));
            }
        }
        let (index, inner) = expect.decisive;
        let reply = replies.get(index);
        let decisive = match (reply, inner) {
            (Some(Value::Array(items)), Some(i)) => items.get(i),
            (reply, None) => reply,
            (Some(other), Some(_)) => {
                return Err(fail(format!("unexpected EXEC reply {other:?}")));
            }
            (None, Some(_)) => None,
        };
        match (expect.effect, decisive) {
            (Effect::Merge, _) => summary.merged += 1,
            (Effect::Write, Some(Value::Nil | Value::Int(0))) => summary.kept += 1,
            (Effect::Write, Some(_)) => summary.written += 1,
            (Effect::Write, None) => return Err(fail("no reply".to_owned())),
        }
        Ok(())
    }

    /// Dry run: read-only EXISTS checks decide what would be written, kept or merged (on a
    /// cluster, one pipeline per hash slot).
    async fn classify(&self, records: &[&Record], summary: &mut Tally) -> Result<()> {
        if self.mode == RestoreMode::Overwrite {
            summary.written += records.len() as u64;
            return Ok(());
        }
        if !self.conn.is_cluster() {
            return self.classify_slot(records, summary).await;
        }
        let tallies = futures::future::try_join_all(by_slot(records).into_iter().map(
            |(_, group)| async move {
                let mut tally = Tally::default();
                self.classify_slot(&group, &mut tally).await?;
                Ok::<_, JobError>(tally)
            },
        ))
        .await?;
        tallies.iter().for_each(|t| summary.add(t));
        Ok(())
    }

    async fn classify_slot(&self, records: &[&Record], summary: &mut Tally) -> Result<()> {
        let mut pipe = redis::pipe();
        for record in records {
            pipe.cmd("EXISTS").arg(&record.key.0);
        }
        let exists: Vec<i64> = self.conn.exec(&pipe, Retry::Idempotent, "EXISTS").await?;
        for (record, exists) in records.iter().zip(exists) {
            let merges =
                self.mode == RestoreMode::Merge && !matches!(merge_as(record), MergeAs::Missing);
            if merges {
                summary.merged += 1;
            } else if exists > 0 {
                summary.kept += 1;
            } else {
                summary.written += 1;
            }
        }
        Ok(())
    }
}

/// Records grouped by the hash slot of their key (order kept within a slot).
fn by_slot<'a>(records: &[&'a Record]) -> Vec<(u16, Vec<&'a Record>)> {
    let mut groups: std::collections::BTreeMap<u16, Vec<&'a Record>> = Default::default();
    for record in records {
        groups
            .entry(abstore::keys::key_slot(&record.key.0))
            .or_default()
            .push(record);
    }
    groups.into_iter().collect()
}

/// A short hash tag whose slot is `slot`: the scratch key of a MULTI/EXEC must be in the slot
/// of the key it fills. Found once for every slot (about 180 000 CRC16s of short strings).
fn tag_of_slot(slot: u16) -> &'static str {
    static TAGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        let slots = usize::from(abstore::keys::CLUSTER_SLOTS);
        let mut tags = vec![String::new(); slots];
        let mut missing = slots;
        let mut n: u64 = 0;
        while missing > 0 {
            let tag = format!("s{n}");
            let at = usize::from(abstore::keys::key_slot(tag.as_bytes()));
            if let Some(entry) = tags.get_mut(at)
                && entry.is_empty()
            {
                *entry = tag;
                missing -= 1;
            }
            n += 1;
        }
        tags
    });
    tags.get(usize::from(slot)).map_or("", String::as_str)
}

/// The commands that fill `key` with a collection, in chunks.
fn collection_commands(key: &[u8], data: &Data) -> Vec<redis::Cmd> {
    let chunked = |name: &str, args: Vec<&[u8]>, per_item: usize| {
        args.chunks(COLLECTION_CHUNK * per_item)
            .map(|chunk| {
                let mut cmd = redis::cmd(name);
                cmd.arg(key);
                for arg in chunk {
                    cmd.arg(*arg);
                }
                cmd
            })
            .collect::<Vec<_>>()
    };
    match data {
        Data::String(value) => vec![redis::cmd("SET").arg(key).arg(&value.0).to_owned()],
        Data::Hash(pairs) => chunked(
            "HSET",
            pairs
                .iter()
                .flat_map(|(f, v)| [f.0.as_slice(), v.0.as_slice()])
                .collect(),
            2,
        ),
        Data::Set(members) => chunked("SADD", members.iter().map(|m| m.0.as_slice()).collect(), 1),
        Data::List(items) => chunked("RPUSH", items.iter().map(|m| m.0.as_slice()).collect(), 1),
        Data::Zset(members) => chunked(
            "ZADD",
            members
                .iter()
                .flat_map(|(m, score)| [score.as_bytes(), m.0.as_slice()])
                .collect(),
            2,
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_has_a_scratch_tag_in_it() {
        for slot in [0, 1, 5461, 12182, 16383] {
            let tag = tag_of_slot(slot);
            assert!(!tag.is_empty());
            assert_eq!(abstore::keys::key_slot(tag.as_bytes()), slot);
            let scratch = format!("{SCRATCH_KEY_PREFIX}abc{{{tag}}}");
            assert_eq!(abstore::keys::key_slot(scratch.as_bytes()), slot);
        }
    }
}
