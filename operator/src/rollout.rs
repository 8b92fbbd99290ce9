//! Failover-aware rollouts and scaling: which pod restarts next, and when the primary is
//! switched over first. Shared by the controller (pods of StatefulSets with the `OnDelete`
//! strategy) and `local up` (processes): [`next_step`] is pure (members plus one heal
//! observation in, one step out), [`switchover`] is the only action that talks to Redis.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use redis::Value;
use redis::aio::MultiplexedConnection;
use serde::Serialize;
use tokio::time::Instant;

use crate::heal::{
    self, Action, Decision, Endpoint, HealTarget, NodeRole, Observation, SentinelView, connect,
    connect_sentinel, endpoint_of, fields_of, info_fields,
};

/// How far (bytes of replication stream) a replica may trail the primary and still count as in
/// sync. Not zero: the primary's and the replicas' offsets are read by concurrent `INFO` calls,
/// not atomically, so under write load a healthy replica always trails by what was written in
/// between (kilobytes at thousands of writes per second) and a rollout under load would never
/// proceed. 1 MiB is well under a second of heavy write traffic and a sixtieth of the
/// `repl-backlog-size` the operator renders (64 MB), so a replica within it is streaming, not
/// resyncing; one still in its full sync is caught by its link being down. The switchover itself
/// does not rely on this bound: it pauses writes and waits for an exact catch-up.
pub const IN_SYNC_BOUND: u64 = 1024 * 1024;

/// How often [`switchover`] polls the nodes and sentinels while it waits.
const POLL: Duration = Duration::from_millis(20);

/// How long an outdated member may stay not ready before [`next_step`] replaces it although no
/// container reports a state that only a new pod ends (see [`Member::stuck`]): a pod whose
/// container runs but never becomes ready on its revision (a configuration that keeps a replica
/// from syncing, a pod that cannot start its containers). Long, because it only has to end a
/// deadlock, not a slow start: a node the heal observation sees loading its dataset is never
/// replaced this way, and a replica in a long full sync costs at most that sync (its replacement
/// runs the update revision, so it is never replaced by this rule again).
pub const NOT_READY_BOUND: Duration = Duration::from_secs(10 * 60);

/// One pod or process, in ordinal order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Member {
    /// Runs the current configuration (config hash, image).
    pub up_to_date: bool,
    /// Running and answering (the pod is Ready; the process runs and was observed).
    pub ready: bool,
    /// A state that only a new pod ends, as Kubernetes reports it: a container waiting in
    /// `ErrImagePull`, `CrashLoopBackOff`, `CreateContainerConfigError`, … or a pod the scheduler
    /// cannot place (`pods::STUCK_REASONS`). `None` when running or merely starting, and for
    /// local processes (`local up` restarts an exited process from the current configuration
    /// itself).
    pub stuck: Option<&'static str>,
    /// How long it has not been ready: since its Ready condition last turned false, or since
    /// the pod was created when it never was ready. `None` when ready, being deleted or unknown.
    pub not_ready_for: Option<Duration>,
}

impl Member {
    /// Why this member is replaced at once by rule 0 of [`next_step`], if it is: it is outdated
    /// (so only a new pod, created from the update revision, can fix it) and it serves nothing
    /// (not ready), and either it is stuck, or it has been not ready for [`NOT_READY_BOUND`]
    /// without `loading` its dataset. A pod of the update revision is never replaced this way,
    /// whatever its state: a slow start on the current revision is left alone, and a
    /// replacement can never be replaced again, so this cannot loop.
    pub(crate) fn broken(&self, loading: bool) -> Option<String> {
        if self.up_to_date || self.ready {
            return None;
        }
        if let Some(reason) = self.stuck {
            return Some(format!("outdated and {reason}"));
        }
        let waited = self.not_ready_for?;
        (waited >= NOT_READY_BOUND && !loading)
            .then(|| format!("outdated and not ready for {} s", waited.as_secs()))
    }
}

/// Everything [`next_step`] decides from.
#[derive(Clone, Copy, Debug)]
pub struct RolloutInput<'a> {
    /// Data nodes in ordinal order, as in `target.nodes` and `observation.nodes`.
    pub redis: &'a [Member],
    /// Sentinels in ordinal order, as in `target.sentinels` and `observation.sentinels`.
    pub sentinels: &'a [Member],
    /// Data nodes the spec asks for (`spec.redis.replicas`).
    pub desired_redis: usize,
    /// Sentinels the spec asks for (`spec.sentinel.replicas`).
    pub desired_sentinels: usize,
    pub target: &'a HealTarget,
    /// One heal observation: who is primary, offsets, link status, sentinel views.
    pub observation: &'a Observation,
}

/// What to do next. One step at a time; the caller acts, then observes again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "step")]
pub enum Step {
    /// Everything runs the current configuration at the desired scale.
    Done,
    /// Not now (a failover, a restart still catching up, …).
    Wait { reason: String },
    /// Restart data node `index` (a replica; the primary only when it is the only node).
    RestartRedis { index: usize },
    /// Move the primary away from node `from` with [`switchover`]; nodes in `avoid` must not be
    /// promoted.
    Switchover { from: usize, avoid: Vec<usize> },
    /// Restart sentinel `index`.
    RestartSentinel { index: usize },
    /// Scale-down may proceed: data nodes `from` and above can go (none is the primary).
    RemoveRedis { from: usize },
    /// Scale-down may proceed: sentinels `from` and above can go.
    RemoveSentinels { from: usize },
    /// Replace data node `index` now: outdated and unable to become ready (`reason`), so it
    /// serves nothing and only a pod of the current revision can fix it.
    ReplaceRedis { index: usize, reason: String },
    /// Replace sentinel `index` now, for the same reason.
    ReplaceSentinel { index: usize, reason: String },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Done => f.write_str("done"),
            Step::Wait { reason } => write!(f, "wait: {reason}"),
            Step::RestartRedis { index } => write!(f, "restart data node {index}"),
            Step::Switchover { from, avoid } => {
                write!(
                    f,
                    "switch the primary over from node {from} (avoid {avoid:?})"
                )
            }
            Step::RestartSentinel { index } => write!(f, "restart sentinel {index}"),
            Step::RemoveRedis { from } => write!(f, "remove data nodes {from} and above"),
            Step::RemoveSentinels { from } => write!(f, "remove sentinels {from} and above"),
            Step::ReplaceRedis { index, reason } => {
                write!(f, "replace data node {index} ({reason})")
            }
            Step::ReplaceSentinel { index, reason } => {
                write!(f, "replace sentinel {index} ({reason})")
            }
        }
    }
}

fn wait(reason: impl Into<String>) -> Step {
    Step::Wait {
        reason: reason.into(),
    }
}

/// The next step of a rollout or scale change. The rules, in order:
/// 0. an outdated member that cannot become ready ([`Member::broken`]) is replaced at once, one
///    per step, lowest ordinal first, data nodes before sentinels, without waiting for anything
///    else: it serves nothing, and the other rules would wait for it forever (that pods of a
///    bad revision were never replaced, not even after the spec was reverted, was the deadlock
///    of issue 16, item 7). Never during a failover, never a data node that answers as a
///    primary, and never the node a sentinel names as primary while it answers or while other
///    nodes exist (an unreachable primary is Sentinel's to fail over first; once it has, the
///    node is an outdated replica like any other). Only the sole data node of a store is
///    replaced while the sentinels still name it: no failover can ever come, and nothing runs
///    in it;
/// 1. nothing while heal would wait (a failover in progress, sentinels that disagree or see the
///    primary down, no primary yet) or still has to repair the topology (promote, repoint a
///    node, make a sentinel monitor);
/// 2. nothing while any member is not ready, any replica is not in sync with the primary (link
///    up, offset within [`IN_SYNC_BOUND`]), or any sentinel does not yet know the primary, the
///    replicas and the other sentinels (it could not take part in a failover);
/// 3. scale-down of data nodes: a primary among the nodes to remove is switched over to a
///    remaining node first, then [`Step::RemoveRedis`];
/// 4. outdated replicas, one at a time, lowest ordinal first;
/// 5. an outdated primary: [`Step::Switchover`] away from it (it is then an outdated replica,
///    rule 4); a store of one node restarts it in place, there is no one to switch to;
/// 6. scale-down of sentinels, if the ones left keep the quorum;
/// 7. outdated sentinels, one at a time, only when the others would keep the quorum and a
///    majority (Sentinel needs the quorum to agree the primary is down and a majority to elect
///    the sentinel that fails over).
pub fn next_step(input: &RolloutInput) -> Step {
    let RolloutInput {
        redis,
        sentinels,
        desired_redis,
        desired_sentinels,
        target,
        observation,
    } = *input;
    if redis.len() != target.nodes.len()
        || observation.nodes.len() != target.nodes.len()
        || sentinels.len() != target.sentinels.len()
        || observation.sentinels.len() != target.sentinels.len()
    {
        return wait("the members, the target and the observation do not list the same nodes");
    }
    if redis.is_empty() {
        return wait("no data nodes");
    }

    // 0. Replace what cannot start.
    if let Some(step) = replace_broken(input) {
        return step;
    }

    // 1. Heal first.
    let plan = heal::plan(target, observation);
    let primary = match (&plan.decision, &plan.primary) {
        (Decision::Elected { .. }, Some(primary)) => primary,
        (Decision::Wait { reason }, _) => return wait(reason.clone()),
        (Decision::Bootstrap { .. }, _) => return wait("the store is not bootstrapped yet"),
        (Decision::Elected { .. }, None) => return wait("no primary"),
    };
    if let Some(action) = plan.actions.iter().find(|a| {
        matches!(
            a,
            Action::Promote { .. } | Action::ReplicaOf { .. } | Action::Monitor { .. }
        )
    }) {
        return wait(format!("heal has not converged yet: {action}"));
    }
    let Some(p) = target.node_index(primary) else {
        return wait(format!(
            "the primary {primary} is not one of the data nodes"
        ));
    };

    // 2. Everyone ready and caught up.
    if let Some(i) = redis.iter().position(|m| !m.ready) {
        return wait(format!("data node {i} ({}) is not ready", target.nodes[i]));
    }
    if let Some(i) = sentinels.iter().position(|m| !m.ready) {
        return wait(format!(
            "sentinel {i} ({}) is not ready",
            target.sentinels[i]
        ));
    }
    let Ok(primary_info) = &observation.nodes[p].state else {
        return wait(format!("the primary {primary} does not answer"));
    };
    for (i, node) in observation.nodes.iter().enumerate() {
        if i == p {
            continue;
        }
        let info = match &node.state {
            Ok(info) => info,
            Err(e) => return wait(format!("data node {i} ({}): {e}", node.endpoint)),
        };
        let in_sync = match &info.role {
            NodeRole::Replica {
                primary: of,
                link_up,
            } => {
                of == primary
                    && *link_up
                    && !info.loading
                    && info.offset.saturating_add(IN_SYNC_BOUND) >= primary_info.offset
            }
            NodeRole::Primary => false,
        };
        if !in_sync {
            return wait(format!(
                "data node {i} ({}) is not an in-sync replica of {primary} ({:?}, offset {} of {})",
                node.endpoint, info.role, info.offset, primary_info.offset
            ));
        }
    }
    let replicas: Vec<&Endpoint> = target.nodes.iter().filter(|n| *n != primary).collect();
    for (i, sentinel) in observation.sentinels.iter().enumerate() {
        let Ok(Some(view)) = &sentinel.state else {
            return wait(format!(
                "sentinel {i} ({}) does not monitor the store",
                sentinel.endpoint
            ));
        };
        let others = target.sentinels.len() - 1;
        if view.sentinels.len() < others {
            return wait(format!(
                "sentinel {i} ({}) knows {} of the {others} other sentinels",
                sentinel.endpoint,
                view.sentinels.len()
            ));
        }
        if let Some(unknown) = replicas.iter().find(|r| !view.replicas.contains(r)) {
            return wait(format!(
                "sentinel {i} ({}) does not know the replica {unknown} yet",
                sentinel.endpoint
            ));
        }
    }

    // 3. Scale-down of data nodes.
    let keep = desired_redis.max(1);
    if keep < redis.len() {
        if p >= keep {
            return Step::Switchover {
                from: p,
                avoid: (keep..redis.len()).collect(),
            };
        }
        return Step::RemoveRedis { from: keep };
    }

    // 4. Outdated replicas, lowest ordinal first.
    if let Some(i) = (0..redis.len()).find(|&i| i != p && !redis[i].up_to_date) {
        return Step::RestartRedis { index: i };
    }

    // 5. The primary last.
    if !redis[p].up_to_date {
        if redis.len() == 1 {
            return Step::RestartRedis { index: p };
        }
        return Step::Switchover {
            from: p,
            avoid: Vec::new(),
        };
    }

    // 6 and 7. Sentinels.
    let quorum = usize::try_from(target.sentinel.quorum).unwrap_or(usize::MAX);
    let keep = desired_sentinels.max(1);
    if keep < sentinels.len() {
        if keep < quorum {
            return wait(format!(
                "{keep} sentinels cannot reach the quorum of {quorum}: not removing any"
            ));
        }
        return Step::RemoveSentinels { from: keep };
    }
    if let Some(i) = sentinels.iter().position(|m| !m.up_to_date) {
        let remaining = sentinels.len() - 1;
        if remaining < quorum || remaining * 2 <= sentinels.len() {
            return wait(format!(
                "restarting sentinel {i} would leave {remaining} of {} sentinels: no quorum \
                 ({quorum}) or majority for a failover meanwhile",
                sentinels.len()
            ));
        }
        return Step::RestartSentinel { index: i };
    }
    Step::Done
}

/// Rule 0 of [`next_step`]: the first outdated member that cannot become ready and may be
/// replaced, if any (inputs already checked to be of the same length).
fn replace_broken(input: &RolloutInput) -> Option<Step> {
    let RolloutInput {
        redis,
        sentinels,
        target,
        observation,
        ..
    } = *input;
    let views: Vec<&SentinelView> = observation
        .sentinels
        .iter()
        .filter_map(|s| match &s.state {
            Ok(Some(view)) => Some(view),
            _ => None,
        })
        .collect();
    if views.iter().any(|view| view.failover_in_progress()) {
        return None;
    }
    for (index, member) in redis.iter().enumerate() {
        let state = &observation.nodes[index].state;
        let Some(reason) = member.broken(matches!(state, Ok(info) if info.loading)) else {
            continue;
        };
        let answers_as_primary = matches!(state, Ok(info) if info.role == NodeRole::Primary);
        let elected = views.iter().any(|view| view.primary == target.nodes[index]);
        if answers_as_primary || (elected && (state.is_ok() || redis.len() > 1)) {
            continue;
        }
        return Some(Step::ReplaceRedis { index, reason });
    }
    sentinels.iter().enumerate().find_map(|(index, member)| {
        member
            .broken(false)
            .map(|reason| Step::ReplaceSentinel { index, reason })
    })
}

/// Errors of [`switchover`], naming the master, the server and the reason.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("switchover of '{master}': {endpoint}: {reason}")]
    Switchover {
        master: String,
        endpoint: Endpoint,
        reason: String,
    },
    #[error(
        "switchover of '{master}' away from {endpoint}: not done within {waited_ms} ms: {reason}"
    )]
    Timeout {
        master: String,
        endpoint: Endpoint,
        waited_ms: u128,
        reason: String,
    },
}

/// A planned switchover: moves the primary to an in-sync replica that is not in `avoid` and
/// returns the new primary once the sentinels report it and it answers `ROLE` as master.
///
/// 1. `replica-priority 0` on the `avoid` nodes (Sentinel never promotes those), and wait until a
///    sentinel has read it (Sentinel refreshes a replica's `INFO` every 10 s) and holds a
///    candidate fit for promotion by its own rules (right after a restart it may not yet);
/// 2. `CLIENT PAUSE WRITE` on the old primary, and wait until every reachable candidate replica
///    has its whole replication stream: Sentinel promotes without pausing, so every write the old
///    primary took between the promotion and its demotion would be lost, and it picks the
///    candidate by its own (older) view of their offsets, so one caught-up candidate is not enough;
/// 3. `SENTINEL FAILOVER` on that sentinel; as soon as another node answers as master, the old
///    primary is made its replica and unpaused: its held writes then fail with `READONLY` and a
///    Sentinel-following client re-resolves and resends them (Sentinel would demote it too, but
///    only seconds later);
/// 4. wait until the sentinels that answer (at least the quorum) all report the new primary and
///    it answers as master.
///
/// The priorities are restored afterwards, success or not: `CONFIG SET` is not persisted, so a
/// node that stays would otherwise silently be unpromotable until it restarts. On failure the
/// old primary is unpaused only when no replica can have been promoted: before `SENTINEL
/// FAILOVER`, or when it was refused, or when Sentinel reports the failover over with the old
/// primary still elected. Once Sentinel accepted it, the wait for the promotion has its own
/// budget (twice the failover-timeout plus a margin) — giving up earlier and unpausing let a
/// late promotion discard the writes the old primary took meanwhile (an e2e run lost 216).
pub async fn switchover(
    target: &HealTarget,
    avoid: &[usize],
    timeout: Duration,
) -> Result<Endpoint, RolloutError> {
    let started = Instant::now();
    let deadline = started + timeout;
    let observation = heal::observe(target).await;
    let plan = heal::plan(target, &observation);
    let old = match (&plan.decision, plan.primary) {
        (Decision::Elected { .. }, Some(primary)) => primary,
        (decision, _) => {
            return Err(RolloutError::Switchover {
                master: target.master_name.clone(),
                endpoint: target
                    .nodes
                    .first()
                    .cloned()
                    .unwrap_or_else(|| Endpoint::new("", 0)),
                reason: format!("no elected primary to switch away from: {decision:?}"),
            });
        }
    };
    let run = Switchover {
        target,
        old: old.clone(),
        avoided: avoid
            .iter()
            .filter_map(|&i| target.nodes.get(i))
            .filter(|n| **n != old)
            .cloned()
            .collect(),
        started,
        deadline,
    };
    let candidates: Vec<Endpoint> = target
        .nodes
        .iter()
        .filter(|n| **n != old && !run.avoided.contains(n))
        .cloned()
        .collect();
    if candidates.is_empty() {
        return Err(run.fail(
            &old,
            "no replica may be promoted (every other node is avoided)",
        ));
    }
    let mut saved = Vec::new();
    let result = match run.lower_priorities(&mut saved).await {
        Ok(()) => run.fail_over(&candidates).await,
        Err(e) => Err(run.fail(&old, e)),
    };
    run.restore_priorities(saved).await;
    match &result {
        Ok(new) => {
            tracing::info!(master = %target.master_name, from = %old, to = %new, took_ms = started.elapsed().as_millis(), "switchover done")
        }
        Err(e) => tracing::warn!(error = %e, "switchover failed"),
    }
    result
}

/// Once Sentinel accepted the failover, this long passes before its failover state is trusted
/// to say it is over (it sets the state as it starts).
const FAILOVER_SETTLE: Duration = Duration::from_secs(1);
/// Added to twice the failover-timeout while waiting for a promotion (see
/// `Switchover::promotion_budget`).
const PROMOTION_MARGIN: Duration = Duration::from_secs(5);

/// A failed promotion, and whether the old primary may take writes again.
struct Failed {
    error: RolloutError,
    /// True when no replica can have been promoted: the old primary may be unpaused.
    unpause: bool,
}

impl Failed {
    fn unpause(error: RolloutError) -> Failed {
        Failed {
            error,
            unpause: true,
        }
    }

    fn keep_paused(error: RolloutError) -> Failed {
        Failed {
            error,
            unpause: false,
        }
    }
}

/// The state of one [`switchover`] call.
struct Switchover<'a> {
    target: &'a HealTarget,
    old: Endpoint,
    /// Replicas that must not be promoted.
    avoided: Vec<Endpoint>,
    started: Instant,
    deadline: Instant,
}

impl Switchover<'_> {
    fn fail(&self, endpoint: &Endpoint, reason: impl Into<String>) -> RolloutError {
        RolloutError::Switchover {
            master: self.target.master_name.clone(),
            endpoint: endpoint.clone(),
            reason: reason.into(),
        }
    }

    fn timeout(&self, endpoint: &Endpoint, reason: impl Into<String>) -> RolloutError {
        RolloutError::Timeout {
            master: self.target.master_name.clone(),
            endpoint: endpoint.clone(),
            waited_ms: self.started.elapsed().as_millis(),
            reason: reason.into(),
        }
    }

    async fn node(&self, node: &Endpoint) -> Result<MultiplexedConnection, String> {
        connect(self.target, node, self.target.operator_auth.as_ref()).await
    }

    async fn node_cmd<T: redis::FromRedisValue>(
        &self,
        node: &Endpoint,
        cmd: &redis::Cmd,
    ) -> Result<T, RolloutError> {
        let mut conn = self.node(node).await.map_err(|e| self.fail(node, e))?;
        cmd.query_async(&mut conn)
            .await
            .map_err(|e| self.fail(node, e.to_string()))
    }

    /// Sets `replica-priority 0` on the avoided replicas, recording in `saved` what each had
    /// (also when a later one fails, so exactly those are restored). Errors are reasons.
    async fn lower_priorities(
        &self,
        saved: &mut Vec<(Endpoint, Option<String>)>,
    ) -> Result<(), String> {
        for node in &self.avoided {
            let mut conn = self.node(node).await.map_err(|e| format!("{node}: {e}"))?;
            let before: Vec<String> = redis::cmd("CONFIG")
                .arg("GET")
                .arg("replica-priority")
                .query_async(&mut conn)
                .await
                .map_err(|e| format!("{node}: CONFIG GET replica-priority: {e}"))?;
            saved.push((node.clone(), before.get(1).cloned()));
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("replica-priority")
                .arg(0)
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| format!("{node}: CONFIG SET replica-priority 0: {e}"))?;
        }
        Ok(())
    }

    async fn restore_priorities(&self, saved: Vec<(Endpoint, Option<String>)>) {
        for (node, before) in saved {
            let value = before.unwrap_or_else(|| "100".to_owned());
            let restored = self
                .node_cmd::<()>(
                    &node,
                    redis::cmd("CONFIG")
                        .arg("SET")
                        .arg("replica-priority")
                        .arg(&value),
                )
                .await;
            if let Err(e) = restored {
                tracing::warn!(error = %e, "replica-priority not restored");
            }
        }
    }

    /// The first sentinel that would promote a candidate: it reports priority 0 for every
    /// avoided replica, and at least one candidate passes Sentinel's own selection rules. Its
    /// view of a replica comes from `PING`s and an `INFO` every 10 s, so right after a replica
    /// restarted it can still hold it unfit (`NOGOODSLAVE`) although the replica is in sync;
    /// this waits (before pausing any write) instead of failing. Polls until the deadline.
    async fn ready_sentinel(&self, candidates: &[Endpoint]) -> Result<Endpoint, RolloutError> {
        let mut last = String::from("no sentinel answered");
        loop {
            for sentinel in &self.target.sentinels {
                match self.sentinel_replicas(sentinel).await {
                    Ok(replicas) => {
                        let pending: Vec<String> = self
                            .avoided
                            .iter()
                            .filter(|n| {
                                replicas
                                    .get(*n)
                                    .and_then(|f| f.get("slave-priority"))
                                    .map(String::as_str)
                                    != Some("0")
                            })
                            .map(Endpoint::to_string)
                            .collect();
                        let fit = candidates.iter().any(|c| {
                            replicas
                                .get(c)
                                .is_some_and(|f| promotable(f, self.target.sentinel.down_after_ms))
                        });
                        if pending.is_empty() && fit {
                            return Ok(sentinel.clone());
                        }
                        last = if pending.is_empty() {
                            format!("sentinel {sentinel} holds no candidate fit for promotion yet")
                        } else {
                            format!(
                                "sentinel {sentinel} has not read replica-priority 0 of {} yet",
                                pending.join(", ")
                            )
                        };
                    }
                    Err(e) => last = format!("sentinel {sentinel}: {e}"),
                }
            }
            if Instant::now() >= self.deadline {
                return Err(self.timeout(&self.old, last));
            }
            tokio::time::sleep(POLL * 5).await;
        }
    }

    /// What a sentinel reports of every replica it knows (`SENTINEL REPLICAS` fields).
    async fn sentinel_replicas(
        &self,
        sentinel: &Endpoint,
    ) -> Result<HashMap<Endpoint, HashMap<String, String>>, String> {
        let mut conn = connect_sentinel(self.target, sentinel).await?;
        let replicas: Value = redis::cmd("SENTINEL")
            .arg("REPLICAS")
            .arg(&self.target.master_name)
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let Value::Array(items) = replicas else {
            return Ok(HashMap::new());
        };
        Ok(items
            .iter()
            .filter_map(|item| {
                let fields = fields_of(item);
                Some((endpoint_of(&fields)?, fields))
            })
            .collect())
    }

    async fn offset(&self, node: &Endpoint) -> Result<(bool, u64), String> {
        let mut conn = self.node(node).await?;
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let fields = info_fields(&info);
        let master = fields.get("role").map(String::as_str) == Some("master");
        let offset = fields
            .get("master_repl_offset")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok((master, offset))
    }

    /// How long a promotion may take once Sentinel accepted `SENTINEL FAILOVER`: Sentinel aborts
    /// a failover whose promotion did not happen within its failover-timeout, so twice that
    /// (plus a margin for a loaded machine) bounds the wait for either outcome.
    fn promotion_budget(&self) -> Duration {
        Duration::from_millis(self.target.sentinel.failover_timeout_ms).saturating_mul(2)
            + PROMOTION_MARGIN
    }

    async fn fail_over(&self, candidates: &[Endpoint]) -> Result<Endpoint, RolloutError> {
        let sentinel = self.ready_sentinel(candidates).await?;
        let old = &self.old;
        // The pause covers the catch-up and the whole promotion budget: it must never run out
        // while Sentinel may still promote a replica.
        let pause = self
            .deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1))
            + self.promotion_budget();
        self.node_cmd::<()>(
            old,
            redis::cmd("CLIENT")
                .arg("PAUSE")
                .arg(u64::try_from(pause.as_millis()).unwrap_or(u64::MAX))
                .arg("WRITE"),
        )
        .await?;
        let paused_at = Instant::now();
        let promoted = match self.promote(&sentinel, candidates, paused_at).await {
            Ok(promoted) => promoted,
            Err(Failed { error, unpause }) => {
                if unpause {
                    let _ = self
                        .node_cmd::<()>(old, redis::cmd("CLIENT").arg("UNPAUSE"))
                        .await;
                } else {
                    // Whether Sentinel will still promote a replica is unknown: writes taken by
                    // the old primary now could be discarded. It stays paused until its pause
                    // ends; heal demotes it if the sentinels elected another node meanwhile.
                    tracing::warn!(old = %old, "switchover: the outcome of the failover is unknown; the old primary stays paused until its pause ends");
                }
                return Err(error);
            }
        };
        // A promotion happened: confirming it is not bound by the budget that ran before it.
        let until = self.deadline.max(Instant::now() + self.promotion_budget());
        self.confirmed(&promoted, until).await
    }

    /// With the old primary paused: waits for a candidate to catch up, asks `sentinel` to fail
    /// over, and as soon as a node answers as master demotes and unpauses the old primary.
    async fn promote(
        &self,
        sentinel: &Endpoint,
        candidates: &[Endpoint],
        paused_at: Instant,
    ) -> Result<Endpoint, Failed> {
        let old = &self.old;
        let (_, end) = self
            .offset(old)
            .await
            .map_err(|e| Failed::unpause(self.fail(old, e)))?;
        // Every candidate Sentinel may promote must hold the whole stream, not just one of them:
        // Sentinel picks among them by its own, older view of their offsets, and the writes a
        // lagging one misses would be lost.
        loop {
            let mut reachable = 0;
            let mut behind = Vec::new();
            for candidate in candidates {
                if let Ok((false, offset)) = self.offset(candidate).await {
                    reachable += 1;
                    if offset < end {
                        behind.push(format!("{candidate} at {offset}"));
                    }
                }
            }
            if reachable > 0 && behind.is_empty() {
                break;
            }
            if Instant::now() >= self.deadline {
                return Err(Failed::unpause(self.timeout(
                    old,
                    format!(
                        "the candidate replicas did not catch up to offset {end} ({})",
                        if behind.is_empty() {
                            "none reachable".to_owned()
                        } else {
                            behind.join(", ")
                        }
                    ),
                )));
            }
            tokio::time::sleep(POLL).await;
        }
        let mut conn = connect_sentinel(self.target, sentinel)
            .await
            .map_err(|e| Failed::unpause(self.fail(sentinel, e)))?;
        // A refusal (NOGOODSLAVE, INPROG) starts nothing; an error without a reply (a timeout)
        // may have started a failover.
        if let Err(e) = redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(&self.target.master_name)
            .query_async::<()>(&mut conn)
            .await
        {
            let error = self.fail(sentinel, format!("SENTINEL FAILOVER: {e}"));
            return Err(if e.code().is_some() {
                Failed::unpause(error)
            } else {
                Failed::keep_paused(error)
            });
        }
        // From here on a replica may be promoted at any moment, also after this gives up: the
        // old primary is unpaused only as a replica of the new one, or once Sentinel says the
        // failover ended without a promotion.
        let accepted_at = Instant::now();
        let promotion_deadline = accepted_at + self.promotion_budget();
        let promoted = loop {
            let mut found = None;
            for node in self.target.nodes.iter().filter(|n| *n != old) {
                if let Ok((true, _)) = self.offset(node).await {
                    found = Some(node.clone());
                    break;
                }
            }
            if let Some(node) = found {
                break node;
            }
            if accepted_at.elapsed() >= FAILOVER_SETTLE
                && let Ok(false) = self.failover_in_progress(sentinel).await
            {
                return Err(Failed::unpause(self.fail(
                    old,
                    format!("Sentinel {sentinel} ended the failover without promoting a replica"),
                )));
            }
            if Instant::now() >= promotion_deadline {
                return Err(Failed::keep_paused(self.timeout(
                    old,
                    format!(
                        "Sentinel promoted no replica within {} ms of accepting the failover",
                        self.promotion_budget().as_millis()
                    ),
                )));
            }
            tokio::time::sleep(POLL).await;
        };
        // A replica was promoted: the old primary must not take writes again as a primary.
        self.node_cmd::<()>(
            old,
            redis::cmd("REPLICAOF")
                .arg(&promoted.host)
                .arg(promoted.port),
        )
        .await
        .map_err(Failed::keep_paused)?;
        self.node_cmd::<()>(old, redis::cmd("CLIENT").arg("UNPAUSE"))
            .await
            .map_err(Failed::keep_paused)?;
        tracing::info!(from = %old, to = %promoted, paused_ms = paused_at.elapsed().as_millis(), "switchover: promoted; old primary demoted and unpaused");
        Ok(promoted)
    }

    /// Whether `sentinel` still runs a failover of the store (its `flags` say
    /// `failover_in_progress`).
    async fn failover_in_progress(&self, sentinel: &Endpoint) -> Result<bool, String> {
        let mut conn = connect_sentinel(self.target, sentinel).await?;
        let master: Value = redis::cmd("SENTINEL")
            .arg("MASTER")
            .arg(&self.target.master_name)
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(fields_of(&master)
            .get("flags")
            .is_some_and(|flags| flags.split(',').any(|flag| flag == "failover_in_progress")))
    }

    /// Waits until every sentinel that answers (at least the quorum) reports one new primary and
    /// it answers as master.
    async fn confirmed(
        &self,
        promoted: &Endpoint,
        until: Instant,
    ) -> Result<Endpoint, RolloutError> {
        let quorum = usize::try_from(self.target.sentinel.quorum).unwrap_or(usize::MAX);
        let mut last;
        loop {
            let mut reported = Vec::new();
            for sentinel in &self.target.sentinels {
                if let Ok(mut conn) = connect_sentinel(self.target, sentinel).await
                    && let Ok(Some((host, port))) = redis::cmd("SENTINEL")
                        .arg("GET-MASTER-ADDR-BY-NAME")
                        .arg(&self.target.master_name)
                        .query_async::<Option<(String, u16)>>(&mut conn)
                        .await
                {
                    reported.push(Endpoint::new(host, port));
                }
            }
            let agreed = reported
                .first()
                .filter(|first| reported.iter().all(|r| r == *first) && **first != self.old);
            last = format!(
                "sentinels report {:?} (quorum {quorum})",
                reported.iter().map(Endpoint::to_string).collect::<Vec<_>>()
            );
            if let Some(new) = agreed
                && reported.len() >= quorum
                && matches!(self.offset(new).await, Ok((true, _)))
            {
                if new != promoted {
                    tracing::warn!(promoted = %promoted, reported = %new, "the sentinels report another primary than the one seen promoted");
                }
                return Ok(new.clone());
            }
            if Instant::now() >= until {
                return Err(self.timeout(&self.old, last));
            }
            tokio::time::sleep(POLL * 5).await;
        }
    }
}

/// Whether Sentinel would consider a replica for promotion, by the rules of its replica
/// selection (Redis 7 `sentinelSelectSlave`, primary not down): not down or disconnected, a
/// `PING` answered within 5 s, an `INFO` within 30 s, a link to its primary down for at most
/// 10 × down-after, and a non-zero priority.
fn promotable(fields: &HashMap<String, String>, down_after_ms: u64) -> bool {
    let number = |name: &str| -> Option<i64> { fields.get(name)?.parse().ok() };
    let flags_ok = fields.get("flags").is_some_and(|flags| {
        !flags
            .split(',')
            .any(|f| matches!(f, "s_down" | "o_down" | "disconnected"))
    });
    let link_down_limit = i64::try_from(down_after_ms.saturating_mul(10)).unwrap_or(i64::MAX);
    flags_ok
        && number("last-ok-ping-reply").is_some_and(|ms| ms <= 5000)
        && number("info-refresh").is_some_and(|ms| ms <= 30_000)
        && number("master-link-down-time").is_some_and(|ms| ms <= link_down_limit)
        && number("slave-priority").is_some_and(|p| p != 0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::heal::{
        NodeInfo, NodeObservation, SentinelObservation, SentinelSettings, SentinelView,
    };

    fn ep(port: u16) -> Endpoint {
        Endpoint::new("127.0.0.1", port)
    }

    fn node_ep(i: usize) -> Endpoint {
        ep(1 + i as u16)
    }

    fn sentinel_ep(i: usize) -> Endpoint {
        ep(11 + i as u16)
    }

    fn target(nodes: usize, sentinels: usize, quorum: u32) -> HealTarget {
        HealTarget {
            master_name: "store".to_owned(),
            nodes: (0..nodes).map(node_ep).collect(),
            sentinels: (0..sentinels).map(sentinel_ep).collect(),
            sentinel: SentinelSettings {
                quorum,
                down_after_ms: 1000,
                failover_timeout_ms: 3000,
                parallel_syncs: 1,
            },
            min_replicas_to_write: 1,
            operator_auth: None,
            operator_auth_previous: None,
            sentinel_auth: None,
            operator_sentinel_auth: None,
            tls_ca: None,
        }
    }

    /// A calm store: node `primary` is primary at offset 1000, every other node an in-sync
    /// replica, every sentinel agrees and knows everyone.
    struct Store {
        target: HealTarget,
        observation: Observation,
        redis: Vec<Member>,
        sentinels: Vec<Member>,
        desired_redis: usize,
        desired_sentinels: usize,
    }

    fn store(nodes: usize, sentinels: usize, primary: usize) -> Store {
        let target = target(nodes, sentinels, 2.min(sentinels as u32));
        let node_state = |i: usize| -> Result<NodeInfo, String> {
            Ok(NodeInfo {
                role: if i == primary {
                    NodeRole::Primary
                } else {
                    NodeRole::Replica {
                        primary: node_ep(primary),
                        link_up: true,
                    }
                },
                offset: 1000,
                keys: 10,
                loading: false,
                min_replicas_to_write: Some(target.effective_min_replicas_to_write()),
            })
        };
        let view = |i: usize| SentinelView {
            primary: node_ep(primary),
            flags: vec!["master".to_owned()],
            replicas: (0..nodes).filter(|&n| n != primary).map(node_ep).collect(),
            sentinels: (0..sentinels)
                .filter(|&s| s != i)
                .map(sentinel_ep)
                .collect(),
        };
        let observation = Observation {
            nodes: (0..nodes)
                .map(|i| NodeObservation {
                    endpoint: node_ep(i),
                    state: node_state(i),
                })
                .collect(),
            sentinels: (0..sentinels)
                .map(|i| SentinelObservation {
                    endpoint: sentinel_ep(i),
                    state: Ok(Some(view(i))),
                })
                .collect(),
        };
        let fresh = Member {
            up_to_date: true,
            ready: true,
            ..Member::default()
        };
        Store {
            target,
            observation,
            redis: vec![fresh; nodes],
            sentinels: vec![fresh; sentinels],
            desired_redis: nodes,
            desired_sentinels: sentinels,
        }
    }

    impl Store {
        fn step(&self) -> Step {
            next_step(&RolloutInput {
                redis: &self.redis,
                sentinels: &self.sentinels,
                desired_redis: self.desired_redis,
                desired_sentinels: self.desired_sentinels,
                target: &self.target,
                observation: &self.observation,
            })
        }
        fn outdated(mut self, redis: &[usize], sentinels: &[usize]) -> Store {
            for &i in redis {
                self.redis[i].up_to_date = false;
            }
            for &i in sentinels {
                self.sentinels[i].up_to_date = false;
            }
            self
        }
        fn info(&mut self, i: usize) -> &mut NodeInfo {
            self.observation.nodes[i].state.as_mut().unwrap()
        }
        fn view(&mut self, i: usize) -> &mut SentinelView {
            self.observation.sentinels[i]
                .state
                .as_mut()
                .unwrap()
                .as_mut()
                .unwrap()
        }
    }

    fn is_wait(step: &Step, mentions: &str) -> bool {
        matches!(step, Step::Wait { reason } if reason.contains(mentions))
    }

    #[test]
    fn a_store_at_its_configuration_and_scale_is_done() {
        assert_eq!(store(3, 3, 0).step(), Step::Done);
        assert_eq!(store(1, 1, 0).step(), Step::Done);
    }

    #[test]
    fn outdated_replicas_restart_first_lowest_ordinal_first_and_never_the_primary() {
        // (primary, outdated nodes) → step. The primary is only switched over once every
        // replica runs the new configuration, so the new primary is an up-to-date node.
        let cases: [(usize, &[usize], Step); 5] = [
            (0, &[0, 1, 2], Step::RestartRedis { index: 1 }),
            (1, &[0, 1, 2], Step::RestartRedis { index: 0 }),
            (1, &[1, 2], Step::RestartRedis { index: 2 }),
            (
                2,
                &[2],
                Step::Switchover {
                    from: 2,
                    avoid: vec![],
                },
            ),
            (
                0,
                &[0],
                Step::Switchover {
                    from: 0,
                    avoid: vec![],
                },
            ),
        ];
        for (primary, outdated, expected) in cases {
            let s = store(3, 3, primary).outdated(outdated, &[]);
            assert_eq!(
                s.step(),
                expected,
                "primary {primary}, outdated {outdated:?}"
            );
        }
    }

    #[test]
    fn a_single_node_restarts_in_place_there_is_no_one_to_switch_to() {
        assert_eq!(
            store(1, 3, 0).outdated(&[0], &[]).step(),
            Step::RestartRedis { index: 0 }
        );
    }

    #[test]
    fn nothing_restarts_while_a_member_is_not_ready() {
        // A restarted pod that is not back yet: the next one waits for it.
        let mut s = store(3, 3, 0).outdated(&[0, 2], &[]);
        s.redis[1].ready = false;
        assert!(is_wait(&s.step(), "data node 1"), "{:?}", s.step());
        let mut s = store(3, 3, 0).outdated(&[1], &[]);
        s.sentinels[2].ready = false;
        assert!(is_wait(&s.step(), "sentinel 2"), "{:?}", s.step());
    }

    #[test]
    fn nothing_restarts_while_a_replica_is_out_of_sync() {
        // Restarting the next replica while the previous one still resyncs would leave the
        // primary with no copy of its data.
        let mut s = store(3, 3, 0).outdated(&[2], &[]);
        s.info(1).role = NodeRole::Replica {
            primary: node_ep(0),
            link_up: false,
        };
        assert!(is_wait(&s.step(), "data node 1"), "{:?}", s.step());

        let mut s = store(3, 3, 0).outdated(&[2], &[]);
        s.info(0).offset = 1000 + IN_SYNC_BOUND + 1;
        assert!(is_wait(&s.step(), "data node 1"), "{:?}", s.step());

        // Within the bound (offsets read a few ms apart under load) is in sync.
        let mut s = store(3, 3, 0).outdated(&[2], &[]);
        s.info(0).offset = 1000 + IN_SYNC_BOUND;
        assert_eq!(s.step(), Step::RestartRedis { index: 2 });

        let mut s = store(3, 3, 0).outdated(&[2], &[]);
        s.info(1).loading = true;
        assert!(is_wait(&s.step(), "data node 1"), "{:?}", s.step());

        let mut s = store(3, 3, 0).outdated(&[2], &[]);
        s.observation.nodes[1].state = Err("connection refused".to_owned());
        assert!(is_wait(&s.step(), "connection refused"), "{:?}", s.step());
    }

    #[test]
    fn nothing_happens_during_a_failover_or_while_the_sentinels_disagree() {
        // Sentinel owns failover: a rollout step in the middle of one could restart the node
        // it is promoting.
        let mut s = store(3, 3, 0).outdated(&[1], &[]);
        s.view(1).flags.push("failover_in_progress".to_owned());
        assert!(is_wait(&s.step(), "failover in progress"), "{:?}", s.step());

        let mut s = store(3, 3, 0).outdated(&[1], &[]);
        s.view(2).primary = node_ep(1);
        assert!(is_wait(&s.step(), "disagree"), "{:?}", s.step());

        let mut s = store(3, 3, 0).outdated(&[1], &[]);
        s.view(0).flags.push("s_down".to_owned());
        assert!(is_wait(&s.step(), "down"), "{:?}", s.step());
    }

    #[test]
    fn nothing_happens_until_heal_has_repaired_the_topology() {
        // A node replicating someone else, a sentinel that lost its configuration: heal's job
        // first, or the rollout reasons about a topology that is about to change.
        let mut s = store(3, 3, 0).outdated(&[1], &[]);
        s.info(2).role = NodeRole::Replica {
            primary: node_ep(1),
            link_up: true,
        };
        assert!(is_wait(&s.step(), "heal"), "{:?}", s.step());

        let mut s = store(3, 3, 0).outdated(&[1], &[]);
        s.observation.sentinels[2].state = Ok(None);
        assert!(is_wait(&s.step(), "heal"), "{:?}", s.step());
    }

    #[test]
    fn nothing_happens_while_a_sentinel_has_not_discovered_the_others() {
        // A sentinel that does not know the replicas cannot promote one; one that does not know
        // the other sentinels cannot vote.
        let mut s = store(3, 3, 0).outdated(&[1], &[]);
        s.view(2).sentinels.pop();
        assert!(is_wait(&s.step(), "other sentinels"), "{:?}", s.step());
        let mut s = store(3, 3, 0).outdated(&[1], &[]);
        s.view(2).replicas.retain(|r| *r != node_ep(2));
        assert!(is_wait(&s.step(), "replica"), "{:?}", s.step());
    }

    #[test]
    fn scale_down_switches_a_primary_that_would_be_removed_over_to_a_remaining_node_first() {
        // (nodes, primary, desired) → step.
        let cases = [
            (
                3,
                2,
                1,
                Step::Switchover {
                    from: 2,
                    avoid: vec![1, 2],
                },
            ),
            (
                3,
                1,
                1,
                Step::Switchover {
                    from: 1,
                    avoid: vec![1, 2],
                },
            ),
            (
                5,
                4,
                3,
                Step::Switchover {
                    from: 4,
                    avoid: vec![3, 4],
                },
            ),
            (3, 0, 1, Step::RemoveRedis { from: 1 }),
            (5, 2, 3, Step::RemoveRedis { from: 3 }),
            // Zero is not a store: at least one node stays.
            (3, 0, 0, Step::RemoveRedis { from: 1 }),
        ];
        for (nodes, primary, desired, expected) in cases {
            let mut s = store(nodes, 3, primary);
            s.desired_redis = desired;
            assert_eq!(
                s.step(),
                expected,
                "{nodes} nodes, primary {primary}, desired {desired}"
            );
        }
    }

    #[test]
    fn scale_down_goes_before_restarts_and_waits_like_them() {
        // Fewer nodes to roll; and a node about to be removed is not worth restarting.
        let mut s = store(3, 3, 0).outdated(&[1, 2], &[]);
        s.desired_redis = 2;
        assert_eq!(s.step(), Step::RemoveRedis { from: 2 });
        let mut s = store(3, 3, 2);
        s.desired_redis = 1;
        s.info(1).role = NodeRole::Replica {
            primary: node_ep(2),
            link_up: false,
        };
        assert!(is_wait(&s.step(), "data node 1"), "{:?}", s.step());
    }

    #[test]
    fn scale_up_needs_no_step_but_waits_for_the_new_nodes() {
        // New nodes are started as replicas and healed in; nothing else moves until they are
        // ready and in sync.
        let mut s = store(3, 3, 0).outdated(&[1], &[]);
        s.redis[2].ready = false;
        assert!(matches!(s.step(), Step::Wait { .. }));
        let mut s = store(3, 3, 0);
        s.desired_redis = 5;
        assert_eq!(s.step(), Step::Done);
    }

    #[test]
    fn sentinels_restart_last_one_at_a_time_keeping_the_quorum_and_a_majority() {
        // (sentinels, quorum, outdated data nodes, outdated sentinels, expected; None: wait).
        type Case = (usize, u32, &'static [usize], &'static [usize], Option<Step>);
        let cases: [Case; 6] = [
            (
                3,
                2,
                &[],
                &[0, 1, 2],
                Some(Step::RestartSentinel { index: 0 }),
            ),
            (3, 2, &[], &[2], Some(Step::RestartSentinel { index: 2 })),
            (3, 2, &[1], &[0], Some(Step::RestartRedis { index: 1 })),
            (5, 3, &[], &[3], Some(Step::RestartSentinel { index: 3 })),
            // 2 left of 3 with quorum 3: no failover possible meanwhile.
            (3, 3, &[], &[0], None),
            // 1 left of 2: quorum 1 but no majority to elect a leader.
            (2, 1, &[], &[0], None),
        ];
        for (count, quorum, redis, sentinels, expected) in cases {
            let mut s = store(3, count, 0).outdated(redis, sentinels);
            s.target.sentinel.quorum = quorum;
            let step = s.step();
            match expected {
                Some(expected) => assert_eq!(step, expected, "{count} sentinels, quorum {quorum}"),
                None => assert!(is_wait(&step, "quorum"), "{count}/{quorum}: {step:?}"),
            }
        }
    }

    #[test]
    fn sentinel_scale_down_keeps_the_quorum() {
        let mut s = store(3, 5, 0);
        s.desired_sentinels = 3;
        assert_eq!(s.step(), Step::RemoveSentinels { from: 3 });
        let mut s = store(3, 5, 0);
        s.target.sentinel.quorum = 3;
        s.desired_sentinels = 2;
        assert!(is_wait(&s.step(), "quorum"), "{:?}", s.step());
    }

    /// A member of the previous revision that is not ready: `stuck` as Kubernetes reports it.
    fn broken(stuck: Option<&'static str>, not_ready_for: Option<Duration>) -> Member {
        Member {
            up_to_date: false,
            ready: false,
            stuck,
            not_ready_for,
        }
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn an_outdated_pod_that_cannot_start_is_replaced_at_once_even_while_heal_waits() {
        // Issue 16, item 7: a rollout restarted node 1 onto a revision whose image cannot be
        // pulled, then the spec was reverted. With OnDelete only a deletion replaces the pod,
        // and every other rule waits for it to be ready: without this, recovering took a
        // `kubectl delete pod`.
        for reason in [
            "ErrImagePull",
            "CrashLoopBackOff",
            "CreateContainerConfigError",
        ] {
            let mut s = store(3, 3, 0);
            s.redis[1] = broken(Some(reason), Some(MINUTE));
            s.observation.nodes[1].state = Err("Connection refused".to_owned());
            assert_eq!(
                s.step(),
                Step::ReplaceRedis {
                    index: 1,
                    reason: format!("outdated and {reason}")
                }
            );
        }
        // Heal waiting (here a sentinel sees the primary down) does not hold it back: the
        // rollout is called on an unsettled topology too.
        let mut s = store(3, 3, 0);
        s.redis[2] = broken(Some("ImagePullBackOff"), None);
        s.observation.nodes[2].state = Err("Connection refused".to_owned());
        s.view(1).flags.push("s_down".to_owned());
        assert!(matches!(s.step(), Step::ReplaceRedis { index: 2, .. }));
        // Sentinels too.
        let mut s = store(3, 3, 0);
        s.sentinels[2] = broken(Some("CrashLoopBackOff"), None);
        s.observation.sentinels[2].state = Err("Connection refused".to_owned());
        assert!(matches!(s.step(), Step::ReplaceSentinel { index: 2, .. }));
    }

    #[test]
    fn a_pod_that_is_merely_slow_to_start_is_never_replaced() {
        // A big AOF load or a long full sync must not be turned into a restart loop.
        // (member, observed loading) → replaced?
        let cases: [(Member, bool, bool); 6] = [
            // The current revision, whatever its state: only time or a new spec fixes it.
            (
                Member {
                    up_to_date: true,
                    ..broken(Some("CrashLoopBackOff"), Some(60 * MINUTE))
                },
                false,
                false,
            ),
            // Outdated but ready: the ordinary rollout restarts it in turn.
            (
                Member {
                    ready: true,
                    ..broken(None, None)
                },
                false,
                false,
            ),
            // Outdated, not ready, within the bound.
            (broken(None, Some(NOT_READY_BOUND - MINUTE)), false, false),
            // Past the bound but loading its dataset: making progress.
            (broken(None, Some(NOT_READY_BOUND + MINUTE)), true, false),
            // Past the bound and not loading: it is not going to get ready on its own.
            (broken(None, Some(NOT_READY_BOUND + MINUTE)), false, true),
            // Being deleted (no readiness age): its replacement is already coming.
            (broken(None, None), false, false),
        ];
        for (member, loading, replaced) in cases {
            let mut s = store(3, 3, 0);
            s.redis[2] = member;
            s.info(2).loading = loading;
            let step = s.step();
            assert_eq!(
                matches!(step, Step::ReplaceRedis { index: 2, .. }),
                replaced,
                "{member:?}, loading {loading}: {step:?}"
            );
        }
    }

    #[test]
    fn a_broken_primary_is_left_to_sentinel_unless_it_is_the_only_node() {
        // Never delete a reachable primary this way; an unreachable one is failed over by
        // Sentinel first, after which it is an outdated replica like any other.
        let mut s = store(3, 3, 0);
        s.redis[0] = broken(None, Some(NOT_READY_BOUND + MINUTE));
        assert!(matches!(s.step(), Step::Wait { .. }), "{:?}", s.step());

        let mut s = store(3, 3, 0);
        s.redis[0] = broken(Some("CrashLoopBackOff"), None);
        s.observation.nodes[0].state = Err("Connection refused".to_owned());
        assert!(matches!(s.step(), Step::Wait { .. }), "{:?}", s.step());

        // A node that answers as a primary although no sentinel names it: left alone too.
        let mut s = store(3, 3, 0);
        s.redis[1] = broken(None, Some(NOT_READY_BOUND + MINUTE));
        s.info(1).role = NodeRole::Primary;
        assert!(
            !matches!(s.step(), Step::ReplaceRedis { .. }),
            "{:?}",
            s.step()
        );

        // The only node, restarted in place onto a bad revision: no failover can ever come.
        let mut s = store(1, 3, 0);
        s.redis[0] = broken(Some("ErrImagePull"), None);
        s.observation.nodes[0].state = Err("Connection refused".to_owned());
        s.view(0).flags.push("o_down".to_owned());
        assert!(matches!(s.step(), Step::ReplaceRedis { index: 0, .. }));
    }

    #[test]
    fn broken_members_are_replaced_one_per_step_data_nodes_first_never_during_a_failover() {
        let mut s = store(3, 3, 0);
        s.redis[2] = broken(Some("ErrImagePull"), None);
        s.redis[1] = broken(Some("ErrImagePull"), None);
        s.sentinels[0] = broken(Some("ErrImagePull"), None);
        assert!(matches!(s.step(), Step::ReplaceRedis { index: 1, .. }));
        s.redis[1] = Member {
            up_to_date: true,
            ..broken(None, None)
        };
        assert!(matches!(s.step(), Step::ReplaceRedis { index: 2, .. }));
        s.view(2).flags.push("failover_in_progress".to_owned());
        assert!(is_wait(&s.step(), "failover"), "{:?}", s.step());
    }

    #[test]
    fn mismatched_inputs_wait_instead_of_indexing_out_of_bounds() {
        let mut s = store(3, 3, 0);
        s.redis.pop();
        assert!(matches!(s.step(), Step::Wait { .. }));
    }

    #[test]
    fn a_replica_sentinel_holds_unfit_is_not_a_candidate() {
        // Right after a restart Sentinel may still see a replica as down or disconnected and
        // answer SENTINEL FAILOVER with NOGOODSLAVE: the switchover waits for a fit one.
        let fit: HashMap<String, String> = [
            ("flags", "slave"),
            ("last-ok-ping-reply", "300"),
            ("info-refresh", "4000"),
            ("master-link-down-time", "0"),
            ("slave-priority", "100"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert!(promotable(&fit, 1000));
        let with = |name: &str, value: &str| {
            let mut fields = fit.clone();
            fields.insert(name.to_owned(), value.to_owned());
            fields
        };
        for unfit in [
            with("flags", "s_down,slave"),
            with("flags", "slave,disconnected"),
            with("last-ok-ping-reply", "6000"),
            with("info-refresh", "31000"),
            with("master-link-down-time", "10001"),
            with("slave-priority", "0"),
        ] {
            assert!(!promotable(&unfit, 1000), "{unfit:?}");
        }
    }
}
