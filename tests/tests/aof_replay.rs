//! A data node restarted from its append-only file keeps every write, also those inside
//! transactions: each script call of the recorder (event dedup + counters) and each restore batch
//! is a `MULTI`/`EXEC` in the AOF, and Redis's AOF loader replays an `EXEC` only if the
//! `default` user may run every queued command (redis/redis#14541). A node from the rendered
//! redis.conf and ACL file (the store's own `default` user, disabled) is killed with SIGKILL
//! after acknowledged writes and started again from the same directory: the counts must be
//! exact. With the `default` user allowed nothing, this lost every event (the cluster-mode e2e
//! test found it: a primary the kubelet restarted at once came back without them, and its
//! replica resynced to that).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use abstore::connection::Connection;
use abstore::counters::{Event, Outcome, Recorder, RecorderConfig};
use abstore::keys::Granularity;
use abstore::reads::{Metric, Reader};
use abstore_tests::{LOOPBACK, RedisServer, Rendered};

/// Every key and its `DUMP` (as the operator, which may read everything).
async fn snapshot(url: &str) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for key in keys {
        let dump: Vec<u8> = redis::cmd("DUMP")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        out.insert(key, dump);
    }
    Ok(out)
}

async fn counted(url: &str, now: i64) -> Result<(u64, u64), String> {
    let conn = Connection::open(url).await.map_err(|e| e.to_string())?;
    let reader = Reader::new(conn, None, Granularity::Hour);
    let series = reader
        .days(
            &Metric::Evaluations,
            "aof",
            &["control", "treatment"],
            now,
            now,
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(series
        .total
        .values()
        .fold((0, 0), |(c, u), s| (c + s.count, u + s.users)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_writes_survive_a_restart_from_the_aof_with_the_stores_acl() {
    let store = Rendered::new("redis: {replicas: 1}");
    let conf = store.redis_conf();
    assert!(conf.contains("appendonly yes"), "{conf}");
    let mut node = RedisServer::start(&conf).unwrap();
    let url = store.library_url("app", &format!("redis://{LOOPBACK}:{}", node.port()));
    let conn = Connection::open(&url).await.unwrap();
    let recorder = Recorder::new(conn, RecorderConfig::default()).unwrap();
    let now = chrono::Utc::now().timestamp();
    // 2 000 events of 500 users, each with an id: dedup + counters in one script per batch.
    let events: Vec<Event> = (0..2000)
        .map(|i| {
            let variation = if i % 2 == 0 { "control" } else { "treatment" };
            Event::evaluation("aof", variation, &format!("user-{}", i % 500), now)
                .with_event_id(format!("aof-{i}"))
        })
        .collect();
    for chunk in events.chunks(250) {
        let result = recorder.record_batch(chunk).await.unwrap();
        assert!(
            result
                .outcomes
                .iter()
                .all(|o| matches!(o, Ok(Outcome::Counted))),
            "{:?}",
            result.outcomes
        );
    }
    let operator = store.url("operator", node.port());
    let keys_before = snapshot(&operator).await.unwrap();
    assert!(keys_before.len() > 2000, "{} keys", keys_before.len());
    let before = counted(&url, now).await.unwrap();
    // Counts exact; unique users are a HyperLogLog estimate (0.81 % standard error).
    assert_eq!(before.0, 2000);
    assert!(before.1.abs_diff(500) <= 10, "{before:?}");

    // SIGKILL: what was written to the AOF (write(2) before each reply) is all there is.
    node.restart().unwrap();
    let keys_after = abstore_tests::k8s::poll(
        "the restarted node to answer",
        Duration::from_secs(30),
        || async { snapshot(&operator).await },
    )
    .await
    .unwrap();
    let log = std::fs::read_to_string(node.log_path()).unwrap_or_default();
    assert!(
        !log.contains("AOF-loading-client"),
        "the AOF loader was refused commands:\n{}",
        log.lines()
            .filter(|l| l.contains("AOF-loading-client"))
            .take(3)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let lost: Vec<String> = keys_before
        .iter()
        .filter(|(key, dump)| keys_after.get(*key) != Some(dump))
        .map(|(key, _)| String::from_utf8_lossy(key).into_owned())
        .take(5)
        .collect();
    assert!(
        lost.is_empty() && keys_after.len() == keys_before.len(),
        "keys lost or changed by the restart from the AOF ({} before, {} after): {lost:?}",
        keys_before.len(),
        keys_after.len()
    );
    assert_eq!(counted(&url, now).await.unwrap().0, 2000);
    // And the deduplication state came back too: the same events again are duplicates.
    let again = recorder.record_batch(&events[..250]).await.unwrap();
    assert!(
        again
            .outcomes
            .iter()
            .all(|o| matches!(o, Ok(Outcome::Duplicate))),
        "{:?}",
        again.outcomes
    );
}
