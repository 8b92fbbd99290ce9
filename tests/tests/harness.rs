//! Tests of the harness itself, against real redis-server / redis-sentinel processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use abstore_tests::{
    HarnessError, RedisServer, Role, SentinelServer, Topology, TopologyOptions, query_role,
    wait_for_failover, wait_for_replication_offset, wait_for_role, wait_for_sync,
};
use redis::AsyncCommands;

const WAIT: Duration = Duration::from_secs(10);

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_server_leaves_no_process_behind() {
    // Leaked redis processes would hold ports and pile up across test runs.
    let server = RedisServer::start_default().unwrap();
    let pid = server.pid().unwrap();
    let dir = server.data_dir();
    assert!(process_exists(pid));
    let mut con = server.connection().await.unwrap();
    let pong: String = redis::cmd("PING").query_async(&mut con).await.unwrap();
    assert_eq!(pong, "PONG");
    drop(con);
    drop(server);
    assert!(!process_exists(pid), "pid {pid} still exists after drop");
    assert!(!dir.exists(), "temporary directory {dir:?} kept after drop");

    let mut sentinel = SentinelServer::start("").unwrap();
    let pid = sentinel.pid().unwrap();
    sentinel.kill9().unwrap();
    assert!(!sentinel.is_running());
    assert!(
        !process_exists(pid),
        "sentinel pid {pid} still exists after kill9"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_receives_what_is_written_on_the_primary() {
    let primary = RedisServer::start_default().unwrap();
    let replica = RedisServer::start_replica_of("", &primary).unwrap();
    wait_for_sync(&replica.addr(), WAIT).await.unwrap();

    let mut con = primary.connection().await.unwrap();
    let _: () = con.set("greeting", "hello").await.unwrap();
    wait_for_replication_offset(&replica.addr(), &primary.addr(), WAIT)
        .await
        .unwrap();

    let mut con = replica.connection().await.unwrap();
    let value: Option<String> = con.get("greeting").await.unwrap();
    assert_eq!(value.as_deref(), Some("hello"));
    assert_eq!(query_role(&replica.addr()).await.unwrap(), "slave");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_and_restart_keeps_data_written_to_the_aof() {
    // Crash-recovery tests depend on the data dir and port surviving a kill -9.
    let mut server = RedisServer::start("appendonly yes").unwrap();
    let port = server.port();
    let mut con = server.connection().await.unwrap();
    let _: () = con.set("durable", "yes").await.unwrap();
    drop(con);

    server.kill9().unwrap();
    assert!(!server.is_running());
    server.restart().unwrap();
    assert!(server.is_running());
    assert_eq!(server.port(), port);

    let mut con = server.connection().await.unwrap();
    let value: Option<String> = con.get("durable").await.unwrap();
    assert_eq!(value.as_deref(), Some("yes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_as_replica_of_brings_an_old_primary_back_as_replica() {
    // A restarted old primary must never serve its stale data as a primary.
    let primary = RedisServer::start_default().unwrap();
    let mut old = RedisServer::start_default().unwrap();
    let mut con = primary.connection().await.unwrap();
    let _: () = con.set("from-new-primary", "1").await.unwrap();

    old.kill9().unwrap();
    old.restart_as_replica_of(primary.host(), primary.port())
        .unwrap();
    wait_for_role(&old.addr(), Role::Replica, WAIT)
        .await
        .unwrap();
    wait_for_replication_offset(&old.addr(), &primary.addr(), WAIT)
        .await
        .unwrap();
    let mut con = old.connection().await.unwrap();
    let value: Option<String> = con.get("from-new-primary").await.unwrap();
    assert_eq!(value.as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_time_out_naming_what_they_awaited() {
    let primary = RedisServer::start_default().unwrap();
    let replica = RedisServer::start_replica_of("", &primary).unwrap();
    let error = wait_for_role(&replica.addr(), Role::Primary, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(error, HarnessError::Timeout { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("role Primary"), "{message}");
    assert!(message.contains("300ms"), "{message}");
    assert!(message.contains("role slave"), "{message}");
    assert!(message.contains("Ready to accept connections"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_requiring_auth_counts_as_started() {
    let server = RedisServer::start("requirepass s3cret").unwrap();
    let mut con = server.connection().await.unwrap();
    let denied: Result<Option<String>, _> = con.get("k").await;
    assert!(denied.is_err());
    let target = format!("redis://:s3cret@{}", server.addr());
    wait_for_role(&target, Role::Primary, WAIT).await.unwrap();
}

#[test]
fn an_invalid_config_fails_with_the_servers_complaint() {
    let error = RedisServer::start("no-such-directive 1").unwrap_err();
    assert!(
        matches!(error, HarnessError::StartFailed { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("no-such-directive"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_primary_fails_over_to_a_replica() {
    let mut topology = Topology::start(TopologyOptions::default()).await.unwrap();
    assert!(
        topology
            .sentinel_url()
            .starts_with("redis+sentinel://127.0.0.1:")
    );
    assert!(topology.sentinel_url().ends_with("/abstore"));
    let (host, old_port) = topology.current_primary().await.unwrap();
    assert_eq!(old_port, topology.nodes[0].port());

    let primary_addr = topology.nodes[0].addr();
    let mut con = topology.nodes[0].connection().await.unwrap();
    let _: () = con.set("before-failover", "kept").await.unwrap();
    drop(con);
    for replica in &topology.nodes[1..] {
        wait_for_replication_offset(&replica.addr(), &primary_addr, WAIT)
            .await
            .unwrap();
    }

    topology.nodes[0].kill9().unwrap();
    let (new_host, new_port) = wait_for_failover(
        &topology.sentinels[0],
        &topology.master_name,
        (&host, old_port),
        Duration::from_secs(15),
    )
    .await
    .unwrap();
    assert_ne!(new_port, old_port);
    let new_addr = format!("{new_host}:{new_port}");
    wait_for_role(&new_addr, Role::Primary, WAIT).await.unwrap();
    let new_primary = topology.node_by_port(new_port).unwrap();
    let mut con = new_primary.connection().await.unwrap();
    let value: Option<String> = con.get("before-failover").await.unwrap();
    assert_eq!(value.as_deref(), Some("kept"));

    let old = topology.node_by_port(old_port).unwrap();
    old.restart_as_replica_of(&new_host, new_port).unwrap();
    wait_for_role(&old.addr(), Role::Replica, WAIT)
        .await
        .unwrap();
    wait_for_sync(&old.addr(), WAIT).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topology_can_require_a_password() {
    let topology = Topology::start(TopologyOptions {
        replicas: 1,
        sentinels: 1,
        quorum: 1,
        redis_config: "requirepass pw\nmasterauth pw\n".to_owned(),
        password: Some("pw".to_owned()),
        ..TopologyOptions::default()
    })
    .await
    .unwrap();
    let (_, port) = topology.current_primary().await.unwrap();
    assert_eq!(port, topology.nodes[0].port());
    let target = topology.target(&topology.nodes[1]);
    wait_for_role(&target, Role::Replica, WAIT).await.unwrap();
}
