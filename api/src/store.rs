//! The tracking API on the ABStore data model: events recorded through the `abstore` recorder
//! (dedup, hourly counters and unique users, expiry), an experiment registry beside them, and
//! reads through the `abstore` reader.
//!
//! Registry (what Lamed keeps in its `<ns>:experiments` and `<ns>:<exp>:counter_keys` sets):
//! `exps` — the set of experiments of the namespace — and `exp:<experiment>` — a hash whose
//! fields are the series seen (`participate:<variant>`, `<goal>:<variant>`) and whose values are
//! when each was first tracked (unix seconds). Both are written idempotently (SADD, HSETNX) and
//! only the first time a process sees a series.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use abstore::batching::{BatchingConfig, BatchingRecorder};
use abstore::connection::{Connection, Retry};
use abstore::counters::{Event, Outcome, Recorder, RecorderConfig, WaitForReplicas};
use abstore::keys::{BucketTimestamp, CounterKey, CounterKind, Env, Granularity, Key, PARTITIONS};
use abstore::reads::{Metric, Reader};

use crate::lamed::{GoalResults, Series, Track, experiment_results};

/// Reads cover at most this many days back: what prune keeps (counters older than 31 days go).
pub const READ_DAYS: i64 = 31;
/// Commands per pipeline when deleting an experiment's counters.
const DELETE_BATCH: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Abstore(#[from] abstore::Error),
    #[error(transparent)]
    Key(#[from] abstore::keys::KeyError),
    #[error("the recorder refused the event: {0}")]
    Refused(String),
}

/// The store behind the API: one connection, a batching recorder per namespace.
#[derive(Debug)]
pub struct TrackingStore {
    conn: Connection,
    /// `WAIT` after each batch: a 200 then means a replica has the event too.
    wait: Option<WaitForReplicas>,
    /// Concurrent `track` calls share script calls (and `WAIT`s): a batch is what the requests
    /// served together queued (up to 256 events; no linger, so a lone event waits only for its
    /// round trip), up to 8 batches on the wire, each caller answered with its own event's
    /// outcome. Measured against one script call per request in docs/benchmarks.md.
    recorders: Mutex<HashMap<String, Arc<BatchingRecorder>>>,
    /// Registry entries this process wrote already (`<ns>\0<experiment>\0<series>`).
    registered: Mutex<HashSet<String>>,
}

thread_local! {
    /// The registry entry of the event being tracked on this thread (see `TrackingStore::track`).
    static ENTRY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

impl TrackingStore {
    pub fn new(conn: Connection, wait: Option<WaitForReplicas>) -> TrackingStore {
        TrackingStore {
            conn,
            wait,
            recorders: Mutex::new(HashMap::new()),
            registered: Mutex::new(HashSet::new()),
        }
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn recorder(&self, namespace: &Env) -> Result<Arc<BatchingRecorder>, StoreError> {
        let mut recorders = self
            .recorders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(recorder) = recorders.get(namespace.as_str()) {
            return Ok(Arc::clone(recorder));
        }
        let recorder = Recorder::new(
            self.conn.clone(),
            RecorderConfig {
                env: Some(namespace.clone()),
                wait_for_replicas: self.wait,
                ..RecorderConfig::default()
            },
        )?;
        let batching = Arc::new(BatchingRecorder::new(
            recorder,
            BatchingConfig {
                linger: std::time::Duration::ZERO,
                ..BatchingConfig::default()
            },
        )?);
        recorders.insert(namespace.as_str().to_owned(), Arc::clone(&batching));
        Ok(batching)
    }

    /// Records one `track` call: the registry entry (first time only), then the event with
    /// Lamed's dedup digest as its id. `Duplicate` is Lamed's "already counted".
    pub async fn track(&self, track: Track, now: i64) -> Result<Outcome, StoreError> {
        // `<ns>\0<experiment>\0<event>:<variant>`, written into this thread's buffer for the
        // lookup (every event); an owned copy is made only when it is registered.
        let write_entry = |entry: &mut String| {
            entry.clear();
            for piece in [
                track.namespace.as_str(),
                "\0",
                &track.experiment,
                "\0",
                &track.event,
                ":",
                &track.variant,
            ] {
                entry.push_str(piece);
            }
        };
        let known = ENTRY.with_borrow_mut(|entry| {
            write_entry(entry);
            self.registered
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains(entry.as_str())
        });
        if !known {
            let env = Some(&track.namespace);
            let mut pipe = redis::pipe();
            pipe.cmd("SADD")
                .arg(Key::experiment_index(env).to_string())
                .arg(&track.experiment)
                .ignore();
            pipe.cmd("HSETNX")
                .arg(Key::experiment(env, &track.experiment)?.to_string())
                .arg(track.series())
                .arg(now)
                .ignore();
            // Boxed: this runs once per series, and a connection call's future is large; held
            // inline it would be copied with every event's future.
            Box::pin(
                self.conn
                    .exec::<()>(&pipe, Retry::Idempotent, "register the experiment"),
            )
            .await?;
            self.registered
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert({
                    let mut entry = String::new();
                    write_entry(&mut entry);
                    entry
                });
        }
        let recorder = self.recorder(&track.namespace)?;
        let event_id = track.event_id();
        let goal = (!track.is_participation()).then_some(track.event);
        // The parameters move into the event (no copies: this runs for every event).
        let event = Event {
            flag: track.experiment,
            variation: track.variant,
            user: track.uuid,
            goal,
            event_id: Some(event_id),
            timestamp: now,
        };
        recorder.record(event).await.map_err(StoreError::from)
    }

    /// The experiments of a namespace (`exps`).
    pub async fn experiments(&self, namespace: &Env) -> Result<Vec<String>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("SMEMBERS")
            .arg(Key::experiment_index(Some(namespace)).to_string());
        let (mut members,): (Vec<String>,) = self
            .conn
            .exec(&pipe, Retry::Idempotent, "list the experiments")
            .await?;
        members.sort();
        Ok(members)
    }

    /// Lamed's `experiment` answer over the last [`READ_DAYS`] days (since the experiment was
    /// first tracked, when later); with `unique`, Gimel's: unique uuids (HyperLogLog) instead of
    /// deduplicated counts.
    pub async fn experiment(
        &self,
        namespace: &Env,
        experiment: &str,
        now: i64,
        unique: bool,
    ) -> Result<Vec<GoalResults>, StoreError> {
        let number = |stats: abstore::reads::VariationStats| {
            if unique { stats.users } else { stats.count }
        };
        let mut pipe = redis::pipe();
        pipe.cmd("HGETALL")
            .arg(Key::experiment(Some(namespace), experiment)?.to_string());
        let (entries,): (BTreeMap<String, i64>,) = self
            .conn
            .exec(&pipe, Retry::Idempotent, "read the experiment's registry")
            .await?;
        let series = Series::from_entries(entries.keys().map(String::as_str));
        if series.variants.is_empty() {
            return Ok(Vec::new());
        }
        let from = entries
            .values()
            .copied()
            .min()
            .unwrap_or(now)
            .max(now - READ_DAYS * 86_400)
            .min(now);
        let reader = Reader::new(
            self.conn.clone(),
            Some(namespace.clone()),
            Granularity::Hour,
        );
        let variants: Vec<&str> = series.variants.iter().map(String::as_str).collect();
        let trials: BTreeMap<String, u64> = reader
            .days(&Metric::Evaluations, experiment, &variants, from, now)
            .await?
            .total
            .into_iter()
            .map(|(variant, stats)| (variant, number(stats)))
            .collect();
        let mut successes = BTreeMap::new();
        for goal in &series.goals {
            let totals = reader
                .days(
                    &Metric::Goal(goal.clone()),
                    experiment,
                    &variants,
                    from,
                    now,
                )
                .await?
                .total;
            for (variant, stats) in totals {
                successes.insert((goal.clone(), variant), number(stats));
            }
        }
        Ok(experiment_results(&series, &trials, &successes))
    }

    /// Lamed's `delete`: the experiment's counters (every hour it can have counters in: since it
    /// was first tracked, at most [`READ_DAYS`] + 1 days back; every partition on a cluster), then
    /// its registry entries. Returns false when the namespace has no such experiment.
    pub async fn delete(
        &self,
        namespace: &Env,
        experiment: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let registry = Key::experiment(Some(namespace), experiment)?.to_string();
        let index = Key::experiment_index(Some(namespace)).to_string();
        let mut pipe = redis::pipe();
        pipe.cmd("HGETALL").arg(&registry);
        pipe.cmd("SISMEMBER").arg(&index).arg(experiment);
        let (entries, member): (BTreeMap<String, i64>, bool) = self
            .conn
            .exec(&pipe, Retry::Idempotent, "read the experiment's registry")
            .await?;
        if entries.is_empty() && !member {
            return Ok(false);
        }
        let series = Series::from_entries(entries.keys().map(String::as_str));
        let first = entries
            .values()
            .copied()
            .min()
            .unwrap_or(now)
            .max(now - (READ_DAYS + 1) * 86_400)
            .min(now);
        let partitions: Vec<Option<u16>> = if self.conn.is_cluster() {
            (0..PARTITIONS).map(Some).collect()
        } else {
            vec![None]
        };
        let mut keys = Vec::new();
        let mut bucket = BucketTimestamp::containing(first, Granularity::Hour)?;
        let last = BucketTimestamp::containing(now, Granularity::Hour)?;
        loop {
            for variant in &series.variants {
                for kind in [CounterKind::EvaluationCount, CounterKind::EvaluationUsers] {
                    keys.push(CounterKey::evaluation(
                        Some(namespace),
                        kind,
                        bucket,
                        experiment,
                        variant,
                    )?);
                }
                for goal in &series.goals {
                    for kind in [CounterKind::GoalCount, CounterKind::GoalUsers] {
                        keys.push(CounterKey::goal(
                            Some(namespace),
                            kind,
                            bucket,
                            experiment,
                            goal,
                            variant,
                        )?);
                    }
                }
            }
            if bucket >= last {
                break;
            }
            bucket = bucket.next(Granularity::Hour)?;
        }
        let mut names = Vec::with_capacity(keys.len() * partitions.len());
        for key in keys {
            for partition in &partitions {
                names.push(match partition {
                    Some(p) => key.clone().partitioned(*p)?.to_string(),
                    None => key.to_string(),
                });
            }
        }
        // One UNLINK per key: a cluster's keys of one experiment live in many slots.
        for chunk in names.chunks(DELETE_BATCH) {
            let mut pipe = redis::pipe();
            for name in chunk {
                pipe.cmd("UNLINK").arg(name).ignore();
            }
            self.conn
                .exec::<()>(&pipe, Retry::Idempotent, "delete the experiment's counters")
                .await?;
        }
        let mut pipe = redis::pipe();
        pipe.cmd("UNLINK").arg(&registry).ignore();
        pipe.cmd("SREM").arg(&index).arg(experiment).ignore();
        self.conn
            .exec::<()>(&pipe, Retry::Idempotent, "delete the experiment's registry")
            .await?;
        let prefix = format!("{namespace}\0{experiment}\0");
        self.registered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|entry| !entry.starts_with(&prefix));
        Ok(true)
    }
}

/// Participations (evaluations) of one variant: events and unique uuids.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Participation {
    pub events: u64,
    pub users: u64,
}

/// One goal's numbers of one variant in one period: converting users and goal events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct GoalCount {
    /// Unique users who reached the goal (HyperLogLog).
    pub conversions: u64,
    pub events: u64,
}

/// One UTC day or hour of an experiment: each variant's participations, and per goal each
/// variant's conversions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Period {
    /// Start of the UTC day or hour, unix seconds.
    pub start: i64,
    pub variants: BTreeMap<String, Participation>,
    pub goals: BTreeMap<String, BTreeMap<String, GoalCount>>,
}

/// One variant's conversion to one goal: unique converting users out of unique participants,
/// the rate's 95 % Wilson interval, and the z-test against the control.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GoalStats {
    pub conversions: u64,
    pub events: u64,
    pub participants: u64,
    pub rate: Option<f64>,
    pub interval: Option<[f64; 2]>,
    /// Against the control (none for the control itself).
    pub z: Option<f64>,
    pub p_value: Option<f64>,
}

/// `GET /v1/experiments/{experiment}`. `from`/`to` are read in whole UTC days: the totals, the
/// `days` and the `hours` (every hour of those days) cover the same buckets, so they add up.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Results {
    pub experiment: String,
    pub namespace: String,
    pub from: i64,
    pub to: i64,
    pub control: Option<String>,
    pub variants: BTreeMap<String, Participation>,
    pub days: Vec<Period>,
    pub hours: Vec<Period>,
    pub goals: BTreeMap<String, BTreeMap<String, GoalStats>>,
}

/// `GET /v1/experiments`: the experiments of a namespace.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExperimentList {
    pub namespace: String,
    pub experiments: Vec<String>,
}

const DAY_SECONDS: i64 = 86_400;

impl TrackingStore {
    /// The `/v1` results of an experiment from `from` to `to` (unix seconds, read in whole UTC
    /// days); `from` defaults to when the experiment was first tracked (at most [`READ_DAYS`]
    /// back). `control` defaults to the first variant by name. `None`: no such experiment.
    pub async fn results(
        &self,
        namespace: &Env,
        experiment: &str,
        range: (Option<i64>, i64),
        control: Option<&str>,
    ) -> Result<Option<Results>, StoreError> {
        let (from, to) = range;
        let mut pipe = redis::pipe();
        pipe.cmd("HGETALL")
            .arg(Key::experiment(Some(namespace), experiment)?.to_string());
        let (entries,): (BTreeMap<String, i64>,) = self
            .conn
            .exec(&pipe, Retry::Idempotent, "read the experiment's registry")
            .await?;
        let series = Series::from_entries(entries.keys().map(String::as_str));
        if series.variants.is_empty() {
            return Ok(None);
        }
        let first_seen = entries.values().copied().min().unwrap_or(to);
        let from = from
            .unwrap_or(first_seen)
            .max(to - READ_DAYS * DAY_SECONDS)
            .min(to);
        let reader = Reader::new(
            self.conn.clone(),
            Some(namespace.clone()),
            Granularity::Hour,
        );
        let variants: Vec<&str> = series.variants.iter().map(String::as_str).collect();
        let evaluations = reader
            .days(&Metric::Evaluations, experiment, &variants, from, to)
            .await?;
        let mut goal_days = BTreeMap::new();
        for goal in &series.goals {
            let days = reader
                .days(&Metric::Goal(goal.clone()), experiment, &variants, from, to)
                .await?;
            goal_days.insert(goal.clone(), days);
        }
        // The hours of the same whole days as the reader's totals.
        let day_start = from - from.rem_euclid(DAY_SECONDS);
        let day_end = to - to.rem_euclid(DAY_SECONDS) + DAY_SECONDS - 1;
        let mut counters = vec![crate::hourly::Counter::Participations];
        counters.extend(series.goals.iter().map(|g| crate::hourly::Counter::Goal(g)));
        let hours = crate::hourly::read(
            &self.conn,
            namespace,
            experiment,
            &variants,
            &counters,
            (day_start, day_end),
        )
        .await?;
        let participation = |stats: &abstore::reads::VariationStats| Participation {
            events: stats.count,
            users: stats.users,
        };
        let control = control
            .map(str::to_owned)
            .filter(|c| series.variants.contains(c))
            .or_else(|| series.variants.iter().next().cloned());
        let mut goals = BTreeMap::new();
        for (goal, days) in &goal_days {
            let numbers = |variant: &str| {
                let participants = evaluations.total.get(variant).map_or(0, |s| s.users);
                let reached = days.total.get(variant).copied().unwrap_or_default();
                (reached.users, reached.count, participants)
            };
            let control_numbers = control.as_deref().map(|c| {
                let (s, _, n) = numbers(c);
                (s, n)
            });
            let per_variant = variants
                .iter()
                .map(|variant| {
                    let (conversions, events, participants) = numbers(variant);
                    let test = match control_numbers {
                        Some((s2, n2)) if Some(*variant) != control.as_deref() => {
                            crate::stats::two_proportion_z_test(conversions, participants, s2, n2)
                        }
                        _ => None,
                    };
                    (
                        (*variant).to_owned(),
                        GoalStats {
                            conversions,
                            events,
                            participants,
                            rate: (participants > 0)
                                .then(|| conversions as f64 / participants as f64),
                            interval: crate::stats::wilson(
                                conversions,
                                participants,
                                crate::stats::Z_95,
                            )
                            .map(|(lo, hi)| [lo, hi]),
                            z: test.map(|t| t.0),
                            p_value: test.map(|t| t.1),
                        },
                    )
                })
                .collect();
            goals.insert(goal.clone(), per_variant);
        }
        let days = evaluations
            .points
            .iter()
            .enumerate()
            .map(|(i, p)| Period {
                start: p.start,
                variants: p
                    .variations
                    .iter()
                    .map(|(v, s)| (v.clone(), participation(s)))
                    .collect(),
                goals: goal_days
                    .iter()
                    .map(|(goal, days)| {
                        let per_variant = days
                            .points
                            .get(i)
                            .map(|point| {
                                point
                                    .variations
                                    .iter()
                                    .map(|(v, s)| {
                                        (
                                            v.clone(),
                                            GoalCount {
                                                conversions: s.users,
                                                events: s.count,
                                            },
                                        )
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        (goal.clone(), per_variant)
                    })
                    .collect(),
            })
            .collect();
        let hours = hours
            .into_iter()
            .map(|(start, mut per_counter)| {
                let goal_numbers = per_counter.split_off(1);
                Period {
                    start,
                    variants: per_counter
                        .pop()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(v, n)| {
                            (
                                v,
                                Participation {
                                    events: n.events,
                                    users: n.users,
                                },
                            )
                        })
                        .collect(),
                    goals: series
                        .goals
                        .iter()
                        .zip(goal_numbers)
                        .map(|(goal, numbers)| {
                            (
                                goal.clone(),
                                numbers
                                    .into_iter()
                                    .map(|(v, n)| {
                                        (
                                            v,
                                            GoalCount {
                                                conversions: n.users,
                                                events: n.events,
                                            },
                                        )
                                    })
                                    .collect(),
                            )
                        })
                        .collect(),
                }
            })
            .collect();
        Ok(Some(Results {
            experiment: experiment.to_owned(),
            namespace: namespace.to_string(),
            from,
            to,
            control,
            variants: evaluations
                .total
                .iter()
                .map(|(v, s)| (v.clone(), participation(s)))
                .collect(),
            days,
            hours,
            goals,
        }))
    }
}
