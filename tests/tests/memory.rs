//! The memory formula against a real redis-server (issue 18): filled to 90 % of `maxmemory` with
//! counter-like keys, then BGSAVE and BGREWRITEAOF while a writer overwrites keys all over the
//! keyspace (the worst case: a fork copies nearly every page). The container would be charged the
//! parent's resident memory plus the pages only the child still maps; their peak must stay under
//! the limit the operator sets for that `maxmemory` (`abstore_operator::memory::limit_for`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use abstore_operator::memory::{self, MIB};
use abstore_tests::RedisServer;

/// Small enough to fill in a few seconds on a loaded machine.
const MAXMEMORY: u64 = 64 * MIB;
const KEY_SPACE: u64 = 400_000;
const SAVE_WITHIN: Duration = Duration::from_secs(120);

fn kib_field(text: &str, field: &str) -> u64 {
    text.lines()
        .filter(|line| line.starts_with(field))
        .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// The parent's RSS plus the child's private pages, in bytes (what the memory cgroup holds).
fn charged(parent: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{parent}/status")).unwrap_or_default();
    let mut bytes = kib_field(&status, "VmRSS:") * 1024;
    let children = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
        .unwrap_or_default();
    for child in children.split_whitespace() {
        let rollup =
            std::fs::read_to_string(format!("/proc/{child}/smaps_rollup")).unwrap_or_default();
        bytes +=
            (kib_field(&rollup, "Private_Dirty:") + kib_field(&rollup, "Private_Clean:")) * 1024;
    }
    bytes
}

async fn info_field(
    conn: &mut redis::aio::MultiplexedConnection,
    section: &str,
    field: &str,
) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in INFO {section}"))
}

/// Runs `command` (BGSAVE or BGREWRITEAOF) under random overwrites; returns the peak charge and
/// the fork's copy-on-write size Redis reports.
async fn fork_under_writes(
    server: &RedisServer,
    command: &str,
    in_progress: &str,
    cow: &str,
) -> (u64, u64) {
    let pid = server.pid().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let mut conn = server.connection().await.unwrap();
        let (stop, written) = (stop.clone(), written.clone());
        tokio::spawn(async move {
            let mut n: u64 = 0x9e37_79b9;
            while !stop.load(Ordering::Relaxed) {
                let mut pipe = redis::pipe();
                for _ in 0..200 {
                    n = n.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    pipe.cmd("SET")
                        .arg(format!("ec:1700000000:f{}:v", (n >> 33) % KEY_SPACE))
                        .arg(n % 1000)
                        .ignore();
                }
                let _: () = pipe.query_async(&mut conn).await.unwrap();
                written.fetch_add(200, Ordering::Relaxed);
            }
        })
    };
    let mut conn = server.connection().await.unwrap();
    // Let the writer get going, then fork.
    let started = written.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(30);
    while written.load(Ordering::Relaxed) < started + 20_000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _: String = redis::cmd(command).query_async(&mut conn).await.unwrap();
    let mut peak = 0;
    let deadline = Instant::now() + SAVE_WITHIN;
    loop {
        peak = peak.max(charged(pid));
        if info_field(&mut conn, "persistence", in_progress).await == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{command} did not finish within {SAVE_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    (peak, info_field(&mut conn, "persistence", cow).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_at_90_percent_of_maxmemory_forks_under_writes_within_the_limit_the_operator_sets()
{
    let server = RedisServer::start(&format!(
        "maxmemory {MAXMEMORY}\nmaxmemory-policy noeviction\nappendonly yes\nauto-aof-rewrite-percentage 0\nclient-output-buffer-limit replica 64mb 16mb 60\nrepl-backlog-size 64mb\n"
    ))
    .unwrap();
    let mut conn = server.connection().await.unwrap();

    // Fill to 90 %: counter keys of the Bucketeer schema's shape.
    let target = MAXMEMORY * 9 / 10;
    let mut next = 0;
    while info_field(&mut conn, "memory", "used_memory").await < target {
        let mut pipe = redis::pipe();
        for i in next..next + 2000 {
            pipe.cmd("SET")
                .arg(format!("ec:1700000000:f{}:v", i % KEY_SPACE))
                .arg(i)
                .ignore();
            pipe.cmd("SET")
                .arg(format!("ec:1700003600:f{i}:v"))
                .arg(i)
                .ignore();
        }
        let _: () = pipe.query_async(&mut conn).await.unwrap();
        next += 2000;
        assert!(next < 10_000_000, "never reached 90 % of maxmemory");
    }
    let used = info_field(&mut conn, "memory", "used_memory").await;
    let limit = memory::limit_for(MAXMEMORY);

    for (command, in_progress, cow) in [
        ("BGSAVE", "rdb_bgsave_in_progress", "rdb_last_cow_size"),
        (
            "BGREWRITEAOF",
            "aof_rewrite_in_progress",
            "aof_last_cow_size",
        ),
    ] {
        let (peak, copied) = fork_under_writes(&server, command, in_progress, cow).await;
        println!(
            "{command}: used {} MiB, copied on write {} MiB, peak charge {} MiB = {:.2} × used; limit for maxmemory {} MiB: {} MiB",
            used / MIB,
            copied / MIB,
            peak / MIB,
            peak as f64 / used as f64,
            MAXMEMORY / MIB,
            limit / MIB
        );
        // The worst case was exercised: the fork copied much of the dataset.
        assert!(
            copied > used / 3,
            "{command} copied only {copied} bytes of {used}: the writer did not reach the pages"
        );
        assert!(
            peak < limit,
            "{command}: peak {peak} bytes over the limit {limit} the operator would set"
        );
        // The data term alone (maxmemory × fragmentation × (1 + fork copy)) covers the peak with
        // 16 MiB for the server itself: the fixed overhead is not what makes it fit.
        let data_term =
            (MAXMEMORY as f64 * memory::FRAGMENTATION * (1.0 + memory::FORK_COPY)) as u64;
        assert!(
            peak < data_term + 16 * MIB,
            "{command}: peak {peak} bytes over the data term {data_term} + 16 MiB"
        );
    }
}
