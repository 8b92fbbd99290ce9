//! How much memory a Redis container needs for a given `maxmemory`, and the reverse: one formula
//! for the default container size, the default `maxmemory` and what `validate` refuses.
//!
//! `maxmemory` bounds Redis's own accounting (`used_memory`), not the process: the container also
//! holds the allocator's fragmentation, and whenever Redis forks (a BGSAVE, an AOF rewrite, a
//! replica's full sync) every page the parent writes while the child runs is copied. Under
//! writes spread over the whole keyspace nearly every page is copied: measured on Redis 7.0.15
//! with 1.47 million small keys (177 MiB used, fragmentation 1.07) and random overwrites during
//! BGSAVE and BGREWRITEAOF, the parent's RSS plus the child's private pages peaked at 354 MiB,
//! 2.0 × used memory (`rdb_last_cow_size` 168 MiB). Hence
//!
//! ```text
//! limit = maxmemory × FRAGMENTATION × (1 + FORK_COPY) + BASE_OVERHEAD + SYNCING_REPLICAS × REPLICA_BUFFER
//! ```
//!
//! with fragmentation allowed to grow to 1.2 (prune deletes many small keys), a full copy on
//! fork, 64 MiB for the server, clients and the AOF rewrite buffer plus the 64 MiB replication
//! backlog, and two replicas' output buffers during a full sync, each capped at 64 MiB
//! (`client-output-buffer-limit replica`). The limit does not depend on the number of pods, so
//! scaling never changes the pod template (which would restart every pod). `tests/tests/memory.rs` fills a real redis-server to
//! 90 % of `maxmemory` and checks the peak during BGSAVE under writes stays under this limit.

/// One mebibyte.
pub const MIB: u64 = 1024 * 1024;
/// RSS over `used_memory` the formula allows (jemalloc; 1.07 measured, more after deletions).
pub const FRAGMENTATION: f64 = 1.2;
/// Share of the dataset a fork may copy while writes continue (all of it, in the worst case).
pub const FORK_COPY: f64 = 1.0;
/// `repl-backlog-size`, in bytes (the config writes it as `64mb`).
pub const REPL_BACKLOG_BYTES: u64 = 64 * MIB;
/// The server itself, client buffers, Lua, the AOF rewrite buffer; plus the backlog.
pub const BASE_OVERHEAD: u64 = 64 * MIB + REPL_BACKLOG_BYTES;
/// Hard limit of one replica's output buffer (`client-output-buffer-limit replica`): a replica
/// whose full sync falls further behind is disconnected and tries again.
pub const REPLICA_BUFFER: u64 = 64 * MIB;
/// Replicas whose full-sync buffers the limit holds at once (both replicas of the default
/// three pods; PSYNC2 lets replicas of a new primary resync partially, so more full syncs at
/// the same moment are rare).
pub const SYNCING_REPLICAS: u64 = 2;
/// `maxmemory` when the spec names neither it nor a memory limit.
pub const DEFAULT_MAXMEMORY: u64 = 256 * MIB;

/// Memory beyond the data term: the server, the backlog, the syncing replicas' buffers.
pub const FIXED: u64 = BASE_OVERHEAD + SYNCING_REPLICAS * REPLICA_BUFFER;

/// The container memory limit `maxmemory` needs (rounded up to a MiB).
pub fn limit_for(maxmemory: u64) -> u64 {
    let data = (maxmemory as f64 * FRAGMENTATION * (1.0 + FORK_COPY)).ceil() as u64;
    (data + FIXED).div_ceil(MIB) * MIB
}

/// The largest `maxmemory` (whole MiB) that fits a container limit, or `None` when the limit
/// does not even cover the fixed overhead.
pub fn maxmemory_for(limit: u64) -> Option<u64> {
    let room = limit.checked_sub(FIXED)?;
    let maxmemory = (room as f64 / (FRAGMENTATION * (1.0 + FORK_COPY))).floor() as u64;
    let maxmemory = maxmemory / MIB * MIB;
    (maxmemory >= MIB).then_some(maxmemory)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_default_store_gets_a_limit_with_room_for_a_fork_and_two_replicas() {
        // 256 MiB × 2.4 = 615 MiB, + 128 MiB fixed, + 2 × 64 MiB for the replicas' buffers.
        assert_eq!(limit_for(DEFAULT_MAXMEMORY) / MIB, 871);
    }

    #[test]
    fn maxmemory_for_is_the_inverse_within_a_mebibyte() {
        for maxmemory in [256 * MIB, 1024 * MIB, 64 * MIB, 10 * 1024 * MIB] {
            let limit = limit_for(maxmemory);
            let back = maxmemory_for(limit).unwrap();
            assert!(
                back <= maxmemory && maxmemory - back <= MIB,
                "{maxmemory} -> {limit} -> {back}"
            );
            assert!(limit_for(back) <= limit);
        }
        assert_eq!(maxmemory_for(256 * MIB), None);
    }
}
