//! Recording evaluation and goal events: count (`INCRBY`), unique users (`PFADD`) and expiry
//! (`EXPIREAT … NX`) in one server-side script per event, optionally guarded by a Lamed-style
//! dedup flag (`SET dd:… NX EX`) so a retried or redelivered event moves the counts once.
//!
//! A batch of events is one pipeline, one round trip. Entries the server refused without applying
//! (NOSCRIPT, READONLY after a failover, …) are resent; entries lost with a broken link are resent
//! only when a dedup flag makes them idempotent, and otherwise reported as outcome-unknown.

use std::time::{Duration, Instant};

use redis::{Script, Value};

use crate::connection::{Connection, ExecFailure, Failure, Retry, classify, classify_value};
use crate::error::{Error, Result};
use crate::keys::{BucketTimestamp, CounterKey, CounterKind, Env, EventKind, Granularity, Key};

/// Default retention of day-keyed data (Bucketeer's RFC: 31 days).
pub const DEFAULT_RETENTION_DAYS: u32 = 31;
/// Default lifetime of a dedup flag: duplicates arriving later than this are counted again.
pub const DEFAULT_DEDUP_TTL: Duration = Duration::from_secs(24 * 3600);

/// The per-event script. KEYS: [dedup flag], count key, unique-users key.
/// ARGV: dedup TTL in seconds (0 = no dedup), EXPIREAT time, user id, increment.
/// Returns 1 when counted, 0 when the dedup flag already existed.
/// Every write of a day-keyed counter carries its expiry, so data ages out by itself and prune is
/// only the safety net; `NX` keeps the first expiry and never extends it.
const RECORD_SCRIPT: &str = r"
local i = 1
local ttl = tonumber(ARGV[1])
if ttl > 0 then
  if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ttl) then
    return 0
  end
  i = 2
end
redis.call('INCRBY', KEYS[i], ARGV[4])
redis.call('EXPIREAT', KEYS[i], ARGV[2], 'NX')
redis.call('PFADD', KEYS[i + 1], ARGV[3])
redis.call('EXPIREAT', KEYS[i + 1], ARGV[2], 'NX')
return 1
";

/// What happened: a flag was evaluated for a user, or a user reached a goal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The flag (experiment) id.
    pub flag: String,
    /// The variation the user was served; [`crate::keys::DEFAULT_VARIATION`] for defaults.
    pub variation: String,
    /// The user id; counted in the unique-users HyperLogLog.
    pub user: String,
    /// `Some(goal id)` for a goal (conversion) event, `None` for an evaluation.
    pub goal: Option<String>,
    /// A unique id of the event (e.g. a UUID); with dedup on, it moves the counts at most once.
    pub event_id: Option<String>,
    /// When it happened, unix seconds; chooses the bucket.
    pub timestamp: i64,
}

impl Event {
    /// An evaluation of `flag` that served `variation` to `user` at `timestamp` (unix seconds).
    pub fn evaluation(flag: &str, variation: &str, user: &str, timestamp: i64) -> Self {
        Self {
            flag: flag.to_owned(),
            variation: variation.to_owned(),
            user: user.to_owned(),
            goal: None,
            event_id: None,
            timestamp,
        }
    }

    /// `user`, served `variation` of `flag`, reached `goal` at `timestamp` (unix seconds).
    pub fn goal(flag: &str, goal: &str, variation: &str, user: &str, timestamp: i64) -> Self {
        Self {
            goal: Some(goal.to_owned()),
            ..Self::evaluation(flag, variation, user, timestamp)
        }
    }

    /// Sets the event id used for dedup.
    pub fn with_event_id(mut self, id: impl Into<String>) -> Self {
        self.event_id = Some(id.into());
        self
    }
}

/// What recording one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The counts moved.
    Counted,
    /// The dedup flag for this event id existed: nothing moved now. The event *has* been counted
    /// once, by an earlier delivery or by an earlier attempt of this same call whose reply was
    /// lost in a failover (the resend then finds the flag), so treat it as acknowledged.
    Duplicate,
    /// The event's bucket is already past retention; nothing was written.
    Expired,
}

/// How a [`Recorder`] writes.
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// Optional environment prefix of every key.
    pub env: Option<Env>,
    /// Hourly (Bucketeer's layout, the default) or daily buckets.
    pub granularity: Granularity,
    /// Days a bucket is kept: keys expire at bucket start + this.
    pub retention_days: u32,
    /// Lifetime of dedup flags; `None` turns dedup off even for events with an id.
    pub dedup_ttl: Option<Duration>,
    /// After each batch, wait until this many replicas acknowledged it (`WAIT`), so an
    /// acknowledged event survives the primary's crash. `None` (default) acknowledges as soon as
    /// the primary applied it (see docs/durability.md for what that can lose).
    pub wait_for_replicas: Option<WaitForReplicas>,
}

/// Parameters of `WAIT numreplicas timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitForReplicas {
    pub replicas: u32,
    pub timeout: Duration,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        Self {
            env: None,
            granularity: Granularity::Hour,
            retention_days: DEFAULT_RETENTION_DAYS,
            dedup_ttl: Some(DEFAULT_DEDUP_TTL),
            wait_for_replicas: None,
        }
    }
}

/// The result of a batch: one outcome per event, in order, or the error for that event.
#[derive(Debug)]
pub struct BatchResult {
    pub outcomes: Vec<Result<Outcome>>,
    /// With [`RecorderConfig::wait_for_replicas`]: how many replicas acknowledged the batch.
    pub replicas_acknowledged: Option<u32>,
}

/// Writes events. Cheap to clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct Recorder {
    conn: Connection,
    config: RecorderConfig,
    script: std::sync::Arc<Script>,
}

/// One event turned into script arguments.
struct Prepared {
    keys: Vec<String>,
    dedup_ttl: u64,
    expire_at: i64,
    user: String,
    /// With a dedup flag the script can be resent after a lost reply without double counting.
    idempotent: bool,
}

impl Recorder {
    /// A recorder writing through `conn`.
    pub fn new(conn: Connection, config: RecorderConfig) -> Result<Self> {
        if config.retention_days == 0 {
            return Err(Error::InvalidArgument {
                field: "retention_days",
                reason: "must be at least 1".into(),
            });
        }
        if let Some(ttl) = config.dedup_ttl
            && ttl.as_secs() == 0
        {
            return Err(Error::InvalidArgument {
                field: "dedup_ttl",
                reason: "must be at least one second".into(),
            });
        }
        Ok(Self {
            conn,
            config,
            script: std::sync::Arc::new(Script::new(RECORD_SCRIPT)),
        })
    }

    /// The recorder's settings.
    pub fn config(&self) -> &RecorderConfig {
        &self.config
    }

    /// The connection it writes through.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Records one event in one round trip.
    pub async fn record(&self, event: &Event) -> Result<Outcome> {
        let mut batch = self.record_batch(std::slice::from_ref(event)).await?;
        batch.outcomes.pop().unwrap_or(Err(Error::UnexpectedReply {
            key: event.flag.clone(),
            reason: "no outcome for the event".into(),
        }))
    }

    /// Records many events in one pipeline. Invalid events get their own error in the result;
    /// the call itself fails only when the batch could not be sent at all.
    pub async fn record_batch(&self, events: &[Event]) -> Result<BatchResult> {
        let now = unix_now();
        let mut outcomes: Vec<Option<Result<Outcome>>> = Vec::with_capacity(events.len());
        let mut prepared: Vec<Option<Prepared>> = Vec::with_capacity(events.len());
        for event in events {
            match self.prepare(event, now) {
                Ok(Some(p)) => {
                    outcomes.push(None);
                    prepared.push(Some(p));
                }
                Ok(None) => {
                    outcomes.push(Some(Ok(Outcome::Expired)));
                    prepared.push(None);
                }
                Err(e) => {
                    outcomes.push(Some(Err(e)));
                    prepared.push(None);
                }
            }
        }
        let mut pending: Vec<usize> = (0..events.len())
            .filter(|i| prepared.get(*i).is_some_and(Option::is_some))
            .collect();
        let deadline = Instant::now() + self.conn.spec().failover_timeout;
        let mut replicas_acknowledged = None;
        let mut load_script = false;
        let mut last_sent_error = None;
        while !pending.is_empty() {
            let mut pipe = redis::pipe();
            if load_script {
                pipe.cmd("SCRIPT").arg("LOAD").arg(RECORD_SCRIPT);
            }
            for &i in &pending {
                if let Some(Some(p)) = prepared.get(i) {
                    pipe.cmd("EVALSHA")
                        .arg(self.script.get_hash())
                        .arg(p.keys.len())
                        .arg(&p.keys)
                        .arg(p.dedup_ttl)
                        .arg(p.expire_at)
                        .arg(&p.user)
                        .arg(1);
                }
            }
            if let Some(wait) = self.config.wait_for_replicas {
                pipe.cmd("WAIT")
                    .arg(wait.replicas)
                    .arg(u64::try_from(wait.timeout.as_millis()).unwrap_or(u64::MAX));
            }
            let (server, replies) = match self.conn.exec_each(&mut pipe, deadline).await {
                Ok(answered) => answered,
                Err(ExecFailure {
                    server,
                    error: e,
                    sent,
                }) => {
                    // The link broke with the batch in flight: some entries may have applied.
                    // A batch that never left (no primary reachable) applied nothing.
                    let failure = if sent {
                        classify(&e)
                    } else {
                        Failure::NotApplied
                    };
                    if sent {
                        last_sent_error = Some((server.to_string(), e.clone()));
                    }
                    let (retry, give_up): (Vec<usize>, Vec<usize>) =
                        pending.iter().partition(|&&i| {
                            failure == Failure::NotApplied
                                || prepared
                                    .get(i)
                                    .and_then(Option::as_ref)
                                    .is_some_and(|p| p.idempotent)
                        });
                    for i in give_up {
                        if let Some(slot) = outcomes.get_mut(i) {
                            *slot = Some(Err(Error::OutcomeUnknown {
                                server: server.to_string(),
                                context: "record event",
                                source: e.clone(),
                            }));
                        }
                    }
                    if Instant::now() >= deadline {
                        // Report what the last server said (READONLY, say) rather than a
                        // reconnect the deadline cut short.
                        let (server, e) = last_sent_error
                            .clone()
                            .unwrap_or_else(|| (server.to_string(), e.clone()));
                        for i in retry {
                            if let Some(slot) = outcomes.get_mut(i) {
                                *slot = Some(Err(Error::Redis {
                                    server: server.to_string(),
                                    context: "record event (failover deadline passed)",
                                    source: e.clone(),
                                }));
                            }
                        }
                        break;
                    }
                    pending = retry;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let mut replies = replies.into_iter();
            if load_script {
                replies.next();
                load_script = false;
            }
            let server = server.to_string();
            let mut resend = Vec::new();
            for &i in &pending {
                let reply = replies.next().unwrap_or(Value::Nil);
                let outcome = match (classify_value(&reply), reply) {
                    (None, Value::Int(1)) => Ok(Outcome::Counted),
                    (None, Value::Int(0)) => Ok(Outcome::Duplicate),
                    (Some((Failure::NotApplied, e)), _) => {
                        if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) {
                            load_script = true;
                        }
                        if Instant::now() < deadline {
                            last_sent_error = Some((server.clone(), e.clone()));
                            resend.push(i);
                            continue;
                        }
                        Err(Error::Redis {
                            server: server.clone(),
                            context: "record event (failover deadline passed)",
                            source: e,
                        })
                    }
                    (Some((_, e)), _) => Err(Error::Redis {
                        server: server.clone(),
                        context: "record event",
                        source: e,
                    }),
                    (None, other) => Err(Error::UnexpectedReply {
                        key: events.get(i).map(|e| e.flag.clone()).unwrap_or_default(),
                        reason: format!("record script returned {other:?}"),
                    }),
                };
                if let Some(slot) = outcomes.get_mut(i) {
                    *slot = Some(outcome);
                }
            }
            if self.config.wait_for_replicas.is_some()
                && let Some(Value::Int(n)) = replies.next()
            {
                replicas_acknowledged = Some(u32::try_from(n).unwrap_or(0));
            }
            if !resend.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            pending = resend;
        }
        Ok(BatchResult {
            outcomes: outcomes
                .into_iter()
                .map(|o| {
                    o.unwrap_or(Err(Error::UnexpectedReply {
                        key: String::new(),
                        reason: "event left without an outcome".into(),
                    }))
                })
                .collect(),
            replicas_acknowledged,
        })
    }

    /// Builds the keys and arguments for one event, or `None` if it is already past retention.
    fn prepare(&self, event: &Event, now: i64) -> Result<Option<Prepared>> {
        let env = self.config.env.as_ref();
        let bucket = BucketTimestamp::containing(event.timestamp, self.config.granularity)?;
        let expire_at = bucket.secs() + i64::from(self.config.retention_days) * 86_400;
        if expire_at <= now {
            return Ok(None);
        }
        if event.user.is_empty() {
            return Err(Error::InvalidArgument {
                field: "user",
                reason: format!("empty user id in an event of flag {:?}", event.flag),
            });
        }
        let (count, users, kind) = match &event.goal {
            None => (
                CounterKey::evaluation(
                    env,
                    CounterKind::EvaluationCount,
                    bucket,
                    &event.flag,
                    &event.variation,
                )?,
                CounterKey::evaluation(
                    env,
                    CounterKind::EvaluationUsers,
                    bucket,
                    &event.flag,
                    &event.variation,
                )?,
                EventKind::Evaluation,
            ),
            Some(goal) => (
                CounterKey::goal(
                    env,
                    CounterKind::GoalCount,
                    bucket,
                    &event.flag,
                    goal,
                    &event.variation,
                )?,
                CounterKey::goal(
                    env,
                    CounterKind::GoalUsers,
                    bucket,
                    &event.flag,
                    goal,
                    &event.variation,
                )?,
                EventKind::Goal,
            ),
        };
        let mut keys = Vec::with_capacity(3);
        let mut dedup_ttl = 0;
        if let (Some(id), Some(ttl)) = (&event.event_id, self.config.dedup_ttl) {
            keys.push(Key::dedup(env, kind, id)?.to_string());
            dedup_ttl = ttl.as_secs();
        }
        keys.push(count.to_string());
        keys.push(users.to_string());
        Ok(Some(Prepared {
            keys,
            dedup_ttl,
            expire_at,
            user: event.user.clone(),
            idempotent: dedup_ttl > 0,
        }))
    }

    /// Makes sure the record script is in the server's cache (e.g. before a benchmark); a
    /// missing script is also loaded on demand.
    pub async fn load_script(&self) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.cmd("SCRIPT").arg("LOAD").arg(RECORD_SCRIPT);
        let _: (String,) = self
            .conn
            .exec(&pipe, Retry::Idempotent, "load record script")
            .await?;
        Ok(())
    }
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
