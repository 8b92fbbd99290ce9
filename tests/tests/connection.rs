//! Connections against real servers: ACL users with passwords from files, TLS with a private CA,
//! and the errors a platform engineer sees when something is wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use abstore::connection::{Connection, Retry};
use abstore::counters::{Event, Outcome, Recorder, RecorderConfig};
use abstore_tests::{
    RedisServer, Role, TestCertificates, Topology, TopologyOptions, free_port, wait_for_role,
};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

const ACL_CONFIG: &str = "user default off\n\
    user app on >app-s3cret ~ec:* ~uc:* ~gc:* ~gu:* ~dd:* ~as:* ~tmp:* +@read +@write +@scripting +ping +wait -@dangerous\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_with_a_password_file_records_events() {
    let server = RedisServer::start(ACL_CONFIG).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, "app-s3cret\n").unwrap();
    let url = format!(
        "redis://app@{}?password_file={}",
        server.addr(),
        password.display()
    );
    let recorder = Recorder::new(
        Connection::open(&url).await.unwrap(),
        RecorderConfig::default(),
    )
    .unwrap();
    let outcome = recorder
        .record(&Event::evaluation("f", "v", "u", now()).with_event_id("e-1"))
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Counted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_fast_naming_the_server_but_not_the_password() {
    let server = RedisServer::start(ACL_CONFIG).unwrap();
    let started = Instant::now();
    let err = Connection::open(&format!("redis://app:wrong-pass@{}", server.addr()))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&server.addr()), "{err}");
    assert!(!err.contains("wrong-pass"), "password leaked: {err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bad credentials are not waited out like a failover"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_command_is_refused_at_once_and_not_retried() {
    let server = RedisServer::start(ACL_CONFIG).unwrap();
    let conn = Connection::open(&format!("redis://app:app-s3cret@{}", server.addr()))
        .await
        .unwrap();
    let mut pipe = redis::pipe();
    pipe.cmd("SET").arg("session:1").arg("x");
    let started = Instant::now();
    let err = conn
        .exec::<()>(
            &pipe,
            abstore::connection::Retry::Idempotent,
            "write a foreign key",
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("NOPERM") || err.contains("permission"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_private_ca_works_and_a_wrong_ca_or_plaintext_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let certs = TestCertificates::generate(dir.path()).unwrap();
    let tls_port = free_port().unwrap();
    let _server = RedisServer::start(&certs.redis_config(tls_port)).unwrap();

    let url = format!(
        "rediss://127.0.0.1:{tls_port}?ca_file={}",
        certs.ca_file.display()
    );
    let recorder = Recorder::new(
        Connection::open(&url).await.unwrap(),
        RecorderConfig::default(),
    )
    .unwrap();
    assert_eq!(
        recorder
            .record(&Event::evaluation("f", "v", "u", now()))
            .await
            .unwrap(),
        Outcome::Counted
    );

    // A certificate from another CA is not trusted.
    let other = tempfile::tempdir().unwrap();
    let other_certs = TestCertificates::generate(other.path()).unwrap();
    let wrong_ca = format!(
        "rediss://127.0.0.1:{tls_port}?ca_file={}",
        other_certs.ca_file.display()
    );
    let err = Connection::open(&wrong_ca).await.unwrap_err().to_string();
    assert!(err.contains(&format!("127.0.0.1:{tls_port}")), "{err}");

    // Plaintext to the TLS port gets no Redis session.
    let plaintext = format!("redis://127.0.0.1:{tls_port}?failover_timeout_ms=500");
    assert!(Connection::open(&plaintext).await.is_err());

    // A CA file that does not exist is named.
    let missing = format!("rediss://127.0.0.1:{tls_port}?ca_file=/nonexistent/ca.crt");
    let err = Connection::open(&missing).await.unwrap_err().to_string();
    assert!(err.contains("/nonexistent/ca.crt"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_connection_to_a_replica_reports_readonly_after_its_deadline() {
    let primary = RedisServer::start_default().unwrap();
    let replica = RedisServer::start_replica_of("", &primary).unwrap();
    wait_for_role(&replica.addr(), Role::Replica, Duration::from_secs(10))
        .await
        .unwrap();
    let conn = Connection::open(&format!("{}?failover_timeout_ms=300", replica.url()))
        .await
        .unwrap();
    let recorder = Recorder::new(conn, RecorderConfig::default()).unwrap();
    let err = recorder
        .record(&Event::evaluation("f", "v", "u", now()))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("read only replica"), "{err}");
    assert!(
        err.contains(&replica.addr()),
        "the error names the server: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_sentinel_master_is_named_in_the_error() {
    let topology = Topology::start(TopologyOptions {
        replicas: 0,
        sentinels: 1,
        quorum: 1,
        ..TopologyOptions::default()
    })
    .await
    .unwrap();
    let sentinel = &topology.sentinels[0];
    let url = format!(
        "redis+sentinel://{}/no-such-master?failover_timeout_ms=300",
        sentinel.addr()
    );
    let err = Connection::open(&url).await.unwrap_err().to_string();
    assert!(err.contains("no-such-master"), "{err}");
    assert!(err.contains(&sentinel.addr()), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_url_reaches_the_primary_and_skips_dead_sentinels() {
    let topology = Topology::start(TopologyOptions {
        replicas: 1,
        sentinels: 1,
        quorum: 1,
        ..TopologyOptions::default()
    })
    .await
    .unwrap();
    let dead = free_port().unwrap();
    let url = format!(
        "redis+sentinel://127.0.0.1:{dead},{}/{}",
        topology.sentinels[0].addr(),
        topology.master_name
    );
    let conn = Connection::open(&url).await.unwrap();
    let primary = topology.current_primary().await.unwrap();
    let server = conn.current_server().await.unwrap();
    assert_eq!((server.host, server.port), primary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_refused_with_noreplicas_is_resent_once_replicas_are_back() {
    // Right after a failover the new primary has no replica attached yet and, with
    // min-replicas-to-write, refuses every write of a pipeline with NOREPLICAS: nothing was
    // applied, so even INCRBY is resent, once, until it is accepted.
    let server = RedisServer::start("min-replicas-to-write 1\n").unwrap();
    let conn = Connection::open(&format!("{}?failover_timeout_ms=5000", server.url()))
        .await
        .unwrap();
    let mut pipe = redis::pipe();
    pipe.cmd("INCRBY").arg("ec:1:p:v").arg(5).ignore();
    pipe.cmd("INCRBY").arg("ec:1:p:w").arg(7).ignore();
    let admin = server.client().unwrap();
    let accept_later = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let mut admin = admin.get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("min-replicas-to-write")
            .arg(0)
            .query_async(&mut admin)
            .await
            .unwrap();
    });
    let started = Instant::now();
    let () = conn
        .exec(&pipe, Retry::NotIdempotent, "test pipeline")
        .await
        .unwrap();
    accept_later.await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(400));
    let mut check = server.connection().await.unwrap();
    let (v, w): (i64, i64) = redis::pipe()
        .cmd("GET")
        .arg("ec:1:p:v")
        .cmd("GET")
        .arg("ec:1:p:w")
        .query_async(&mut check)
        .await
        .unwrap();
    assert_eq!((v, w), (5, 7), "applied exactly once");
}
