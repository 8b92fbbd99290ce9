//! Reading counters back: counts (`MGET`, summed over buckets) and unique users (`PFCOUNT`) per
//! variation for an hour, a day, or a range of days as a daily time series, and conversion rates.
//!
//! A whole query is one pipeline. Unique users over a range are the union of the buckets' HLLs,
//! merged into a `tmp:` key that carries an expiry and is removed in the same script, so a
//! crashed reader leaves nothing behind that lives (and `prune` never mistakes it for data).

use std::collections::BTreeMap;

use redis::Value;

use crate::connection::{Connection, Retry};
use crate::error::{Error, Result};
use crate::keys::{BucketTimestamp, CounterKey, CounterKind, Env, Granularity, Key, PARTITIONS};

/// How long a temporary merge key may live if its reader dies mid-script (it cannot, scripts are
/// atomic, but a key without expiry is never acceptable on this keyspace).
const TEMP_KEY_TTL_MS: u64 = 60_000;

/// KEYS[1] = temp key, KEYS[2..] = source HLLs. Returns the union's cardinality.
const MERGE_COUNT_SCRIPT: &str = r"
redis.call('PFMERGE', KEYS[1], unpack(KEYS, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local n = redis.call('PFCOUNT', KEYS[1])
redis.call('UNLINK', KEYS[1])
return n
";

/// What to read: the evaluation counters, or one goal's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metric {
    Evaluations,
    Goal(String),
}

impl Metric {
    fn key(
        &self,
        env: Option<&Env>,
        unique: bool,
        bucket: BucketTimestamp,
        flag: &str,
        variation: &str,
        partition: Option<u16>,
    ) -> Result<String> {
        let key = match self {
            Metric::Evaluations => {
                let kind = if unique {
                    CounterKind::EvaluationUsers
                } else {
                    CounterKind::EvaluationCount
                };
                CounterKey::evaluation(env, kind, bucket, flag, variation)?
            }
            Metric::Goal(goal) => {
                let kind = if unique {
                    CounterKind::GoalUsers
                } else {
                    CounterKind::GoalCount
                };
                CounterKey::goal(env, kind, bucket, flag, goal, variation)?
            }
        };
        Ok(match partition {
            Some(p) => key.partitioned(p)?.to_string(),
            None => key.to_string(),
        })
    }
}

/// Count and (approximate, HyperLogLog) unique users of one variation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VariationStats {
    pub count: u64,
    pub users: u64,
}

/// The stats of every requested variation for one period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    /// Start of the period (hour or day), unix seconds.
    pub start: i64,
    pub variations: BTreeMap<String, VariationStats>,
}

/// Daily points over a range, and the range's totals (users are the union over the range, not
/// the sum of the days: a user seen on two days counts once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub points: Vec<Point>,
    pub total: BTreeMap<String, VariationStats>,
}

/// Conversion of one variation over a range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conversion {
    /// Unique users who were served the variation.
    pub evaluation_users: u64,
    /// Unique users who reached the goal.
    pub goal_users: u64,
    /// Goal events.
    pub goal_count: u64,
    /// `goal_users / evaluation_users`; `None` when nobody was evaluated.
    pub rate: Option<f64>,
}

/// Reads counters written by a [`crate::counters::Recorder`] with the same env and granularity.
#[derive(Debug, Clone)]
pub struct Reader {
    conn: Connection,
    env: Option<Env>,
    granularity: Granularity,
}

impl Reader {
    pub fn new(conn: Connection, env: Option<Env>, granularity: Granularity) -> Self {
        Self {
            conn,
            env,
            granularity,
        }
    }

    /// Stats for the hour containing `at` (unix seconds). Needs hourly buckets.
    pub async fn hour(
        &self,
        metric: &Metric,
        flag: &str,
        variations: &[&str],
        at: i64,
    ) -> Result<Point> {
        if self.granularity != Granularity::Hour {
            return Err(Error::InvalidArgument {
                field: "granularity",
                reason: "hourly reads need hourly buckets; this store keeps daily buckets".into(),
            });
        }
        let hour = BucketTimestamp::containing(at, Granularity::Hour)?;
        let series = self
            .query(metric, flag, variations, vec![vec![hour]])
            .await?;
        series
            .points
            .into_iter()
            .next()
            .ok_or(Error::UnexpectedReply {
                key: flag.to_owned(),
                reason: "no point returned".into(),
            })
    }

    /// Stats for the UTC day containing `at` (unix seconds).
    pub async fn day(
        &self,
        metric: &Metric,
        flag: &str,
        variations: &[&str],
        at: i64,
    ) -> Result<Point> {
        let day = BucketTimestamp::containing(at, Granularity::Day)?;
        let buckets = self.buckets_of_day(day)?;
        let series = self.query(metric, flag, variations, vec![buckets]).await?;
        series
            .points
            .into_iter()
            .next()
            .ok_or(Error::UnexpectedReply {
                key: flag.to_owned(),
                reason: "no point returned".into(),
            })
    }

    /// One point per UTC day from the day containing `from` to the day containing `to`
    /// (inclusive), and totals over the range.
    pub async fn days(
        &self,
        metric: &Metric,
        flag: &str,
        variations: &[&str],
        from: i64,
        to: i64,
    ) -> Result<Series> {
        let first = BucketTimestamp::containing(from, Granularity::Day)?;
        let last = BucketTimestamp::containing(to, Granularity::Day)?;
        if last < first {
            return Err(Error::InvalidArgument {
                field: "to",
                reason: format!("range ends ({to}) before it starts ({from})"),
            });
        }
        let days = (last.secs() - first.secs()) / 86_400 + 1;
        if days > 400 {
            return Err(Error::InvalidArgument {
                field: "to",
                reason: format!("range of {days} days is longer than 400 days"),
            });
        }
        let mut points = Vec::new();
        let mut day = first;
        loop {
            points.push(self.buckets_of_day(day)?);
            if day >= last {
                break;
            }
            day = day.next(Granularity::Day)?;
        }
        self.query(metric, flag, variations, points).await
    }

    /// Conversion rate per variation over the days from `from` to `to` (inclusive).
    pub async fn conversion(
        &self,
        flag: &str,
        goal: &str,
        variations: &[&str],
        from: i64,
        to: i64,
    ) -> Result<BTreeMap<String, Conversion>> {
        let evaluations = self
            .days(&Metric::Evaluations, flag, variations, from, to)
            .await?;
        let goals = self
            .days(&Metric::Goal(goal.to_owned()), flag, variations, from, to)
            .await?;
        Ok(variations
            .iter()
            .map(|v| {
                let e = evaluations.total.get(*v).copied().unwrap_or_default();
                let g = goals.total.get(*v).copied().unwrap_or_default();
                let rate = (e.users > 0).then(|| g.users as f64 / e.users as f64);
                (
                    (*v).to_owned(),
                    Conversion {
                        evaluation_users: e.users,
                        goal_users: g.users,
                        goal_count: g.count,
                        rate,
                    },
                )
            })
            .collect())
    }

    fn buckets_of_day(&self, day: BucketTimestamp) -> Result<Vec<BucketTimestamp>> {
        match self.granularity {
            Granularity::Day => Ok(vec![day]),
            Granularity::Hour => {
                let mut hours = Vec::with_capacity(24);
                let mut hour = day;
                for _ in 0..24 {
                    hours.push(hour);
                    hour = hour.next(Granularity::Hour)?;
                }
                Ok(hours)
            }
        }
    }

    /// One round trip. Sentinel mode: one pipeline. Cluster mode: one pipeline per partition of
    /// the flag (each in one slot), sent concurrently, the answers added up: counts sum, and so
    /// do unique users, since a user's events all go to one partition (docs/cluster.md).
    async fn query(
        &self,
        metric: &Metric,
        flag: &str,
        variations: &[&str],
        points: Vec<Vec<BucketTimestamp>>,
    ) -> Result<Series> {
        if variations.is_empty() {
            return Err(Error::InvalidArgument {
                field: "variations",
                reason: "no variation requested".into(),
            });
        }
        let partitions: Vec<Option<u16>> = if self.conn.is_cluster() {
            (0..PARTITIONS).map(Some).collect()
        } else {
            vec![None]
        };
        // One pipeline for every partition: the connection splits it per node, so a read is
        // one round trip to each shard.
        let mut pipe = redis::pipe();
        let mut layouts = Vec::with_capacity(partitions.len());
        for partition in &partitions {
            layouts
                .push(self.build_part(&mut pipe, metric, flag, variations, &points, *partition)?);
        }
        let replies: Vec<Value> = self
            .conn
            .exec(&pipe, Retry::Idempotent, "read counters")
            .await?;
        let mut replies = replies.into_iter();
        let mut sum: Option<Series> = None;
        for count_keys in &layouts {
            let part = parse_part(&mut replies, flag, variations, &points, count_keys)?;
            match &mut sum {
                None => sum = Some(part),
                Some(sum) => {
                    for (into, from) in sum.points.iter_mut().zip(&part.points) {
                        add(&mut into.variations, &from.variations);
                    }
                    add(&mut sum.total, &part.total);
                }
            }
        }
        sum.ok_or_else(|| Error::UnexpectedReply {
            key: flag.to_owned(),
            reason: "no partition answered".into(),
        })
    }

    /// Per point an MGET of every count key and a PFCOUNT per variation; for a multi-point
    /// range, the range's unique users per variation: a merge script in Sentinel mode, a
    /// PFCOUNT of every bucket (a union, the keys sharing the partition's slot) in cluster mode.
    /// Adds one partition's commands to `pipe`; returns the count keys of each point.
    fn build_part(
        &self,
        pipe: &mut redis::Pipeline,
        metric: &Metric,
        flag: &str,
        variations: &[&str],
        points: &[Vec<BucketTimestamp>],
        partition: Option<u16>,
    ) -> Result<Vec<Vec<String>>> {
        let env = self.env.as_ref();
        let mut count_keys: Vec<Vec<String>> = Vec::with_capacity(points.len());
        for buckets in points {
            let mut keys = Vec::with_capacity(buckets.len() * variations.len());
            for v in variations {
                for b in buckets {
                    keys.push(metric.key(env, false, *b, flag, v, partition)?);
                }
            }
            pipe.cmd("MGET").arg(&keys);
            for v in variations {
                let users = buckets
                    .iter()
                    .map(|b| metric.key(env, true, *b, flag, v, partition))
                    .collect::<Result<Vec<_>>>()?;
                pipe.cmd("PFCOUNT").arg(users);
            }
            count_keys.push(keys);
        }
        let range = points.len() > 1;
        if range {
            for v in variations {
                let mut keys = Vec::new();
                for buckets in points {
                    for b in buckets {
                        keys.push(metric.key(env, true, *b, flag, v, partition)?);
                    }
                }
                if partition.is_some() {
                    pipe.cmd("PFCOUNT").arg(keys);
                } else {
                    let temp = Key::temp(env, &uuid::Uuid::new_v4().simple().to_string())?;
                    pipe.cmd("EVAL")
                        .arg(MERGE_COUNT_SCRIPT)
                        .arg(keys.len() + 1)
                        .arg(temp.to_string())
                        .arg(keys)
                        .arg(TEMP_KEY_TTL_MS);
                }
            }
        }
        Ok(count_keys)
    }
}

/// Reads one partition's replies (as [`Reader::build_part`] laid them out).
fn parse_part(
    replies: &mut impl Iterator<Item = Value>,
    flag: &str,
    variations: &[&str],
    points: &[Vec<BucketTimestamp>],
    count_keys: &[Vec<String>],
) -> Result<Series> {
    let range = points.len() > 1;
    let mut series = Series {
        points: Vec::with_capacity(points.len()),
        total: BTreeMap::new(),
    };
    for (buckets, keys) in points.iter().zip(count_keys) {
        let counts = match replies.next() {
            Some(Value::Array(items)) => items,
            other => {
                return Err(Error::UnexpectedReply {
                    key: keys.first().cloned().unwrap_or_default(),
                    reason: format!("MGET returned {other:?}"),
                });
            }
        };
        let mut stats: BTreeMap<String, VariationStats> = BTreeMap::new();
        let per_variation = buckets.len();
        for (vi, v) in variations.iter().enumerate() {
            let mut count = 0u64;
            for bi in 0..per_variation {
                let idx = vi * per_variation + bi;
                let key = keys.get(idx).map(String::as_str).unwrap_or_default();
                count = count.saturating_add(parse_count(key, counts.get(idx))?);
            }
            let users = as_u64(flag, replies.next())?;
            stats.insert((*v).to_owned(), VariationStats { count, users });
        }
        for (v, s) in &stats {
            let total = series.total.entry(v.clone()).or_default();
            total.count = total.count.saturating_add(s.count);
            total.users = s.users; // replaced below for ranges
        }
        series.points.push(Point {
            start: buckets.first().map(|b| b.secs()).unwrap_or_default(),
            variations: stats,
        });
    }
    if range {
        for v in variations {
            let users = as_u64(flag, replies.next())?;
            series.total.entry((*v).to_owned()).or_default().users = users;
        }
    }
    Ok(series)
}

/// Adds one partition's stats into the sum.
fn add(into: &mut BTreeMap<String, VariationStats>, from: &BTreeMap<String, VariationStats>) {
    for (v, s) in from {
        let sum = into.entry(v.clone()).or_default();
        sum.count = sum.count.saturating_add(s.count);
        sum.users = sum.users.saturating_add(s.users);
    }
}

fn parse_count(key: &str, value: Option<&Value>) -> Result<u64> {
    let bad = |what: String| Error::UnexpectedReply {
        key: key.to_owned(),
        reason: what,
    };
    match value {
        None | Some(Value::Nil) => Ok(0),
        Some(Value::BulkString(b)) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| {
                bad(format!(
                    "counter holds {:?}, not a non-negative integer",
                    String::from_utf8_lossy(b)
                ))
            }),
        Some(Value::Int(n)) => u64::try_from(*n).map_err(|_| bad(format!("negative count {n}"))),
        Some(other) => Err(bad(format!("counter reply {other:?}"))),
    }
}

fn as_u64(flag: &str, value: Option<Value>) -> Result<u64> {
    match value {
        Some(Value::Int(n)) => u64::try_from(n).map_err(|_| Error::UnexpectedReply {
            key: flag.to_owned(),
            reason: format!("negative cardinality {n}"),
        }),
        other => Err(Error::UnexpectedReply {
            key: flag.to_owned(),
            reason: format!("PFCOUNT returned {other:?}"),
        }),
    }
}
