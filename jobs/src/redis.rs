//! Redis access for the jobs: connecting (to the primary, or to a replica found through
//! Sentinel), SCAN pages, and reading a batch of keys with typed commands in pipelines that only
//! use what managed Redis allows (no SYNC, CONFIG or KEYS) and the operator's `backup` ACL role.

use abstore::connection::{Connection, ConnectionSpec, Endpoint, Retry};
use redis::Value;

use crate::error::{JobError, Result};
use crate::format::{Blob, Data, Record};

/// Keys asked for per SCAN call: large enough to amortise round trips, small enough that one
/// call never blocks the server noticeably.
pub const SCAN_COUNT: usize = 1000;

/// Connects for reading: to the primary (or the one server), or with `from_replica` to a healthy
/// replica the sentinels report. Fails clearly when a replica is asked for but none is healthy.
pub async fn connect(url: &str, from_replica: bool) -> Result<Connection> {
    let spec = ConnectionSpec::parse(url)?;
    if !from_replica {
        return Ok(Connection::connect(spec).await?);
    }
    let replicas = Connection::healthy_replicas(&spec).await?;
    let mut reasons = Vec::new();
    for replica in replicas {
        let direct = spec.direct(&replica);
        match Connection::connect(direct).await {
            Ok(conn) => match info_field(&conn, "replication", "role").await {
                // A sentinel's view can lag a failover: check the node really is a replica.
                Ok(Some(role)) if role == "slave" => return Ok(conn),
                Ok(role) => reasons.push(format!("{replica} is a {}", role.unwrap_or_default())),
                Err(e) => reasons.push(format!("{replica}: {e}")),
            },
            Err(e) => reasons.push(format!("{replica}: {e}")),
        }
    }
    Err(JobError::NoReplica {
        url: spec.redacted_url.clone(),
        reason: if reasons.is_empty() {
            "the sentinels report no replica that is up and linked to the primary".to_owned()
        } else {
            reasons.join("; ")
        },
    })
}

/// The servers a job that visits keys (backup, prune) reads: the one [`connect`] gives, or for
/// a cluster URL (`redis+cluster://`) one direct connection per shard: to its primary, or with
/// `from_replica` to a replica of it that is linked to the primary. A shard without such a
/// replica fails the job, naming the shard.
pub async fn connect_nodes(url: &str, from_replica: bool) -> Result<Vec<Connection>> {
    let spec = ConnectionSpec::parse(url)?;
    if !matches!(spec.endpoint, Endpoint::Cluster { .. }) {
        return Ok(vec![connect(url, from_replica).await?]);
    }
    let cluster = Connection::connect(spec.clone()).await?;
    let mut nodes = Vec::new();
    for shard in cluster.cluster_shards().await? {
        if !from_replica {
            nodes.push(Connection::connect(spec.direct(&shard.primary)).await?);
            continue;
        }
        let mut reasons = Vec::new();
        let mut found = None;
        for replica in &shard.replicas {
            match Connection::connect(spec.cluster_replica(replica)).await {
                Ok(conn) => match info_field(&conn, "replication", "master_link_status").await {
                    Ok(Some(status)) if status == "up" => {
                        found = Some(conn);
                        break;
                    }
                    Ok(status) => reasons.push(format!(
                        "{replica}: link to the primary {}",
                        status.unwrap_or_else(|| "absent (not a replica)".to_owned())
                    )),
                    Err(e) => reasons.push(format!("{replica}: {e}")),
                },
                Err(e) => reasons.push(format!("{replica}: {e}")),
            }
        }
        let Some(conn) = found else {
            return Err(JobError::NoReplica {
                url: spec.redacted_url.clone(),
                reason: format!(
                    "the shard of primary {} has no replica linked to it (CLUSTER SLOTS lists a replica once it has replicated data){}",
                    shard.primary,
                    if reasons.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", reasons.join("; "))
                    }
                ),
            });
        };
        nodes.push(conn);
    }
    Ok(nodes)
}

/// One field of `INFO <section>` (e.g. `server`/`redis_version`).
pub async fn info_field(conn: &Connection, section: &str, field: &str) -> Result<Option<String>> {
    let mut pipe = redis::pipe();
    pipe.cmd("INFO").arg(section);
    let (text,): (String,) = conn.exec(&pipe, Retry::Idempotent, "INFO").await?;
    Ok(text.lines().find_map(|line| {
        line.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
    }))
}

/// `DBSIZE`: the progress bar's total (an estimate: the keyspace moves during a backup).
pub async fn dbsize(conn: &Connection) -> Result<u64> {
    let mut pipe = redis::pipe();
    pipe.cmd("DBSIZE");
    let (size,): (u64,) = conn.exec(&pipe, Retry::Idempotent, "DBSIZE").await?;
    Ok(size)
}

/// One SCAN call: the next cursor (`0` when done) and a page of keys.
pub async fn scan_page(
    conn: &Connection,
    cursor: u64,
    pattern: Option<&str>,
) -> Result<(u64, Vec<Vec<u8>>)> {
    let mut pipe = redis::pipe();
    let cmd = pipe.cmd("SCAN").arg(cursor).arg("COUNT").arg(SCAN_COUNT);
    if let Some(pattern) = pattern {
        cmd.arg("MATCH").arg(pattern);
    }
    let ((next, keys),): ((u64, Vec<Vec<u8>>),) =
        conn.exec(&pipe, Retry::Idempotent, "SCAN").await?;
    Ok((next, keys))
}

/// What reading a batch found.
#[derive(Debug, Default)]
pub struct ReadBatch {
    pub records: Vec<Record>,
    /// Deleted, expired or retyped between SCAN and the read.
    pub vanished: u64,
    /// Keys of types the format does not hold, with their type, for the logs.
    pub unsupported: Vec<(Blob, String)>,
}

/// Reads `keys` with two pipelined round trips at most: `GET` + `PEXPIRETIME` for every key
/// (most ABStore keys are strings), then `TYPE`, the typed read and `PEXPIRETIME` for the keys
/// GET refused as not strings.
pub async fn read_batch(conn: &Connection, url: &str, keys: Vec<Vec<u8>>) -> Result<ReadBatch> {
    let mut batch = ReadBatch::default();
    let mut pipe = redis::pipe();
    for key in &keys {
        pipe.cmd("GET").arg(key).cmd("PEXPIRETIME").arg(key);
    }
    pipe.ignore_errors();
    let replies: Vec<Value> = conn.exec(&pipe, Retry::Idempotent, "GET").await?;
    if replies.len() != keys.len() * 2 {
        let key = keys.first().map(Vec::as_slice).unwrap_or_default();
        return Err(short_reply(url, "GET", key));
    }
    let mut others = Vec::new();
    let mut replies = replies.into_iter();
    for key in keys {
        let (Some(value), Some(expiry)) = (replies.next(), replies.next()) else {
            return Err(short_reply(url, "GET", &key));
        };
        match value {
            Value::Nil => batch.vanished += 1,
            Value::ServerError(e) if e.code() == "WRONGTYPE" => others.push(key),
            Value::ServerError(e) => return Err(key_error(url, "GET", &key, e.to_string())),
            other => {
                // Owned: the reply's buffer becomes the record's, no copy.
                let bytes = match other {
                    Value::BulkString(bytes) => bytes,
                    other => bytes_of(&other).ok_or_else(|| {
                        key_error(url, "GET", &key, format!("unexpected reply {other:?}"))
                    })?,
                };
                match expiry_of(url, &key, &expiry)? {
                    Expiry::Gone => batch.vanished += 1,
                    Expiry::At(at) => batch.records.push(Record {
                        key: Blob(key),
                        expire_at_ms: at,
                        value: Data::String(Blob(bytes)),
                    }),
                }
            }
        }
    }
    if !others.is_empty() {
        read_typed(conn, url, others, &mut batch).await?;
    }
    Ok(batch)
}

/// Commands per key in the typed pipeline: TYPE, four typed reads, PEXPIRETIME. Asking all four
/// reads saves a round trip; only the one matching TYPE is used, the others answer WRONGTYPE.
const TYPED_COMMANDS: usize = 6;

async fn read_typed(
    conn: &Connection,
    url: &str,
    keys: Vec<Vec<u8>>,
    batch: &mut ReadBatch,
) -> Result<()> {
    let mut pipe = redis::pipe();
    for key in &keys {
        pipe.cmd("TYPE").arg(key);
        pipe.cmd("HGETALL").arg(key);
        pipe.cmd("SMEMBERS").arg(key);
        pipe.cmd("LRANGE").arg(key).arg(0).arg(-1);
        pipe.cmd("ZRANGE").arg(key).arg(0).arg(-1).arg("WITHSCORES");
        pipe.cmd("PEXPIRETIME").arg(key);
    }
    pipe.ignore_errors();
    let replies: Vec<Value> = conn.exec(&pipe, Retry::Idempotent, "TYPE").await?;
    for (key, group) in keys.into_iter().zip(replies.chunks(TYPED_COMMANDS)) {
        let [kind, hash, set, list, zset, expiry] = group else {
            return Err(short_reply(url, "TYPE", &key));
        };
        let kind = match kind {
            Value::SimpleString(s) => s.clone(),
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            Value::Okay => "ok".to_owned(),
            other => return Err(key_error(url, "TYPE", &key, format!("{other:?}"))),
        };
        let (command, reply) = match kind.as_str() {
            "none" => {
                batch.vanished += 1;
                continue;
            }
            "hash" => ("HGETALL", hash),
            "set" => ("SMEMBERS", set),
            "list" => ("LRANGE", list),
            "zset" => ("ZRANGE", zset),
            _ => {
                batch.unsupported.push((Blob(key), kind));
                continue;
            }
        };
        if let Value::ServerError(e) = reply {
            if e.code() == "WRONGTYPE" {
                // Replaced by another type between TYPE and the read: treat as gone.
                batch.vanished += 1;
                continue;
            }
            return Err(key_error(url, command, &key, e.to_string()));
        }
        let items = items_of(reply)
            .ok_or_else(|| key_error(url, command, &key, format!("unexpected reply {reply:?}")))?;
        if items.is_empty() {
            // Redis has no empty collections: an empty answer means the key is gone.
            batch.vanished += 1;
            continue;
        }
        let pairs = || {
            items
                .chunks(2)
                .map(|kv| match kv {
                    [a, b] => Some((a.clone(), b.clone())),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| key_error(url, command, &key, "odd number of items".to_owned()))
        };
        let value = match kind.as_str() {
            "hash" => Data::Hash(
                pairs()?
                    .into_iter()
                    .map(|(f, v)| (Blob(f), Blob(v)))
                    .collect(),
            ),
            "set" => Data::Set(items.iter().cloned().map(Blob).collect()),
            "list" => Data::List(items.iter().cloned().map(Blob).collect()),
            _ => Data::Zset(
                pairs()?
                    .into_iter()
                    .map(|(m, s)| (Blob(m), String::from_utf8_lossy(&s).into_owned()))
                    .collect(),
            ),
        };
        match expiry_of(url, &key, expiry)? {
            Expiry::Gone => batch.vanished += 1,
            Expiry::At(at) => batch.records.push(Record {
                key: Blob(key),
                expire_at_ms: at,
                value,
            }),
        }
    }
    Ok(())
}

enum Expiry {
    /// The key disappeared before PEXPIRETIME ran.
    Gone,
    At(Option<i64>),
}

fn expiry_of(url: &str, key: &[u8], reply: &Value) -> Result<Expiry> {
    match reply {
        Value::Int(-2) => Ok(Expiry::Gone),
        Value::Int(-1) => Ok(Expiry::At(None)),
        Value::Int(at) => Ok(Expiry::At(Some(*at))),
        Value::ServerError(e) => Err(key_error(
            url,
            "PEXPIRETIME",
            key,
            format!("{e} (PEXPIRETIME needs Redis 7.0 or newer)"),
        )),
        other => Err(key_error(
            url,
            "PEXPIRETIME",
            key,
            format!("unexpected reply {other:?}"),
        )),
    }
}

fn bytes_of(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        Value::Okay => Some(b"OK".to_vec()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        // RESP3 scores; Rust prints the shortest text that parses back to the same double.
        Value::Double(d) => Some(d.to_string().into_bytes()),
        _ => None,
    }
}

/// Flattens array (RESP2), map, set and nested pair (RESP3) replies into byte strings.
fn items_of(value: &Value) -> Option<Vec<Vec<u8>>> {
    fn push(value: &Value, out: &mut Vec<Vec<u8>>) -> Option<()> {
        match value {
            Value::Array(items) | Value::Set(items) => {
                items.iter().try_for_each(|item| push(item, out))
            }
            Value::Map(pairs) => pairs.iter().try_for_each(|(k, v)| {
                push(k, out)?;
                push(v, out)
            }),
            other => {
                out.push(bytes_of(other)?);
                Some(())
            }
        }
    }
    if !matches!(value, Value::Array(_) | Value::Set(_) | Value::Map(_)) {
        return None;
    }
    let mut out = Vec::new();
    push(value, &mut out)?;
    Some(out)
}

pub(crate) fn key_error(url: &str, command: &'static str, key: &[u8], reason: String) -> JobError {
    JobError::Key {
        url: url.to_owned(),
        command,
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    }
}

fn short_reply(url: &str, command: &'static str, key: &[u8]) -> JobError {
    key_error(url, command, key, "fewer replies than commands".to_owned())
}

/// Redis glob matching (`*`, `?`, `[abc]`, `[^a-z]`, `\x`), the same rules as SCAN MATCH, for
/// filtering client-side when several `--match` patterns are given (one SCAN serves them all,
/// and a key matching two patterns is still backed up once).
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => {
            (0..=text.len()).any(|skip| text.get(skip..).is_some_and(|tail| glob_match(rest, tail)))
        }
        Some((b'?', rest)) => text
            .split_first()
            .is_some_and(|(_, tail)| glob_match(rest, tail)),
        Some((b'[', rest)) => {
            let Some((&c, tail)) = text.split_first() else {
                return false;
            };
            let (negate, mut class) = match rest.split_first() {
                Some((b'^', after)) => (true, after),
                _ => (false, rest),
            };
            let mut matched = false;
            loop {
                match class {
                    [] => return false, // unclosed class: Redis treats it as no match
                    [b']', after @ ..] => {
                        class = after;
                        break;
                    }
                    [b'\\', escaped, after @ ..] => {
                        matched |= *escaped == c;
                        class = after;
                    }
                    [lo, b'-', hi, after @ ..] if *hi != b']' => {
                        let (lo, hi) = if lo <= hi { (*lo, *hi) } else { (*hi, *lo) };
                        matched |= (lo..=hi).contains(&c);
                        class = after;
                    }
                    [single, after @ ..] => {
                        matched |= *single == c;
                        class = after;
                    }
                }
            }
            matched != negate && glob_match(class, tail)
        }
        Some((b'\\', rest)) if !rest.is_empty() => match (rest.split_first(), text.split_first()) {
            (Some((p, prest)), Some((t, ttail))) => p == t && glob_match(prest, ttail),
            _ => false,
        },
        Some((p, rest)) => text
            .split_first()
            .is_some_and(|(t, tail)| t == p && glob_match(rest, tail)),
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs_match_like_redis_scan_match() {
        // Several --match patterns are filtered here, so the rules must be SCAN MATCH's.
        let cases: &[(&str, &str, bool)] = &[
            ("ec:*", "ec:1700000000:f:v", true),
            ("ec:*", "uc:1:f:v", false),
            ("*:flag:*", "prod:ec:1:flag:v", true),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h[ae]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-c]llo", "hbllo", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "axb", false),
            ("*", "", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                glob_match(pattern.as_bytes(), text.as_bytes()),
                *expected,
                "{pattern} vs {text}"
            );
        }
    }
}
