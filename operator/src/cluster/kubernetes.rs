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
    let (operator_auth, operator_auth_previous) = operator_auth(credentials);
    ClusterHealTarget {
        cluster: ClusterTarget {
            shards: u16::try_from(shards).unwrap_or(u16::MAX),
            members,
        },
        operator_auth: Some(operator_auth),
        operator_auth_previous,
        tls_ca,
    }
}

/// How the operator logs in to the members: its password, and during a rotation the previous
/// one (a member not yet healed still has it).
pub fn operator_auth(credentials: &Credentials) -> (Auth, Option<Auth>) {
    let operator = Role::Operator.username();
    (
        Auth {
            username: operator.to_owned(),
            password: credentials.role_password(Role::Operator).to_owned(),
        },
        credentials
            .previous(operator)
            .and_then(|previous| previous.password.clone())
            .map(|password| Auth {
                username: operator.to_owned(),
                password,
            }),
    )
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::nodes::parse;
    use super::super::plan::NodeState;
    use super::*;

    fn model(spec: &str) -> Model {
        let yaml = format!(
            "apiVersion: abstore.dev/v1alpha1\nkind: ABStore\nmetadata: {{name: shop, namespace: ab}}\nspec: {spec}"
        );
        crate::validate::validate(&serde_yaml::from_str(&yaml).unwrap()).unwrap()
    }

    /// Three members seen by themselves: `lines[i]` is member `i`'s own CLUSTER NODES line
    /// (with `myself`), `synced` whether a replica streams.
    fn observation(target: &ClusterTarget, lines: &[(&str, bool)]) -> Vec<MemberObservation> {
        target
            .members
            .iter()
            .zip(lines)
            .map(|(member, (line, synced))| MemberObservation {
                member: member.clone(),
                state: if line.is_empty() {
                    Err("connection refused".into())
                } else {
                    Ok(NodeState {
                        nodes: parse(line).unwrap(),
                        keys: 0,
                        loading: false,
                        synced: *synced,
                    })
                },
            })
            .collect()
    }

    fn id(n: u8) -> String {
        format!("{:040}", n)
    }

    #[test]
    fn pods_are_members_shard_by_shard_and_the_status_reads_shards_slots_and_replicas() {
        let m = model("{mode: cluster, cluster: {shards: 2, replicasPerShard: 1}}");
        let endpoints: Vec<Endpoint> = (0..4)
            .map(|i| Endpoint::new(format!("shop-redis-{i}.x"), 6379))
            .collect();
        let creds = Credentials::resolve(&m, &Default::default(), &mut || "pw".to_owned());
        let target = target(&m, &creds, endpoints, None);
        let shards: Vec<(u16, u16)> = target
            .cluster
            .members
            .iter()
            .map(|m| (m.shard, m.index))
            .collect();
        assert_eq!(shards, [(0, 0), (0, 1), (1, 0), (1, 1)]);
        assert_eq!(target.operator_auth.as_ref().unwrap().username, "operator");

        let primary = |n: u8, slots: &str| {
            format!(
                "{} 10.0.0.{n}:6379@16379 myself,master - 0 0 1 connected {slots}",
                id(n)
            )
        };
        let replica = |n: u8, of: u8| {
            format!(
                "{} 10.0.0.{n}:6379@16379 myself,slave {} 0 0 1 connected",
                id(n),
                id(of)
            )
        };
        // Shard 1's replica does not stream yet: no failover possible there.
        let seen = observation(
            &target.cluster,
            &[
                (&primary(0, "0-8191"), false),
                (&replica(1, 0), true),
                (&primary(2, "8192-16383"), false),
                (&replica(3, 2), false),
            ],
        );
        let v = view(&m, &seen, |i| format!("shop-redis-{i}"));
        assert_eq!(v.observed.serving, 2);
        assert_eq!(v.observed.desired, 2);
        assert_eq!(v.observed.slots_covered, 16_384);
        assert_eq!(v.primaries, [Some(0), Some(2)]);
        assert_eq!(v.pods[0].slots.as_deref(), Some("0-8191"));
        assert_eq!(v.pods[3].shard, Some(1));
        assert_eq!(v.pods[3].role, "replica");
        assert!(!v.failover.ready);
        assert!(
            v.failover.message.contains("shard 1"),
            "{}",
            v.failover.message
        );

        // A silent pod and half the slots: one shard serving, 8192 slots covered.
        let seen = observation(
            &target.cluster,
            &[
                (&primary(0, "0-8191"), false),
                (&replica(1, 0), true),
                ("", false),
                (&replica(3, 2), true),
            ],
        );
        let v = view(&m, &seen, |i| format!("shop-redis-{i}"));
        assert_eq!((v.observed.serving, v.observed.slots_covered), (1, 8192));
        assert_eq!(v.pods[2].role, "unreachable");
    }

    #[test]
    fn a_scale_in_waits_until_the_removed_pods_answer_and_own_no_slot() {
        let m = model("{mode: cluster, cluster: {shards: 1, replicasPerShard: 0}}");
        let endpoints: Vec<Endpoint> = (0..2)
            .map(|i| Endpoint::new(format!("shop-redis-{i}.x"), 6379))
            .collect();
        let creds = Credentials::resolve(&m, &Default::default(), &mut || "pw".to_owned());
        let target = target(&m, &creds, endpoints, None);
        assert_eq!(
            target.cluster.shards, 2,
            "members beyond the spec stay members"
        );
        let line = |n: u8, slots: &str| {
            format!(
                "{} 10.0.0.{n}:6379@16379 myself,master - 0 0 1 connected {slots}",
                id(n)
            )
        };
        let full = line(0, "0-16383");
        let still_owning = observation(
            &target.cluster,
            &[(&line(0, "0-8191"), false), (&line(1, "8192-16383"), false)],
        );
        assert!(!may_remove_beyond(1, &still_owning));
        let silent = observation(&target.cluster, &[(&full, false), ("", false)]);
        assert!(!may_remove_beyond(1, &silent));
        let emptied = observation(&target.cluster, &[(&full, false), (&line(1, ""), false)]);
        assert!(may_remove_beyond(1, &emptied));
        assert_eq!(per_shard(&m), 1);
        assert_eq!(wanted_shards(&m), 1);
        let v = view(&m, &emptied, |i| format!("shop-redis-{i}"));
        assert_eq!(v.failover.reason, "NoReplica");
        assert_eq!((v.observed.serving, v.observed.desired), (1, 1));
    }
}
