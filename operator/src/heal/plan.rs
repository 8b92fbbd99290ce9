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
/// 3. no sentinel that answers monitors it → bootstrap, but only when at least
///    [`bootstrap_quorum`] sentinels answered; fewer → wait, naming the silent ones (a sentinel
///    that does not answer — DNS, a NetworkPolicy, a password mid-rotation — may well monitor
///    the store and be handing its primary to clients);
/// 4. bootstrap chooses by [`bootstrap_choice`]: a primary its peers stream from first, then the
///    highest offset, most keys, lowest ordinal; node 0 only when every node is reachable and
///    empty; wait while a node is loading its dataset, or while nodes are unreachable and none
///    of the reachable ones holds data (an unreachable one might);
/// 5. the primary must answer as a primary (bootstrap may promote it) before anything is repointed.
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
        if let Err(reason) = enough_sentinels_answer(target, observation) {
            return Plan::wait(None, reason);
        }
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

/// How many sentinels must answer (each saying it does not monitor the store) before heal may
/// bootstrap: the spec's quorum, and a majority of the configured sentinels, whichever is more.
///
/// - A majority: the sentinels that did not answer are then a minority, and a minority can never
///   elect the leader a failover needs (Sentinel's election takes a majority of the sentinels),
///   so nothing they might still believe can move the primary against the choice made here;
///   with fewer answering (quorum 2 of 5, two answering) the three silent ones could be a
///   working Sentinel deployment that monitors the store.
/// - The quorum: the sentinels told to monitor the bootstrap primary must be able to agree it
///   is down on their own; with fewer (quorum 4 of 5, three answering) the store would be
///   bootstrapped without any possible failover.
///
/// Never more than the configured sentinels: validation keeps the quorum at most their number.
pub fn bootstrap_quorum(target: &HealTarget) -> usize {
    let quorum = usize::try_from(target.sentinel.quorum).unwrap_or(usize::MAX);
    let majority = target.sentinels.len() / 2 + 1;
    quorum.max(majority)
}

/// `Ok` when enough sentinels answered for "none of them monitors the store" to mean the store
/// is not monitored ([`bootstrap_quorum`]); otherwise why not, naming every sentinel that did
/// not answer and its error.
fn enough_sentinels_answer(target: &HealTarget, observation: &Observation) -> Result<(), String> {
    let answering = observation
        .sentinels
        .iter()
        .filter(|s| s.state.is_ok())
        .count();
    let needed = bootstrap_quorum(target);
    if answering >= needed {
        return Ok(());
    }
    let silent: Vec<String> = observation
        .sentinels
        .iter()
        .filter_map(|s| match &s.state {
            Err(error) => Some(format!("{} ({error})", s.endpoint)),
            Ok(_) => None,
        })
        .collect();
    Err(format!(
        "no sentinel that answered monitors '{}', but only {answering} of {} sentinels answered \
         and bootstrap needs {needed} (the quorum and a majority): not bootstrapping while a \
         silent sentinel may monitor the store; unreachable: {}",
        target.master_name,
        target.sentinels.len().max(observation.sentinels.len()),
        silent.join(", ")
    ))
}

/// The bootstrap primary, with the reason, or why none can be chosen safely.
///
/// Candidates are the reachable nodes that hold data, ranked by:
/// 1. **acting primary**: the node answers as a primary and at least one reachable node is its
///    replica with the link up. It wins over every node that is not, whatever their offsets.
///    A replica whose link is up has synced from it and copies its stream, so it is never
///    ahead in a way that matters (its offset can read a little higher only because the nodes
///    are read one after the other while writes flow). A node that is ahead but not streaming
///    from it — a standalone former primary restarted after a failover, or a replica of it
///    whose link is down (repointed, not resynced yet) — holds a history nobody copies: writes
///    taken after a split, or the tail the primary lost in a restart that its linked replicas
///    have already given up by syncing from it. Offsets of different histories do not measure
///    "more of the same data", and promoting such a node would demote the primary clients are
///    writing to and resync every replica from the other history: the lost writes and the
///    fight with Sentinel this rule exists to prevent. A replica whose link is down is no
///    sign of a running primary (it may be chasing a stale address or still in its first sync);
/// 2. the highest replication offset (after a full restart, when no link is up yet, the most
///    up-to-date copy);
/// 3. the most keys;
/// 4. the most linked replicas (two acting primaries: a split brain with replicas on each side);
/// 5. the lowest ordinal.
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
    let linked_replicas = |endpoint: &Endpoint, info: &NodeInfo| -> usize {
        if info.role != NodeRole::Primary {
            return 0;
        }
        candidates
            .iter()
            .filter(|(_, _, other)| {
                matches!(&other.role, NodeRole::Replica { primary, link_up: true } if primary == endpoint)
            })
            .count()
    };
    let best = candidates
        .iter()
        .filter(|(_, _, info)| info.has_data())
        .map(|(ordinal, endpoint, info)| (ordinal, endpoint, info, linked_replicas(endpoint, info)))
        .max_by(|(oa, _, a, la), (ob, _, b, lb)| {
            (*la > 0)
                .cmp(&(*lb > 0))
                .then(a.offset.cmp(&b.offset))
                .then(a.keys.cmp(&b.keys))
                .then(la.cmp(lb))
                .then(ob.cmp(oa))
        });
    if let Some((_, endpoint, info, linked)) = best {
        let why = if linked > 0 {
            format!(
                "{endpoint} is already the primary of {linked} linked replica(s) (offset {}, {} keys)",
                info.offset, info.keys
            )
        } else {
            format!(
                "{endpoint} holds the most data (offset {}, {} keys)",
                info.offset, info.keys
            )
        };
        return Ok((
            (*endpoint).clone(),
            format!("no sentinel monitors '{}'; {why}", target.master_name),
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

/// Why Sentinel could not fail the primary over right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailoverGap {
    /// No replica is connected to the primary and in sync.
    NoReplica,
    /// A sentinel did not answer, or does not monitor the store.
    SentinelSilent { sentinel: Endpoint },
    /// A sentinel reports another primary.
    SentinelElsewhere { sentinel: Endpoint },
    /// A sentinel has not discovered a replica yet (it learns replicas from the primary's
    /// `INFO`, every 10 s): if the primary died now, that sentinel could not promote it, and with
    /// none known the failover aborts (`-failover-abort-no-good-slave`).
    ReplicaUnknown {
        sentinel: Endpoint,
        replica: Endpoint,
    },
}

/// Whether a failover of `primary` could happen now: at least one replica streams from it, and
/// every sentinel monitors it and knows every such replica. Returns the number of replicas.
pub fn failover_readiness(
    primary: &Endpoint,
    observation: &Observation,
) -> Result<usize, FailoverGap> {
    let replicas: Vec<&Endpoint> = observation
        .nodes
        .iter()
        .filter(|node| {
            matches!(
                &node.state,
                Ok(NodeInfo {
                    role: NodeRole::Replica { primary: p, link_up: true },
                    ..
                }) if p == primary
            )
        })
        .map(|node| &node.endpoint)
        .collect();
    if replicas.is_empty() {
        return Err(FailoverGap::NoReplica);
    }
    for sentinel in &observation.sentinels {
        let view = match &sentinel.state {
            Ok(Some(view)) => view,
            _ => {
                return Err(FailoverGap::SentinelSilent {
                    sentinel: sentinel.endpoint.clone(),
                });
            }
        };
        if &view.primary != primary {
            return Err(FailoverGap::SentinelElsewhere {
                sentinel: sentinel.endpoint.clone(),
            });
        }
        if let Some(replica) = replicas.iter().find(|r| !view.replicas.contains(r)) {
            return Err(FailoverGap::ReplicaUnknown {
                sentinel: sentinel.endpoint.clone(),
                replica: (*replica).clone(),
            });
        }
    }
    Ok(replicas.len())
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

    /// A replica of `port` whose link is down (restarted, or never synced yet).
    fn unlinked_replica_of(port: u16, offset: u64) -> Result<NodeInfo, String> {
        let mut info = replica_of(port, offset)?;
        info.role = NodeRole::Replica {
            primary: ep(port),
            link_up: false,
        };
        Ok(info)
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
        // After every process restarted, the most up-to-date copy wins, and is promoted: the
        // replicas' links are not up yet, so nothing says node 1's shorter history is the one
        // being served (it may have lost its last writes in the restart).
        let obs = observation(
            vec![
                primary(100, 10),
                unlinked_replica_of(1, 300),
                unlinked_replica_of(1, 200),
            ],
            vec![Ok(None), Ok(None), Ok(None)],
        );
        let plan = plan(&target(), &obs);
        assert_eq!(plan.primary, Some(ep(2)));
        assert_eq!(plan.actions[0], Action::Promote { node: ep(2) });
    }

    /// `target()` with `sentinels` sentinels and quorum `quorum`.
    fn target_with(sentinels: u16, quorum: u32) -> HealTarget {
        let mut target = target();
        target.sentinels = (0..sentinels).map(|i| ep(11 + i)).collect();
        target.sentinel.quorum = quorum;
        target
    }

    #[test]
    fn bootstrap_needs_the_quorum_and_a_majority_of_the_sentinels_to_answer() {
        // "No sentinel monitors the store" is only known from sentinels that answered: the
        // others (DNS, a NetworkPolicy, a password mid-rotation) may monitor it and be serving
        // clients its primary. (sentinels, quorum, answering) → bootstrap?
        let cases: [(u16, u32, usize, bool); 10] = [
            (3, 2, 0, false),
            (3, 2, 1, false),
            (3, 2, 2, true),
            (3, 3, 2, false),
            (3, 3, 3, true),
            // Quorum 2 of 5: two answering are the quorum but not a majority; the three
            // silent ones could elect a failover of their own.
            (5, 2, 2, false),
            (5, 2, 3, true),
            // Quorum 4 of 5: a majority answering is not enough to ever reach the quorum.
            (5, 4, 3, false),
            (5, 4, 4, true),
            (1, 1, 1, true),
        ];
        for (count, quorum, answering, bootstraps) in cases {
            let sentinels = (0..usize::from(count))
                .map(|i| {
                    if i < answering {
                        Ok(None)
                    } else {
                        Err("Connection refused (os error 111)".to_owned())
                    }
                })
                .collect();
            let obs = observation(
                vec![primary(0, 0), primary(0, 0), primary(500, 20)],
                sentinels,
            );
            let plan = plan(&target_with(count, quorum), &obs);
            let case = format!("{count} sentinels, quorum {quorum}, {answering} answering");
            if bootstraps {
                assert!(
                    matches!(plan.decision, Decision::Bootstrap { .. }),
                    "{case}: {plan:?}"
                );
                assert_eq!(plan.primary, Some(ep(3)), "{case}");
            } else {
                let Decision::Wait { reason } = &plan.decision else {
                    panic!("{case}: {plan:?}");
                };
                assert!(plan.actions.is_empty(), "{case}: {plan:?}");
                assert_eq!(plan.primary, None, "{case}");
                for silent in answering..usize::from(count) {
                    let name = ep(11 + silent as u16).to_string();
                    assert!(reason.contains(&name), "{case}: {reason} names {name}");
                }
            }
        }
    }

    #[test]
    fn unreachable_sentinels_never_make_heal_demote_a_running_primary() {
        // Issue 16, item 5: an in-sync store whose primary is node 2 (pod-1), and no sentinel
        // answers. Bootstrap would have promoted node 1 (offset tie → lowest ordinal) behind
        // the live sentinels' back: lost writes and a fight with Sentinel.
        let obs = observation(
            vec![replica_of(2, 100), primary(100, 100), replica_of(2, 100)],
            vec![
                Err("WRONGPASS invalid username-password pair".to_owned()),
                Err("failed to lookup address information".to_owned()),
                Err("Connection refused (os error 111)".to_owned()),
            ],
        );
        let plan = plan(&target(), &obs);
        assert!(plan.actions.is_empty(), "{plan:?}");
        let Decision::Wait { reason } = &plan.decision else {
            panic!("{plan:?}");
        };
        assert!(
            reason.contains("127.0.0.1:11 (WRONGPASS") && reason.contains("127.0.0.1:13"),
            "{reason}"
        );
    }

    #[test]
    fn a_primary_with_linked_replicas_wins_every_bootstrap_tie() {
        // Every sentinel answers and none monitors the store (all lost their configuration):
        // the node its peers stream from stays primary; nothing is promoted or repointed.
        for replica_offset in [100, 130] {
            // 130: the replicas were read a moment after the primary under writes; a linked
            // replica is never really ahead of the stream it copies.
            let obs = observation(
                vec![
                    replica_of(2, replica_offset),
                    primary(100, 100),
                    replica_of(2, replica_offset),
                ],
                vec![Ok(None), Ok(None), Ok(None)],
            );
            let plan = plan(&target(), &obs);
            assert_eq!(plan.primary, Some(ep(2)), "{plan:?}");
            assert!(matches!(plan.decision, Decision::Bootstrap { .. }));
            assert!(
                plan.actions
                    .iter()
                    .all(|a| matches!(a, Action::Monitor { primary, .. } if *primary == ep(2))),
                "{:?}",
                plan.actions
            );
        }
    }

    #[test]
    fn a_stale_primary_without_replicas_loses_to_the_one_its_peers_stream_from() {
        // Node 1 is a former primary restarted with a history nobody copies (writes it took
        // after a split, or a longer past); node 2 is serving, node 3 streams from it. Offsets
        // of different histories do not measure "more of the same data": node 2 stays and node
        // 1 is made its replica.
        let obs = observation(
            vec![primary(500, 50), primary(100, 10), replica_of(2, 100)],
            vec![Ok(None), Ok(None), Ok(None)],
        );
        let plan = plan(&target(), &obs);
        assert_eq!(plan.primary, Some(ep(2)), "{plan:?}");
        assert!(
            !plan
                .actions
                .iter()
                .any(|a| matches!(a, Action::Promote { .. }))
        );
        assert!(plan.actions.contains(&Action::ReplicaOf {
            node: ep(1),
            primary: ep(2),
            reason: ReplicaReason::Bootstrap
        }));
        // A replica of node 2 whose link is down and that is ahead (a former primary repointed
        // but not yet resynced) does not win either.
        let obs = observation(
            vec![
                unlinked_replica_of(2, 500),
                primary(100, 10),
                replica_of(2, 100),
            ],
            vec![Ok(None), Ok(None), Ok(None)],
        );
        let monitors: Vec<Action> = (11..=13)
            .map(|port| Action::Monitor {
                sentinel: ep(port),
                primary: ep(2),
            })
            .collect();
        assert_eq!(plan_actions(&obs), monitors);
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
            sentinels: observation(Vec::new(), vec![view(1), view(1), view(1)]).sentinels,
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

    #[test]
    fn failover_readiness_needs_a_synced_replica_every_sentinel_knows() {
        use crate::heal::{NodeObservation, SentinelObservation};
        let ep = |n: u16| Endpoint::new(format!("r{n}"), 6379);
        let sentinel = |n: u16, replicas: Vec<Endpoint>| SentinelObservation {
            endpoint: Endpoint::new(format!("s{n}"), 26379),
            state: Ok(Some(SentinelView {
                primary: ep(0),
                flags: vec!["master".into()],
                replicas,
                sentinels: vec![],
            })),
        };
        let node = |n: u16, role: NodeRole| NodeObservation {
            endpoint: ep(n),
            state: Ok(NodeInfo {
                role,
                offset: 10,
                keys: 1,
                loading: false,
                min_replicas_to_write: None,
            }),
        };
        let replica = |link_up| NodeRole::Replica {
            primary: ep(0),
            link_up,
        };
        let mut observation = Observation {
            nodes: vec![
                node(0, NodeRole::Primary),
                node(1, replica(true)),
                node(2, replica(true)),
            ],
            sentinels: vec![
                sentinel(0, vec![ep(1), ep(2)]),
                sentinel(1, vec![ep(1), ep(2)]),
            ],
        };
        assert_eq!(failover_readiness(&ep(0), &observation), Ok(2));
        // A sentinel that has not discovered replica 2 yet.
        observation.sentinels[1] = sentinel(1, vec![ep(1)]);
        assert_eq!(
            failover_readiness(&ep(0), &observation),
            Err(FailoverGap::ReplicaUnknown {
                sentinel: Endpoint::new("s1", 26379),
                replica: ep(2)
            })
        );
        // No replica in sync: nothing to fail over to, whatever the sentinels know.
        observation.nodes[1] = node(1, replica(false));
        observation.nodes[2] = node(2, replica(false));
        assert_eq!(
            failover_readiness(&ep(0), &observation),
            Err(FailoverGap::NoReplica)
        );
        observation.nodes[1] = node(1, replica(true));
        observation.sentinels[0].state = Err("timeout".into());
        assert!(matches!(
            failover_readiness(&ep(0), &observation),
            Err(FailoverGap::SentinelSilent { .. })
        ));
    }
}
