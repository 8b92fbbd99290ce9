//! The benchmark's peer is the real Lamed: its own `track()` (PyPI lamed==0.4.3, with the
//! redis-py it vendors) records into a real redis-server exactly as its source says — a counter
//! per experiment/event/variant, a SETEX flag per uuid that makes a repeated uuid count once,
//! and the experiment and counter-key sets its reports read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use abstore_tests::RedisServer;
use abstore_tests::lamed::{spawn_lamed_track, wait_lamed_track};
use redis::AsyncCommands;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lamed_track_counts_each_uuid_once_into_its_own_keys() {
    let server = RedisServer::start_default().unwrap();
    // 200 events: experiment flag-(i % 20), variant control for even i: flag-0 gets i = 0, 20,
    // …, 180, all even, so 10 participations of control and none of treatment.
    let first = wait_lamed_track(spawn_lamed_track(&server, 200, "peer").unwrap()).unwrap();
    assert_eq!(first.events, 200);
    assert!(
        first.redis_py.starts_with("3.4.1 from") && first.redis_py.contains("vendor"),
        "Lamed ran with its vendored redis-py: {}",
        first.redis_py
    );
    // The same uuids again: Lamed's flags make every one a duplicate.
    wait_lamed_track(spawn_lamed_track(&server, 200, "peer").unwrap()).unwrap();
    let mut raw = server.connection().await.unwrap();
    let control: i64 = raw
        .get("alephbet:counters:flag-0:participate:control")
        .await
        .unwrap();
    assert_eq!(control, 10);
    let treatment: Option<i64> = raw
        .get("alephbet:counters:flag-0:participate:treatment")
        .await
        .unwrap();
    assert_eq!(treatment, None);
    let experiments: i64 = raw.scard("alephbet:experiments").await.unwrap();
    assert_eq!(experiments, 20);
    let counter_keys: i64 = raw.scard("alephbet:counter_keys").await.unwrap();
    assert_eq!(
        counter_keys, 20,
        "one variant per experiment in this stream"
    );
    // 200 flags (SHA-1 of key and uuid), each with Lamed's 24 h expiry.
    let keys: Vec<String> = raw.keys("*").await.unwrap();
    let flags: Vec<&String> = keys
        .iter()
        .filter(|k| k.len() == 40 && k.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    assert_eq!(flags.len(), 200);
    let ttl: i64 = raw.ttl(flags[0]).await.unwrap();
    assert!((86_000..=86_400).contains(&ttl), "{ttl}");
}
