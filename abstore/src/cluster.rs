//! Redis Cluster routing for [`Connection`](crate::connection::Connection) (`redis+cluster://`).
//!
//! Every command the library sends in cluster mode is single-slot (the cluster key layout puts
//! an event's keys, and a flag partition's counters, under one hash tag). A pipeline whose
//! commands are in one slot goes to that slot's primary whole; one spanning slots is split into
//! one pipeline per node, sent at once (a batch or a 31-day read is one round trip per node). The slot map comes from `CLUSTER SLOTS` and is refreshed when
//! a node redirects (`MOVED`), or a link breaks (a failover: the cluster promotes a replica, the
//! next refresh names it).
//!
//! Redirects are followed per command, so nothing is sent twice: a `MOVED` or `ASK` reply means
//! the node did not run that command, and only the redirected commands go to the node named
//! (`ASK` with `ASKING` first, for one command only, as the cluster specification requires: the
//! slot is being migrated and only keys already moved are served there). Why not the redis
//! crate's `cluster-async`: it resends a whole pipeline after a broken link or a redirect of
//! any of its commands, which double counts non-idempotent writes (INCRBY without an event id)
//! and loses the "sent or not" distinction the recorder's guarantees rest on
//! (docs/durability.md).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{Arg, Cmd, ErrorKind, FromRedisValue, Pipeline, RedisError, Value};
use tokio::sync::Mutex;

use crate::connection::{
    Connection, ExecFailure, Failure, HostPort, RETRY_BACKOFF, Retry, classify, classify_value,
};
use crate::error::Error;
use crate::keys::{CLUSTER_SLOTS, key_slot};

/// Redirect rounds one pipeline may take (a slot moving twice while it is sent).
const MAX_REDIRECTS: usize = 5;
/// A slot map refreshed this recently is not asked for again when a slot is still unserved
/// (a failover in progress): callers back off instead of flooding the nodes.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_millis(100);
const NO_NODE: u16 = u16::MAX;

/// The slot map and one multiplexed link per node.
#[derive(Debug)]
pub(crate) struct Router {
    state: Mutex<RouterState>,
}

#[derive(Debug)]
struct RouterState {
    /// Every node address seen: the URL's seeds, then the map's primaries.
    nodes: Vec<HostPort>,
    /// Slot → index into `nodes` of its primary, or [`NO_NODE`].
    slots: Vec<u16>,
    links: HashMap<HostPort, MultiplexedConnection>,
    /// The map must be asked for again before it is trusted.
    stale: bool,
    refreshed_at: Option<Instant>,
}

impl RouterState {
    fn node_index(&mut self, node: &HostPort) -> u16 {
        match self.nodes.iter().position(|n| n == node) {
            Some(i) => u16::try_from(i).unwrap_or(NO_NODE),
            None => {
                self.nodes.push(node.clone());
                u16::try_from(self.nodes.len() - 1).unwrap_or(NO_NODE)
            }
        }
    }

    fn primary_of(&self, slot: u16) -> Option<&HostPort> {
        let index = *self.slots.get(usize::from(slot))?;
        self.nodes.get(usize::from(index))
    }
}

impl Router {
    pub(crate) fn new(seeds: &[HostPort]) -> Router {
        Router {
            state: Mutex::new(RouterState {
                nodes: seeds.to_vec(),
                slots: vec![NO_NODE; usize::from(CLUSTER_SLOTS)],
                links: HashMap::new(),
                stale: true,
                refreshed_at: None,
            }),
        }
    }
}

/// The slot of a pipeline: the slot of every key it names, `None` when it names none (`WAIT`,
/// `SCRIPT LOAD`), an error when its keys are in several slots.
pub(crate) fn pipeline_slot(pipe: &Pipeline) -> Result<Option<u16>, RedisError> {
    let mut slot = None;
    for cmd in pipe.cmd_iter() {
        if let Some(key) = first_key(cmd) {
            let this = key_slot(key);
            match slot {
                None => slot = Some(this),
                Some(s) if s == this => {}
                Some(s) => {
                    return Err(RedisError::from((
                        ErrorKind::Client,
                        "pipeline spans several hash slots",
                        format!(
                            "slots {s} and {this}: in cluster mode every key of a pipeline must share a hash tag"
                        ),
                    )));
                }
            }
        }
    }
    Ok(slot)
}

/// The first key of a command, for the commands the library and the jobs send.
fn first_key(cmd: &Cmd) -> Option<&[u8]> {
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .filter_map(|a| match a {
            Arg::Simple(bytes) => Some(bytes),
            _ => None,
        })
        .collect();
    let name = args.first()?.to_ascii_uppercase();
    match name.as_slice() {
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO" => {
            let numkeys: usize = std::str::from_utf8(args.get(2)?).ok()?.parse().ok()?;
            if numkeys == 0 {
                None
            } else {
                args.get(3).copied()
            }
        }
        b"WAIT" | b"SCRIPT" | b"PING" | b"ROLE" | b"INFO" | b"DBSIZE" | b"SCAN" | b"CLUSTER"
        | b"ASKING" | b"READONLY" | b"FUNCTION" | b"CONFIG" | b"CLIENT" | b"MULTI" | b"EXEC" => {
            None
        }
        _ => args.get(1).copied(),
    }
}

/// Whether `cmd` is a `WAIT`.
fn is_wait(cmd: &Cmd) -> bool {
    cmd.args_iter()
        .next()
        .is_some_and(|a| matches!(a, Arg::Simple(name) if name.eq_ignore_ascii_case(b"WAIT")))
}

/// `(slot, address)` of a `MOVED` or `ASK` reply, and whether it is an `ASK`.
fn redirect(value: &Value) -> Option<(u16, HostPort, bool)> {
    let Value::ServerError(e) = value else {
        return None;
    };
    let error = RedisError::from(e.clone());
    let ask = error.kind() == ErrorKind::Server(redis::ServerErrorKind::Ask);
    let (addr, slot) = error.redirect_node()?;
    let (host, port) = addr.rsplit_once(':')?;
    Some((
        slot,
        HostPort {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: port.parse().ok()?,
        },
        ask,
    ))
}

fn unresolved() -> HostPort {
    HostPort {
        host: "unresolved".into(),
        port: 0,
    }
}

impl Connection {
    /// Sends a single-slot `pipe` to its slot's primary with per-command replies, following
    /// `MOVED` and `ASK` per command. A broken link is an [`ExecFailure`] (`sent` when the
    /// pipeline may have reached the node).
    pub(crate) async fn cluster_exec_each(
        &self,
        router: &Router,
        pipe: &Pipeline,
        deadline: Instant,
    ) -> Result<(HostPort, Vec<Value>), ExecFailure> {
        let commands: Vec<&Cmd> = pipe.cmd_iter().collect();
        let (node, mut values) = match pipeline_slot(pipe) {
            Ok(slot) => {
                let node = self.cluster_node(router, slot, deadline).await?;
                let mut whole = pipe.clone();
                whole.ignore_errors();
                let values = self.cluster_send(router, &node, &whole).await?;
                (node, values)
            }
            // Several slots: one pipeline per node.
            Err(_) => self.cluster_send_split(router, &commands, deadline).await?,
        };
        if values.len() != commands.len() {
            // Replies of `.ignore()`d commands are dropped, so replies no longer line up with
            // commands: nothing can be resent safely. The library never ignores in cluster mode.
            return Ok((node, values));
        }
        // A WAIT in the pipeline counted the replicas of the writes that ran where it ran: a
        // redirected write is followed by the same WAIT on its new node, and the least count
        // stands (never more acknowledgement than every write got).
        let waits: Vec<usize> = commands
            .iter()
            .enumerate()
            .filter(|(_, cmd)| is_wait(cmd))
            .map(|(i, _)| i)
            .collect();
        for _ in 0..MAX_REDIRECTS {
            let redirected: Vec<(usize, u16, HostPort, bool)> = values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| redirect(v).map(|(slot, to, ask)| (i, slot, to, ask)))
                .collect();
            if redirected.is_empty() {
                break;
            }
            let mut by_node: Vec<(HostPort, Vec<(usize, bool)>)> = Vec::new();
            for (i, slot, to, ask) in redirected {
                if !ask {
                    router.moved(slot, &to).await;
                }
                match by_node.iter_mut().find(|(n, _)| *n == to) {
                    Some((_, list)) => list.push((i, ask)),
                    None => by_node.push((to, vec![(i, ask)])),
                }
            }
            for (to, list) in by_node {
                let mut again = redis::pipe();
                again.ignore_errors();
                for (i, ask) in &list {
                    if *ask {
                        again.cmd("ASKING");
                    }
                    if let Some(cmd) = commands.get(*i) {
                        again.add_command((*cmd).clone());
                    }
                }
                for &w in &waits {
                    if let Some(cmd) = commands.get(w) {
                        again.add_command((*cmd).clone());
                    }
                }
                tracing::debug!(node = %to, commands = list.len(), "following cluster redirects");
                let mut replies = self.cluster_send(router, &to, &again).await?.into_iter();
                for (i, ask) in list {
                    if ask {
                        replies.next();
                    }
                    if let (Some(reply), Some(slot)) = (replies.next(), values.get_mut(i)) {
                        *slot = reply;
                    }
                }
                for &w in &waits {
                    if let (Some(Value::Int(here)), Some(Value::Int(before))) =
                        (replies.next(), values.get_mut(w))
                    {
                        *before = (*before).min(here);
                    }
                }
            }
        }
        Ok((node, values))
    }

    /// [`Connection::exec`] in cluster mode: the same retry rules, on the slot's primary.
    pub(crate) async fn cluster_exec<T: FromRedisValue>(
        &self,
        router: &Router,
        pipe: &Pipeline,
        retry: Retry,
        context: &'static str,
        deadline: Instant,
    ) -> crate::Result<T> {
        loop {
            let failure = match self.cluster_exec_each(router, pipe, deadline).await {
                Ok((server, values)) => {
                    let errors: Vec<(Failure, RedisError)> =
                        values.iter().filter_map(classify_value).collect();
                    // Resent only when no command ran (all refused before running).
                    let none_ran = !errors.is_empty()
                        && errors.len() == values.len()
                        && errors.iter().all(|(f, _)| *f == Failure::NotApplied);
                    if none_ran && Instant::now() < deadline {
                        tracing::debug!(server = %server, "retrying after a cluster refusal");
                        tokio::time::sleep(RETRY_BACKOFF).await;
                        continue;
                    }
                    // As a plain pipeline answers: errors inline for a caller that asked for
                    // `Vec<Value>` (ignore_errors), else the first server error.
                    return T::from_redis_value(Value::Array(values)).map_err(|e| Error::Redis {
                        server: server.to_string(),
                        context,
                        source: errors
                            .first()
                            .map_or_else(|| e.into(), |(_, first)| first.clone()),
                    });
                }
                Err(failure) => failure,
            };
            let ExecFailure {
                server,
                error,
                sent,
            } = failure;
            let kind = if sent {
                classify(&error)
            } else {
                Failure::NotApplied
            };
            let may_retry = match kind {
                Failure::NotApplied => true,
                Failure::Unknown => retry == Retry::Idempotent,
                Failure::Fatal => false,
            };
            if may_retry && Instant::now() < deadline {
                tracing::debug!(server = %server, error = %error, "retrying after a cluster node failed");
                tokio::time::sleep(RETRY_BACKOFF).await;
                continue;
            }
            let server = server.to_string();
            return Err(
                if kind == Failure::Unknown && retry == Retry::NotIdempotent {
                    Error::OutcomeUnknown {
                        server,
                        context,
                        source: error,
                    }
                } else {
                    Error::Redis {
                        server,
                        context,
                        source: error,
                    }
                },
            );
        }
    }

    /// Sends a keyless `pipe` (`SCRIPT LOAD`) to every primary: the one primary, or each
    /// primary of the cluster's slot map.
    pub async fn exec_on_every_primary(
        &self,
        pipe: &Pipeline,
        context: &'static str,
    ) -> crate::Result<()> {
        let Some(router) = &self.router else {
            let _: Value = self.exec(pipe, Retry::Idempotent, context).await?;
            return Ok(());
        };
        let deadline = Instant::now() + self.spec().failover_timeout;
        let failed = |failure: ExecFailure| Error::Redis {
            server: failure.server.to_string(),
            context,
            source: failure.error,
        };
        let primaries = self
            .cluster_primaries(router, deadline)
            .await
            .map_err(failed)?;
        let mut each = pipe.clone();
        each.ignore_errors();
        for node in primaries {
            let values = self
                .cluster_send(router, &node, &each)
                .await
                .map_err(failed)?;
            if let Some((_, error)) = values.iter().find_map(classify_value) {
                return Err(Error::Redis {
                    server: node.to_string(),
                    context,
                    source: error,
                });
            }
        }
        Ok(())
    }

    /// Sends `commands` (keys in several slots) as one pipeline per node serving them, all at
    /// once: each keyed command to its slot's primary, each keyless one (`WAIT`) to every node
    /// in its place. Replies come back in command order; a keyless command's is the smallest
    /// integer any node answered (`WAIT`: the replicas that acknowledged everywhere), else the
    /// first node's. A broken link to any node fails the whole pipeline (`sent`).
    async fn cluster_send_split(
        &self,
        router: &Router,
        commands: &[&Cmd],
        deadline: Instant,
    ) -> Result<(HostPort, Vec<Value>), ExecFailure> {
        let slots: Vec<Option<u16>> = commands
            .iter()
            .map(|cmd| first_key(cmd).map(key_slot))
            .collect();
        let mut nodes: Vec<HostPort> = Vec::new();
        let mut node_of: Vec<Option<usize>> = Vec::with_capacity(commands.len());
        let mut resolved: HashMap<u16, usize> = HashMap::new();
        for slot in &slots {
            let Some(slot) = *slot else {
                node_of.push(None);
                continue;
            };
            let index = match resolved.get(&slot) {
                Some(&index) => index,
                None => {
                    let node = self.cluster_node(router, Some(slot), deadline).await?;
                    let index = match nodes.iter().position(|n| *n == node) {
                        Some(index) => index,
                        None => {
                            nodes.push(node);
                            nodes.len() - 1
                        }
                    };
                    resolved.insert(slot, index);
                    index
                }
            };
            node_of.push(Some(index));
        }
        // Per node: its pipeline and, per command, where its reply is (or none).
        let mut pipes: Vec<Pipeline> = nodes
            .iter()
            .map(|_| {
                let mut p = redis::pipe();
                p.ignore_errors();
                p
            })
            .collect();
        let mut at: Vec<Vec<Option<usize>>> = vec![Vec::with_capacity(commands.len()); nodes.len()];
        for (cmd, node) in commands.iter().zip(&node_of) {
            for (n, pipe) in pipes.iter_mut().enumerate() {
                if node.is_none_or(|only| only == n) {
                    at[n].push(Some(pipe.len()));
                    pipe.add_command((*cmd).clone());
                } else {
                    at[n].push(None);
                }
            }
        }
        let sent = futures::future::join_all(
            nodes
                .iter()
                .zip(&pipes)
                .map(|(node, pipe)| self.cluster_send(router, node, pipe)),
        )
        .await;
        let mut replies = Vec::with_capacity(sent.len());
        for result in sent {
            replies.push(result?);
        }
        let mut values = Vec::with_capacity(commands.len());
        for (i, node) in node_of.iter().enumerate() {
            let reply_of = |n: usize| {
                at[n][i]
                    .and_then(|j| replies.get(n).and_then(|r| r.get(j)))
                    .cloned()
            };
            let value = match node {
                Some(n) => reply_of(*n),
                None => {
                    let all: Vec<Value> = (0..nodes.len()).filter_map(reply_of).collect();
                    let least = all
                        .iter()
                        .map(|v| match v {
                            Value::Int(n) => Some(*n),
                            _ => None,
                        })
                        .collect::<Option<Vec<i64>>>()
                        .and_then(|ints| ints.into_iter().min());
                    match least {
                        Some(n) => Some(Value::Int(n)),
                        None => all.into_iter().next(),
                    }
                }
            };
            values.push(value.unwrap_or(Value::Nil));
        }
        Ok((nodes.into_iter().next().unwrap_or_else(unresolved), values))
    }

    /// Sends `pipe` to `node` as it is.
    async fn cluster_send(
        &self,
        router: &Router,
        node: &HostPort,
        pipe: &Pipeline,
    ) -> Result<Vec<Value>, ExecFailure> {
        let mut conn = self
            .cluster_link(router, node)
            .await
            .map_err(|error| ExecFailure {
                server: node.clone(),
                error,
                sent: false,
            })?;
        match pipe.query_async::<Vec<Value>>(&mut conn).await {
            Ok(values) => Ok(values),
            Err(error) => {
                router.forget_link(node).await;
                Err(ExecFailure {
                    server: node.clone(),
                    error,
                    sent: true,
                })
            }
        }
    }

    /// The primary serving `slot` (any node for a keyless pipeline), refreshing the map when
    /// it is stale or names none.
    async fn cluster_node(
        &self,
        router: &Router,
        slot: Option<u16>,
        deadline: Instant,
    ) -> Result<HostPort, ExecFailure> {
        loop {
            let mut state = router.state.lock().await;
            let known = match slot {
                Some(slot) => state.primary_of(slot).cloned(),
                None => state
                    .slots
                    .iter()
                    .find(|&&i| i != NO_NODE)
                    .and_then(|&i| state.nodes.get(usize::from(i)).cloned()),
            };
            let recently = state
                .refreshed_at
                .is_some_and(|at| at.elapsed() < MIN_REFRESH_INTERVAL);
            match known {
                Some(node) if !state.stale => return Ok(node),
                Some(node) if recently => return Ok(node),
                _ if recently => {
                    drop(state);
                    if Instant::now() >= deadline {
                        return Err(ExecFailure {
                            server: unresolved(),
                            error: RedisError::from((
                                ErrorKind::Io,
                                "no node serves the slot",
                                format!("slot {slot:?}: the cluster names no primary for it"),
                            )),
                            sent: false,
                        });
                    }
                    tokio::time::sleep(MIN_REFRESH_INTERVAL).await;
                }
                _ => {
                    let result = self.refresh_locked(&mut state).await;
                    state.refreshed_at = Some(Instant::now());
                    if let Err(error) = result {
                        drop(state);
                        if Instant::now() >= deadline {
                            return Err(ExecFailure {
                                server: unresolved(),
                                error,
                                sent: false,
                            });
                        }
                    }
                }
            }
        }
    }

    /// Asks the known nodes, in turn, for `CLUSTER SLOTS` and takes the first answer.
    async fn refresh_locked(&self, state: &mut RouterState) -> Result<(), RedisError> {
        let mut last_error = None;
        for node in state.nodes.clone() {
            let conn = match state.links.get(&node) {
                Some(conn) => Ok(conn.clone()),
                None => self.node_link(&node).await,
            };
            let mut conn = match conn {
                Ok(conn) => conn,
                Err(e) => {
                    last_error = Some(e);
                    continue;
                }
            };
            match redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async::<Value>(&mut conn)
                .await
            {
                Ok(reply) => {
                    state.links.insert(node.clone(), conn);
                    let ranges = parse_slots(&reply, &node);
                    if ranges.is_empty() {
                        last_error = Some(RedisError::from((
                            ErrorKind::Server(redis::ServerErrorKind::ClusterDown),
                            "the cluster serves no slot yet",
                            node.to_string(),
                        )));
                        continue;
                    }
                    state.slots.fill(NO_NODE);
                    for (from, to, primary) in ranges {
                        let index = state.node_index(&primary);
                        for slot in from..=to.min(CLUSTER_SLOTS - 1) {
                            if let Some(s) = state.slots.get_mut(usize::from(slot)) {
                                *s = index;
                            }
                        }
                    }
                    state.stale = false;
                    tracing::debug!(asked = %node, "cluster slot map refreshed");
                    return Ok(());
                }
                Err(e) => {
                    state.links.remove(&node);
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| {
            RedisError::from((ErrorKind::Io, "no cluster node known", String::new()))
        }))
    }

    /// The link to `node`, opened once and shared.
    async fn cluster_link(
        &self,
        router: &Router,
        node: &HostPort,
    ) -> Result<MultiplexedConnection, RedisError> {
        if let Some(conn) = router.state.lock().await.links.get(node) {
            return Ok(conn.clone());
        }
        let conn = self.node_link(node).await;
        let mut state = router.state.lock().await;
        match conn {
            Ok(conn) => {
                tracing::info!(server = %node, url = %self.spec().redacted_url, "connected to cluster node");
                Ok(state.links.entry(node.clone()).or_insert(conn).clone())
            }
            Err(e) => {
                // Refused: the node is down, a failover may be under way.
                state.stale = true;
                Err(e)
            }
        }
    }

    /// Every primary of the slot map (refreshed first when stale), for commands that must
    /// reach each of them (`SCRIPT LOAD`).
    pub(crate) async fn cluster_primaries(
        &self,
        router: &Router,
        deadline: Instant,
    ) -> Result<Vec<HostPort>, ExecFailure> {
        self.cluster_node(router, None, deadline).await?;
        let state = router.state.lock().await;
        let mut primaries: Vec<HostPort> = Vec::new();
        for &index in &state.slots {
            if let Some(node) = state.nodes.get(usize::from(index))
                && !primaries.contains(node)
            {
                primaries.push(node.clone());
            }
        }
        Ok(primaries)
    }
}

impl Router {
    /// A `MOVED`: the slot is served by `to` now; the rest of the map is checked at the next
    /// request.
    async fn moved(&self, slot: u16, to: &HostPort) {
        let mut state = self.state.lock().await;
        let index = state.node_index(to);
        if let Some(s) = state.slots.get_mut(usize::from(slot)) {
            *s = index;
        }
        state.stale = true;
    }

    /// A broken link: dropped, and the map asked for again (the node may have failed over).
    pub(crate) async fn forget_link(&self, node: &HostPort) {
        let mut state = self.state.lock().await;
        if state.links.remove(node).is_some() {
            tracing::info!(server = %node, "dropping link to cluster node; will re-read the slot map");
        }
        state.stale = true;
    }
}

/// `(first slot, last slot, primary)` of a `CLUSTER SLOTS` reply; an empty or `?` address is
/// the node that answered.
fn parse_slots(reply: &Value, asked: &HostPort) -> Vec<(u16, u16, HostPort)> {
    parse_slot_ranges(reply, asked)
        .into_iter()
        .map(|(from, to, mut nodes)| (from, to, nodes.swap_remove(0)))
        .collect()
}

/// `(first slot, last slot, [primary, replicas…])` of a `CLUSTER SLOTS` reply.
fn parse_slot_ranges(reply: &Value, asked: &HostPort) -> Vec<(u16, u16, Vec<HostPort>)> {
    let Value::Array(entries) = reply else {
        return Vec::new();
    };
    let int = |v: &Value| match v {
        Value::Int(n) => u16::try_from(*n).ok(),
        _ => None,
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    entries
        .iter()
        .filter_map(|entry| {
            let Value::Array(fields) = entry else {
                return None;
            };
            let from = int(fields.first()?)?;
            let to = int(fields.get(1)?)?;
            let node = |value: &Value| {
                let Value::Array(node) = value else {
                    return None;
                };
                let host = text(node.first()?)?;
                let port = match node.get(1)? {
                    Value::Int(p) => u16::try_from(*p).ok()?,
                    _ => return None,
                };
                let host = if host.is_empty() || host == "?" {
                    asked.host.clone()
                } else {
                    host
                };
                Some(HostPort { host, port })
            };
            let nodes: Vec<HostPort> = fields.get(2..)?.iter().filter_map(node).collect();
            (!nodes.is_empty()).then_some((from, to, nodes))
        })
        .collect()
}

/// One shard of a cluster, as `CLUSTER SLOTS` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub primary: HostPort,
    pub replicas: Vec<HostPort>,
}

impl Connection {
    /// The shards of a cluster connection (each primary once, with its replicas), from one
    /// node's `CLUSTER SLOTS`: what jobs that visit every node (backup, prune) walk. An error
    /// for a connection that is not a cluster one.
    pub async fn cluster_shards(&self) -> crate::Result<Vec<Shard>> {
        if self.router.is_none() {
            return Err(Error::InvalidArgument {
                field: "url",
                reason: format!(
                    "{} is not a cluster URL (redis+cluster://)",
                    self.spec().redacted_url
                ),
            });
        }
        let mut pipe = redis::pipe();
        pipe.cmd("CLUSTER").arg("SLOTS");
        let (reply,): (Value,) = self.exec(&pipe, Retry::Idempotent, "CLUSTER SLOTS").await?;
        let asked = HostPort {
            host: String::new(),
            port: 0,
        };
        let mut shards: Vec<Shard> = Vec::new();
        for (_, _, mut nodes) in parse_slot_ranges(&reply, &asked) {
            let primary = nodes.remove(0);
            match shards.iter_mut().find(|s| s.primary == primary) {
                Some(shard) => {
                    for replica in nodes {
                        if !shard.replicas.contains(&replica) {
                            shard.replicas.push(replica);
                        }
                    }
                }
                None => shards.push(Shard {
                    primary,
                    replicas: nodes,
                }),
            }
        }
        Ok(shards)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_pipeline_routes_by_its_keys_and_refuses_two_slots() {
        let mut pipe = redis::pipe();
        pipe.cmd("EVALSHA")
            .arg("abc")
            .arg(2)
            .arg("ec:1:{f:3}:a")
            .arg("uc:1:{f:3}:a")
            .arg(1);
        pipe.cmd("WAIT").arg(1).arg(100);
        assert_eq!(pipeline_slot(&pipe).unwrap(), Some(key_slot(b"f:3")));

        let mut keyless = redis::pipe();
        keyless.cmd("SCRIPT").arg("LOAD").arg("return 1");
        keyless.cmd("EVAL").arg("return 1").arg(0);
        assert_eq!(pipeline_slot(&keyless).unwrap(), None);

        let mut two = redis::pipe();
        two.cmd("MGET").arg("ec:1:{f:3}:a");
        two.cmd("MGET").arg("ec:1:{f:4}:a");
        let error = pipeline_slot(&two).unwrap_err();
        assert!(error.to_string().contains("several hash slots"), "{error}");
    }

    #[test]
    fn redirects_name_slot_address_and_kind() {
        let moved = redis::parse_redis_value(b"-MOVED 3999 127.0.0.1:6381\r\n").unwrap();
        let (slot, to, ask) = redirect(&moved).unwrap();
        assert_eq!(
            (slot, to.host.as_str(), to.port, ask),
            (3999, "127.0.0.1", 6381, false)
        );
        let asked = redis::parse_redis_value(b"-ASK 12 10.1.2.3:7000\r\n").unwrap();
        let (slot, to, ask) = redirect(&asked).unwrap();
        assert_eq!(
            (slot, to.host.as_str(), to.port, ask),
            (12, "10.1.2.3", 7000, true)
        );
        let other = redis::parse_redis_value(b"-NOREPLICAS Not enough good replicas\r\n").unwrap();
        assert!(redirect(&other).is_none());
    }

    #[test]
    fn cluster_slots_replies_map_ranges_to_primaries() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(8191),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(7000), bulk("id1")]),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(7001), bulk("id2")]),
            ]),
            Value::Array(vec![
                Value::Int(8192),
                Value::Int(16383),
                Value::Array(vec![bulk(""), Value::Int(7002), bulk("id3")]),
            ]),
        ]);
        let asked = HostPort {
            host: "10.0.0.9".into(),
            port: 7002,
        };
        let ranges = parse_slots(&reply, &asked);
        assert_eq!(ranges.len(), 2);
        assert_eq!(ranges[0].0, 0);
        assert_eq!(ranges[0].1, 8191);
        assert_eq!(ranges[0].2.port, 7000);
        assert_eq!(
            ranges[1].2.host, "10.0.0.9",
            "an empty address is the node asked"
        );
    }
}
