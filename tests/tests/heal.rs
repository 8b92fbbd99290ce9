//! The operator's heal pass against real redis-server and redis-sentinel processes: bootstrap of
//! a store no sentinel monitors (the node holding data wins, never an empty one), split-brain
//! repair, a restarted old primary rejoining, and durability settings applied live. Each pass is
//! `abstore_operator::heal::heal_once`, exactly what the controller and `local up` run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use abstore_operator::heal::{
    Action, Auth, Decision, Endpoint, HealTarget, ReplicaReason, Report, SentinelSettings,
    heal_once,
};
use abstore_tests::{
    LOOPBACK, RedisServer, Role, SentinelServer, Topology, TopologyOptions, query_role,
    wait_for_failover, wait_for_replication_offset, wait_for_role, wait_for_sync,
};
use tokio::time::Instant;

const MASTER: &str = "heal-test";
const CONVERGE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);

fn endpoint(port: u16) -> Endpoint {
    Endpoint::new(LOOPBACK, port)
}

fn target(nodes: &[&RedisServer], sentinels: &[&SentinelServer]) -> HealTarget {
    HealTarget {
        master_name: MASTER.to_owned(),
        nodes: nodes.iter().map(|n| endpoint(n.port())).collect(),
        sentinels: sentinels.iter().map(|s| endpoint(s.port())).collect(),
        sentinel: SentinelSettings {
            quorum: 2,
            down_after_ms: 1000,
            failover_timeout_ms: 3000,
            parallel_syncs: 1,
        },
        min_replicas_to_write: 1,
        operator_auth: None,
        operator_auth_previous: None,
        sentinel_auth: None,
        operator_sentinel_auth: None,
        tls_ca: None,
    }
}

async fn conn(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    server
        .client()
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Polls `check` until it returns `Ok`, or fails with the last reason at the deadline.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + CONVERGE;
    loop {
        match check().await {
            Ok(()) => return,
            Err(reason) if Instant::now() >= deadline => {
                panic!("{what}: not within {CONVERGE:?}; last: {reason}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

async fn sentinel_primary(sentinel: &SentinelServer) -> Option<u16> {
    sentinel
        .primary_addr(MASTER)
        .await
        .ok()
        .flatten()
        .map(|(_, port)| port)
}

#[tokio::test]
async fn bootstrap_makes_the_node_with_data_primary_and_never_an_empty_one() {
    // Three standalone nodes, only the last holds data, no sentinel monitors anything: the
    // classic way operators lose data is to make node 0 primary here.
    let nodes = [
        RedisServer::start_default().unwrap(),
        RedisServer::start_default().unwrap(),
        RedisServer::start_default().unwrap(),
    ];
    let sentinels = [
        SentinelServer::start("").unwrap(),
        SentinelServer::start("").unwrap(),
        SentinelServer::start("").unwrap(),
    ];
    let mut holder = conn(&nodes[2]).await;
    for i in 0..50 {
        redis::cmd("SET")
            .arg(format!("ec:1700000000:flag:v{i}"))
            .arg(i)
            .query_async::<()>(&mut holder)
            .await
            .unwrap();
    }
    let target = target(&nodes.each_ref(), &sentinels.each_ref());

    let report = heal_once(&target).await.unwrap();
    assert!(report.ok(), "{report:?}");
    assert!(
        matches!(report.decision, Decision::Bootstrap { .. }),
        "{:?}",
        report.decision
    );
    assert_eq!(report.primary, Some(endpoint(nodes[2].port())));
    for node in &nodes[..2] {
        assert!(report.applied.iter().any(|a| a.action
            == Action::ReplicaOf {
                node: endpoint(node.port()),
                primary: endpoint(nodes[2].port()),
                reason: ReplicaReason::Bootstrap,
            }));
    }

    for node in &nodes[..2] {
        wait_for_sync(&node.addr(), CONVERGE).await.unwrap();
        let mut c = conn(node).await;
        let value: Option<String> = redis::cmd("GET")
            .arg("ec:1700000000:flag:v49")
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(
            value.as_deref(),
            Some("49"),
            "the data reached {}",
            node.addr()
        );
    }
    for sentinel in &sentinels {
        assert_eq!(sentinel_primary(sentinel).await, Some(nodes[2].port()));
    }
    // Sentinel took the settings and the quorum.
    let mut s = sentinels[0]
        .client()
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let fields: Vec<String> = redis::cmd("SENTINEL")
        .arg("MASTER")
        .arg(MASTER)
        .query_async(&mut s)
        .await
        .unwrap();
    let field = |name: &str| {
        fields
            .chunks(2)
            .find(|kv| kv[0] == name)
            .map(|kv| kv[1].clone())
    };
    assert_eq!(field("quorum").as_deref(), Some("2"));
    assert_eq!(field("down-after-milliseconds").as_deref(), Some("1000"));

    // Idempotent: once everyone agrees, a pass changes nothing.
    eventually("a second pass with nothing to do", || async {
        let report = heal_once(&target).await.map_err(|e| e.to_string())?;
        if report.applied.is_empty() && matches!(report.decision, Decision::Elected { .. }) {
            Ok(())
        } else {
            Err(format!("{:?} {:?}", report.decision, report.applied))
        }
    })
    .await;
}

#[tokio::test]
async fn an_all_empty_store_bootstraps_on_node_0() {
    let nodes = [
        RedisServer::start_default().unwrap(),
        RedisServer::start_default().unwrap(),
    ];
    let sentinels = [SentinelServer::start("").unwrap()];
    let mut target = target(&nodes.each_ref(), &sentinels.each_ref());
    target.sentinel.quorum = 1;
    let report = heal_once(&target).await.unwrap();
    assert_eq!(report.primary, Some(endpoint(nodes[0].port())));
    wait_for_sync(&nodes[1].addr(), CONVERGE).await.unwrap();
    assert_eq!(sentinel_primary(&sentinels[0]).await, Some(nodes[0].port()));
}

#[tokio::test]
async fn a_node_claiming_primary_is_demoted_in_favour_of_the_elected_one() {
    let topology = Topology::start(TopologyOptions {
        master_name: MASTER.to_owned(),
        ..TopologyOptions::default()
    })
    .await
    .unwrap();
    let rogue = &topology.nodes[2];
    let mut c = conn(rogue).await;
    redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query_async::<()>(&mut c)
        .await
        .unwrap();
    redis::cmd("SET")
        .arg("divergent")
        .arg("write")
        .query_async::<()>(&mut c)
        .await
        .unwrap();
    let target = target(
        &topology.nodes.iter().collect::<Vec<_>>(),
        &topology.sentinels.iter().collect::<Vec<_>>(),
    );
    let report = heal_once(&target).await.unwrap();
    assert_eq!(report.primary, Some(endpoint(topology.nodes[0].port())));
    assert!(
        report.applied.iter().any(|a| a.action
            == Action::ReplicaOf {
                node: endpoint(rogue.port()),
                primary: endpoint(topology.nodes[0].port()),
                reason: ReplicaReason::SplitBrain,
            }
            && a.error.is_none()),
        "{:?}",
        report.applied
    );
    wait_for_sync(&rogue.addr(), CONVERGE).await.unwrap();
    let divergent: Option<String> = redis::cmd("GET")
        .arg("divergent")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(
        divergent, None,
        "the demoted node took the primary's dataset"
    );
}

#[tokio::test]
async fn a_restarted_old_primary_rejoins_as_a_replica_of_the_new_one() {
    let mut topology = Topology::start(TopologyOptions {
        master_name: MASTER.to_owned(),
        ..TopologyOptions::default()
    })
    .await
    .unwrap();
    let old = topology.nodes[0].port();
    topology.nodes[0].kill9().unwrap();
    let (_, new) = wait_for_failover(&topology.sentinels[0], MASTER, (LOOPBACK, old), CONVERGE)
        .await
        .unwrap();
    // Restarted from its own config (no replicaof): it comes back claiming to be a primary.
    topology.nodes[0].restart().unwrap();
    let target = target(
        &topology.nodes.iter().collect::<Vec<_>>(),
        &topology.sentinels.iter().collect::<Vec<_>>(),
    );
    // Sentinel may convert it first (+convert-to-slave); either way heal must converge on the
    // sentinels' primary (the failover's choice — or another replica, should the sentinels fail
    // over once more while the old primary restarts; never the old primary) and then have
    // nothing left to do.
    let sentinels = &topology.sentinels;
    eventually("the old primary replicating the new one", || async {
        let report = heal_once(&target).await.map_err(|e| e.to_string())?;
        let elected = sentinel_primary(&sentinels[0]).await;
        if elected == Some(old) {
            return Err(format!(
                "the sentinels name the old primary {old} (failover to {new})"
            ));
        }
        if elected.is_none() || report.primary != elected.map(endpoint) {
            return Err(format!(
                "primary {:?}, sentinels {elected:?} (failover to {new})",
                report.primary
            ));
        }
        let role = query_role(&format!("{LOOPBACK}:{old}")).await?;
        if role == "slave" && report.applied.is_empty() {
            Ok(())
        } else {
            Err(format!("role {role}, applied {:?}", report.applied))
        }
    })
    .await;
    wait_for_role(&format!("{LOOPBACK}:{old}"), Role::Replica, CONVERGE)
        .await
        .unwrap();
    wait_for_sync(&format!("{LOOPBACK}:{old}"), CONVERGE)
        .await
        .unwrap();
}

#[tokio::test]
async fn min_replicas_to_write_is_applied_live_and_capped_by_the_replicas_that_exist() {
    let topology = Topology::start(TopologyOptions {
        master_name: MASTER.to_owned(),
        replicas: 1,
        ..TopologyOptions::default()
    })
    .await
    .unwrap();
    let mut target = target(
        &topology.nodes.iter().collect::<Vec<_>>(),
        &topology.sentinels.iter().collect::<Vec<_>>(),
    );
    // The spec asks for 3, but only one replica exists: 1 is what stays writable.
    target.min_replicas_to_write = 3;
    let report = heal_once(&target).await.unwrap();
    assert!(report.ok(), "{report:?}");
    for node in &topology.nodes {
        let mut c = conn(node).await;
        let pair: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("min-replicas-to-write")
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(pair[1], "1", "on {}", node.addr());
    }
}

#[tokio::test]
async fn a_primary_frozen_past_down_after_refuses_writes_when_it_wakes_and_is_demoted() {
    // SIGSTOP is what a long GC-like stall, a frozen VM or a partition looks like to Sentinel.
    // With min-replicas-to-write the stale primary must refuse writes once its replicas have been
    // silent past min-replicas-max-lag, and then rejoin as a replica.
    let topology = Topology::start(TopologyOptions {
        master_name: MASTER.to_owned(),
        redis_config: "min-replicas-to-write 1\nmin-replicas-max-lag 2\n".to_owned(),
        ..TopologyOptions::default()
    })
    .await
    .unwrap();
    let old = &topology.nodes[0];
    let mut c = conn(old).await;
    redis::cmd("SET")
        .arg("acked")
        .arg("before-the-freeze")
        .query_async::<()>(&mut c)
        .await
        .unwrap();
    let replicas: i64 = redis::cmd("WAIT")
        .arg(2)
        .arg(5000)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(replicas, 2);

    let pid = old.pid().unwrap().to_string();
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal("-STOP");
    let (_, new) = wait_for_failover(
        &topology.sentinels[0],
        MASTER,
        (LOOPBACK, old.port()),
        CONVERGE,
    )
    .await
    .unwrap();
    signal("-CONT");

    // Awake but isolated. Redis recounts its good replicas in its once-a-second replication
    // cron, so for up to about a second after waking it can still accept writes (they are lost
    // when it is demoted); after that every write is refused (NOREPLICAS with
    // min-replicas-to-write, or READONLY once Sentinel or heal has made it a replica).
    let woke = Instant::now();
    let mut stale = conn(old).await;
    let mut accepted = 0;
    let refused = loop {
        match redis::cmd("SET")
            .arg(format!("lost-{accepted}"))
            .arg("write")
            .query_async::<()>(&mut stale)
            .await
        {
            Ok(()) => {
                accepted += 1;
                assert!(
                    woke.elapsed() < Duration::from_secs(3),
                    "the stale primary still accepts writes {:?} after waking",
                    woke.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => break error,
        }
    };
    println!(
        "the woken primary accepted {accepted} writes for {:?} before refusing",
        woke.elapsed()
    );
    let message = refused.to_string();
    assert!(
        message.contains("NOREPLICAS") || message.contains("READONLY"),
        "{message}"
    );

    let target = target(
        &topology.nodes.iter().collect::<Vec<_>>(),
        &topology.sentinels.iter().collect::<Vec<_>>(),
    );
    eventually("the woken primary replicating the new one", || async {
        let report = heal_once(&target).await.map_err(|e| e.to_string())?;
        let role = query_role(&old.addr()).await?;
        if report.primary == Some(endpoint(new)) && role == "slave" && report.applied.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "primary {:?}, old is {role}, applied {:?}",
                report.primary, report.applied
            ))
        }
    })
    .await;
    let new_node = topology.nodes.iter().find(|n| n.port() == new).unwrap();
    let acked: Option<String> = redis::cmd("GET")
        .arg("acked")
        .query_async(&mut conn(new_node).await)
        .await
        .unwrap();
    assert_eq!(acked.as_deref(), Some("before-the-freeze"));
    let lost: Option<String> = redis::cmd("GET")
        .arg("lost-0")
        .query_async(&mut conn(new_node).await)
        .await
        .unwrap();
    assert_eq!(
        lost, None,
        "writes to the stale primary never reach the new one"
    );
}

/// A running topology whose primary (the harness's node 0) is ordinal 1 of the heal target, as
/// `pod-1` would be after a failover: `[replica, primary, replica]`. Waits until both replicas
/// hold the primary's whole stream, so offsets tie — the case where bootstrap's old tie-break
/// (lowest ordinal) promoted `pod-0`.
async fn primary_at_ordinal_1() -> (Topology, HealTarget) {
    let topology = Topology::start(TopologyOptions {
        master_name: MASTER.to_owned(),
        ..TopologyOptions::default()
    })
    .await
    .unwrap();
    let nodes = &topology.nodes;
    let target = target(
        &[&nodes[1], &nodes[0], &nodes[2]],
        &topology.sentinels.iter().collect::<Vec<_>>(),
    );
    (topology, target)
}

async fn replicas_caught_up(topology: &Topology) {
    for replica in &topology.nodes[1..] {
        wait_for_replication_offset(&replica.addr(), &topology.nodes[0].addr(), CONVERGE)
            .await
            .unwrap();
    }
}

/// Asserts that a pass neither promoted nor repointed any data node, and that node 0 of the
/// harness is still the primary with both replicas streaming from it.
async fn nothing_moved(topology: &Topology, report: &Report) {
    let moved: Vec<String> = report
        .applied
        .iter()
        .filter(|a| matches!(a.action, Action::Promote { .. } | Action::ReplicaOf { .. }))
        .map(|a| a.action.to_string())
        .collect();
    assert!(moved.is_empty(), "heal moved the primary: {moved:?}");
    assert_eq!(
        query_role(&topology.nodes[0].addr()).await.unwrap(),
        "master"
    );
    for replica in &topology.nodes[1..] {
        wait_for_sync(&replica.addr(), CONVERGE).await.unwrap();
    }
}

#[tokio::test]
async fn heal_never_bootstraps_over_a_running_primary_while_the_sentinels_do_not_answer() {
    // Issue 16, item 5: "no sentinel answered" (a password mid-rotation, DNS, a NetworkPolicy)
    // is not "no sentinel monitors the store". Treated alike, bootstrap promoted pod-0 of an
    // in-sync store whose primary is pod-1, behind the live sentinels' back.
    let (mut topology, target) = primary_at_ordinal_1().await;
    let sentinel_names: Vec<String> = target.sentinels.iter().map(Endpoint::to_string).collect();

    // The sentinels run and monitor the store, but refuse the operator's password.
    let mut refused = target.clone();
    refused.operator_sentinel_auth = Some(Auth {
        username: "operator".to_owned(),
        password: "not-the-password".to_owned(),
    });
    replicas_caught_up(&topology).await;
    let report = heal_once(&refused).await.unwrap();
    let Decision::Wait { reason } = &report.decision else {
        panic!("expected a wait, got {:?}", report.decision);
    };
    for name in &sentinel_names {
        assert!(reason.contains(name.as_str()), "{reason} names {name}");
    }
    nothing_moved(&topology, &report).await;

    // The sentinels are gone altogether.
    for sentinel in &mut topology.sentinels {
        sentinel.kill9().unwrap();
    }
    replicas_caught_up(&topology).await;
    let report = heal_once(&target).await.unwrap();
    assert!(
        matches!(report.decision, Decision::Wait { .. }),
        "{:?}",
        report.decision
    );
    nothing_moved(&topology, &report).await;
}

#[tokio::test]
async fn sentinels_that_forgot_the_store_are_given_the_running_primary_back_not_node_0() {
    // Every sentinel answers and none monitors the store (their state was lost): bootstrap is
    // right, but the node the replicas stream from wins the offset tie; demoting it would
    // resync every replica and drop the writes in flight.
    let (topology, target) = primary_at_ordinal_1().await;
    for sentinel in &topology.sentinels {
        let mut conn = sentinel.connection().await.unwrap();
        redis::cmd("SENTINEL")
            .arg("REMOVE")
            .arg(MASTER)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }
    replicas_caught_up(&topology).await;
    let report = heal_once(&target).await.unwrap();
    assert!(
        matches!(report.decision, Decision::Bootstrap { .. }),
        "{:?}",
        report.decision
    );
    assert_eq!(report.primary, Some(endpoint(topology.nodes[0].port())));
    assert!(report.ok(), "{report:?}");
    nothing_moved(&topology, &report).await;
    for sentinel in &topology.sentinels {
        assert_eq!(
            sentinel_primary(sentinel).await,
            Some(topology.nodes[0].port())
        );
    }
}
