//! Recording evaluation and goal events: count (`INCRBY`), unique users (`PFADD`) and expiry
//! (`EXPIREAT … NX`) in one server-side script per event, optionally guarded by a Lamed-style
//! dedup flag (`SET dd:… NX EX`) so a retried or redelivered event moves the counts once.
//!
//! A batch of events is one pipeline, one round trip. Entries the server refused without applying
//! (NOSCRIPT, READONLY after a failover, …) are resent; entries lost with a broken link are resent
//! only when a dedup flag makes them idempotent, and otherwise reported as outcome-unknown.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use redis::{Script, Value};

use crate::connection::{Connection, ExecFailure, Failure, classify, classify_value};
use crate::error::{Error, Result};
use crate::keys::{
    BucketTimestamp, CounterKey, CounterKind, Env, EventKind, Granularity, Key, key_slot,
    partition_of,
};

/// Default retention of day-keyed data (Bucketeer's RFC: 31 days).
pub const DEFAULT_RETENTION_DAYS: u32 = 31;
/// Default lifetime of a dedup flag: duplicates arriving later than this are counted again.
pub const DEFAULT_DEDUP_TTL: Duration = Duration::from_secs(24 * 3600);

/// The record script: one call records a whole chunk of events atomically.
///
/// KEYS: the count key and the unique-users key of every *group* (events that share both keys:
/// same bucket, flag, goal and variation), in pairs, then the dedup flag of every event that has
/// one, in event order.
/// ARGV: dedup TTL in seconds, the number of groups G, the EXPIREAT time of each group (G values),
/// then for every event its group's index (1-based; negative when the event has no dedup flag)
/// and its user id.
///
/// Phase 1 sets each event's dedup flag (`SET NX EX`); an event whose flag existed is a
/// duplicate and moves nothing. Phase 2 writes each group once: `INCRBY` by the number of events
/// counted in it and one `PFADD` of their users, so a chunk costs one flag per event plus two
/// writes per distinct counter, not five writes per event. `EXPIREAT … NX` follows only when
/// `INCRBY` returned the delta, i.e. the key was just created: `NX` never extends an expiry, so on
/// an existing key the call could only matter if the key had lost its expiry, which nothing in
/// ABStore does (restore keeps expiries; prune is the safety net for keys left without one).
/// If a group's write fails (a key holding another type), that group is undone — the count
/// restored, and the flags of its events removed so a retry counts them — and its events are
/// reported as errors; the other groups stand.
///
/// Reply: a string with one character per event (`1` counted, `0` duplicate, `E` error), then,
/// for each error, the event's index (1-based), the key that refused the write and the server's
/// message.
///
/// `#!lua` (Redis 7 script flags, default: a write script) makes the server refuse the whole call
/// before it runs when it cannot write (out of memory, a replica, `min-replicas-to-write` unmet),
/// so a refused call applied nothing and can be resent.
const RECORD_SCRIPT: &str = r"#!lua
local ttl = ARGV[1]
local groups = tonumber(ARGV[2])
local codes, flags, counts, members, events, errors = {}, {}, {}, {}, {}, {}
local flag = 2 * groups
local n = 0
for a = groups + 3, #ARGV, 2 do
  n = n + 1
  local g = tonumber(ARGV[a])
  local counted = true
  if g > 0 then
    flag = flag + 1
    local set = redis.pcall('SET', KEYS[flag], '1', 'NX', 'EX', ttl)
    if not set then
      codes[n] = '0'
      counted = false
    elseif set.err then
      codes[n] = 'E'
      errors[#errors + 1] = n
      errors[#errors + 1] = KEYS[flag]
      errors[#errors + 1] = set.err
      counted = false
    else
      flags[n] = flag
    end
  else
    g = -g
  end
  if counted then
    codes[n] = '1'
    local c = counts[g]
    if c then
      counts[g] = c + 1
      members[g][c + 1] = ARGV[a + 1]
      events[g][c + 1] = n
    else
      counts[g] = 1
      members[g] = { ARGV[a + 1] }
      events[g] = { n }
    end
  end
end
for g = 1, groups do
  local c = counts[g]
  if c then
    local count, users = KEYS[2 * g - 1], KEYS[2 * g]
    local err, failed
    local total = redis.pcall('INCRBY', count, c)
    if type(total) == 'table' then
      err, failed = total.err, count
    else
      local added = redis.pcall('PFADD', users, unpack(members[g]))
      if type(added) == 'table' then
        err, failed = added.err, users
        if total == c then
          redis.call('UNLINK', count)
        else
          redis.call('INCRBY', count, -c)
        end
      elseif total == c then
        redis.call('EXPIREAT', count, ARGV[2 + g], 'NX')
        redis.call('EXPIREAT', users, ARGV[2 + g], 'NX')
      end
    end
    if err then
      for _, e in ipairs(events[g]) do
        codes[e] = 'E'
        errors[#errors + 1] = e
        errors[#errors + 1] = failed
        errors[#errors + 1] = err
        if flags[e] then
          redis.call('UNLINK', KEYS[flags[e]])
        end
      end
    end
  end
end
local reply = { table.concat(codes) }
for i = 1, #errors do
  reply[i + 1] = errors[i]
end
return reply
";

/// Most events in one script call. A call blocks the server while it runs (about 5 µs of server
/// CPU an event with dedup, measured in docs/benchmarks.md: ~1.3 ms for a full call), so a large
/// batch is split into several calls sent in one pipeline; other clients' commands run between.
pub const MAX_EVENTS_PER_CALL: usize = 256;

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

/// One event turned into keys and arguments of the record script.
struct Prepared {
    /// Cluster mode: the hash slot of the event's keys (0 in Sentinel mode).
    slot: u16,
    count: String,
    users: String,
    /// The dedup flag, when the event has an id and dedup is on.
    dedup: Option<String>,
    expire_at: i64,
    user: String,
}

impl Prepared {
    /// With a dedup flag the event can be resent after a lost reply without double counting.
    fn idempotent(&self) -> bool {
        self.dedup.is_some()
    }
}

/// What the script said about one event.
#[derive(Debug, PartialEq, Eq)]
enum Recorded {
    Counted,
    Duplicate,
    Refused { key: String, message: String },
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

    /// Records one event in one round trip. With [`RecorderConfig::wait_for_replicas`], an event
    /// the requested replicas did not confirm in time is [`Error::NotReplicated`]. Many tasks
    /// recording single events reach batch speed through [`crate::batching::BatchingRecorder`].
    pub async fn record(&self, event: &Event) -> Result<Outcome> {
        let batch = self.record_batch(std::slice::from_ref(event)).await?;
        crate::batching::per_event(self, batch)
            .pop()
            .unwrap_or(Err(Error::UnexpectedReply {
                key: event.flag.clone(),
                reason: "no outcome for the event".into(),
            }))
    }

    /// Records many events in one pipeline: chunks of up to [`MAX_EVENTS_PER_CALL`] events, one
    /// script call each. Invalid events get their own error in the result; the call itself fails
    /// only when the batch could not be sent at all.
    pub async fn record_batch(&self, events: &[Event]) -> Result<BatchResult> {
        let now = unix_now();
        let mut outcomes: Vec<Option<Result<Outcome>>> = Vec::with_capacity(events.len());
        let mut prepared: Vec<Option<Prepared>> = Vec::with_capacity(events.len());
        for event in events {
            let (outcome, p) = match self.prepare(event, now) {
                Ok(Some(p)) => (None, Some(p)),
                Ok(None) => (Some(Ok(Outcome::Expired)), None),
                Err(e) => (Some(Err(e)), None),
            };
            outcomes.push(outcome);
            prepared.push(p);
        }
        let pending: Vec<usize> = (0..events.len())
            .filter(|i| prepared.get(*i).is_some_and(Option::is_some))
            .collect();
        let deadline = Instant::now() + self.conn.spec().failover_timeout;
        let (sent, replicas_acknowledged) = self.send_pending(&prepared, pending, deadline).await;
        for (i, outcome) in sent.into_iter().enumerate() {
            if let (Some(outcome), Some(slot)) = (outcome, outcomes.get_mut(i)) {
                *slot = Some(outcome);
            }
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

    /// Sends `pending` (indices into `prepared`) until each has an outcome or the deadline
    /// passes; returns the outcomes by index and what `WAIT` said.
    async fn send_pending(
        &self,
        prepared: &[Option<Prepared>],
        mut pending: Vec<usize>,
        deadline: Instant,
    ) -> (Vec<Option<Result<Outcome>>>, Option<u32>) {
        let mut replicas_acknowledged = None;
        let mut outcomes: Vec<Option<Result<Outcome>>> =
            (0..prepared.len()).map(|_| None).collect();
        let mut load_script = false;
        let mut last_sent_error = None;
        while !pending.is_empty() {
            // A script call's keys must share a slot in cluster mode: events are grouped by the
            // slot of their flag partition (all 0 in Sentinel mode) before chunking. The whole
            // pipeline still goes out at once (the connection splits it per node).
            let mut by_slot: Vec<(u16, Vec<(usize, &Prepared)>)> = Vec::new();
            let mut slot_index: HashMap<u16, usize> = HashMap::new();
            for &i in &pending {
                let Some(p) = prepared.get(i).and_then(Option::as_ref) else {
                    continue;
                };
                let at = *slot_index.entry(p.slot).or_insert_with(|| {
                    by_slot.push((p.slot, Vec::new()));
                    by_slot.len() - 1
                });
                if let Some((_, group)) = by_slot.get_mut(at) {
                    group.push((i, p));
                }
            }
            let calls: Vec<Vec<(usize, &Prepared)>> = by_slot
                .into_iter()
                .flat_map(|(_, group)| {
                    group
                        .chunks(MAX_EVENTS_PER_CALL)
                        .map(<[_]>::to_vec)
                        .collect::<Vec<_>>()
                })
                .collect();
            let mut pipe = redis::pipe();
            if load_script {
                pipe.cmd("SCRIPT").arg("LOAD").arg(RECORD_SCRIPT);
            }
            for call in &calls {
                pipe.add_command(self.record_call(call));
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
                    // The link broke with the batch in flight: some calls may have applied.
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
                                    .is_some_and(Prepared::idempotent)
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
            for call in &calls {
                let reply = replies.next().unwrap_or(Value::Nil);
                if let Some((failure, e)) = classify_value(&reply) {
                    // The server refused the whole call before running it: nothing applied.
                    if failure == Failure::NotApplied && Instant::now() < deadline {
                        if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) {
                            load_script = true;
                        }
                        last_sent_error = Some((server.clone(), e.clone()));
                        resend.extend(call.iter().map(|(i, _)| *i));
                        continue;
                    }
                    let context = if failure == Failure::NotApplied {
                        "record event (failover deadline passed)"
                    } else {
                        "record event"
                    };
                    for (i, _) in call {
                        if let Some(slot) = outcomes.get_mut(*i) {
                            *slot = Some(Err(Error::Redis {
                                server: server.clone(),
                                context,
                                source: e.clone(),
                            }));
                        }
                    }
                    continue;
                }
                match decode_reply(reply, call.len()) {
                    Ok(recorded) => {
                        for ((i, _), r) in call.iter().zip(recorded) {
                            let outcome = match r {
                                Recorded::Counted => Ok(Outcome::Counted),
                                Recorded::Duplicate => Ok(Outcome::Duplicate),
                                Recorded::Refused { key, message } => Err(Error::Refused {
                                    server: server.clone(),
                                    key,
                                    message,
                                }),
                            };
                            if let Some(slot) = outcomes.get_mut(*i) {
                                *slot = Some(outcome);
                            }
                        }
                    }
                    Err(reason) => {
                        for (i, p) in call {
                            if let Some(slot) = outcomes.get_mut(*i) {
                                *slot = Some(Err(Error::UnexpectedReply {
                                    key: p.count.clone(),
                                    reason: reason.clone(),
                                }));
                            }
                        }
                    }
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
        (outcomes, replicas_acknowledged)
    }

    /// One script call for `call`'s events: events sharing a count key form a group, written
    /// once (see [`RECORD_SCRIPT`]).
    fn record_call(&self, call: &[(usize, &Prepared)]) -> redis::Cmd {
        let mut index: HashMap<&str, i64> = HashMap::with_capacity(call.len());
        let mut groups: Vec<&Prepared> = Vec::new();
        let mut flags: Vec<&str> = Vec::new();
        let mut members: Vec<(i64, &str)> = Vec::with_capacity(call.len());
        for (_, p) in call {
            let group = *index.entry(p.count.as_str()).or_insert_with(|| {
                groups.push(p);
                i64::try_from(groups.len()).unwrap_or(i64::MAX)
            });
            let signed = match &p.dedup {
                Some(flag) => {
                    flags.push(flag);
                    group
                }
                None => -group,
            };
            members.push((signed, &p.user));
        }
        let dedup_ttl = self.config.dedup_ttl.map_or(0, |ttl| ttl.as_secs());
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.script.get_hash())
            .arg(groups.len() * 2 + flags.len());
        for g in &groups {
            cmd.arg(&g.count).arg(&g.users);
        }
        cmd.arg(&flags).arg(dedup_ttl).arg(groups.len());
        for g in &groups {
            cmd.arg(g.expire_at);
        }
        for (group, user) in members {
            cmd.arg(group).arg(user);
        }
        cmd
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
        // Cluster mode: the event's flag partition (from its user) tags its keys, so its dedup
        // flag, count and users share a slot (docs/cluster.md).
        let partition = self.conn.is_cluster().then(|| partition_of(&event.user));
        let (count, users) = match partition {
            Some(p) => (count.partitioned(p)?, users.partitioned(p)?),
            None => (count, users),
        };
        let dedup = match (&event.event_id, self.config.dedup_ttl, partition) {
            (Some(id), Some(_), None) => Some(Key::dedup(env, kind, id)?.to_key_string()),
            (Some(id), Some(_), Some(p)) => {
                Some(Key::dedup_partitioned(env, kind, id, &event.flag, p)?.to_key_string())
            }
            _ => None,
        };
        let count = count.to_key_string();
        Ok(Some(Prepared {
            slot: partition.map_or(0, |_| key_slot(count.as_bytes())),
            count,
            users: users.to_key_string(),
            dedup,
            expire_at,
            user: event.user.clone(),
        }))
    }

    /// Makes sure the record script is in the server's cache (e.g. before a benchmark); a
    /// missing script is also loaded on demand.
    pub async fn load_script(&self) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.cmd("SCRIPT").arg("LOAD").arg(RECORD_SCRIPT);
        self.conn
            .exec_on_every_primary(&pipe, "load record script")
            .await
    }
}

/// Reads the script's reply for a call of `events` events.
fn decode_reply(reply: Value, events: usize) -> std::result::Result<Vec<Recorded>, String> {
    let unexpected = |what: &Value| format!("record script returned {what:?}");
    let Value::Array(items) = reply else {
        return Err(unexpected(&reply));
    };
    let mut items = items.into_iter();
    let codes = match items.next() {
        Some(Value::BulkString(codes)) if codes.len() == events => codes,
        other => return Err(unexpected(&other.unwrap_or(Value::Nil))),
    };
    let mut recorded = codes
        .iter()
        .map(|c| match c {
            b'1' => Ok(Recorded::Counted),
            b'0' => Ok(Recorded::Duplicate),
            // Filled in from the error triples below.
            b'E' => Ok(Recorded::Refused {
                key: String::new(),
                message: String::new(),
            }),
            other => Err(format!("record script returned outcome code {other:?}")),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    while let Some(index) = items.next() {
        let (Value::Int(index), Some(key), Some(message)) = (&index, items.next(), items.next())
        else {
            return Err(unexpected(&index));
        };
        let slot = usize::try_from(*index - 1)
            .ok()
            .and_then(|i| recorded.get_mut(i))
            .ok_or_else(|| format!("record script named event {index} of {events}"))?;
        *slot = Recorded::Refused {
            key: text(&key),
            message: text(&message),
        };
    }
    Ok(recorded)
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
