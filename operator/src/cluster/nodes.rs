//! `CLUSTER NODES` as typed values: what one node believes about every node of the cluster.
//! Pure parsing, so every rule of the planner is tested with plain text.
//!
//! Line format (Redis 7):
//! `<id> <ip:port@cport[,hostname]> <flags> <master id|-> <ping-sent> <pong-recv> <config-epoch>
//! <link-state> [<slot>|<from>-<to>|[<slot>->-<id>]|[<slot>-<-<id>] ...]`

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

/// Number of hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16_384;

/// One line of `CLUSTER NODES`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNode {
    pub id: String,
    /// `ip:port` as announced (empty when the node has no address: `noaddr`).
    pub addr: String,
    /// The announced hostname (`cluster-announce-hostname`), if any.
    pub hostname: Option<String>,
    pub flags: BTreeSet<String>,
    /// The primary's id, for a replica.
    pub master: Option<String>,
    pub slots: SlotSet,
    /// Slots being moved (`[slot->-id]` / `[slot-<-id]`): a migration is in progress.
    pub migrating: bool,
    /// Those moves, as the node itself reports them (only on its `myself` line): slot, the
    /// peer's id, and whether the slot is coming in (`-<-`, importing) or going out (`->-`).
    pub migrations: Vec<Migration>,
}

/// One slot a node is moving out or in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Migration {
    pub slot: u16,
    pub peer: String,
    pub importing: bool,
}

impl ClusterNode {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.contains(flag)
    }

    pub fn is_myself(&self) -> bool {
        self.has_flag("myself")
    }

    pub fn is_master(&self) -> bool {
        self.has_flag("master")
    }

    /// Flagged failed (`fail`) or suspected (`fail?`) by the node that reported the line.
    pub fn is_failing(&self) -> bool {
        self.has_flag("fail") || self.has_flag("fail?")
    }

    /// Still in the handshake of a `CLUSTER MEET`: not yet a member.
    pub fn in_handshake(&self) -> bool {
        self.has_flag("handshake")
    }
}

/// The whole reply of one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClusterNodes {
    pub nodes: Vec<ClusterNode>,
}

impl ClusterNodes {
    /// The line flagged `myself`.
    pub fn myself(&self) -> Option<&ClusterNode> {
        self.nodes.iter().find(|n| n.is_myself())
    }

    pub fn get(&self, id: &str) -> Option<&ClusterNode> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Whether this view knows `id` as a member (not only mid-handshake).
    pub fn knows(&self, id: &str) -> bool {
        self.get(id).is_some_and(|n| !n.in_handshake())
    }
}

/// A set of hash slots, kept as sorted inclusive ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SlotSet {
    ranges: Vec<(u16, u16)>,
}

impl SlotSet {
    pub fn range(from: u16, to: u16) -> SlotSet {
        let mut set = SlotSet::default();
        set.insert(from, to);
        set
    }

    /// Adds `from..=to`, merging with neighbours.
    pub fn insert(&mut self, from: u16, to: u16) {
        let (from, to) = (from.min(to), from.max(to));
        let mut merged = (from, to);
        let mut kept = Vec::with_capacity(self.ranges.len() + 1);
        for &(a, b) in &self.ranges {
            if u32::from(b) + 1 < u32::from(merged.0) || u32::from(merged.1) + 1 < u32::from(a) {
                kept.push((a, b));
            } else {
                merged = (merged.0.min(a), merged.1.max(b));
            }
        }
        kept.push(merged);
        kept.sort_unstable();
        self.ranges = kept;
    }

    pub fn union(&mut self, other: &SlotSet) {
        for &(a, b) in &other.ranges {
            self.insert(a, b);
        }
    }

    pub fn ranges(&self) -> &[(u16, u16)] {
        &self.ranges
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn len(&self) -> u32 {
        self.ranges
            .iter()
            .map(|&(a, b)| u32::from(b) - u32::from(a) + 1)
            .sum()
    }

    /// Every slot, in order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        self.ranges.iter().flat_map(|&(a, b)| a..=b)
    }

    /// The slots of `0..SLOTS` not in this set.
    pub fn complement(&self) -> SlotSet {
        let mut out = SlotSet::default();
        let mut next: u32 = 0;
        for &(a, b) in &self.ranges {
            if u32::from(a) > next {
                out.ranges.push((to_slot(next), a - 1));
            }
            next = u32::from(b) + 1;
        }
        if next < u32::from(SLOTS) {
            out.ranges.push((to_slot(next), SLOTS - 1));
        }
        out
    }
}

fn to_slot(v: u32) -> u16 {
    u16::try_from(v).unwrap_or(SLOTS - 1)
}

impl fmt::Display for SlotSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .ranges
            .iter()
            .map(|&(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// The even split of the 16 384 slots over `shards` shards: shard `s` gets one contiguous
/// range, the first `16384 % shards` shards one slot more.
pub fn even_split(shards: u16) -> Vec<SlotSet> {
    let shards = shards.max(1);
    let base = SLOTS / shards;
    let extra = SLOTS % shards;
    let mut from = 0u16;
    (0..shards)
        .map(|s| {
            let size = base + u16::from(s < extra);
            let set = SlotSet::range(from, from + size - 1);
            from += size;
            set
        })
        .collect()
}

/// Why a `CLUSTER NODES` reply could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("CLUSTER NODES line {line}: {reason}: {text:?}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
    pub text: String,
}

/// Parses a `CLUSTER NODES` reply.
pub fn parse(reply: &str) -> Result<ClusterNodes, ParseError> {
    let mut nodes = Vec::new();
    for (i, text) in reply.lines().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        let error = |reason: &str| ParseError {
            line: i + 1,
            reason: reason.to_owned(),
            text: text.to_owned(),
        };
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() < 8 {
            return Err(error("fewer than 8 fields"));
        }
        let (id, address, flags, master) = (fields[0], fields[1], fields[2], fields[3]);
        if id.len() != 40 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(error("node id is not 40 hex digits"));
        }
        // ip:port@cport[,hostname]
        let (endpoint, hostname) = match address.split_once(',') {
            Some((e, h)) if !h.is_empty() => (e, Some(h.to_owned())),
            Some((e, _)) => (e, None),
            None => (address, None),
        };
        let addr = endpoint.split('@').next().unwrap_or_default();
        let addr = if addr == ":0" { "" } else { addr };
        let mut slots = SlotSet::default();
        let mut migrating = false;
        let mut migrations = Vec::new();
        for slot in &fields[8..] {
            if let Some(inner) = slot.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                migrating = true;
                let parsed = inner
                    .split_once("->-")
                    .map(|(s, p)| (s, p, false))
                    .or_else(|| inner.split_once("-<-").map(|(s, p)| (s, p, true)));
                if let Some((slot, peer, importing)) = parsed
                    && let Ok(slot) = slot.parse::<u16>()
                {
                    migrations.push(Migration {
                        slot,
                        peer: peer.to_owned(),
                        importing,
                    });
                }
                continue;
            }
            let (a, b) = slot.split_once('-').unwrap_or((slot, slot));
            let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) else {
                return Err(error("bad slot range"));
            };
            if a >= SLOTS || b >= SLOTS {
                return Err(error("slot out of range"));
            }
            slots.insert(a, b);
        }
        nodes.push(ClusterNode {
            id: id.to_owned(),
            addr: addr.to_owned(),
            hostname,
            flags: flags
                .split(',')
                .filter(|f| !f.is_empty() && *f != "noflags")
                .map(str::to_owned)
                .collect(),
            master: (master != "-").then(|| master.to_owned()),
            slots,
            migrating,
            migrations,
        });
    }
    Ok(ClusterNodes { nodes })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn parses_masters_replicas_hostnames_slots_and_migrations() {
        let reply = format!(
            "{A} 10.0.0.1:6379@16379,s-shard-0-0.s.ns.svc myself,master - 0 0 1 connected 0-5460 7000 [7001->-{B}]\n\
             {B} 10.0.0.2:6379@16379 slave {A} 0 1700000000 1 connected\n"
        );
        let nodes = parse(&reply).unwrap();
        let me = nodes.myself().unwrap();
        assert_eq!(me.id, A);
        assert_eq!(me.addr, "10.0.0.1:6379");
        assert_eq!(me.hostname.as_deref(), Some("s-shard-0-0.s.ns.svc"));
        assert!(me.is_master() && me.migrating);
        assert_eq!(
            me.migrations,
            vec![Migration {
                slot: 7001,
                peer: B.to_owned(),
                importing: false
            }]
        );
        assert_eq!(me.slots.to_string(), "0-5460,7000");
        assert_eq!(me.slots.len(), 5462);
        let b = nodes.get(B).unwrap();
        assert_eq!(b.master.as_deref(), Some(A));
        assert!(b.slots.is_empty());
    }

    #[test]
    fn noaddr_failed_and_handshake_nodes_are_read() {
        let reply = format!(
            "{A} :0@0 master,fail,noaddr - 1 1 2 disconnected 100-200\n\
             {B} 10.0.0.9:6379@16379 handshake - 0 0 0 connected\n"
        );
        let nodes = parse(&reply).unwrap();
        assert_eq!(nodes.get(A).unwrap().addr, "");
        assert!(nodes.get(A).unwrap().is_failing());
        assert!(!nodes.knows(B), "a node in handshake is not yet a member");
    }

    #[test]
    fn bad_lines_are_refused_with_the_line() {
        let err = parse("garbage line").unwrap_err();
        assert_eq!(err.line, 1);
        let err = parse(&format!("{A} 1.2.3.4:1@2 master - 0 0 1 connected 99999")).unwrap_err();
        assert!(err.reason.contains("slot"), "{err}");
    }

    #[test]
    fn slot_sets_merge_and_complement() {
        let mut s = SlotSet::range(10, 20);
        s.insert(21, 30);
        s.insert(0, 4);
        assert_eq!(s.to_string(), "0-4,10-30");
        assert_eq!(s.complement().to_string(), "5-9,31-16383");
        assert_eq!(SlotSet::default().complement().len(), 16_384);
    }

    #[test]
    fn even_split_covers_every_slot_once() {
        for shards in [1u16, 2, 3, 4, 7] {
            let parts = even_split(shards);
            let mut all = SlotSet::default();
            let mut total = 0;
            for p in &parts {
                total += p.len();
                all.union(p);
            }
            assert_eq!(total, 16_384, "{shards}");
            assert!(all.complement().is_empty(), "{shards}");
        }
        assert_eq!(even_split(3)[0].to_string(), "0-5461");
    }
}
