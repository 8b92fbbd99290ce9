//! Which slots move next when the number of shards changes (pure). Each shard that stays gets
//! its fair share (16 384 / shards, the first `16 384 % shards` one more); a shard being removed
//! gets none. Only the surplus moves — an over-full shard gives its highest slots to the shards
//! short of their share — so growing 3 → 4 moves a quarter of the slots, not most of them.
//! A slot a crashed move left half-way (`MIGRATING` on its source) is finished first.

use serde::Serialize;

use super::nodes::{SLOTS, SlotSet};
use super::plan::{ClusterTarget, MemberObservation};

/// One slot to move between the primaries of two shards (member indices).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotMove {
    pub slot: u16,
    pub from: usize,
    pub from_id: String,
    pub to: usize,
    pub to_id: String,
}

/// What the slot layout needs now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "step")]
pub enum ReshardStep {
    /// Every shard that stays has its share, every shard being removed has none.
    Done,
    Wait {
        reason: String,
    },
    /// Move these slots (at most the batch asked for), in order.
    Move {
        moves: Vec<SlotMove>,
    },
}

/// The next moves towards `wanted` shards (shards `wanted..` are being removed), at most `batch`.
pub fn next_moves(
    target: &ClusterTarget,
    wanted: u16,
    observation: &[MemberObservation],
    batch: usize,
) -> ReshardStep {
    let shards = usize::from(target.shards);
    // Each shard's primary: the master owning slots, else its first master (a new shard).
    let mut primary: Vec<Option<(usize, String, SlotSet)>> = vec![None; shards];
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
        if !me.is_master() {
            if !state.synced {
                return wait(format!(
                    "replica {} is not in sync with its primary",
                    seen.member.endpoint
                ));
            }
            continue;
        }
        // A move left half-way: finish it before anything else.
        if let Some(m) = me.migrations.iter().find(|m| !m.importing) {
            let to = observation.iter().position(|o| {
                o.state
                    .as_ref()
                    .ok()
                    .and_then(|s| s.nodes.myself())
                    .is_some_and(|n| n.id == m.peer)
            });
            return match to {
                Some(to) => ReshardStep::Move {
                    moves: vec![SlotMove {
                        slot: m.slot,
                        from: i,
                        from_id: me.id.clone(),
                        to,
                        to_id: m.peer.clone(),
                    }],
                },
                None => wait(format!(
                    "slot {} migrates to a node that is no member",
                    m.slot
                )),
            };
        }
        let shard = usize::from(seen.member.shard);
        let Some(entry) = primary.get_mut(shard) else {
            continue;
        };
        let owns = !me.slots.is_empty();
        if entry
            .as_ref()
            .is_none_or(|(_, _, slots)| slots.is_empty() && owns)
        {
            *entry = Some((i, me.id.clone(), me.slots.clone()));
        }
    }
    let mut owned = Vec::with_capacity(shards);
    for (shard, p) in primary.iter().enumerate() {
        match p {
            Some(p) => owned.push(p.clone()),
            None => return wait(format!("shard {shard} has no primary yet")),
        }
    }
    let wanted = usize::from(wanted).min(shards).max(1);
    let share = |shard: usize| -> u32 {
        if shard >= wanted {
            return 0;
        }
        let base = u32::from(SLOTS) / wanted as u32;
        base + u32::from((shard as u32) < u32::from(SLOTS) % wanted as u32)
    };
    // Surplus slots (each over-full shard's highest) and the shards short of their share.
    let mut surplus: Vec<(usize, u16)> = Vec::new();
    let mut deficit: Vec<(usize, u32)> = Vec::new();
    for (shard, (_, _, slots)) in owned.iter().enumerate() {
        let (have, want) = (slots.len(), share(shard));
        if have > want {
            let all: Vec<u16> = slots.iter().collect();
            let extra = (have - want) as usize;
            surplus.extend(all[all.len() - extra..].iter().map(|&s| (shard, s)));
        } else if have < want {
            deficit.push((shard, want - have));
        }
    }
    if surplus.is_empty() {
        return ReshardStep::Done;
    }
    let mut moves = Vec::new();
    let mut takers = deficit
        .into_iter()
        .flat_map(|(shard, n)| std::iter::repeat_n(shard, n as usize));
    for (from_shard, slot) in surplus {
        let Some(to_shard) = takers.next() else { break };
        let (from, from_id, _) = &owned[from_shard];
        let (to, to_id, _) = &owned[to_shard];
        moves.push(SlotMove {
            slot,
            from: *from,
            from_id: from_id.clone(),
            to: *to,
            to_id: to_id.clone(),
        });
        if moves.len() >= batch {
            break;
        }
    }
    if moves.is_empty() {
        // Uncovered slots make the shares unreachable by moves: the heal assigns those.
        return wait("slots are uncovered; the heal assigns them first".to_owned());
    }
    ReshardStep::Move { moves }
}

fn wait(reason: String) -> ReshardStep {
    ReshardStep::Wait { reason }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::nodes::parse;
    use super::super::plan::{Member, NodeState};
    use super::*;
    use crate::heal::Endpoint;

    /// One primary per shard, owning `slots[shard]` (text like "0-5460"), without replicas.
    fn cluster(
        slots: &[&str],
        migrating: Option<(usize, u16, usize)>,
    ) -> (ClusterTarget, Vec<MemberObservation>) {
        let id = |i: usize| format!("{:040}", i);
        let members: Vec<Member> = (0..slots.len())
            .map(|i| Member {
                shard: u16::try_from(i).unwrap(),
                index: 0,
                endpoint: Endpoint::new("127.0.0.1", 7000 + u16::try_from(i).unwrap()),
                bus_port: None,
            })
            .collect();
        let observation = (0..slots.len())
            .map(|me| {
                let lines: Vec<String> = (0..slots.len())
                    .map(|i| {
                        let myself = if i == me { "myself," } else { "" };
                        let mut extra = String::new();
                        if let Some((from, slot, to)) = migrating
                            && i == me
                            && me == from
                        {
                            extra = format!(" [{slot}->-{}]", id(to));
                        }
                        format!(
                            "{} 127.0.0.1:{}@1{} {myself}master - 0 0 1 connected {}{extra}",
                            id(i),
                            7000 + i,
                            7000 + i,
                            slots[i]
                        )
                    })
                    .collect();
                MemberObservation {
                    member: members[me].clone(),
                    state: Ok(NodeState {
                        nodes: parse(&lines.join("\n")).unwrap(),
                        keys: 1,
                        loading: false,
                        synced: false,
                    }),
                }
            })
            .collect();
        (
            ClusterTarget {
                shards: u16::try_from(slots.len()).unwrap(),
                members,
            },
            observation,
        )
    }

    fn all_moves(target: &ClusterTarget, wanted: u16, seen: &[MemberObservation]) -> Vec<SlotMove> {
        match next_moves(target, wanted, seen, usize::MAX) {
            ReshardStep::Move { moves } => moves,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn growing_moves_only_the_new_shards_share() {
        // Three even shards and an empty fourth: a quarter of the slots move, all to it.
        let (target, seen) = cluster(&["0-5461", "5462-10922", "10923-16383", ""], None);
        let moves = all_moves(&target, 4, &seen);
        assert_eq!(moves.len(), 4096);
        assert!(moves.iter().all(|m| m.to == 3));
        let per_source: Vec<usize> = (0..3)
            .map(|s| moves.iter().filter(|m| m.from == s).count())
            .collect();
        assert_eq!(per_source, vec![1366, 1365, 1365]);
        // Each source gives its highest slots.
        assert!(moves.iter().any(|m| m.from == 0 && m.slot == 5461));
        assert_eq!(
            next_moves(&target, 4, &seen, 10),
            ReshardStep::Move {
                moves: moves[..10].to_vec()
            }
        );
    }

    #[test]
    fn shrinking_empties_the_removed_shard_and_an_even_layout_is_done() {
        let (target, seen) = cluster(&["0-4095", "4096-8191", "8192-12287", "12288-16383"], None);
        assert_eq!(next_moves(&target, 4, &seen, 100), ReshardStep::Done);
        let moves = all_moves(&target, 3, &seen);
        assert_eq!(moves.len(), 4096);
        assert!(moves.iter().all(|m| m.from == 3));
        let per_taker: Vec<usize> = (0..3)
            .map(|s| moves.iter().filter(|m| m.to == s).count())
            .collect();
        assert_eq!(per_taker, vec![1366, 1365, 1365]);
    }

    #[test]
    fn a_move_left_half_way_is_finished_first_and_a_silent_member_waits() {
        let (target, seen) = cluster(
            &["0-4095", "4096-8191", "8192-12287", "12288-16383"],
            Some((1, 5000, 2)),
        );
        assert_eq!(
            next_moves(&target, 4, &seen, 100),
            ReshardStep::Move {
                moves: vec![SlotMove {
                    slot: 5000,
                    from: 1,
                    from_id: format!("{:040}", 1),
                    to: 2,
                    to_id: format!("{:040}", 2),
                }]
            }
        );
        let (target, mut seen) = cluster(&["0-8191", "8192-16383"], None);
        seen[1].state = Err("refused".to_owned());
        assert!(matches!(
            next_moves(&target, 1, &seen, 10),
            ReshardStep::Wait { .. }
        ));
    }
}
