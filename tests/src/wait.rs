//! Waiting for replication and Sentinel states. Every wait polls on a short interval with a fresh
//! connection until a deadline, and on timeout reports what it waited for, the last state it saw
//! and the log tails of the processes involved.
//!
//! Targets are `host:port`, or a full `redis://[user:password@]host:port` URL when the server
//! requires authentication.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use redis::Value;
use redis::aio::MultiplexedConnection;
use tokio::time::Instant;

use crate::error::HarnessError;
use crate::process::{ERROR_LOG_LINES, POLL_INTERVAL, log_tail_for_port};
use crate::sentinel::SentinelServer;

/// How long one connection attempt or one command may take before the harness gives up on it.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// What `ROLE` reports for a data node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
}

impl Role {
    /// The word Redis uses for the role in `ROLE` and `INFO replication`.
    pub fn as_redis_str(self) -> &'static str {
        match self {
            Role::Primary => "master",
            Role::Replica => "slave",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Primary => f.write_str("Primary"),
            Role::Replica => f.write_str("Replica"),
        }
    }
}

/// Waits until `ROLE` on `server_addr` reports `role` ("master" / "slave").
pub async fn wait_for_role(
    server_addr: &str,
    role: Role,
    within: Duration,
) -> Result<(), HarnessError> {
    let awaited = format!("{} to report role {role}", display_target(server_addr));
    let deadline = Instant::now() + within;
    poll(&awaited, within, deadline, &[server_addr], || async {
        let reported = query_role(server_addr).await?;
        if reported == role.as_redis_str() {
            Ok(())
        } else {
            Err(format!("role {reported}"))
        }
    })
    .await
}

/// `ROLE`'s first element: "master", "slave" or "sentinel".
pub async fn query_role(server_addr: &str) -> Result<String, String> {
    let reply = command(server_addr, "ROLE", &redis::cmd("ROLE"))
        .await
        .map_err(|e| e.to_string())?;
    match &reply {
        Value::Array(items) => items.first().and_then(value_string),
        _ => None,
    }
    .ok_or_else(|| format!("unexpected ROLE reply {reply:?}"))
}

/// Waits until the replica's link to its primary is up and no sync is in progress.
pub async fn wait_for_sync(replica_addr: &str, within: Duration) -> Result<(), HarnessError> {
    let awaited = format!(
        "{} to finish syncing with its primary (master_link_status:up, master_sync_in_progress:0)",
        display_target(replica_addr)
    );
    let deadline = Instant::now() + within;
    poll(&awaited, within, deadline, &[replica_addr], || async {
        let info = info_replication(replica_addr).await?;
        let role = info.get("role").map_or("?", String::as_str);
        let link = info.get("master_link_status").map_or("?", String::as_str);
        let syncing = info
            .get("master_sync_in_progress")
            .map_or("?", String::as_str);
        if role == Role::Replica.as_redis_str() && link == "up" && syncing == "0" {
            Ok(())
        } else {
            Err(format!(
                "role:{role} master_link_status:{link} master_sync_in_progress:{syncing}"
            ))
        }
    })
    .await
}

/// Waits until the replica has processed everything the primary had written when this was
/// called (replica `slave_repl_offset` >= primary `master_repl_offset`).
pub async fn wait_for_replication_offset(
    replica: &str,
    primary: &str,
    within: Duration,
) -> Result<(), HarnessError> {
    let deadline = Instant::now() + within;
    let target = poll(
        &format!("master_repl_offset of primary {}", display_target(primary)),
        within,
        deadline,
        &[primary],
        || async {
            let info = info_replication(primary).await?;
            info.get("master_repl_offset")
                .and_then(|offset| offset.parse::<u64>().ok())
                .ok_or_else(|| "INFO replication without master_repl_offset".to_owned())
        },
    )
    .await?;
    let awaited = format!(
        "replica {} to reach replication offset {target} of primary {}",
        display_target(replica),
        display_target(primary)
    );
    poll(&awaited, within, deadline, &[replica, primary], || async {
        let info = info_replication(replica).await?;
        let link = info.get("master_link_status").map_or("?", String::as_str);
        let offset = info.get("slave_repl_offset").map_or("?", String::as_str);
        match offset.parse::<u64>() {
            Ok(offset) if link == "up" && offset >= target => Ok(()),
            _ => Err(format!(
                "master_link_status:{link} slave_repl_offset:{offset}"
            )),
        }
    })
    .await
}

/// Waits until `sentinel` reports a primary for `master` other than `old`, and returns it.
pub async fn wait_for_failover(
    sentinel: &SentinelServer,
    master: &str,
    old: (&str, u16),
    within: Duration,
) -> Result<(String, u16), HarnessError> {
    let awaited = format!(
        "sentinel {} to report a primary for '{master}' other than {}:{}",
        sentinel.addr(),
        old.0,
        old.1
    );
    let url = sentinel.url();
    let deadline = Instant::now() + within;
    poll(&awaited, within, deadline, &[url.as_str()], || async {
        match sentinel_primary_addr(&url, master).await {
            Ok(Some((host, port))) if (host.as_str(), port) != old => Ok((host, port)),
            Ok(Some((host, port))) => Err(format!("primary still {host}:{port}")),
            Ok(None) => Err(format!("sentinel does not know '{master}'")),
            Err(error) => Err(error.to_string()),
        }
    })
    .await
}

/// Waits until `sentinel` is connected to at least `replicas` replicas of `master` (link to the
/// primary up) and knows at least `sentinels` other sentinels, none of them flagged down or
/// disconnected: the precondition for Sentinel to be able to fail over.
pub async fn wait_for_sentinels_to_know(
    sentinel: &SentinelServer,
    master: &str,
    replicas: usize,
    sentinels: usize,
    within: Duration,
) -> Result<(), HarnessError> {
    let awaited = format!(
        "sentinel {} to see {replicas} healthy replica(s) and {sentinels} other sentinel(s) of '{master}'",
        sentinel.addr()
    );
    let url = sentinel.url();
    let deadline = Instant::now() + within;
    poll(&awaited, within, deadline, &[url.as_str()], || async {
        let known_replicas = sentinel_entries(&url, "REPLICAS", master).await?;
        let known_sentinels = sentinel_entries(&url, "SENTINELS", master).await?;
        let healthy_replicas = known_replicas
            .iter()
            .filter(|r| {
                healthy(r) && r.get("master-link-status").is_some_and(|s| s == "ok")
            })
            .count();
        let healthy_sentinels = known_sentinels.iter().filter(|s| healthy(s)).count();
        if healthy_replicas >= replicas && healthy_sentinels >= sentinels {
            Ok(())
        } else {
            Err(format!(
                "{healthy_replicas} healthy of {} replicas [{}], {healthy_sentinels} healthy of {} sentinels [{}]",
                known_replicas.len(),
                describe(&known_replicas),
                known_sentinels.len(),
                describe(&known_sentinels)
            ))
        }
    })
    .await
}

fn healthy(entry: &HashMap<String, String>) -> bool {
    entry.get("flags").is_some_and(|flags| {
        !flags
            .split(',')
            .any(|f| matches!(f, "s_down" | "o_down" | "disconnected"))
    })
}

fn describe(entries: &[HashMap<String, String>]) -> String {
    entries
        .iter()
        .map(|e| {
            format!(
                "{}:{} {}",
                e.get("ip").map_or("?", String::as_str),
                e.get("port").map_or("?", String::as_str),
                e.get("flags").map_or("?", String::as_str)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `SENTINEL GET-MASTER-ADDR-BY-NAME`.
pub(crate) async fn sentinel_primary_addr(
    sentinel_url: &str,
    master: &str,
) -> Result<Option<(String, u16)>, HarnessError> {
    let name = "SENTINEL GET-MASTER-ADDR-BY-NAME";
    let reply = command(
        sentinel_url,
        name,
        redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(master),
    )
    .await?;
    let unexpected = |reply: &Value| HarnessError::UnexpectedReply {
        command: name.to_owned(),
        addr: display_target(sentinel_url),
        reply: format!("{reply:?}"),
    };
    match &reply {
        Value::Nil => Ok(None),
        Value::Array(items) if items.len() == 2 => {
            let host = value_string(&items[0]).ok_or_else(|| unexpected(&reply))?;
            let port = value_string(&items[1])
                .and_then(|p| p.parse::<u16>().ok())
                .ok_or_else(|| unexpected(&reply))?;
            Ok(Some((host, port)))
        }
        _ => Err(unexpected(&reply)),
    }
}

/// `SENTINEL REPLICAS|SENTINELS master` as one field map per entry.
async fn sentinel_entries(
    sentinel_url: &str,
    which: &str,
    master: &str,
) -> Result<Vec<HashMap<String, String>>, String> {
    let reply = command(
        sentinel_url,
        &format!("SENTINEL {which}"),
        redis::cmd("SENTINEL").arg(which).arg(master),
    )
    .await
    .map_err(|e| e.to_string())?;
    match &reply {
        Value::Array(items) | Value::Set(items) => items
            .iter()
            .map(|item| value_fields(item).ok_or_else(|| format!("unexpected entry {item:?}")))
            .collect(),
        _ => Err(format!("unexpected SENTINEL {which} reply {reply:?}")),
    }
}

/// Polls `probe` (which returns `Err(observation)` while the condition does not hold) until it
/// succeeds or `deadline` passes.
async fn poll<T, F, Fut>(
    awaited: &str,
    within: Duration,
    deadline: Instant,
    log_targets: &[&str],
    mut probe: F,
) -> Result<T, HarnessError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let mut last_observed = String::from("(no probe finished)");
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, probe()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(observed)) => last_observed = observed,
            Err(_) => {
                last_observed =
                    format!("{last_observed} (a probe was still running at the deadline)");
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(HarnessError::Timeout {
                awaited: awaited.to_owned(),
                within,
                last_observed,
                log_tail: log_tails(log_targets),
            });
        }
        tokio::time::sleep(POLL_INTERVAL.min(remaining)).await;
    }
}

fn log_tails(targets: &[&str]) -> String {
    targets
        .iter()
        .map(|target| {
            let tail = match target_port(target) {
                Some(port) => log_tail_for_port(port, ERROR_LOG_LINES),
                None => "(no port in address)".to_owned(),
            };
            format!("== {} ==\n{tail}", display_target(target))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Opens a multiplexed connection to `host:port` or a `redis://` URL.
pub(crate) async fn connect(target: &str) -> Result<MultiplexedConnection, HarnessError> {
    let redis_error = |source| HarnessError::Redis {
        command: "connecting".to_owned(),
        addr: display_target(target),
        source,
    };
    let client = redis::Client::open(target_url(target)).map_err(redis_error)?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(COMMAND_TIMEOUT))
        .set_response_timeout(Some(COMMAND_TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(redis_error)
}

async fn command(target: &str, name: &str, cmd: &redis::Cmd) -> Result<Value, HarnessError> {
    let mut connection = connect(target).await?;
    cmd.query_async::<Value>(&mut connection)
        .await
        .map_err(|source| HarnessError::Redis {
            command: name.to_owned(),
            addr: display_target(target),
            source,
        })
}

async fn info_replication(target: &str) -> Result<HashMap<String, String>, String> {
    let reply = command(
        target,
        "INFO replication",
        redis::cmd("INFO").arg("replication"),
    )
    .await
    .map_err(|e| e.to_string())?;
    let text = value_string(&reply).ok_or_else(|| format!("unexpected INFO reply {reply:?}"))?;
    Ok(parse_info(&text))
}

/// `key:value` lines of an INFO reply.
pub fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.trim_end().split_once(':'))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

fn value_string(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(text) => Some(text.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Okay => Some("OK".to_owned()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A flat `[key, value, key, value …]` array (RESP2) or a map (RESP3) as a field map.
fn value_fields(value: &Value) -> Option<HashMap<String, String>> {
    match value {
        Value::Array(items) if items.len() % 2 == 0 => items
            .chunks(2)
            .map(|pair| Some((value_string(&pair[0])?, value_string(&pair[1])?)))
            .collect(),
        Value::Map(pairs) => pairs
            .iter()
            .map(|(k, v)| Some((value_string(k)?, value_string(v)?)))
            .collect(),
        _ => None,
    }
}

fn target_url(target: &str) -> String {
    if target.contains("://") {
        target.to_owned()
    } else {
        format!("redis://{target}")
    }
}

/// The target without credentials, for messages.
fn display_target(target: &str) -> String {
    let without_scheme = target.split_once("://").map_or(target, |(_, rest)| rest);
    let without_user = without_scheme
        .rsplit_once('@')
        .map_or(without_scheme, |(_, rest)| rest);
    without_user
        .split('/')
        .next()
        .unwrap_or(without_user)
        .to_owned()
}

fn target_port(target: &str) -> Option<u16> {
    display_target(target)
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_shown_without_credentials() {
        // Timeout messages end up in CI logs; a password in a URL must not.
        assert_eq!(
            display_target("redis://:secret@127.0.0.1:7000/0"),
            "127.0.0.1:7000"
        );
        assert_eq!(display_target("127.0.0.1:7000"), "127.0.0.1:7000");
        assert_eq!(target_port("redis://u:p@127.0.0.1:7001"), Some(7001));
    }

    #[test]
    fn info_lines_become_fields() {
        let info = parse_info("# Replication\r\nrole:slave\r\nmaster_link_status:up\r\n");
        assert_eq!(info.get("role").map(String::as_str), Some("slave"));
        assert_eq!(
            info.get("master_link_status").map(String::as_str),
            Some("up")
        );
    }
}
