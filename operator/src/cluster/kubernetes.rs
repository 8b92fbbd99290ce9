//! Cluster mode on Kubernetes, the pure parts: the pods of `<n>-redis` as cluster members (pod
//! `i` is member `i`: shard `i / (1 + replicasPerShard)`), what a pass's observation means for
//! the status, and when a scale-in may remove pods. The controller does the I/O.

use super::heal::ClusterHealTarget;
use super::nodes::{SLOTS, SlotSet};
use super::plan::{ClusterTarget, Member, MemberObservation, member_position};
use crate::crd::RedisPodStatus;
use crate::credentials::{Credentials, Role};
use crate::heal::{Auth, Endpoint};
use crate::model::Model;
use crate::status::{ClusterObserved, FailoverReadiness};

/// Pods per shard: a primary and its replicas.
pub fn per_shard(model: &Model) -> usize {
    1 + model
        .cluster()
        .and_then(|c| usize::try_from(c.replicas_per_shard).ok())
        .unwrap_or(0)
}

/// Shards the spec asks for.
pub fn wanted_shards(model: &Model) -> u16 {
    model
        .cluster()
        .and_then(|c| u16::try_from(c.shards).ok())
        .unwrap_or(1)
}

/// The heal target over `endpoints` (pod ordinal order). Members beyond the spec's (a scale-in
/// in progress) stay members until their shard is emptied and their pods are gone.
pub fn target(
    model: &Model,
    credentials: &Credentials,
    endpoints: Vec<Endpoint>,
    tls_ca: Option<Vec<u8>>,
) -> ClusterHealTarget {
    let per_shard = per_shard(model);
    let shards = endpoints.len().div_ceil(per_shard);
    let members = endpoints
        .into_iter()
        .enumerate()
        .map(|(n, endpoint)| {
            let (shard, index) = member_position(n, per_shard);
            Member {
                shard,
                index,
                endpoint,
                bus_port: None,
            }
        })
        .collect();
    let operator = Role::Operator.username();
    ClusterHealTarget {
        cluster: ClusterTarget {
            shards: u16::try_from(shards).unwrap_or(u16::MAX),
            members,
        },
        operator_auth: Some(Auth {
            username: operator.to_owned(),
            password: credentials.role_password(Role::Operator).to_owned(),
        }),
        operator_auth_previous: credentials
            .previous(operator)
            .and_then(|previous| previous.password.clone())
            .map(|password| Auth {
                username: operator.to_owned(),
                password,
            }),
        tls_ca,
    }
}

/// Whether the pods beyond the first `keep` may go: every one of them answered, none owns a
/// slot or is importing one. Until then a scale-in holds the StatefulSet's replicas (the
/// resharding empties those shards first).
pub fn may_remove_beyond(keep: usize, observation: &[MemberObservation]) -> bool {
    observation.iter().skip(keep).all(|o| match &o.state {
        Ok(state) => state
            .nodes
            .myself()
            .is_some_and(|me| me.slots.is_empty() && me.migrations.is_empty()),
        Err(_) => false,
    })
}

/// What the status says about a cluster after a pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    pub pods: Vec<RedisPodStatus>,
    pub observed: ClusterObserved,
    pub failover: FailoverReadiness,
    /// Each shard's primary (member index), when one answered as a master.
    pub primaries: Vec<Option<usize>>,
}

/// Reads an observation for the status: each pod's role, shard and slots; shards with a primary
/// that answers; slots covered; whether every shard has an in-sync replica to fail over to.
pub fn view(
    model: &Model,
    observation: &[MemberObservation],
    pod_name: impl Fn(usize) -> String,
) -> ClusterView {
    let wanted = usize::from(wanted_shards(model));
    let shards = observation
        .iter()
        .map(|o| usize::from(o.member.shard) + 1)
        .max()
        .unwrap_or(0)
        .max(wanted);
    let mut primaries: Vec<Option<usize>> = vec![None; shards];
    let mut covered = SlotSet::default();
    let mut pods = Vec::with_capacity(observation.len());
    for (i, o) in observation.iter().enumerate() {
        let shard = usize::from(o.member.shard);
        let mut pod = RedisPodStatus {
            name: pod_name(i),
            shard: i32::try_from(shard).ok(),
            ..RedisPodStatus::default()
        };
        match &o.state {
            Err(error) => {
                pod.role = "unreachable".into();
                pod.message = Some(error.clone());
            }
            Ok(state) => match state.nodes.myself() {
                None => {
                    pod.role = "unreachable".into();
                    pod.message = Some("CLUSTER NODES names no myself".into());
                }
                Some(me) if state.loading => {
                    pod.role = "loading".into();
                    let _ = me;
                }
                Some(me) if me.is_master() => {
                    pod.role = "primary".into();
                    if !me.slots.is_empty() {
                        pod.slots = Some(me.slots.to_string());
                        covered.union(&me.slots);
                    }
                    // The master that owns slots is the shard's primary; else its first master.
                    if let Some(slot) = primaries.get_mut(shard)
                        && (slot.is_none() || !me.slots.is_empty())
                    {
                        *slot = Some(i);
                    }
                }
                Some(_) => {
                    pod.role = "replica".into();
                    pod.link_up = Some(state.synced);
                }
            },
        }
        pods.push(pod);
    }
    let serving = primaries.iter().take(wanted).flatten().count();
    let failover = failover_readiness(model, observation, &primaries);
    ClusterView {
        pods,
        observed: ClusterObserved {
            serving,
            desired: wanted,
            slots_covered: covered.len().min(u32::from(SLOTS)),
        },
        failover,
        primaries,
    }
}

/// Every shard's primary has a replica that replicates it and is in sync: the cluster can fail
/// any one primary over without losing its slots.
fn failover_readiness(
    model: &Model,
    observation: &[MemberObservation],
    primaries: &[Option<usize>],
) -> FailoverReadiness {
    if per_shard(model) == 1 {
        return FailoverReadiness {
            ready: false,
            reason: "NoReplica".into(),
            message: "spec.cluster.replicasPerShard is 0: a lost primary's slots stay down until its pod is back".into(),
        };
    }
    let id_of = |i: usize| {
        observation
            .get(i)
            .and_then(|o| o.state.as_ref().ok())
            .and_then(|s| s.nodes.myself())
            .map(|me| me.id.clone())
    };
    let mut missing = Vec::new();
    for (shard, primary) in primaries.iter().enumerate() {
        let Some(primary_id) = primary.and_then(id_of) else {
            missing.push(format!("shard {shard} has no primary that answers"));
            continue;
        };
        let in_sync = observation.iter().any(|o| {
            o.state.as_ref().is_ok_and(|s| {
                s.synced
                    && s.nodes
                        .myself()
                        .and_then(|me| me.master.as_deref())
                        .is_some_and(|m| m == primary_id)
            })
        });
        if !in_sync {
            missing.push(format!("shard {shard} has no replica in sync"));
        }
    }
    if missing.is_empty() {
        FailoverReadiness {
            ready: true,
            reason: "ReplicasInSync".into(),
            message: "every shard's primary has an in-sync replica".into(),
        }
    } else {
        FailoverReadiness {
            ready: false,
            reason: "NoReplica".into(),
            message: missing.join("; "),
        }
    }
}
