//! The pure half of healing: from what the nodes and sentinels say, who the primary is and what
//! to change. No I/O, so every rule is tested with plain values.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::observe::{NodeInfo, NodeRole, Observation, SentinelView};
use super::{Endpoint, HealTarget};

/// How the primary was decided, or why nothing is done this pass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Decision {
    /// The primary the sentinels agree on.
    Elected { votes: usize },
    /// No sentinel monitors the store: the operator chose.
    Bootstrap { reason: String },
    /// Nothing is changed this pass.
    Wait { reason: String },
}

/// Why a node is pointed at the primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ReplicaReason {
    /// Bootstrap: every node but the chosen one replicates it.
    Bootstrap,
    /// It replicated a node that is not the primary (a restart, a missed reconfiguration).
    Rejoin,
    /// It claimed to be a primary too: demoted in favour of the elected one.
    SplitBrain,
}

/// One change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "action")]
pub enum Action {
    /// `REPLICAOF NO ONE` on the chosen primary (bootstrap only).
    Promote { node: Endpoint },
    /// `REPLICAOF <primary>`.
    ReplicaOf {
        node: Endpoint,
        primary: Endpoint,
        reason: ReplicaReason,
    },
    /// `SENTINEL MONITOR` plus the per-master settings and auth.
    Monitor {
        sentinel: Endpoint,
        primary: Endpoint,
    },
    /// `SENTINEL RESET`: forget replicas and sentinels that no longer exist.
    ResetSentinel {
        sentinel: Endpoint,
        stale: Vec<Endpoint>,
    },
    /// `CONFIG SET min-replicas-to-write`.
    SetMinReplicasToWrite { node: Endpoint, value: u32 },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Promote { node } => write!(f, "promote {node} (REPLICAOF NO ONE)"),
            Action::ReplicaOf {
                node,
                primary,
                reason,
            } => write!(f, "REPLICAOF {primary} on {node} ({reason:?})"),
            Action::Monitor { sentinel, primary } => {
                write!(f, "sentinel {sentinel} monitors {primary}")
            }
            Action::ResetSentinel { sentinel, stale } => {
                let stale: Vec<String> = stale.iter().map(Endpoint::to_string).collect();
                write!(
                    f,
                    "SENTINEL RESET on {sentinel} (stale: {})",
                    stale.join(", ")
                )
            }
            Action::SetMinReplicasToWrite { node, value } => {
                write!(f, "min-replicas-to-write {value} on {node}")
            }
        }
    }
}

/// What a pass will do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub primary: Option<Endpoint>,
    pub decision: Decision,
    pub actions: Vec<Action>,
}

impl Plan {
    fn wait(primary: Option<Endpoint>, reason: impl Into<String>) -> Plan {
        Plan {
            primary,
            decision: Decision::Wait {
                reason: reason.into(),
            },
            actions: Vec::new(),
        }
    }
}

/// Decides the primary and the changes. The rules, in order:
/// 1. a failover in progress, or a primary a sentinel sees as down → wait (Sentinel's job);
/// 2. sentinels that monitor the store agree (all of them, and at least the quorum when there are
///    enough) → that is the primary; if they disagree → wait;
/// 3. no sentinel monitors it → bootstrap: the reachable node with data and the highest offset
///    (then most keys, then lowest ordinal); node 0 only when every node is reachable and empty;
///    wait while a node is loading its dataset, or while nodes are unreachable and none of the
///    reachable ones holds data (an unreachable one might);
/// 4. the primary must answer as a primary (bootstrap may promote it) before anything is repointed.
pub fn plan(target: &HealTarget, observation: &Observation) -> Plan {
    let views: Vec<(&Endpoint, &SentinelView)> = observation
        .sentinels
        .iter()
        .filter_map(|s| match &s.state {
            Ok(Some(view)) => Some((&s.endpoint, view)),
            _ => None,
        })
        .collect();
    if let Some((sentinel, _)) = views.iter().find(|(_, v)| v.failover_in_progress()) {
        return Plan::wait(
            None,
            format!("sentinel {sentinel} reports a failover in progress"),
        );
    }

    let (primary, decision) = if views.is_empty() {
        match bootstrap_choice(target, observation) {
            Ok((primary, reason)) => (primary, Decision::Bootstrap { reason }),
            Err(reason) => return Plan::wait(None, reason),
        }
    } else {
        let mut votes: BTreeMap<&Endpoint, usize> = BTreeMap::new();
        for (_, view) in &views {
            *votes.entry(&view.primary).or_default() += 1;
        }
        if votes.len() > 1 {
            let seen: Vec<String> = votes.iter().map(|(e, n)| format!("{e} ({n})")).collect();
            return Plan::wait(
                None,
                format!("sentinels disagree on the primary: {}", seen.join(", ")),
            );
        }
        let Some((primary, votes)) = votes.into_iter().next() else {
            return Plan::wait(None, "no sentinel view");
        };
        let quorum = usize::try_from(target.sentinel.quorum).unwrap_or(usize::MAX);
        let reachable = observation
            .sentinels
            .iter()
            .filter(|s| s.state.is_ok())
            .count();
        if votes < quorum && reachable >= quorum {
            // Enough sentinels answer, but fewer than the quorum monitor the store: the others
            // lost their configuration; they are told to monitor below.
            tracing::debug!(
                votes,
                quorum,
                "fewer sentinels than the quorum monitor the store"
            );
        }
        if let Some((sentinel, _)) = views.iter().find(|(_, v)| v.primary_down()) {
            return Plan::wait(
                Some(primary.clone()),
                format!("sentinel {sentinel} sees the primary {primary} as down"),
            );
        }
        (primary.clone(), Decision::Elected { votes })
    };

    let node = |endpoint: &Endpoint| -> Option<&NodeInfo> {
        observation
            .nodes
            .iter()
            .find(|n| &n.endpoint == endpoint)
            .and_then(|n| n.state.as_ref().ok())
    };
    let mut actions = Vec::new();
    match (node(&primary).map(|n| &n.role), &decision) {
        (Some(NodeRole::Primary), _) => {}
        (Some(NodeRole::Replica { .. }), Decision::Bootstrap { .. }) => {
            actions.push(Action::Promote {
                node: primary.clone(),
            });
        }
        (Some(NodeRole::Replica { .. }), _) => {
            return Plan::wait(
                Some(primary.clone()),
                format!("{primary} is elected but still answers as a replica"),
            );
        }
        (None, _) => {
            return Plan::wait(
                Some(primary.clone()),
                format!("the primary {primary} does not answer"),
            );
        }
    }

    // Sentinels that answer but do not monitor the store.
    for sentinel in &observation.sentinels {
        if matches!(sentinel.state, Ok(None)) {
            actions.push(Action::Monitor {
                sentinel: sentinel.endpoint.clone(),
                primary: primary.clone(),
            });
        }
    }

    // Data nodes that are not replicas of the primary.
    for observed in &observation.nodes {
        let Ok(info) = &observed.state else { continue };
        if observed.endpoint == primary {
            continue;
        }
        let reason = match (&info.role, &decision) {
            (_, Decision::Bootstrap { .. }) => match &info.role {
                NodeRole::Replica { primary: p, .. } if *p == primary => None,
                _ => Some(ReplicaReason::Bootstrap),
            },
            (NodeRole::Primary, _) => Some(ReplicaReason::SplitBrain),
            (NodeRole::Replica { primary: p, .. }, _) if *p != primary => {
                Some(ReplicaReason::Rejoin)
            }
            _ => None,
        };
        if let Some(reason) = reason {
            actions.push(Action::ReplicaOf {
                node: observed.endpoint.clone(),
                primary: primary.clone(),
                reason,
            });
        }
    }

    // Durability settings, live.
    let wanted = target.effective_min_replicas_to_write();
    for observed in &observation.nodes {
        if let Ok(info) = &observed.state
            && info.min_replicas_to_write.is_some_and(|v| v != wanted)
        {
            actions.push(Action::SetMinReplicasToWrite {
                node: observed.endpoint.clone(),
                value: wanted,
            });
        }
    }

    // Stale sentinel state: one sentinel per pass, only in a calm steady state (every sentinel
    // answers and agrees, and the others keep the quorum while this one relearns).
    if let Decision::Elected { votes } = decision
        && votes == target.sentinels.len()
        && votes > usize::try_from(target.sentinel.quorum).unwrap_or(usize::MAX)
        && let Some(reset) = stale_sentinel(target, observation, &primary)
    {
        actions.push(reset);
    }

    Plan {
        primary: Some(primary),
        decision,
        actions,
    }
}

/// The first sentinel that knows replicas or sentinels outside the target.
fn stale_sentinel(
    target: &HealTarget,
    observation: &Observation,
    primary: &Endpoint,
) -> Option<Action> {
    observation.sentinels.iter().find_map(|s| {
        let Ok(Some(view)) = &s.state else {
            return None;
        };
        let mut stale: Vec<Endpoint> = view
            .replicas
            .iter()
            .filter(|r| *r != primary && !target.nodes.contains(r))
            .chain(
                view.sentinels
                    .iter()
                    .filter(|o| !target.sentinels.contains(o)),
            )
            .cloned()
            .collect();
        stale.sort();
        stale.dedup();
        (!stale.is_empty()).then(|| Action::ResetSentinel {
            sentinel: s.endpoint.clone(),
            stale,
        })
    })
}

/// The bootstrap primary, with the reason, or why none can be chosen safely.
fn bootstrap_choice(
    target: &HealTarget,
    observation: &Observation,
) -> Result<(Endpoint, String), String> {
    let mut unreachable = Vec::new();
    let mut candidates = Vec::new();
    for (ordinal, node) in observation.nodes.iter().enumerate() {
        match &node.state {
            Ok(info) if info.loading => {
                return Err(format!("{} is still loading its dataset", node.endpoint));
            }
            Ok(info) => candidates.push((ordinal, &node.endpoint, info)),
            Err(_) => unreachable.push(node.endpoint.to_string()),
        }
    }
    let best = candidates
        .iter()
        .filter(|(_, _, info)| info.has_data())
        .max_by(|(oa, _, a), (ob, _, b)| {
            a.offset
                .cmp(&b.offset)
                .then(a.keys.cmp(&b.keys))
                .then(ob.cmp(oa))
        });
    if let Some((_, endpoint, info)) = best {
        return Ok((
            (*endpoint).clone(),
            format!(
                "no sentinel monitors '{}'; {endpoint} holds the most data (offset {}, {} keys)",
                target.master_name, info.offset, info.keys
            ),
        ));
    }
    if !unreachable.is_empty() {
        return Err(format!(
            "no sentinel monitors '{}', every reachable node is empty and {} did not answer \
             (it may hold data): not choosing an empty primary",
            target.master_name,
            unreachable.join(", ")
        ));
    }
    Ok((
        target.nodes[0].clone(),
        format!(
            "no sentinel monitors '{}' and every node is empty: node 0 bootstraps",
            target.master_name
        ),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::observe::{NodeObservation, SentinelObservation};
    use super::super::{HealTarget, SentinelSettings};
    use super::*;

    fn ep(port: u16) -> Endpoint {
        Endpoint::new("127.0.0.1", port)
    }

    fn target() -> HealTarget {
        HealTarget {
            master_name: "store".to_owned(),
            nodes: vec![ep(1), ep(2), ep(3)],
            sentinels: vec![ep(11), ep(12), ep(13)],
            sentinel: SentinelSettings {
                quorum: 2,
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

    fn primary(offset: u64, keys: u64) -> Result<NodeInfo, String> {
        Ok(NodeInfo {
            role: NodeRole::Primary,
            offset,
            keys,
            loading: false,
            min_replicas_to_write: Some(1),
        })
    }

    fn replica_of(port: u16, offset: u64) -> Result<NodeInfo, String> {
        Ok(NodeInfo {
            role: NodeRole::Replica {
                primary: ep(port),
                link_up: true,
            },
            offset,
            keys: offset,
            loading: false,
            min_replicas_to_write: Some(1),
        })
    }

    fn view(port: u16) -> Result<Option<SentinelView>, String> {
        Ok(Some(SentinelView {
            primary: ep(port),
            flags: vec!["master".to_owned()],
            replicas: Vec::new(),
            sentinels: Vec::new(),
        }))
    }

    fn observation(
        nodes: Vec<Result<NodeInfo, String>>,
        sentinels: Vec<Result<Option<SentinelView>, String>>,
    ) -> Observation {
        Observation {
            nodes: nodes
                .into_iter()
                .enumerate()
                .map(|(i, state)| NodeObservation {
                    endpoint: ep(1 + i as u16),
                    state,
                })
                .collect(),
            sentinels: sentinels
                .into_iter()
                .enumerate()
                .map(|(i, state)| SentinelObservation {
                    endpoint: ep(11 + i as u16),
                    state,
                })
                .collect(),
        }
    }

    #[test]
    fn bootstrap_never_chooses_an_empty_node_while_another_holds_data() {
        // The classic operator bug: an empty pod 0 becomes primary and its replicas wipe their data.
        let obs = observation(
            vec![primary(0, 0), primary(0, 0), primary(500, 20)],
            vec![Ok(None), Ok(None), Ok(None)],
        );
        let plan = plan(&target(), &obs);
        assert_eq!(plan.primary, Some(ep(3)));
        assert!(matches!(plan.decision, Decision::Bootstrap { .. }));
        assert!(plan.actions.contains(&Action::ReplicaOf {
            node: ep(1),
            primary: ep(3),
            reason: ReplicaReason::Bootstrap
        }));
        let monitors = plan
            .actions
            .iter()
            .filter(|a| matches!(a, Action::Monitor { .. }))
            .count();
        assert_eq!(monitors, 3);
    }

    #[test]
    fn bootstrap_prefers_the_highest_offset_even_on_a_replica() {
        // After every process restarted, the most up-to-date copy wins, and is promoted.
        let obs = observation(
            vec![primary(100, 10), replica_of(1, 300), replica_of(1, 200)],
            vec![Ok(None), Ok(None), Ok(None)],
        );
        let plan = plan(&target(), &obs);
        assert_eq!(plan.primary, Some(ep(2)));
        assert_eq!(plan.actions[0], Action::Promote { node: ep(2) });
    }

    #[test]
    fn an_all_empty_store_bootstraps_on_node_0_but_not_while_a_node_is_unreachable() {
        let obs = observation(
            vec![primary(0, 0), primary(0, 0), primary(0, 0)],
            vec![Ok(None), Ok(None), Ok(None)],
        );
        assert_eq!(plan(&target(), &obs).primary, Some(ep(1)));
        let obs = observation(
            vec![primary(0, 0), Err("refused".to_owned()), primary(0, 0)],
            vec![Ok(None), Ok(None), Ok(None)],
        );
        let plan = plan(&target(), &obs);
        assert!(matches!(plan.decision, Decision::Wait { .. }), "{plan:?}");
        assert!(plan.actions.is_empty());
    }

    #[test]
    fn a_second_primary_is_demoted_in_favour_of_the_elected_one() {
        let obs = observation(
            vec![primary(100, 10), primary(90, 9), replica_of(1, 100)],
            vec![view(1), view(1), view(1)],
        );
        let plan = plan(&target(), &obs);
        assert_eq!(plan.decision, Decision::Elected { votes: 3 });
        assert_eq!(
            plan.actions,
            vec![Action::ReplicaOf {
                node: ep(2),
                primary: ep(1),
                reason: ReplicaReason::SplitBrain
            }]
        );
    }

    #[test]
    fn nothing_is_done_during_a_failover_or_while_sentinels_disagree() {
        // Sentinel owns failover; acting on a half-finished one can promote stale data.
        let mut during = view(1).unwrap().unwrap();
        during.flags.push("failover_in_progress".to_owned());
        let obs = observation(
            vec![primary(100, 10), primary(90, 9), replica_of(1, 100)],
            vec![Ok(Some(during)), view(1), view(1)],
        );
        assert!(plan(&target(), &obs).actions.is_empty());
        let obs = observation(
            vec![primary(100, 10), primary(90, 9), replica_of(1, 100)],
            vec![view(1), view(2), view(1)],
        );
        let plan = plan(&target(), &obs);
        assert!(plan.actions.is_empty());
        assert!(matches!(plan.decision, Decision::Wait { .. }));
    }

    #[test]
    fn a_replica_of_an_old_primary_rejoins_and_a_forgetful_sentinel_monitors_again() {
        let obs = observation(
            vec![primary(100, 10), replica_of(3, 100), replica_of(1, 100)],
            vec![view(1), Ok(None), Err("refused".to_owned())],
        );
        let plan = plan(&target(), &obs);
        assert_eq!(
            plan.actions,
            vec![
                Action::Monitor {
                    sentinel: ep(12),
                    primary: ep(1)
                },
                Action::ReplicaOf {
                    node: ep(2),
                    primary: ep(1),
                    reason: ReplicaReason::Rejoin
                },
            ]
        );
    }

    #[test]
    fn min_replicas_to_write_follows_the_replicas_that_exist() {
        // A scale-down to one node must not leave the primary refusing every write.
        let mut one = target();
        one.nodes.truncate(1);
        one.min_replicas_to_write = 2;
        let obs = Observation {
            nodes: vec![NodeObservation {
                endpoint: ep(1),
                state: primary(0, 0),
            }],
            sentinels: Vec::new(),
        };
        let plan = plan(&one, &obs);
        assert!(plan.actions.contains(&Action::SetMinReplicasToWrite {
            node: ep(1),
            value: 0
        }));
    }

    #[test]
    fn stale_sentinel_entries_are_reset_one_sentinel_at_a_time_in_a_calm_state() {
        let mut stale = view(1).unwrap().unwrap();
        stale.replicas = vec![ep(2), ep(3), Endpoint::new("10.0.0.9", 6379)];
        let obs = observation(
            vec![primary(100, 10), replica_of(1, 100), replica_of(1, 100)],
            vec![Ok(Some(stale.clone())), Ok(Some(stale.clone())), view(1)],
        );
        let plan = plan(&target(), &obs);
        assert_eq!(
            plan.actions,
            vec![Action::ResetSentinel {
                sentinel: ep(11),
                stale: vec![Endpoint::new("10.0.0.9", 6379)]
            }]
        );
        // With one sentinel down, a reset could cost the quorum: not now.
        let obs = observation(
            vec![primary(100, 10), replica_of(1, 100), replica_of(1, 100)],
            vec![Ok(Some(stale)), Err("down".to_owned()), view(1)],
        );
        assert!(plan_actions(&obs).is_empty());
    }

    fn plan_actions(obs: &Observation) -> Vec<Action> {
        plan(&target(), obs).actions
    }
}
