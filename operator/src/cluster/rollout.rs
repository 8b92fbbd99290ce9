//! The next step of a rolling restart of a cluster-mode store (a configuration change, or a
//! restart asked for), decided purely from one observation: replicas first, one at a time and
//! only while the whole cluster is healthy; then each shard's primary, moved away first with
//! `CLUSTER FAILOVER` on an in-sync replica (a coordinated switch: the replica catches up with
//! the primary's offset before taking over, so no acknowledged write is lost), and restarted as
//! the replica it now is. A shard without replicas has nowhere to move its primary: it is
//! restarted in place (its slots are unavailable meanwhile), after every other member.

use serde::Serialize;

use super::plan::{ClusterTarget, MemberObservation};
use crate::heal::Endpoint;

/// What to do now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "step")]
pub enum RolloutStep {
    /// Every member runs the current configuration.
    Done,
    /// Nothing may be restarted now.
    Wait { reason: String },
    /// Restart this replica (member index).
    RestartReplica { member: usize, endpoint: Endpoint },
    /// `CLUSTER FAILOVER` on this in-sync replica, taking over from its outdated primary.
    Failover {
        replica: usize,
        endpoint: Endpoint,
        primary: Endpoint,
    },
    /// Restart this primary in place: its shard has no replica.
    RestartPrimary { member: usize, endpoint: Endpoint },
}

/// The next step, given which members (by index in `target.members`) run an outdated
/// configuration.
pub fn next_step(
    target: &ClusterTarget,
    observation: &[MemberObservation],
    outdated: &[bool],
) -> RolloutStep {
    let is_outdated = |i: usize| outdated.get(i).copied().unwrap_or(false);
    if !(0..target.members.len()).any(is_outdated) {
        return RolloutStep::Done;
    }
    // Healthy: every member answers, none loading, no node flagged failing, every replica in
    // sync, every shard with a primary owning slots.
    let mut primaries: Vec<Option<usize>> = vec![None; usize::from(target.shards)];
    for (i, seen) in observation.iter().enumerate() {
        let state = match &seen.state {
            Ok(state) => state,
            Err(error) => {
                return wait(format!("{} does not answer: {error}", seen.member.endpoint));
            }
        };
        if state.loading {
            return wait(format!("{} is loading its dataset", seen.member.endpoint));
        }
        if let Some(failing) = state.nodes.nodes.iter().find(|n| n.is_failing()) {
            return wait(format!(
                "{} sees {} failing",
                seen.member.endpoint, failing.addr
            ));
        }
        let Some(me) = state.nodes.myself() else {
            return wait(format!("{} names no myself", seen.member.endpoint));
        };
        if me.is_master() {
            if !me.slots.is_empty()
                && let Some(slot) = primaries.get_mut(usize::from(seen.member.shard))
            {
                *slot = Some(i);
            }
        } else if !state.synced {
            return wait(format!(
                "replica {} is not in sync with its primary",
                seen.member.endpoint
            ));
        }
    }
    if let Some(shard) = primaries.iter().position(Option::is_none) {
        return wait(format!("shard {shard} has no primary serving slots"));
    }
    let is_primary = |i: usize| primaries.contains(&Some(i));
    // Replicas first.
    if let Some(i) = (0..observation.len()).find(|&i| is_outdated(i) && !is_primary(i)) {
        return RolloutStep::RestartReplica {
            member: i,
            endpoint: observation[i].member.endpoint.clone(),
        };
    }
    // Then primaries: through a failover to a current replica of the shard.
    let mut alone = None;
    for (shard, primary) in primaries.iter().enumerate() {
        let Some(p) = *primary else { continue };
        if !is_outdated(p) {
            continue;
        }
        let replica = (0..observation.len()).find(|&r| {
            r != p
                && usize::from(observation[r].member.shard) == shard
                && !is_outdated(r)
                && !is_primary(r)
        });
        match replica {
            Some(r) => {
                return RolloutStep::Failover {
                    replica: r,
                    endpoint: observation[r].member.endpoint.clone(),
                    primary: observation[p].member.endpoint.clone(),
                };
            }
            None => {
                let has_replicas = observation
                    .iter()
                    .enumerate()
                    .any(|(r, o)| r != p && usize::from(o.member.shard) == shard);
                if has_replicas {
                    return wait(format!(
                        "shard {shard}'s replicas are not ready to take over"
                    ));
                }
                alone.get_or_insert(p);
            }
        }
    }
    match alone {
        Some(p) => RolloutStep::RestartPrimary {
            member: p,
            endpoint: observation[p].member.endpoint.clone(),
        },
        None => wait("outdated members remain".to_owned()),
    }
}

fn wait(reason: String) -> RolloutStep {
    RolloutStep::Wait { reason }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::nodes::parse;
    use super::super::plan::{Member, NodeState};
    use super::*;

    fn ep(port: u16) -> Endpoint {
        Endpoint::new("127.0.0.1", port)
    }

    /// Two shards × one replica: members 0 (primary of shard 0), 1 (its replica), 2 (primary
    /// of shard 1), 3 (its replica); `swap` makes member 1 shard 0's primary instead.
    fn cluster(swap: bool, synced: bool) -> (ClusterTarget, Vec<MemberObservation>) {
        let id = |i: usize| format!("{:040}", i);
        let members: Vec<Member> = (0..4)
            .map(|i| Member {
                shard: u16::try_from(i / 2).unwrap(),
                index: u16::try_from(i % 2).unwrap(),
                endpoint: ep(7000 + u16::try_from(i).unwrap()),
                bus_port: None,
            })
            .collect();
        let primary_of = |shard: usize| if shard == 0 && swap { 1 } else { shard * 2 };
        let line = |i: usize, me: usize| {
            let shard = i / 2;
            let primary = primary_of(shard);
            let myself = if i == me { "myself," } else { "" };
            if i == primary {
                let slots = if shard == 0 { "0-8191" } else { "8192-16383" };
                format!(
                    "{} 127.0.0.1:{}@1{} {myself}master - 0 0 1 connected {slots}",
                    id(i),
                    7000 + i,
                    7000 + i
                )
            } else {
                format!(
                    "{} 127.0.0.1:{}@1{} {myself}slave {} 0 0 1 connected",
                    id(i),
                    7000 + i,
                    7000 + i,
                    id(primary)
                )
            }
        };
        let observation = members
            .iter()
            .enumerate()
            .map(|(me, member)| {
                let text: Vec<String> = (0..4).map(|i| line(i, me)).collect();
                MemberObservation {
                    member: member.clone(),
                    state: Ok(NodeState {
                        nodes: parse(&text.join("\n")).unwrap(),
                        keys: 10,
                        loading: false,
                        synced: synced && me != primary_of(me / 2),
                    }),
                }
            })
            .collect();
        (ClusterTarget { shards: 2, members }, observation)
    }

    #[test]
    fn replicas_go_first_then_primaries_by_failover() {
        let (target, seen) = cluster(false, true);
        assert_eq!(next_step(&target, &seen, &[false; 4]), RolloutStep::Done);
        let all = [true; 4];
        assert_eq!(
            next_step(&target, &seen, &all),
            RolloutStep::RestartReplica {
                member: 1,
                endpoint: ep(7001)
            }
        );
        // Replicas done: shard 0's primary moves to its (current) replica.
        assert_eq!(
            next_step(&target, &seen, &[true, false, true, false]),
            RolloutStep::Failover {
                replica: 1,
                endpoint: ep(7001),
                primary: ep(7000)
            }
        );
        // After the switch the old primary is an outdated replica: restarted.
        let (target, swapped) = cluster(true, true);
        assert_eq!(
            next_step(&target, &swapped, &[true, false, true, false]),
            RolloutStep::RestartReplica {
                member: 0,
                endpoint: ep(7000)
            }
        );
    }

    #[test]
    fn nothing_is_restarted_while_a_replica_syncs_or_a_member_is_down() {
        let (target, seen) = cluster(false, false);
        assert!(matches!(
            next_step(&target, &seen, &[true; 4]),
            RolloutStep::Wait { reason } if reason.contains("not in sync")
        ));
        let (target, mut seen) = cluster(false, true);
        seen[3].state = Err("connection refused".to_owned());
        assert!(matches!(
            next_step(&target, &seen, &[true; 4]),
            RolloutStep::Wait { reason } if reason.contains("does not answer")
        ));
    }

    #[test]
    fn a_primary_without_replicas_is_restarted_in_place_last() {
        let members = vec![Member {
            shard: 0,
            index: 0,
            endpoint: ep(7000),
            bus_port: None,
        }];
        let text = format!(
            "{:040} 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-16383",
            0
        );
        let seen = vec![MemberObservation {
            member: members[0].clone(),
            state: Ok(NodeState {
                nodes: parse(&text).unwrap(),
                keys: 1,
                loading: false,
                synced: false,
            }),
        }];
        let target = ClusterTarget { shards: 1, members };
        assert_eq!(
            next_step(&target, &seen, &[true]),
            RolloutStep::RestartPrimary {
                member: 0,
                endpoint: ep(7000)
            }
        );
    }
}
