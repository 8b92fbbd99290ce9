//! Hourly series of an experiment: per UTC hour and variant, participations (events, unique
//! users) and each goal's conversions (unique users, events). The `abstore` reader answers per
//! day; the counters are hour-keyed, so the hours are read here from the same keys, in one
//! pipeline: per hour and counter an `MGET` of the variants' counts and a `PFCOUNT` per variant
//! (per partition on a cluster: a user's events all go to one partition, so partitions add up).

use std::collections::BTreeMap;

use abstore::connection::{Connection, Retry};
use abstore::keys::{BucketTimestamp, CounterKey, CounterKind, Env, Granularity, PARTITIONS};
use redis::Value;

use crate::store::StoreError;

/// Most hours one read returns (32 UTC days: the 31 days reads cover, rounded out to days).
pub const MAX_HOURS: usize = 32 * 24;

/// Which counters: the participations (evaluations), or one goal's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter<'a> {
    Participations,
    Goal(&'a str),
}

impl Counter<'_> {
    fn key(
        self,
        env: &Env,
        unique: bool,
        hour: BucketTimestamp,
        experiment: &str,
        variant: &str,
    ) -> Result<CounterKey, StoreError> {
        Ok(match self {
            Counter::Participations => CounterKey::evaluation(
                Some(env),
                if unique {
                    CounterKind::EvaluationUsers
                } else {
                    CounterKind::EvaluationCount
                },
                hour,
                experiment,
                variant,
            )?,
            Counter::Goal(goal) => CounterKey::goal(
                Some(env),
                if unique {
                    CounterKind::GoalUsers
                } else {
                    CounterKind::GoalCount
                },
                hour,
                experiment,
                goal,
                variant,
            )?,
        })
    }
}

/// Events and unique users of one variant in one hour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HourCount {
    pub events: u64,
    pub users: u64,
}

/// The hours from the one containing `from` to the one containing `to` (inclusive), each with
/// every counter's numbers per variant: `result[hour index][counter index][variant]`.
pub async fn read(
    conn: &Connection,
    env: &Env,
    experiment: &str,
    variants: &[&str],
    counters: &[Counter<'_>],
    (from, to): (i64, i64),
) -> Result<Vec<(i64, Vec<BTreeMap<String, HourCount>>)>, StoreError> {
    let first = BucketTimestamp::containing(from, Granularity::Hour)?;
    let last = BucketTimestamp::containing(to, Granularity::Hour)?;
    let mut hours = Vec::new();
    let mut hour = first;
    while hour <= last {
        if hours.len() >= MAX_HOURS {
            return Err(abstore::Error::InvalidArgument {
                field: "to",
                reason: format!("the range has more than {MAX_HOURS} hours"),
            }
            .into());
        }
        hours.push(hour);
        hour = hour.next(Granularity::Hour)?;
    }
    if variants.is_empty() || counters.is_empty() || hours.is_empty() {
        return Ok(hours
            .iter()
            .map(|h| (h.secs(), vec![BTreeMap::new(); counters.len()]))
            .collect());
    }
    let partitions: Vec<Option<u16>> = if conn.is_cluster() {
        (0..PARTITIONS).map(Some).collect()
    } else {
        vec![None]
    };
    let name = |key: CounterKey, partition: Option<u16>| -> Result<String, StoreError> {
        Ok(match partition {
            Some(p) => key.partitioned(p)?.to_string(),
            None => key.to_string(),
        })
    };
    // Layout, repeated for partition, hour, counter: one MGET (a count per variant), then a
    // PFCOUNT per variant. The keys of one MGET share the partition's slot on a cluster.
    let mut pipe = redis::pipe();
    for partition in &partitions {
        for hour in &hours {
            for counter in counters {
                let counts = variants
                    .iter()
                    .map(|v| name(counter.key(env, false, *hour, experiment, v)?, *partition))
                    .collect::<Result<Vec<_>, _>>()?;
                pipe.cmd("MGET").arg(counts);
                for v in variants {
                    pipe.cmd("PFCOUNT").arg(name(
                        counter.key(env, true, *hour, experiment, v)?,
                        *partition,
                    )?);
                }
            }
        }
    }
    let replies: Vec<Value> = conn
        .exec(&pipe, Retry::Idempotent, "read the hourly counters")
        .await?;
    let mut replies = replies.into_iter();
    let mut out: Vec<(i64, Vec<BTreeMap<String, HourCount>>)> = hours
        .iter()
        .map(|h| (h.secs(), vec![BTreeMap::new(); counters.len()]))
        .collect();
    for _partition in &partitions {
        for (_, per_counter) in &mut out {
            for numbers in per_counter.iter_mut() {
                let counts = match replies.next() {
                    Some(Value::Array(items)) => items,
                    other => {
                        return Err(unexpected(experiment, format!("MGET returned {other:?}")));
                    }
                };
                for (v, count) in variants.iter().zip(counts) {
                    let entry = numbers.entry((*v).to_owned()).or_default();
                    entry.events = entry.events.saturating_add(count_of(experiment, &count)?);
                }
                for v in variants {
                    let users = match replies.next() {
                        Some(Value::Int(n)) => u64::try_from(n).map_err(|_| {
                            unexpected(experiment, format!("negative cardinality {n}"))
                        })?,
                        other => {
                            return Err(unexpected(
                                experiment,
                                format!("PFCOUNT returned {other:?}"),
                            ));
                        }
                    };
                    let entry = numbers.entry((*v).to_owned()).or_default();
                    entry.users = entry.users.saturating_add(users);
                }
            }
        }
    }
    Ok(out)
}

fn unexpected(experiment: &str, reason: String) -> StoreError {
    abstore::Error::UnexpectedReply {
        key: experiment.to_owned(),
        reason,
    }
    .into()
}

fn count_of(experiment: &str, value: &Value) -> Result<u64, StoreError> {
    match value {
        Value::Nil => Ok(0),
        Value::BulkString(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| {
                unexpected(
                    experiment,
                    format!(
                        "a counter holds {:?}, not a count",
                        String::from_utf8_lossy(bytes)
                    ),
                )
            }),
        Value::Int(n) => {
            u64::try_from(*n).map_err(|_| unexpected(experiment, format!("negative count {n}")))
        }
        other => Err(unexpected(experiment, format!("counter reply {other:?}"))),
    }
}
