//! `prune`: one SCAN pass that deletes the counter keys (`ec`/`uc`/`gc`/`gu`, hourly or daily
//! buckets, any environment) whose bucket started before `now − retention`. The decision comes
//! from the key name alone, through the `abstore` key schema: anything that does not parse as a
//! counter is counted, reported and never touched.
//!
//! Each page is classified and its expired keys UNLINKed in pipelines while the next page is
//! fetched, so memory is two pages whatever the keyspace size; an optional token bucket paces
//! the pass. Writers already set a TTL of bucket start + retention on every counter: prune is
//! the safety net for keys that lost it (other writers, hand edits, a lowered retention).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use abstore::connection::{Connection, Endpoint, HostPort, Retry};
use abstore::keys::{BucketTimestamp, CounterKind, Key, KeyError, KeyKind};
use chrono::{DateTime, SecondsFormat, Utc};
use redis::Value;
use serde::Serialize;

use crate::error::{JobError, Result};
use crate::progress::Progress;
use crate::redis::{self as redis_io, key_error};

/// Bucketeer's RFC: counters are kept for 31 days.
pub const DEFAULT_RETENTION_DAYS: u32 = abstore::counters::DEFAULT_RETENTION_DAYS;
/// Keys per UNLINK pipeline. Redis reads a pipeline 16 KiB at a time and serves other clients in
/// between, so a batch this size costs other clients well under a millisecond.
pub const DELETE_BATCH: usize = 500;
/// SCAN COUNT without a rate limit: few round trips, but each call holds the server for about
/// 0.7 ms on a large keyspace (measured: SCAN costs ~0.7 µs per key returned).
pub const SCAN_COUNT: usize = redis_io::SCAN_COUNT;
/// Under a rate limit, commands are kept small so that none holds the server for more than about
/// 0.1 ms: SCAN COUNT and UNLINKs per pipeline.
pub const PACED_COMMAND_KEYS: usize = 100;
/// How far ahead of this machine's clock `--now` may be. A later "now" would move the cutoff
/// forward and delete data that is still within retention; an earlier one only deletes less.
pub const MAX_NOW_AHEAD: Duration = Duration::from_secs(300);
/// Examples of keys left alone shown in the summary, per reason.
pub const EXAMPLES: usize = 3;
/// Days listed one by one in the summary (the newest); older days are added up, so the line
/// stays within Kubernetes' 4 KiB termination message whatever the keyspace holds.
pub const SUMMARY_DAYS: usize = 40;
/// A SCAN cursor means nothing on another server: when the primary changes (failover), the pass
/// starts again from cursor 0 on the new one, at most this many times.
pub const MAX_SCAN_RESTARTS: u32 = 3;
/// What an idle rate limiter saves up, as a fraction of a second's allowance.
const BURST_PER_SEC: u64 = 10;
/// Characters of a key shown in an example.
const EXAMPLE_CHARS: usize = 120;
const DAY_SECS: i64 = 86_400;

/// What to prune and how.
#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// `redis://`, `rediss://` or `redis+sentinel://` URL (always the primary).
    pub redis_url: String,
    /// Buckets that started more than this many days before `now` are deleted; at least 1.
    pub retention_days: u32,
    /// Report what would be deleted, by kind and day; delete nothing.
    pub dry_run: bool,
    /// The time the cutoff is measured from; `None` is this machine's clock.
    pub now: Option<DateTime<Utc>>,
    /// Keys per second at most, counting every key SCAN returns and every key UNLINKed (the
    /// server's work is about the same per key for both); 0 is unlimited.
    pub max_keys_per_sec: u64,
    /// Keys per UNLINK pipeline.
    pub batch_size: usize,
}

impl PruneOptions {
    /// The default retention, measured from now, unlimited rate.
    pub fn new(redis_url: impl Into<String>) -> PruneOptions {
        PruneOptions {
            redis_url: redis_url.into(),
            retention_days: DEFAULT_RETENTION_DAYS,
            dry_run: false,
            now: None,
            max_keys_per_sec: 0,
            batch_size: DELETE_BATCH,
        }
    }
}

/// Buckets that start strictly before this instant are past retention. Writers expire a counter
/// at bucket start + retention, so these are exactly the counters whose TTL has run out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionCutoff {
    secs: i64,
}

impl RetentionCutoff {
    /// `now − retention_days` (UTC). Refuses a retention of 0, which would delete every counter.
    pub fn new(now: DateTime<Utc>, retention_days: u32) -> Result<RetentionCutoff> {
        if retention_days == 0 {
            return Err(JobError::InvalidArgument {
                field: "--retention-days",
                reason: "must be at least 1 (0 would delete every counter, including today's)"
                    .to_owned(),
            });
        }
        // Cannot overflow: u32::MAX days is about 3.7e14 seconds.
        let secs = now.timestamp() - i64::from(retention_days) * DAY_SECS;
        Ok(RetentionCutoff { secs })
    }

    /// Unix seconds of the cutoff (may be negative for huge retentions: nothing is expired).
    pub fn secs(self) -> i64 {
        self.secs
    }

    pub fn is_expired(self, bucket: BucketTimestamp) -> bool {
        bucket.secs() < self.secs
    }
}

/// What prune does with one key, decided from its name alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A counter whose bucket started before the cutoff: it goes.
    Expired {
        kind: CounterKind,
        bucket: BucketTimestamp,
    },
    /// A counter still within retention.
    Kept,
    /// An ABStore key that has no time bucket (dedup flag, assignment, experiment, temp key).
    NotDayKeyed(KeyKind),
    /// Not an ABStore key: foreign, malformed, binary, absurd timestamp.
    Unparsed(KeyError),
}

/// Classifies a raw key as SCAN returned it.
pub fn classify(raw: &[u8], cutoff: RetentionCutoff) -> Verdict {
    match Key::parse(raw) {
        Ok(Key::Counter(counter)) if cutoff.is_expired(counter.bucket()) => Verdict::Expired {
            kind: counter.kind(),
            bucket: counter.bucket(),
        },
        Ok(Key::Counter(_)) => Verdict::Kept,
        Ok(other) => Verdict::NotDayKeyed(other.kind()),
        Err(error) => Verdict::Unparsed(error),
    }
}

/// Parses `--now`: RFC 3339 with any offset, e.g. `2024-03-15T12:00:00Z`.
pub fn parse_now(text: &str) -> std::result::Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{text:?} is not an RFC 3339 time (e.g. 2024-03-15T12:00:00Z): {e}"))
}

/// What a finished prune reports (the summary line). In a dry run `by_kind` and `by_day` count
/// what would be deleted; otherwise what UNLINK really removed.
#[derive(Clone, Debug, Serialize)]
pub struct PruneSummary {
    /// The Redis URL, password redacted.
    pub redis: String,
    /// The server the pass ended on (the primary).
    pub server: String,
    pub dry_run: bool,
    pub now: String,
    pub retention_days: u32,
    /// Buckets starting before this were expired.
    pub cutoff: String,
    /// Keys SCAN returned (a key SCAN returns twice is counted twice).
    pub scanned: u64,
    /// Counters within retention.
    pub kept: u64,
    /// Counters past the cutoff: deleted, already gone, or (dry run) that would be deleted.
    pub expired: u64,
    /// Keys UNLINK removed (its reply was 1); 0 in a dry run.
    pub deleted: u64,
    /// Expired keys that were gone when UNLINK came (their TTL ran out, someone else deleted
    /// them, or SCAN returned them twice).
    pub already_gone: u64,
    /// Deleted (or, in a dry run, expired) keys by kind tag.
    pub by_kind: BTreeMap<String, u64>,
    /// Deleted (or would-be-deleted) keys by UTC day of their bucket, the newest
    /// [`SUMMARY_DAYS`] days.
    pub by_day: BTreeMap<String, u64>,
    /// The days older than those in `by_day`, added up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub earlier_days: Option<EarlierDays>,
    pub not_day_keyed: NotDayKeyed,
    pub unparsed: Unparsed,
    /// Times the pass started over on a new primary after a failover.
    pub scan_restarts: u32,
    /// 0 is unlimited.
    pub max_keys_per_sec: u64,
    pub started_at: String,
    pub duration_ms: u64,
}

/// Deleted keys of the days not listed one by one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EarlierDays {
    pub days: u64,
    pub keys: u64,
    /// The newest of these days.
    pub through: String,
}

/// Valid ABStore keys without a time bucket, left alone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NotDayKeyed {
    pub keys: u64,
    pub by_kind: BTreeMap<String, u64>,
    /// A few of them, lossy UTF-8, cut to 120 characters.
    pub examples: Vec<String>,
}

/// Keys the schema does not recognise, left alone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Unparsed {
    pub keys: u64,
    /// By parse error category (`unknown_kind`, `invalid_bucket`, `not_utf8` …).
    pub by_reason: BTreeMap<String, u64>,
    /// A few parse errors, each naming the key (escaped, cut) and what is wrong with it.
    pub examples: Vec<String>,
}

/// An expired key waiting for UNLINK, with what it counts towards.
#[derive(Debug)]
struct Candidate {
    key: Vec<u8>,
    kind: CounterKind,
    day: i64,
}

/// Counts of one run. `by_day` is keyed by days since 1970 and only holds days before the
/// cutoff, so it is bounded by the calendar (about 20 000 entries), not by the keyspace.
#[derive(Debug, Default)]
struct Tally {
    scanned: u64,
    kept: u64,
    expired: u64,
    deleted: u64,
    already_gone: u64,
    by_kind: BTreeMap<String, u64>,
    by_day: BTreeMap<i64, u64>,
    not_day_keyed: NotDayKeyed,
    unparsed: Unparsed,
}

impl Tally {
    /// Counts a page and returns its expired keys.
    fn page(&mut self, keys: Vec<Vec<u8>>, cutoff: RetentionCutoff) -> Vec<Candidate> {
        let mut expired = Vec::new();
        for key in keys {
            self.scanned += 1;
            match classify(&key, cutoff) {
                Verdict::Expired { kind, bucket } => {
                    self.expired += 1;
                    expired.push(Candidate {
                        key,
                        kind,
                        day: bucket.secs().div_euclid(DAY_SECS),
                    });
                }
                Verdict::Kept => self.kept += 1,
                Verdict::NotDayKeyed(kind) => {
                    let skipped = &mut self.not_day_keyed;
                    skipped.keys += 1;
                    *skipped.by_kind.entry(kind.tag().to_owned()).or_default() += 1;
                    if skipped.examples.len() < EXAMPLES {
                        skipped.examples.push(example(&key));
                    }
                }
                Verdict::Unparsed(error) => {
                    let skipped = &mut self.unparsed;
                    skipped.keys += 1;
                    let reason = error.reason().category();
                    *skipped.by_reason.entry(reason.to_owned()).or_default() += 1;
                    if skipped.examples.len() < EXAMPLES {
                        tracing::info!(%error, "left alone: not an ABStore key");
                        skipped.examples.push(error.to_string());
                    }
                }
            }
        }
        expired
    }

    fn removed(&mut self, candidate: &Candidate) {
        *self
            .by_kind
            .entry(candidate.kind.tag().to_owned())
            .or_default() += 1;
        *self.by_day.entry(candidate.day).or_default() += 1;
    }

    /// The newest `SUMMARY_DAYS` days, and the rest added up.
    fn days(&self) -> (BTreeMap<String, u64>, Option<EarlierDays>) {
        let split = self.by_day.len().saturating_sub(SUMMARY_DAYS);
        let by_day = self
            .by_day
            .iter()
            .skip(split)
            .map(|(day, keys)| (day_label(*day), *keys))
            .collect();
        let earlier_days = split
            .checked_sub(1)
            .and_then(|newest| self.by_day.keys().nth(newest))
            .map(|through| EarlierDays {
                days: split as u64,
                keys: self.by_day.values().take(split).sum(),
                through: day_label(*through),
            });
        (by_day, earlier_days)
    }
}

fn day_label(day: i64) -> String {
    DateTime::from_timestamp(day * DAY_SECS, 0)
        .map(|t| t.date_naive().to_string())
        .unwrap_or_else(|| format!("day {day}"))
}

/// A key as shown in the summary: lossy UTF-8, control characters escaped, cut.
fn example(key: &[u8]) -> String {
    let text = String::from_utf8_lossy(key);
    let mut shown: String = text.chars().take(EXAMPLE_CHARS).collect();
    if text.chars().count() > EXAMPLE_CHARS {
        shown.push('…');
    }
    shown.escape_debug().to_string()
}

/// A token bucket over keys scanned and deleted: `rate` per second, saving up at most a tenth of
/// a second's worth. Taking more than the bucket holds is allowed and paid for by waiting, so a
/// whole SCAN page can be counted after it arrived.
#[derive(Debug)]
struct RateLimiter {
    rate: f64,
    capacity: f64,
    tokens: f64,
    refilled: Instant,
}

impl RateLimiter {
    /// `None` for 0 (unlimited).
    fn new(keys_per_sec: u64) -> Option<RateLimiter> {
        (keys_per_sec > 0).then(|| {
            let capacity = (keys_per_sec / BURST_PER_SEC).max(1) as f64;
            RateLimiter {
                rate: keys_per_sec as f64,
                capacity,
                // Start empty: the first batch is paced like the rest.
                tokens: 0.0,
                refilled: Instant::now(),
            }
        })
    }

    /// Waits until `n` more keys are within the rate.
    async fn take(&mut self, n: usize) {
        let wait = self.reserve(n, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes `n` tokens at `now`, going into debt if needed; returns how long until the debt is
    /// paid off (zero when there is none).
    fn reserve(&mut self, n: usize, now: Instant) -> Duration {
        let earned = now.saturating_duration_since(self.refilled).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.capacity) - n as f64;
        self.refilled = self.refilled.max(now);
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// Runs one prune pass to completion.
pub async fn run(options: &PruneOptions) -> Result<PruneSummary> {
    let started_at = Utc::now();
    let clock = Instant::now();
    let now = match options.now {
        Some(now) => {
            let limit = started_at + MAX_NOW_AHEAD;
            if now > limit {
                return Err(JobError::InvalidArgument {
                    field: "--now",
                    reason: format!(
                        "{} is later than this machine's clock ({}) by more than {} s; a future \
                         \"now\" would delete data that is still within retention",
                        rfc3339(now),
                        rfc3339(started_at),
                        MAX_NOW_AHEAD.as_secs()
                    ),
                });
            }
            now
        }
        None => started_at,
    };
    let cutoff = RetentionCutoff::new(now, options.retention_days)?;
    if options.batch_size == 0 {
        return Err(JobError::InvalidArgument {
            field: "--batch-size",
            reason: "must be at least 1".to_owned(),
        });
    }
    let cutoff_text = DateTime::from_timestamp(cutoff.secs(), 0)
        .map(rfc3339)
        .unwrap_or_else(|| cutoff.secs().to_string());

    // One server, or each shard's primary of a cluster (one pass each, in turn).
    let mut nodes = redis_io::connect_nodes(&options.redis_url, false)
        .await?
        .into_iter();
    let Some(mut conn) = nodes.next() else {
        return Err(JobError::InvalidArgument {
            field: "url",
            reason: "the cluster names no shard".to_owned(),
        });
    };
    let url = conn.spec().redacted_url.clone();
    let mut server = conn.current_server().await;
    let mut servers = Vec::new();
    let total = redis_io::dbsize(&conn).await.ok();
    tracing::info!(
        redis = %url,
        server = %shown_server(&server),
        now = %rfc3339(now),
        cutoff = %cutoff_text,
        retention_days = options.retention_days,
        dry_run = options.dry_run,
        max_keys_per_sec = options.max_keys_per_sec,
        keys = total,
        "prune started"
    );

    let progress = Progress::start("prune", total);
    let mut limiter = RateLimiter::new(options.max_keys_per_sec);
    let (scan_count, batch_size) = match limiter {
        Some(_) => (
            PACED_COMMAND_KEYS,
            options.batch_size.min(PACED_COMMAND_KEYS),
        ),
        None => (SCAN_COUNT, options.batch_size),
    };
    let mut tally = Tally::default();
    let mut scan_restarts = 0;
    let outcome: Result<()> = async {
        loop {
            let mut cursor = Some(0u64);
            // Keys of the last page, classified (and their expired ones deleted) while the next
            // page is on its way: the pass is as fast as SCAN alone when nothing is deleted.
            let mut unclassified: Vec<Vec<u8>> = Vec::new();
            loop {
                let scan = async {
                    match cursor {
                        Some(at) => scan(&conn, at, scan_count).await.map(Some),
                        None => Ok(None),
                    }
                };
                let work = async {
                    let expired = tally.page(std::mem::take(&mut unclassified), cutoff);
                    if options.dry_run {
                        expired.iter().for_each(|c| tally.removed(c));
                        return Ok(());
                    }
                    let (removed, gone) =
                        unlink(&conn, &url, &expired, limiter.as_mut(), batch_size).await?;
                    for (candidate, was_deleted) in expired.iter().zip(removed) {
                        if was_deleted {
                            tally.deleted += 1;
                            tally.removed(candidate);
                        }
                    }
                    tally.already_gone += gone;
                    Ok::<(), JobError>(())
                };
                let (page, worked) = tokio::join!(scan, work);
                worked?;
                let answered_by = conn.current_server().await;
                let Some((next, keys)) = page? else {
                    // The pass is over. Sentinel may have promoted a replica while the old primary
                    // still took our deletes (it is demoted only later): ask who the primary is now.
                    // A dry run deleted nothing, so there is nothing to redo.
                    if options.dry_run {
                        break;
                    }
                    let Some(fresh) = primary_now(&conn).await? else {
                        break;
                    };
                    let primary = fresh.current_server().await;
                    if primary == server {
                        break;
                    }
                    note_restart(&mut scan_restarts, &url, &server, &primary)?;
                    (conn, server, cursor) = (fresh, primary, Some(0));
                    continue;
                };
                progress.add(keys.len() as u64);
                if let Some(limiter) = limiter.as_mut() {
                    limiter.take(keys.len()).await;
                }
                cursor = if answered_by != server {
                    // A failover mid-pass: this cursor means nothing on the new primary.
                    note_restart(&mut scan_restarts, &url, &server, &answered_by)?;
                    server = answered_by;
                    Some(0)
                } else {
                    (next != 0).then_some(next)
                };
                unclassified = keys;
            }
            // This server's pass is over: the next shard of a cluster, if any.
            servers.push(shown_server(&server));
            let Some(next) = nodes.next() else {
                return Ok(());
            };
            server = next.current_server().await;
            conn = next;
        }
    }
    .await;
    progress.finish();
    if let Err(error) = outcome {
        tracing::error!(
            redis = %url,
            error = %error,
            scanned = tally.scanned,
            deleted = tally.deleted,
            "prune failed"
        );
        return Err(error);
    }

    let (by_day, earlier_days) = tally.days();
    let summary = PruneSummary {
        redis: url,
        server: if servers.is_empty() {
            shown_server(&server)
        } else {
            servers.join(",")
        },
        dry_run: options.dry_run,
        now: rfc3339(now),
        retention_days: options.retention_days,
        cutoff: cutoff_text,
        scanned: tally.scanned,
        kept: tally.kept,
        expired: tally.expired,
        deleted: tally.deleted,
        already_gone: tally.already_gone,
        by_kind: tally.by_kind,
        by_day,
        earlier_days,
        not_day_keyed: tally.not_day_keyed,
        unparsed: tally.unparsed,
        scan_restarts,
        max_keys_per_sec: options.max_keys_per_sec,
        started_at: rfc3339(started_at),
        duration_ms: u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    tracing::info!(
        dry_run = summary.dry_run,
        scanned = summary.scanned,
        kept = summary.kept,
        expired = summary.expired,
        deleted = summary.deleted,
        already_gone = summary.already_gone,
        not_day_keyed = summary.not_day_keyed.keys,
        unparsed = summary.unparsed.keys,
        duration_ms = summary.duration_ms,
        "prune finished"
    );
    Ok(summary)
}

/// For a Sentinel URL, a fresh connection to the primary the sentinels name now.
async fn primary_now(conn: &Connection) -> Result<Option<Connection>> {
    if !matches!(conn.spec().endpoint, Endpoint::Sentinel { .. }) {
        return Ok(None);
    }
    Ok(Some(Connection::connect(conn.spec().clone()).await?))
}

/// Counts a restart of the pass on a new primary; too many in one run is an error.
fn note_restart(
    restarts: &mut u32,
    url: &str,
    from: &Option<HostPort>,
    to: &Option<HostPort>,
) -> Result<()> {
    *restarts += 1;
    tracing::warn!(
        from = %shown_server(from),
        to = %shown_server(to),
        restart = *restarts,
        "the primary changed during the pass; scanning the new primary from the start"
    );
    if *restarts > MAX_SCAN_RESTARTS {
        return Err(JobError::PrimaryChanged {
            url: url.to_owned(),
            restarts: MAX_SCAN_RESTARTS,
        });
    }
    Ok(())
}

/// Errors that mean "this node is not (or not yet) the primary": worth resending elsewhere.
const NOT_PRIMARY_CODES: [&str; 5] = [
    "READONLY",
    "MASTERDOWN",
    "LOADING",
    "TRYAGAIN",
    "NOREPLICAS",
];

/// One SCAN call (no MATCH: one pass covers every environment and kind).
async fn scan(conn: &Connection, cursor: u64, count: usize) -> Result<(u64, Vec<Vec<u8>>)> {
    let mut pipe = redis::pipe();
    pipe.cmd("SCAN").arg(cursor).arg("COUNT").arg(count);
    let ((next, keys),): ((u64, Vec<Vec<u8>>),) =
        conn.exec(&pipe, Retry::Idempotent, "SCAN").await?;
    Ok((next, keys))
}

/// UNLINKs `candidates` in pipelines of `batch_size`, one UNLINK
/// per key so each reply says whether that key was there. Returns, per candidate, whether it was
/// deleted, and how many were already gone.
async fn unlink(
    conn: &Connection,
    url: &str,
    candidates: &[Candidate],
    mut limiter: Option<&mut RateLimiter>,
    batch_size: usize,
) -> Result<(Vec<bool>, u64)> {
    let mut removed = Vec::with_capacity(candidates.len());
    let mut gone = 0;
    for batch in candidates.chunks(batch_size) {
        if let Some(limiter) = limiter.as_deref_mut() {
            limiter.take(batch.len()).await;
        }
        let mut pipe = redis::pipe();
        for candidate in batch {
            pipe.cmd("UNLINK").arg(&candidate.key);
        }
        let plain = pipe.clone();
        pipe.ignore_errors();
        // Deleting twice is the same as once, so a pipeline cut by a failover is resent.
        let mut replies: Vec<Value> = conn.exec(&pipe, Retry::Idempotent, "UNLINK").await?;
        let not_primary = |reply: &Value| matches!(reply, Value::ServerError(e) if NOT_PRIMARY_CODES.contains(&e.code()));
        if replies.iter().any(not_primary) {
            // Per-key replies hide the error from the connection; resent as a plain pipeline
            // it sees READONLY, finds the new primary through Sentinel and retries there.
            replies = conn.exec(&plain, Retry::Idempotent, "UNLINK").await?;
        }
        if replies.len() != batch.len() {
            let key = batch.first().map_or(&[][..], |c| &c.key);
            return Err(key_error(
                url,
                "UNLINK",
                key,
                format!("{} replies to {} commands", replies.len(), batch.len()),
            ));
        }
        for (candidate, reply) in batch.iter().zip(replies) {
            match reply {
                Value::Int(1) => removed.push(true),
                Value::Int(0) => {
                    removed.push(false);
                    gone += 1;
                }
                Value::ServerError(e) => {
                    return Err(key_error(url, "UNLINK", &candidate.key, e.to_string()));
                }
                other => {
                    return Err(key_error(
                        url,
                        "UNLINK",
                        &candidate.key,
                        format!("unexpected reply {other:?}"),
                    ));
                }
            }
        }
    }
    Ok((removed, gone))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn shown_server(server: &Option<HostPort>) -> String {
    server.as_ref().map(ToString::to_string).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const HOUR: i64 = 3600;

    fn at(text: &str) -> DateTime<Utc> {
        parse_now(text).unwrap()
    }

    fn cutoff(now: &str, days: u32) -> RetentionCutoff {
        RetentionCutoff::new(at(now), days).unwrap()
    }

    #[test]
    fn a_bucket_is_expired_only_when_it_starts_strictly_before_now_minus_retention() {
        // The writer's TTL is bucket start + retention; a bucket starting at the cutoff still
        // has its last instant to live.
        let c = cutoff("2024-03-15T12:00:00Z", 31);
        assert_eq!(c.secs(), at("2024-02-13T12:00:00Z").timestamp());
        let bucket = |secs| BucketTimestamp::from_secs(secs).unwrap();
        assert!(c.is_expired(bucket(c.secs() - HOUR)));
        assert!(!c.is_expired(bucket(c.secs())));
        assert!(!c.is_expired(bucket(c.secs() + HOUR)));
    }

    #[test]
    fn hourly_and_daily_counters_of_every_kind_and_env_are_judged_by_bucket_start() {
        // Hourly buckets are Bucketeer's real layout; prune must not only catch midnight ones.
        let c = cutoff("2024-03-15T12:30:00Z", 31);
        let old_hour = at("2024-02-13T11:00:00Z").timestamp();
        let new_hour = at("2024-02-13T13:00:00Z").timestamp();
        let old_day = at("2024-02-13T00:00:00Z").timestamp();
        for (key, kind) in [
            (format!("ec:{old_hour}:f:v"), CounterKind::EvaluationCount),
            (
                format!("prod:uc:{old_hour}:f:v"),
                CounterKind::EvaluationUsers,
            ),
            (format!("gc:{old_day}:f:g:v"), CounterKind::GoalCount),
            (format!("eu-1.x:gu:{old_day}:f:g:v"), CounterKind::GoalUsers),
        ] {
            match classify(key.as_bytes(), c) {
                Verdict::Expired { kind: k, .. } => assert_eq!(k, kind, "{key}"),
                other => panic!("{key}: {other:?}"),
            }
        }
        assert_eq!(
            classify(format!("ec:{new_hour}:f:v").as_bytes(), c),
            Verdict::Kept
        );
    }

    #[test]
    fn keys_without_a_bucket_and_foreign_keys_are_never_expired() {
        // Dedup flags, assignments and metadata have their own lifetimes; foreign keys are not ours.
        let c = cutoff("2024-03-15T12:00:00Z", 1);
        for (key, kind) in [
            (
                "dd:397cd045cdc3965268d3fa191e072f17360c2f35",
                KeyKind::Dedup,
            ),
            ("as:flag:user:with:colons", KeyKind::Assignment),
            ("prod:exp:flag", KeyKind::Experiment),
            ("tmp:abc-123", KeyKind::Temp),
        ] {
            assert_eq!(classify(key.as_bytes(), c), Verdict::NotDayKeyed(kind));
        }
        for key in [
            &b"ec:notanumber:f:v"[..],
            b"session:ec:abc",
            b"ec:0100:f:v",
            b"ec:1:f:v",
            b"ec:99999999999999999999:f:v",
            b"ec:\xff\xfe:f:v",
            b"\x00\x01",
            b"EC:0:f:v",
            b"ec:0:f",
            b"",
        ] {
            assert!(
                matches!(classify(key, c), Verdict::Unparsed(_)),
                "{:?}",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn retention_of_zero_is_refused_naming_the_flag() {
        // 0 would make every counter, today's included, expired.
        let error = RetentionCutoff::new(at("2024-03-15T12:00:00Z"), 0).unwrap_err();
        assert_eq!(error.category(), "invalid-argument");
        assert!(error.to_string().contains("--retention-days"), "{error}");
        // A retention reaching before 1970 expires nothing and does not overflow.
        let c = RetentionCutoff::new(at("2024-03-15T12:00:00Z"), u32::MAX).unwrap();
        assert!(!c.is_expired(BucketTimestamp::from_secs(0).unwrap()));
    }

    #[test]
    fn now_accepts_rfc3339_offsets_and_rejects_other_text() {
        // Operators paste times from logs in either form.
        assert_eq!(at("2024-03-15T14:00:00+02:00"), at("2024-03-15T12:00:00Z"));
        let error = parse_now("2024-03-15").unwrap_err();
        assert!(error.contains("RFC 3339"), "{error}");
    }

    #[test]
    fn the_summary_lists_the_newest_days_and_adds_up_the_rest() {
        // The termination message is cut at 4 KiB; a first prune of years of data must fit.
        let mut tally = Tally::default();
        for day in 0..(SUMMARY_DAYS as i64 + 5) {
            tally.removed(&Candidate {
                key: Vec::new(),
                kind: CounterKind::EvaluationCount,
                day: 19_000 + day,
            });
        }
        let (by_day, earlier) = tally.days();
        assert_eq!(by_day.len(), SUMMARY_DAYS);
        assert_eq!(by_day.keys().next().unwrap(), &day_label(19_005));
        assert_eq!(
            earlier,
            Some(EarlierDays {
                days: 5,
                keys: 5,
                through: day_label(19_004)
            })
        );
        assert_eq!(day_label(19_004), "2022-01-12");
        assert_eq!(Tally::default().days(), (BTreeMap::new(), None));
    }

    #[test]
    fn examples_are_cut_and_escaped() {
        // Hostile keys must neither flood the summary nor break its one line.
        assert_eq!(example(b"a\nb\xff"), "a\\nb\u{fffd}");
        let long = example(&[b'x'; 500]);
        assert_eq!(long.chars().count(), EXAMPLE_CHARS + 1);
    }

    #[test]
    fn the_rate_limiter_paces_keys_and_saves_up_a_tenth_of_a_second_at_most() {
        // 1000 keys at 200/s take 5 s of the limiter's clock whatever the batch sizes; the clock
        // is simulated, so nothing sleeps.
        let mut limiter = RateLimiter::new(200).unwrap();
        let started = limiter.refilled;
        let mut clock = started;
        for n in [20, 100, 1, 379, 500] {
            clock += limiter.reserve(n, clock);
        }
        let elapsed = clock - started;
        assert!(
            elapsed >= Duration::from_millis(4999) && elapsed <= Duration::from_millis(5001),
            "{elapsed:?}"
        );
        // After a minute idle, 20 keys (a tenth of a second) go at once, not 12 000.
        clock += Duration::from_secs(60);
        assert_eq!(limiter.reserve(20, clock), Duration::ZERO);
        assert!(limiter.reserve(20, clock) >= Duration::from_millis(99));
        assert!(RateLimiter::new(0).is_none());
    }
}
