//! One cluster heal pass with I/O: observe every member, [`plan`](super::plan::plan), apply.

use redis::aio::MultiplexedConnection;
use serde::Serialize;

use super::nodes::{ClusterNodes, parse};
use super::plan::{
    Action, ClusterPlan, ClusterTarget, Decision, MemberObservation, NodeState, plan,
};
use crate::heal::{Auth, Endpoint, NodeAccess, connect, info_fields};

/// A cluster-mode store and how the operator reaches its members.
#[derive(Clone, Debug)]
pub struct ClusterHealTarget {
    pub cluster: ClusterTarget,
    pub operator_auth: Option<Auth>,
    pub operator_auth_previous: Option<Auth>,
    pub tls_ca: Option<Vec<u8>>,
}

impl NodeAccess for ClusterHealTarget {
    fn tls_ca(&self) -> Option<&[u8]> {
        self.tls_ca.as_deref()
    }

    fn operator_auth(&self) -> Option<&Auth> {
        self.operator_auth.as_ref()
    }

    fn operator_auth_previous(&self) -> Option<&Auth> {
        self.operator_auth_previous.as_ref()
    }
}

/// What one pass saw, decided and did.
#[derive(Debug, Serialize)]
pub struct ClusterReport {
    pub decision: Decision,
    pub primaries: Vec<Option<Endpoint>>,
    pub warnings: Vec<String>,
    /// Actions applied, in order, with the error of any that failed.
    pub applied: Vec<(Action, Option<String>)>,
}

impl ClusterReport {
    /// Nothing to do and nothing waited for: the cluster is as the target says.
    pub fn settled(&self) -> bool {
        self.decision == Decision::Steady && self.applied.is_empty() && self.warnings.is_empty()
    }

    /// A slot move is half-done: the resharding must run to finish it (nothing else does).
    pub fn migrating(&self) -> bool {
        matches!(self.decision, Decision::Migrating { .. })
    }
}

/// Observes every member (in parallel; an unreachable one is an observation, not an error).
pub async fn observe(target: &ClusterHealTarget) -> Vec<MemberObservation> {
    futures::future::join_all(target.cluster.members.iter().map(|member| async move {
        MemberObservation {
            member: member.clone(),
            state: observe_member(target, &member.endpoint).await,
        }
    }))
    .await
}

async fn observe_member(
    target: &ClusterHealTarget,
    endpoint: &Endpoint,
) -> Result<NodeState, String> {
    let mut conn = node_conn(target, endpoint).await?;
    let (nodes, keys, persistence, replication): (String, u64, String, String) = redis::pipe()
        .cmd("CLUSTER")
        .arg("NODES")
        .cmd("DBSIZE")
        .cmd("INFO")
        .arg("persistence")
        .cmd("INFO")
        .arg("replication")
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    let nodes: ClusterNodes = parse(&nodes).map_err(|e| e.to_string())?;
    let loading = info_fields(&persistence)
        .get("loading")
        .is_some_and(|v| v == "1");
    let replication = info_fields(&replication);
    let synced = replication.get("role").is_some_and(|r| r == "slave")
        && replication
            .get("master_link_status")
            .is_some_and(|s| s == "up")
        && replication
            .get("master_sync_in_progress")
            .is_none_or(|s| s == "0");
    Ok(NodeState {
        nodes,
        keys,
        loading,
        synced,
    })
}

async fn node_conn(
    target: &ClusterHealTarget,
    node: &Endpoint,
) -> Result<MultiplexedConnection, String> {
    connect(target, node, target.operator_auth.as_ref()).await
}

/// Applies one action to the member it names.
pub async fn apply(target: &ClusterHealTarget, action: &Action) -> Result<(), String> {
    let node = match action {
        Action::Meet { node, .. }
        | Action::AddSlots { node, .. }
        | Action::Replicate { node, .. }
        | Action::Forget { node, .. } => node,
    };
    let mut cmd = redis::cmd("CLUSTER");
    match action {
        Action::Meet { peer, .. } => {
            // CLUSTER MEET takes an address, not a name: resolve the peer's (pod DNS) name.
            let ip = tokio::net::lookup_host((peer.host.as_str(), peer.port))
                .await
                .map_err(|e| format!("resolving {peer}: {e}"))?
                .next()
                .ok_or_else(|| format!("{peer} resolves to no address"))?
                .ip();
            cmd.arg("MEET").arg(ip.to_string()).arg(peer.port);
            if let Some(bus_port) = target
                .cluster
                .members
                .iter()
                .find(|m| &m.endpoint == peer)
                .and_then(|m| m.bus_port)
            {
                cmd.arg(bus_port);
            }
        }
        Action::AddSlots { slots, .. } => {
            cmd.arg("ADDSLOTSRANGE");
            for (from, to) in slots.ranges() {
                cmd.arg(*from).arg(*to);
            }
        }
        Action::Replicate { primary_id, .. } => {
            cmd.arg("REPLICATE").arg(primary_id);
        }
        Action::Forget { ghost, .. } => {
            cmd.arg("FORGET").arg(ghost);
        }
    }
    let mut conn = node_conn(target, node).await?;
    cmd.query_async::<redis::Value>(&mut conn)
        .await
        .map(|_| ())
        .map_err(|e| format!("{action}: {e}"))
}

/// One pass: observe, plan, apply every action in order (a failed one is recorded and the pass
/// goes on; the next pass observes again).
pub async fn heal_once(target: &ClusterHealTarget) -> ClusterReport {
    let observation = observe(target).await;
    let ClusterPlan {
        decision,
        actions,
        primaries,
        warnings,
    } = plan(&target.cluster, &observation);
    let mut applied = Vec::with_capacity(actions.len());
    for action in actions {
        let error = apply(target, &action).await.err();
        match &error {
            None => tracing::info!(action = %action, "cluster heal: applied"),
            Some(e) => tracing::warn!(action = %action, error = %e, "cluster heal: action failed"),
        }
        applied.push((action, error));
    }
    if let Decision::Wait { reason } = &decision {
        tracing::debug!(%reason, "cluster heal: waiting");
    }
    ClusterReport {
        decision,
        primaries,
        warnings,
        applied,
    }
}

/// `CLUSTER FAILOVER` on `replica`: a coordinated switch (the replica waits for its primary's
/// offset, then takes over its slots), as a rolling restart moves a primary away.
pub async fn failover(target: &ClusterHealTarget, replica: &Endpoint) -> Result<(), String> {
    let mut conn = node_conn(target, replica).await?;
    redis::cmd("CLUSTER")
        .arg("FAILOVER")
        .query_async::<redis::Value>(&mut conn)
        .await
        .map(|_| ())
        .map_err(|e| format!("CLUSTER FAILOVER on {replica}: {e}"))
}

/// `ACL LOAD` on every member: the ACL file changed (users, passwords), every node reloads it.
pub async fn reload_acls(target: &ClusterHealTarget) -> Vec<String> {
    let mut errors = Vec::new();
    for member in &target.cluster.members {
        let result = async {
            let mut conn = node_conn(target, &member.endpoint).await?;
            redis::cmd("ACL")
                .arg("LOAD")
                .query_async::<redis::Value>(&mut conn)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        if let Err(e) = result {
            errors.push(format!("{}: {e}", member.endpoint));
        }
    }
    errors
}

/// A connection to a member as the operator, and the address MIGRATE reaches it at, for a
/// series of slot moves.
pub async fn member_conn(
    target: &ClusterHealTarget,
    member: &Endpoint,
) -> Result<(MultiplexedConnection, (std::net::IpAddr, u16)), String> {
    let ip = tokio::net::lookup_host((member.host.as_str(), member.port))
        .await
        .map_err(|e| format!("resolving {member}: {e}"))?
        .next()
        .ok_or_else(|| format!("{member} resolves to no address"))?
        .ip();
    Ok((node_conn(target, member).await?, (ip, member.port)))
}

/// One slot move: the primaries' connections, their ids, and the target's address for MIGRATE.
#[allow(missing_debug_implementations)] // holds connections
pub struct SlotMigration<'a> {
    pub slot: u16,
    pub source: &'a mut MultiplexedConnection,
    pub source_id: &'a str,
    pub dest: &'a mut MultiplexedConnection,
    pub dest_id: &'a str,
    /// The target's IP address and port, as MIGRATE connects to it.
    pub dest_addr: (std::net::IpAddr, u16),
}

/// Moves one slot between two primaries, keys and all: the target `IMPORTING`, the source
/// `MIGRATING`, its keys `MIGRATE`d in batches of 1 000 (the operator user authenticating on the
/// target), then both told the new owner (`SETSLOT NODE`; the others learn it by gossip). While it
/// runs, clients are redirected with `ASK` (or told `TRYAGAIN` for a command whose keys are
/// split) and nothing is lost: `MIGRATE` moves each key atomically. Idempotent: a move left
/// half-way by a crash is finished by calling it again. Returns the keys moved.
pub async fn migrate_slot(target: &ClusterHealTarget, m: SlotMigration<'_>) -> Result<u64, String> {
    const KEYS_PER_MIGRATE: usize = 1000;
    const MIGRATE_TIMEOUT_MS: u64 = 10_000;
    let slot = m.slot;
    let setslot = |state: &str, id: &str| {
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SETSLOT").arg(slot).arg(state).arg(id);
        cmd
    };
    setslot("IMPORTING", m.source_id)
        .query_async::<redis::Value>(m.dest)
        .await
        .map_err(|e| format!("SETSLOT {slot} IMPORTING: {e}"))?;
    setslot("MIGRATING", m.dest_id)
        .query_async::<redis::Value>(m.source)
        .await
        .map_err(|e| format!("SETSLOT {slot} MIGRATING: {e}"))?;
    let mut moved = 0u64;
    loop {
        let keys: Vec<Vec<u8>> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(KEYS_PER_MIGRATE)
            .query_async(m.source)
            .await
            .map_err(|e| format!("GETKEYSINSLOT {slot}: {e}"))?;
        if keys.is_empty() {
            break;
        }
        let mut migrate = redis::cmd("MIGRATE");
        migrate
            .arg(m.dest_addr.0.to_string())
            .arg(m.dest_addr.1)
            .arg("")
            .arg(0)
            .arg(MIGRATE_TIMEOUT_MS);
        if let Some(auth) = &target.operator_auth {
            migrate.arg("AUTH2").arg(&auth.username).arg(&auth.password);
        }
        migrate.arg("KEYS").arg(&keys);
        migrate
            .query_async::<redis::Value>(m.source)
            .await
            .map_err(|e| format!("MIGRATE of slot {slot}: {e}"))?;
        moved += keys.len() as u64;
    }
    setslot("NODE", m.dest_id)
        .query_async::<redis::Value>(m.dest)
        .await
        .map_err(|e| format!("SETSLOT {slot} NODE on the target: {e}"))?;
    setslot("NODE", m.dest_id)
        .query_async::<redis::Value>(m.source)
        .await
        .map_err(|e| format!("SETSLOT {slot} NODE on the source: {e}"))?;
    Ok(moved)
}

/// What a [`reshard_pass`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum ReshardOutcome {
    /// Every shard that stays has its share and every shard being removed is empty.
    Done,
    /// Nothing could move now (a member silent or loading, a replica syncing, …).
    Waiting { reason: String },
    /// Slots moved in this pass; more may be left (the budget ran out).
    Moved { slots: u32, keys: u64 },
    /// A move failed after `slots` moved; the next pass finishes it.
    Failed { slots: u32, error: String },
}

/// Moves slots towards `wanted` shards ([`super::reshard::next_moves`]) for up to `budget`, one
/// slot at a time over one connection per primary: the resharding of `local up` and of the
/// operator alike.
pub async fn reshard_pass(
    target: &ClusterHealTarget,
    wanted: u16,
    budget: std::time::Duration,
) -> ReshardOutcome {
    use super::reshard::{ReshardStep, next_moves};
    const BATCH: usize = 256;
    let started = std::time::Instant::now();
    let (mut slots, mut keys) = (0u32, 0u64);
    loop {
        let observation = observe(target).await;
        let moves = match next_moves(&target.cluster, wanted, &observation, BATCH) {
            ReshardStep::Done if slots == 0 => return ReshardOutcome::Done,
            ReshardStep::Done => return ReshardOutcome::Moved { slots, keys },
            ReshardStep::Wait { reason } if slots == 0 => {
                return ReshardOutcome::Waiting { reason };
            }
            ReshardStep::Wait { .. } => return ReshardOutcome::Moved { slots, keys },
            ReshardStep::Move { moves } => moves,
        };
        // One connection per primary for the whole batch.
        let mut conns: std::collections::HashMap<
            usize,
            (MultiplexedConnection, (std::net::IpAddr, u16)),
        > = std::collections::HashMap::new();
        for index in moves.iter().flat_map(|m| [m.from, m.to]) {
            if conns.contains_key(&index) {
                continue;
            }
            let Some(member) = target.cluster.members.get(index) else {
                continue;
            };
            match member_conn(target, &member.endpoint).await {
                Ok(conn) => {
                    conns.insert(index, conn);
                }
                Err(error) => return ReshardOutcome::Failed { slots, error },
            }
        }
        for m in &moves {
            let (Some((mut source, _)), Some((mut dest, dest_addr))) =
                (conns.get(&m.from).cloned(), conns.get(&m.to).cloned())
            else {
                continue;
            };
            let migration = SlotMigration {
                slot: m.slot,
                source: &mut source,
                source_id: &m.from_id,
                dest: &mut dest,
                dest_id: &m.to_id,
                dest_addr,
            };
            match migrate_slot(target, migration).await {
                Ok(moved) => {
                    keys += moved;
                    slots += 1;
                }
                Err(error) => return ReshardOutcome::Failed { slots, error },
            }
            if started.elapsed() >= budget {
                return ReshardOutcome::Moved { slots, keys };
            }
        }
    }
}
