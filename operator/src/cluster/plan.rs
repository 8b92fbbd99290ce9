//! The pure half of cluster healing: from what every member says (`CLUSTER NODES`, its key
//! count), what to change. No I/O, so every rule is tested with plain values.
//!
//! Rules, in order (the first that stops the pass wins):
//! 1. a member loading its dataset → wait; a slot migration in progress → `Migrating`: nothing
//!    else changes, and the resharding finishes the move (a caller that waited for a settled
//!    cluster before resharding would wait forever: a move a failed `MIGRATE` left half-way is
//!    finished only by the resharding);
//! 2. a node that owns slots and is suspected or failed → wait: the cluster's own failover
//!    promotes its replica. Except a **lost shard**: a failed (or `noaddr`: another node now
//!    answers at its address) node that is no longer any member — every member answered with
//!    another id; its pod came back with an empty disk — and that no member replicates: its data
//!    is gone, so it is forgotten and its slots are given to the one shard left without slots,
//!    whose members must be empty;
//! 3. members that do not know each other → `CLUSTER MEET` them with the *introducer* (the first
//!    member that owns slots, else member 0), and so is a member no other member knows (it may
//!    still know them from its nodes.conf, but gossip only spreads a node from nodes that know
//!    it: forgotten everywhere, it would stay out for good); until every member knows every
//!    other → wait;
//! 4. each shard's primary is its member that owns slots; a shard without one takes its first
//!    master;
//! 5. **bootstrap**: no slot is assigned anywhere → the even split, each shard's range to its
//!    primary — only when every member answered and holds no key (never slots to an empty node
//!    while another holds data); slots nobody owns in a running cluster → to the shard without
//!    slots, else the primary with the fewest;
//! 6. members that are not their shard's primary replicate it (`CLUSTER REPLICATE`): a replica
//!    of another shard's primary is moved, an empty master attached; a master holding keys is
//!    never turned into a replica (that would drop them) — it is reported;
//! 7. failed nodes that are no member and own no slots are forgotten on every member — only when
//!    every member answered: a silent member (a pod restarting in a rollout) may be that node,
//!    coming back with its nodes.conf and its id.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use super::nodes::{ClusterNodes, SlotSet, even_split};
use crate::heal::Endpoint;

/// One pod of a cluster-mode store: shard `shard`, `index` 0 .. replicasPerShard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Member {
    pub shard: u16,
    pub index: u16,
    pub endpoint: Endpoint,
    /// Its cluster bus port when not the default (port + 10000), as `local up` needs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bus_port: Option<u16>,
}

/// Shard and index of member `n`: members are numbered shard by shard (pod ordinal `n` of a
/// cluster-mode store, node `n` of `local up`), `per_shard` each (a primary and its replicas).
pub fn member_position(n: usize, per_shard: usize) -> (u16, u16) {
    let per_shard = per_shard.max(1);
    (
        u16::try_from(n / per_shard).unwrap_or(u16::MAX),
        u16::try_from(n % per_shard).unwrap_or(u16::MAX),
    )
}

/// What the cluster should be.
#[derive(Clone, Debug)]
pub struct ClusterTarget {
    pub shards: u16,
    /// Every member, shard by shard, index order.
    pub members: Vec<Member>,
}

/// What one member answered.
#[derive(Clone, Debug)]
pub struct NodeState {
    pub nodes: ClusterNodes,
    /// Keys in its dataset (`DBSIZE`).
    pub keys: u64,
    /// Still loading its dataset (`INFO persistence`).
    pub loading: bool,
    /// A replica's replication link is up and no full sync is running (`INFO replication`);
    /// `false` for a primary.
    pub synced: bool,
}

/// One member and what it answered, or why it did not.
#[derive(Clone, Debug)]
pub struct MemberObservation {
    pub member: Member,
    pub state: Result<NodeState, String>,
}

/// Why slots are assigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SlotReason {
    /// A new cluster: the even split.
    Bootstrap,
    /// Slots no node owned.
    Uncovered,
    /// The slots of a shard whose every node was lost.
    LostShard,
}

/// One change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "action")]
pub enum Action {
    /// `CLUSTER MEET <peer's address>` on `node`.
    Meet { node: Endpoint, peer: Endpoint },
    /// `CLUSTER ADDSLOTSRANGE` on `node`.
    AddSlots {
        node: Endpoint,
        slots: SlotSet,
        reason: SlotReason,
    },
    /// `CLUSTER REPLICATE <primary_id>` on `node`.
    Replicate {
        node: Endpoint,
        primary: Endpoint,
        primary_id: String,
    },
    /// `CLUSTER FORGET <ghost>` on `node`.
    Forget { node: Endpoint, ghost: String },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Meet { node, peer } => write!(f, "CLUSTER MEET {peer} on {node}"),
            Action::AddSlots {
                node,
                slots,
                reason,
            } => write!(f, "CLUSTER ADDSLOTSRANGE {slots} on {node} ({reason:?})"),
            Action::Replicate {
                node,
                primary,
                primary_id,
            } => write!(f, "CLUSTER REPLICATE {primary_id} ({primary}) on {node}"),
            Action::Forget { node, ghost } => write!(f, "CLUSTER FORGET {ghost} on {node}"),
        }
    }
}

/// What the pass decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Decision {
    /// A new cluster is being formed.
    Bootstrap,
    /// A running cluster; the actions (possibly none) repair it.
    Steady,
    /// Nothing more is changed this pass.
    Wait { reason: String },
    /// A slot move is half-done: nothing else is changed, and the resharding
    /// ([`super::heal::reshard_pass`]) finishes it first.
    Migrating { reason: String },
}

/// What a pass will do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClusterPlan {
    pub decision: Decision,
    pub actions: Vec<Action>,
    /// Each shard's primary, when known.
    pub primaries: Vec<Option<Endpoint>>,
    /// Problems the pass does not repair (a master holding keys without slots, …).
    pub warnings: Vec<String>,
}

impl ClusterPlan {
    fn wait(actions: Vec<Action>, reason: impl Into<String>) -> ClusterPlan {
        ClusterPlan {
            decision: Decision::Wait {
                reason: reason.into(),
            },
            actions,
            primaries: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// A member that answered, with its own node id.
struct Seen<'a> {
    member: &'a Member,
    id: &'a str,
    state: &'a NodeState,
}

impl Seen<'_> {
    fn myself_is_master(&self) -> bool {
        self.state.nodes.myself().is_some_and(|n| n.is_master())
    }

    fn owns_slots(&self) -> bool {
        self.state
            .nodes
            .myself()
            .is_some_and(|n| n.is_master() && !n.slots.is_empty())
    }

    fn replicates(&self) -> Option<&str> {
        self.state
            .nodes
            .myself()
            .and_then(|n| n.master.as_deref())
            .filter(|_| !self.myself_is_master())
    }
}

/// Decides the changes of one pass.
pub fn plan(target: &ClusterTarget, observation: &[MemberObservation]) -> ClusterPlan {
    let mut seen = Vec::new();
    let mut silent = Vec::new();
    for o in observation {
        match &o.state {
            Ok(state) => match state.nodes.myself() {
                Some(me) => seen.push(Seen {
                    member: &o.member,
                    id: me.id.as_str(),
                    state,
                }),
                None => silent.push(format!("{} (no myself line)", o.member.endpoint)),
            },
            Err(e) => silent.push(format!("{} ({e})", o.member.endpoint)),
        }
    }
    if seen.is_empty() {
        return ClusterPlan::wait(
            Vec::new(),
            format!("no member answered: {}", silent.join(", ")),
        );
    }
    // 1. loading, migrations.
    if let Some(s) = seen.iter().find(|s| s.state.loading) {
        return ClusterPlan::wait(
            Vec::new(),
            format!("{} is loading its dataset", s.member.endpoint),
        );
    }
    if let Some(s) = seen
        .iter()
        .find(|s| s.state.nodes.nodes.iter().any(|n| n.migrating))
    {
        return ClusterPlan {
            decision: Decision::Migrating {
                reason: format!("{} reports a slot migration in progress", s.member.endpoint),
            },
            ..ClusterPlan::wait(Vec::new(), String::new())
        };
    }
    let member_ids: BTreeSet<&str> = seen.iter().map(|s| s.id).collect();

    // 3 (first, so that the views below are one cluster). The introducer: first member owning
    // slots, else the first member that answered.
    let introducer = seen.iter().find(|s| s.owns_slots()).unwrap_or(&seen[0]);
    let mut actions = Vec::new();
    for s in &seen {
        let known_by_others = seen
            .iter()
            .any(|o| o.id != s.id && o.state.nodes.knows(s.id));
        if s.id != introducer.id
            && !introducer.state.nodes.knows(s.id)
            && ((!s.state.nodes.knows(introducer.id) && introducer.state.nodes.get(s.id).is_none())
                || !known_by_others)
        {
            actions.push(Action::Meet {
                node: introducer.member.endpoint.clone(),
                peer: s.member.endpoint.clone(),
            });
        }
    }
    if !actions.is_empty() {
        return ClusterPlan::wait(actions, "members are being introduced (CLUSTER MEET)");
    }
    for a in &seen {
        if let Some(b) = seen.iter().find(|b| !a.state.nodes.knows(b.id)) {
            return ClusterPlan::wait(
                Vec::new(),
                format!(
                    "{} does not know {} yet (gossip)",
                    a.member.endpoint, b.member.endpoint
                ),
            );
        }
    }

    // 2. failing slot owners, and lost shards.
    let view = &introducer.state.nodes;
    let mut lost: Vec<(&str, &SlotSet)> = Vec::new();
    for node in &view.nodes {
        if node.slots.is_empty() || !node.is_master() {
            continue;
        }
        // `noaddr`: another node answered at its address (a pod that came back with a new
        // id); nobody pings such a node, so the cluster never flags it failed.
        let failing = seen.iter().any(|s| {
            s.state
                .nodes
                .get(&node.id)
                .is_some_and(|n| n.is_failing() || n.has_flag("noaddr"))
        });
        if !failing {
            continue;
        }
        let is_member = member_ids.contains(node.id.as_str());
        let replicated = seen
            .iter()
            .any(|s| s.replicates() == Some(node.id.as_str()));
        let gone = node.has_flag("fail") || node.has_flag("noaddr");
        if is_member || replicated || !gone {
            return ClusterPlan::wait(
                Vec::new(),
                format!(
                    "node {} ({}) owning slots {} is failing: the cluster fails over",
                    node.id, node.addr, node.slots
                ),
            );
        }
        if !silent.is_empty() {
            // A silent member may be that very node, down but with its data: never give its
            // slots away before every member said who it is.
            return ClusterPlan::wait(
                Vec::new(),
                format!(
                    "node {} owning slots {} is gone, but not every member answered: {}",
                    node.id,
                    node.slots,
                    silent.join(", ")
                ),
            );
        }
        lost.push((node.id.as_str(), &node.slots));
    }

    // 4. primaries per shard.
    let shards = usize::from(target.shards);
    let mut primaries: Vec<Option<&Seen>> = Vec::with_capacity(shards);
    for shard in 0..shards {
        let in_shard: Vec<&Seen> = seen
            .iter()
            .filter(|s| usize::from(s.member.shard) == shard)
            .collect();
        let owners: Vec<&&Seen> = in_shard.iter().filter(|s| s.owns_slots()).collect();
        if owners.len() > 1 {
            let names: Vec<String> = owners
                .iter()
                .map(|s| s.member.endpoint.to_string())
                .collect();
            return ClusterPlan::wait(
                Vec::new(),
                format!(
                    "shard {shard} has several primaries owning slots: {}",
                    names.join(", ")
                ),
            );
        }
        primaries.push(
            owners
                .first()
                .map(|s| **s)
                .or_else(|| in_shard.iter().find(|s| s.myself_is_master()).copied()),
        );
    }
    let primary_endpoints = primaries
        .iter()
        .map(|p| p.map(|s| s.member.endpoint.clone()))
        .collect::<Vec<_>>();
    let mut warnings = Vec::new();

    // 5. slots. Covered: claimed in any member's view (a claim travels by gossip, so the
    // introducer may not have heard of it yet).
    let mut covered = SlotSet::default();
    for s in &seen {
        for node in &s.state.nodes.nodes {
            if node.is_master() {
                covered.union(&node.slots);
            }
        }
    }
    // Every member's own claim (its `myself` line) is known to every member: until then a
    // claim is still travelling. Claims of nodes that are no member (ghosts) are the lost-shard
    // rule's; members that joined after a node vanished never hear of it.
    let views_agree = seen.iter().all(|owner| {
        let claim = owner.state.nodes.myself().map(|me| &me.slots);
        seen.iter().all(|other| {
            other.state.nodes.get(owner.id).is_some_and(|n| {
                Some(&n.slots) == claim && n.is_master() == owner.myself_is_master()
            })
        })
    });
    let decision = if covered.is_empty() {
        if !silent.is_empty() {
            return ClusterPlan::wait(
                Vec::new(),
                format!(
                    "bootstrap needs every member; not answering: {}",
                    silent.join(", ")
                ),
            );
        }
        if let Some(s) = seen.iter().find(|s| s.state.keys > 0) {
            return ClusterPlan::wait(
                Vec::new(),
                format!(
                    "{} holds {} keys but no slot is assigned: refusing to give slots to other nodes",
                    s.member.endpoint, s.state.keys
                ),
            );
        }
        for (shard, slots) in even_split(target.shards).into_iter().enumerate() {
            let Some(p) = primaries.get(shard).copied().flatten() else {
                return ClusterPlan::wait(
                    Vec::new(),
                    format!("shard {shard} has no master to take its slots"),
                );
            };
            actions.push(Action::AddSlots {
                node: p.member.endpoint.clone(),
                slots,
                reason: SlotReason::Bootstrap,
            });
        }
        Decision::Bootstrap
    } else {
        if (!lost.is_empty() || !covered.complement().is_empty()) && !views_agree {
            return ClusterPlan::wait(
                Vec::new(),
                "members disagree on who owns which slots (gossip in progress)",
            );
        }
        let slotless: Vec<usize> = (0..shards)
            .filter(|&s| primaries[s].is_none_or(|p| !p.owns_slots()))
            .collect();
        for (ghost, slots) in &lost {
            let [shard] = slotless.as_slice() else {
                return ClusterPlan::wait(
                    Vec::new(),
                    format!(
                        "node {ghost} owning slots {slots} was lost, and {} shards have no slots: cannot tell which replaces it",
                        slotless.len()
                    ),
                );
            };
            let Some(p) = primaries[*shard] else {
                return ClusterPlan::wait(
                    Vec::new(),
                    format!("shard {shard} has no master to take the lost slots {slots}"),
                );
            };
            if let Some(s) = seen
                .iter()
                .find(|s| usize::from(s.member.shard) == *shard && s.state.keys > 0)
            {
                return ClusterPlan::wait(
                    Vec::new(),
                    format!(
                        "{} holds {} keys: not giving it the lost slots {slots}",
                        s.member.endpoint, s.state.keys
                    ),
                );
            }
            for s in &seen {
                actions.push(Action::Forget {
                    node: s.member.endpoint.clone(),
                    ghost: (*ghost).to_owned(),
                });
            }
            actions.push(Action::AddSlots {
                node: p.member.endpoint.clone(),
                slots: (*slots).clone(),
                reason: SlotReason::LostShard,
            });
        }
        let uncovered = covered.complement();
        if !uncovered.is_empty() {
            let receiver = match slotless.as_slice() {
                [shard] if lost.is_empty() => primaries[*shard],
                _ => primaries
                    .iter()
                    .flatten()
                    .filter(|p| p.owns_slots())
                    .min_by_key(|p| p.state.nodes.myself().map_or(u32::MAX, |n| n.slots.len()))
                    .copied(),
            };
            match receiver {
                Some(p) => actions.push(Action::AddSlots {
                    node: p.member.endpoint.clone(),
                    slots: uncovered,
                    reason: SlotReason::Uncovered,
                }),
                None => warnings.push(format!(
                    "slots {uncovered} are not covered and no primary can take them"
                )),
            }
        }
        Decision::Steady
    };

    // 6. replicas.
    for s in &seen {
        let Some(Some(p)) = primaries.get(usize::from(s.member.shard)).copied() else {
            continue;
        };
        if s.id == p.id {
            continue;
        }
        if s.replicates() == Some(p.id) {
            continue;
        }
        if s.myself_is_master() && (s.owns_slots() || s.state.keys > 0) {
            warnings.push(format!(
                "{} is a master holding {} keys{} in shard {} whose primary is {}: not made a replica (it would drop them)",
                s.member.endpoint,
                s.state.keys,
                if s.owns_slots() { " and slots" } else { "" },
                s.member.shard,
                p.member.endpoint
            ));
            continue;
        }
        actions.push(Action::Replicate {
            node: s.member.endpoint.clone(),
            primary: p.member.endpoint.clone(),
            primary_id: p.id.to_owned(),
        });
    }

    // 7. forget failed nodes that are no member and own nothing — never while a member is
    // silent: it may be that node, restarting with its id (forgotten everywhere, it would come
    // back knowing the others but known by none).
    let lost_ids: BTreeSet<&str> = lost.iter().map(|(id, _)| *id).collect();
    for node in &view.nodes {
        if !silent.is_empty()
            || member_ids.contains(node.id.as_str())
            || lost_ids.contains(node.id.as_str())
            || !node.slots.is_empty()
            || !(node.has_flag("fail") || node.has_flag("noaddr"))
        {
            continue;
        }
        for s in &seen {
            // A node cannot forget its own primary; it is moved first (rule 6), then forgets.
            if s.state.nodes.get(&node.id).is_some() && s.replicates() != Some(node.id.as_str()) {
                actions.push(Action::Forget {
                    node: s.member.endpoint.clone(),
                    ghost: node.id.clone(),
                });
            }
        }
    }

    ClusterPlan {
        decision,
        actions,
        primaries: primary_endpoints,
        warnings,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::cluster::nodes::parse;

    /// One node of a synthetic cluster.
    #[derive(Clone)]
    struct N {
        id: String,
        member: Option<(u16, u16)>,
        master: Option<String>,
        slots: &'static str,
        flags: &'static str,
        keys: u64,
    }

    fn id(n: u16) -> String {
        format!("{n:040x}")
    }

    fn endpoint(shard: u16, index: u16) -> Endpoint {
        Endpoint::new(format!("s-shard-{shard}-{index}"), 6379)
    }

    /// A member: shard, index, its primary's id (None: a master), its slots.
    fn member(shard: u16, index: u16, master: Option<String>, slots: &'static str) -> N {
        N {
            id: id(shard * 16 + index + 1),
            member: Some((shard, index)),
            master,
            slots,
            flags: "",
            keys: 0,
        }
    }

    fn line(n: &N, myself: bool) -> String {
        let role = if n.master.is_some() {
            "slave"
        } else {
            "master"
        };
        let mut flags = vec![];
        if myself {
            flags.push("myself");
        }
        flags.push(role);
        if !n.flags.is_empty() {
            flags.push(n.flags);
        }
        let addr = match n.member {
            Some((s, i)) => format!("10.0.{s}.{i}:6379@16379,s-shard-{s}-{i}"),
            None => "10.9.9.9:6379@16379".to_owned(),
        };
        format!(
            "{} {addr} {} {} 0 0 1 connected {}",
            n.id,
            flags.join(","),
            n.master.as_deref().unwrap_or("-"),
            n.slots
        )
    }

    /// Every member sees every node in `known` (its own line flagged myself).
    fn observe(
        nodes: &[N],
        known: impl Fn(&N, &N) -> bool,
    ) -> (ClusterTarget, Vec<MemberObservation>) {
        let members: Vec<&N> = nodes.iter().filter(|n| n.member.is_some()).collect();
        let shards = members.iter().map(|n| n.member.unwrap().0).max().unwrap() + 1;
        let target = ClusterTarget {
            shards,
            members: members
                .iter()
                .map(|n| {
                    let (shard, index) = n.member.unwrap();
                    Member {
                        shard,
                        index,
                        endpoint: endpoint(shard, index),
                        bus_port: None,
                    }
                })
                .collect(),
        };
        let observation = members
            .iter()
            .zip(&target.members)
            .map(|(me, member)| {
                let text: Vec<String> = nodes
                    .iter()
                    .filter(|other| other.id == me.id || known(me, other))
                    .map(|other| line(other, other.id == me.id))
                    .collect();
                MemberObservation {
                    member: member.clone(),
                    state: Ok(NodeState {
                        nodes: parse(&text.join("\n")).unwrap(),
                        keys: me.keys,
                        loading: false,
                        synced: false,
                    }),
                }
            })
            .collect();
        (target, observation)
    }

    fn all(_: &N, _: &N) -> bool {
        true
    }

    fn healthy() -> Vec<N> {
        vec![
            member(0, 0, None, "0-8191"),
            member(0, 1, Some(id(1)), ""),
            member(1, 0, None, "8192-16383"),
            member(1, 1, Some(id(17)), ""),
        ]
    }

    fn fresh() -> Vec<N> {
        vec![
            member(0, 0, None, ""),
            member(0, 1, None, ""),
            member(1, 0, None, ""),
            member(1, 1, None, ""),
        ]
    }

    fn shown(plan: &ClusterPlan) -> Vec<String> {
        plan.actions.iter().map(ToString::to_string).collect()
    }

    fn reason(plan: &ClusterPlan) -> String {
        match &plan.decision {
            Decision::Wait { reason } => reason.clone(),
            other => panic!("expected a wait, got {other:?} with {:?}", shown(plan)),
        }
    }

    #[test]
    fn strangers_are_introduced_to_member_zero_and_nothing_else_happens() {
        let (target, obs) = observe(&fresh(), |_, _| false);
        let plan = super::plan(&target, &obs);
        assert!(reason(&plan).contains("introduced"));
        assert_eq!(
            shown(&plan),
            [
                "CLUSTER MEET s-shard-0-1:6379 on s-shard-0-0:6379",
                "CLUSTER MEET s-shard-1-0:6379 on s-shard-0-0:6379",
                "CLUSTER MEET s-shard-1-1:6379 on s-shard-0-0:6379",
            ]
        );
    }

    #[test]
    fn a_gossip_gap_waits_without_meeting_again() {
        // Everyone knows member 0, but 0-1 does not know 1-1 yet.
        let (target, obs) = observe(&fresh(), |me, other| {
            !(me.id == id(2) && other.id == id(18))
        });
        let plan = super::plan(&target, &obs);
        assert!(plan.actions.is_empty());
        assert!(reason(&plan).contains("does not know"), "{}", reason(&plan));
    }

    #[test]
    fn an_empty_cluster_bootstraps_the_even_split_and_attaches_replicas() {
        let (target, obs) = observe(&fresh(), all);
        let plan = super::plan(&target, &obs);
        assert_eq!(plan.decision, Decision::Bootstrap);
        assert_eq!(
            shown(&plan),
            [
                "CLUSTER ADDSLOTSRANGE 0-8191 on s-shard-0-0:6379 (Bootstrap)",
                "CLUSTER ADDSLOTSRANGE 8192-16383 on s-shard-1-0:6379 (Bootstrap)",
                format!(
                    "CLUSTER REPLICATE {} (s-shard-0-0:6379) on s-shard-0-1:6379",
                    id(1)
                )
                .as_str(),
                format!(
                    "CLUSTER REPLICATE {} (s-shard-1-0:6379) on s-shard-1-1:6379",
                    id(17)
                )
                .as_str(),
            ]
        );
    }

    #[test]
    fn bootstrap_never_gives_slots_while_a_node_holds_data_or_a_member_is_silent() {
        let mut nodes = fresh();
        nodes[3].keys = 12;
        let (target, obs) = observe(&nodes, all);
        let plan = super::plan(&target, &obs);
        assert!(plan.actions.is_empty());
        assert!(reason(&plan).contains("s-shard-1-1:6379 holds 12 keys"));

        let (target, mut obs) = observe(&fresh(), all);
        obs[2].state = Err("connection refused".into());
        let plan = super::plan(&target, &obs);
        assert!(plan.actions.is_empty());
        assert!(reason(&plan).contains("every member"), "{}", reason(&plan));
    }

    #[test]
    fn a_healthy_cluster_needs_nothing() {
        let (target, obs) = observe(&healthy(), all);
        let plan = super::plan(&target, &obs);
        assert_eq!(plan.decision, Decision::Steady);
        assert!(plan.actions.is_empty(), "{:?}", shown(&plan));
        assert_eq!(plan.primaries, [Some(endpoint(0, 0)), Some(endpoint(1, 0))]);
    }

    #[test]
    fn a_replica_of_the_wrong_shard_is_moved_and_a_primary_after_failover_is_kept() {
        let mut nodes = healthy();
        // Shard 0 failed over: 0-1 is its primary now, 0-0 replicates it. 1-1 follows shard 0.
        nodes[0].master = Some(id(2));
        nodes[0].slots = "";
        nodes[1].master = None;
        nodes[1].slots = "0-8191";
        nodes[3].master = Some(id(2));
        let (target, obs) = observe(&nodes, all);
        let plan = super::plan(&target, &obs);
        assert_eq!(
            shown(&plan),
            [format!(
                "CLUSTER REPLICATE {} (s-shard-1-0:6379) on s-shard-1-1:6379",
                id(17)
            )]
        );
        assert_eq!(plan.primaries, [Some(endpoint(0, 1)), Some(endpoint(1, 0))]);
    }

    #[test]
    fn a_failing_primary_is_left_to_the_clusters_own_failover() {
        let mut nodes = healthy();
        nodes[2].flags = "fail?";
        let (target, obs) = observe(&nodes, all);
        let plan = super::plan(&target, &obs);
        assert!(plan.actions.is_empty());
        assert!(reason(&plan).contains("fails over"), "{}", reason(&plan));
    }

    #[test]
    fn a_lost_shard_is_forgotten_and_its_slots_go_to_its_empty_replacement() {
        // Shard 1's pods came back with empty disks and new ids; the old primary (a ghost) is
        // failed and still owns 8192-16383; nobody replicates it.
        let mut nodes = healthy();
        let ghost = N {
            id: id(999),
            member: None,
            master: None,
            slots: "8192-16383",
            flags: "fail",
            keys: 0,
        };
        nodes[2] = member(1, 0, None, "");
        nodes[2].id = id(500);
        nodes[3] = member(1, 1, None, "");
        nodes[3].id = id(501);
        nodes.push(ghost);
        let (target, obs) = observe(&nodes, all);
        let plan = super::plan(&target, &obs);
        let actions = shown(&plan);
        for m in ["s-shard-0-0", "s-shard-0-1", "s-shard-1-0", "s-shard-1-1"] {
            assert!(
                actions.contains(&format!("CLUSTER FORGET {} on {m}:6379", id(999))),
                "{actions:?}"
            );
        }
        assert!(actions.contains(
            &"CLUSTER ADDSLOTSRANGE 8192-16383 on s-shard-1-0:6379 (LostShard)".to_owned()
        ));
        assert!(actions.contains(&format!(
            "CLUSTER REPLICATE {} (s-shard-1-0:6379) on s-shard-1-1:6379",
            id(500)
        )));
        // The same, but the replacement already holds keys: nothing is given away.
        nodes[2].keys = 5;
        let (target, obs) = observe(&nodes, all);
        let plan = super::plan(&target, &obs);
        assert!(plan.actions.is_empty());
        assert!(reason(&plan).contains("holds 5 keys"), "{}", reason(&plan));
    }

    #[test]
    fn a_noaddr_ghost_is_a_lost_shard_only_once_every_member_answered() {
        // The replacement answered at the ghost's address with another id, so the cluster marks
        // the ghost `noaddr` and never fails it.
        let mut nodes = healthy();
        nodes[2] = member(1, 0, None, "");
        nodes[2].id = id(500);
        nodes[3] = member(1, 1, None, "");
        nodes[3].id = id(501);
        nodes.push(N {
            id: id(999),
            member: None,
            master: None,
            slots: "8192-16383",
            flags: "noaddr",
            keys: 0,
        });
        let (target, obs) = observe(&nodes, all);
        let plan = super::plan(&target, &obs);
        assert!(
            shown(&plan).contains(
                &"CLUSTER ADDSLOTSRANGE 8192-16383 on s-shard-1-0:6379 (LostShard)".to_owned()
            ),
            "{:?}",
            shown(&plan)
        );
        let (target, mut obs) = observe(&nodes, all);
        obs[3].state = Err("timeout".into());
        let plan = super::plan(&target, &obs);
        assert!(plan.actions.is_empty(), "{:?}", shown(&plan));
        assert!(
            reason(&plan).contains("not every member answered"),
            "{}",
            reason(&plan)
        );
    }

    #[test]
    fn a_failed_ghost_primary_someone_still_replicates_is_waited_for() {
        let mut nodes = healthy();
        nodes[2].id = id(999);
        nodes[2].member = None;
        nodes[2].flags = "fail";
        nodes[3].master = Some(id(999));
        let (target, obs) = observe(&nodes, all);
        let plan = super::plan(&target, &obs);
        assert!(reason(&plan).contains("fails over"), "{}", reason(&plan));
    }

    #[test]
    fn uncovered_slots_go_to_the_primary_with_fewest() {
        let mut nodes = healthy();
        nodes[0].slots = "0-8000";
        nodes[2].slots = "8192-16383";
        let (target, obs) = observe(&nodes, all);
        let plan = super::plan(&target, &obs);
        assert_eq!(
            shown(&plan),
            ["CLUSTER ADDSLOTSRANGE 8001-8191 on s-shard-0-0:6379 (Uncovered)"]
        );
    }

    #[test]
    fn a_claim_still_travelling_by_gossip_is_not_mistaken_for_uncovered_slots() {
        // Right after bootstrap: shard 1's primary claimed 8192-16383, but nobody else has heard.
        let nodes = healthy();
        let (target, mut obs) = observe(&nodes, all);
        for o in obs.iter_mut().filter(|o| o.member != target.members[2]) {
            let state = o.state.as_mut().unwrap();
            for n in &mut state.nodes.nodes {
                if n.id == id(17) {
                    n.slots = SlotSet::default();
                }
            }
        }
        let plan = super::plan(&target, &obs);
        assert!(plan.actions.is_empty(), "{:?}", shown(&plan));
        // And while views disagree, even slots nobody claims anywhere wait for gossip to settle.
        for o in &mut obs {
            let state = o.state.as_mut().unwrap();
            for n in &mut state.nodes.nodes {
                if n.id == id(1) {
                    n.slots = SlotSet::range(101, 8191);
                }
            }
        }
        let plan = super::plan(&target, &obs);
        assert!(plan.actions.is_empty(), "{:?}", shown(&plan));
        assert!(reason(&plan).contains("disagree"), "{}", reason(&plan));
    }

    #[test]
    fn a_failed_replica_that_is_no_member_is_forgotten_everywhere() {
        let mut nodes = healthy();
        nodes.push(N {
            id: id(777),
            member: None,
            master: Some(id(1)),
            slots: "",
            flags: "fail",
            keys: 0,
        });
        let (target, obs) = observe(&nodes, all);
        let plan = super::plan(&target, &obs);
        assert_eq!(plan.actions.len(), 4, "{:?}", shown(&plan));
        assert!(
            plan.actions
                .iter()
                .all(|a| matches!(a, Action::Forget { ghost, .. } if *ghost == id(777)))
        );
    }

    #[test]
    fn a_failed_node_is_not_forgotten_while_a_member_is_silent() {
        // A replica's pod is restarting (a rollout): the others flag its id failed, and it
        // does not answer, so its id is not among the members that did.
        let mut nodes = healthy();
        nodes[1].flags = "fail";
        let (target, mut obs) = observe(&nodes, all);
        obs[1].state = Err("failed to lookup address information".into());
        let plan = super::plan(&target, &obs);
        assert!(
            !plan
                .actions
                .iter()
                .any(|a| matches!(a, Action::Forget { .. })),
            "{:?}",
            shown(&plan)
        );
    }

    #[test]
    fn a_member_no_other_member_knows_is_met_again() {
        // Forgotten everywhere while it restarted: it still knows the others from its
        // nodes.conf, but nobody spreads it by gossip.
        let nodes = healthy();
        let forgotten = id(2);
        let (target, obs) = observe(&nodes, |me, other| {
            other.id != forgotten || me.id == forgotten
        });
        let plan = super::plan(&target, &obs);
        assert_eq!(
            shown(&plan),
            vec!["CLUSTER MEET s-shard-0-1:6379 on s-shard-0-0:6379".to_owned()],
            "{}",
            reason(&plan)
        );
        // Known by one other member: gossip spreads it, nothing to do but wait.
        let (target, obs) = observe(&nodes, |me, other| {
            other.id != forgotten || me.id == forgotten || me.id == id(17)
        });
        let plan = super::plan(&target, &obs);
        assert!(plan.actions.is_empty(), "{:?}", shown(&plan));
        assert!(reason(&plan).contains("(gossip)"), "{}", reason(&plan));
    }

    #[test]
    fn a_migration_in_progress_is_left_alone() {
        let mut nodes = healthy();
        nodes[0].slots = "0-8191 [8191->-0000000000000000000000000000000000000011]";
        let (target, obs) = observe(&nodes, all);
        let plan = super::plan(&target, &obs);
        assert!(
            matches!(&plan.decision, Decision::Migrating { reason } if reason.contains("migration")),
            "{:?}",
            plan.decision
        );
        assert!(plan.actions.is_empty());
    }

    #[test]
    fn a_master_holding_keys_is_never_made_a_replica() {
        let mut nodes = healthy();
        nodes[1].master = None;
        nodes[1].keys = 40;
        let (target, obs) = observe(&nodes, all);
        let plan = super::plan(&target, &obs);
        assert!(plan.actions.is_empty(), "{:?}", shown(&plan));
        assert!(
            plan.warnings[0].contains("s-shard-0-1:6379 is a master holding 40 keys"),
            "{:?}",
            plan.warnings
        );
    }
}
