//! Cluster mode end to end with the binaries a user runs (issue 20): `abstore-operator local up`
//! on docs/examples/cluster.yaml (`mode: cluster`) starts 3 shards × 1 replica of real cluster-mode redis-servers
//! from the rendered redis.conf and forms the cluster (the operator's planner); `local status`
//! shows every slot served; the `abstore` library records and reads through the printed
//! `redis+cluster://` URL (exact counts, dedup, keys on every shard); a shard primary killed
//! with `kill -9` under continuous writes with `WAIT 1` loses no acknowledged event, the cluster
//! fails over and `local up` brings the old primary back as a replica; Ctrl-C stops everything.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use abstore::connection::Connection;
use abstore::counters::{Event, Outcome, Recorder, RecorderConfig, WaitForReplicas};
use abstore::keys::Granularity;
use abstore::reads::{Metric, Reader};
use abstore_operator::local::Layout;
use abstore_tests::local_store::KillOnDrop;
use abstore_tests::local_store::LocalUp as Up;
use serde_json::Value;

/// The documented cluster example (3 shards × 1 replica, node timeout 2 s).
fn example() -> PathBuf {
    abstore_tests::repo_root().join("docs/examples/cluster.yaml")
}

/// Polls `local status` until every slot is served by three primaries, each with one
/// replica attached, every member running.
fn wait_formed(up: &mut Up, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = up.child.try_wait().unwrap() {
            panic!("local up exited ({status}):\n{}", up.log());
        }
        if up.dir.join("state.json").exists() {
            let status = up.status();
            let nodes = status["nodes"].as_array().cloned().unwrap_or_default();
            let primaries = nodes.iter().filter(|n| n["role"] == "primary").count();
            let replicas = nodes
                .iter()
                .filter(|n| {
                    n["role"]
                        .as_str()
                        .is_some_and(|r| r.starts_with("replica of 127.0.0.1:"))
                })
                .count();
            let running = nodes.iter().all(|n| n["running"] == true);
            if status["slots_covered"] == 16384 && primaries == 3 && replicas == 3 && running {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "cluster not formed after {within:?}: {status:#}\n{}",
                up.log()
            );
        } else {
            assert!(
                Instant::now() < deadline,
                "no state after {within:?}:\n{}",
                up.log()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn events(flag: &str, users: usize, per_user: usize, id_prefix: &str, now: i64) -> Vec<Event> {
    let mut out = Vec::new();
    for u in 0..users {
        for e in 0..per_user {
            let variation = if u % 2 == 0 { "control" } else { "treatment" };
            out.push(
                Event::evaluation(flag, variation, &format!("user-{u}"), now)
                    .with_event_id(format!("{id_prefix}-{u}-{e}")),
            );
        }
    }
    out
}

async fn total(reader: &Reader, flag: &str, now: i64) -> (u64, u64) {
    let series = reader
        .days(
            &Metric::Evaluations,
            flag,
            &["control", "treatment"],
            now,
            now,
        )
        .await
        .unwrap();
    series
        .total
        .values()
        .fold((0, 0), |(c, u), s| (c + s.count, u + s.users))
}

/// A recorder that has every batch acknowledged by a replica (`WAIT 1`, 500 ms).
fn durable(conn: &Connection) -> Recorder {
    Recorder::new(
        conn.clone(),
        RecorderConfig {
            wait_for_replicas: Some(WaitForReplicas {
                replicas: 1,
                timeout: Duration::from_millis(500),
            }),
            ..RecorderConfig::default()
        },
    )
    .unwrap()
}

/// Four writers recording batches of 20 `flag` events, each with its own id, until `stop`,
/// pausing `pace` between batches; each returns how many of its events were acknowledged
/// (counted or duplicate) and failed.
fn spawn_writers(
    recorder: &Recorder,
    flag: &'static str,
    now: i64,
    stop: &Arc<AtomicBool>,
    pace: Duration,
) -> Vec<tokio::task::JoinHandle<(usize, usize)>> {
    (0..4)
        .map(|w| {
            let (recorder, stop) = (recorder.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut acknowledged, mut failed, mut n) = (0, 0, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    let batch: Vec<Event> = (0..20)
                        .map(|i| {
                            n += 1;
                            Event::evaluation(flag, "control", &format!("u{w}-{n}-{i}"), now)
                                .with_event_id(format!("{flag}-{w}-{n}"))
                        })
                        .collect();
                    for outcome in recorder.record_batch(&batch).await.unwrap().outcomes {
                        match outcome {
                            Ok(Outcome::Counted | Outcome::Duplicate) => acknowledged += 1,
                            _ => failed += 1,
                        }
                    }
                    tokio::time::sleep(pace).await;
                }
                (acknowledged, failed)
            })
        })
        .collect()
}

/// Stops the writers: acknowledged and failed events of them all.
async fn stop_writers(
    stop: &AtomicBool,
    writers: Vec<tokio::task::JoinHandle<(usize, usize)>>,
) -> (usize, usize) {
    stop.store(true, Ordering::Relaxed);
    let mut totals = (0, 0);
    for writer in writers {
        let (a, f) = writer.await.unwrap();
        totals.0 += a;
        totals.1 += f;
    }
    totals
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_up_runs_a_cluster_the_library_records_through_and_a_killed_primary_loses_nothing() {
    let work = tempfile::tempdir().unwrap();
    let spec = example();
    let dir = work.path().join("store");
    let _cleanup = KillOnDrop(dir.clone());
    let mut up = Up::start(&spec, &dir);
    let status = wait_formed(&mut up, Duration::from_secs(120));
    let url = status["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("redis+cluster://app@127.0.0.1:"), "{url}");

    // Record through the printed URL: 2 000 users, 3 events each, sent twice (the second
    // delivery is all duplicates).
    let conn = Connection::open(&url).await.unwrap();
    assert!(conn.is_cluster());
    let recorder = Recorder::new(conn.clone(), RecorderConfig::default()).unwrap();
    let now = chrono::Utc::now().timestamp();
    let batch = events("checkout", 2000, 3, "a", now);
    for (delivery, expected) in [(1, Outcome::Counted), (2, Outcome::Duplicate)] {
        for chunk in batch.chunks(1000) {
            let result = recorder.record_batch(chunk).await.unwrap();
            for outcome in result.outcomes {
                assert_eq!(outcome.unwrap(), expected, "delivery {delivery}");
            }
        }
    }
    let reader = Reader::new(conn.clone(), None, Granularity::Hour);
    let (count, users) = total(&reader, "checkout", now).await;
    assert_eq!(count, 6000, "every event counted once");
    assert!(
        (1960..=2040).contains(&users),
        "unique users {users} not within 2 % of 2000"
    );
    // The flag's partitions spread over every shard.
    let status = up.status();
    for node in status["nodes"].as_array().unwrap() {
        if node["role"] == "primary" {
            assert!(
                node["keys"].as_u64().unwrap() > 0,
                "a primary without keys: {node}"
            );
        }
    }

    // kill -9 a shard primary while writers record with WAIT 1.
    let victim = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["role"] == "primary")
        .unwrap()
        .clone();
    let victim_pid = victim["pid"].as_u64().unwrap();
    let victim_addr = victim["address"].as_str().unwrap().to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(&durable(&conn), "kill", now, &stop, Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed_at = Instant::now();
    std::process::Command::new("kill")
        .args(["-9", &victim_pid.to_string()])
        .status()
        .unwrap();
    // The cluster promotes the replica; local up restarts the old primary as its replica.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let status = up.status();
        let back = status["nodes"].as_array().unwrap().iter().any(|n| {
            n["address"] == victim_addr.as_str()
                && n["running"] == true
                && n["role"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("replica of"))
        });
        if back && status["slots_covered"] == 16384 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the killed primary did not come back as a replica: {status:#}\n{}",
            up.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let recovered = killed_at.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (acknowledged, failed) = stop_writers(&stop, writers).await;
    let (count, _) = {
        let series = reader
            .days(&Metric::Evaluations, "kill", &["control"], now, now)
            .await
            .unwrap();
        let s = series.total["control"];
        (s.count, s.users)
    };
    let count = usize::try_from(count).unwrap();
    assert!(acknowledged > 0);
    assert!(
        count >= acknowledged && count <= acknowledged + failed,
        "counted {count}, acknowledged {acknowledged}, failed {failed}: an acknowledged event was lost or one counted twice"
    );
    eprintln!(
        "kill -9 of {victim_addr}: back as a replica after {recovered:?}; acknowledged {acknowledged}, failed {failed}, counted {count}"
    );

    // Ctrl-C: local up stops every member.
    let exit = up.interrupt(Duration::from_secs(30));
    assert!(exit.success(), "{exit}\n{}", up.log());
    let status = up.status();
    assert!(
        status["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["running"] == false),
        "{status:#}"
    );
}

/// TLS only: the cluster forms over a TLS bus, clients get a `rediss+cluster://` URL with the
/// CA, plaintext is refused, the library and a backup from the replicas work over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tls_cluster_forms_over_tls_and_serves_only_tls() {
    use abstore_operator::local::{self, ClusterSupervisor};

    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("tls.yaml");
    let example = std::fs::read_to_string(example()).unwrap();
    std::fs::write(&spec, format!("{example}  tls:\n    enabled: true\n")).unwrap();
    let dir = work.path().join("store");
    let _cleanup = KillOnDrop(dir.clone());
    let supervisor = ClusterSupervisor::up(&spec, &dir).await.unwrap();
    let layout = supervisor.layout().clone();
    let state = supervisor.state().clone();
    assert!(state.tls);
    let url = local::app_url(&layout, &state);
    assert!(
        url.starts_with("rediss+cluster://app@127.0.0.1:") && url.contains("ca_file="),
        "{url}"
    );
    let status = local::status(&layout).await.unwrap();
    assert_eq!(status.slots_covered, Some(16384), "{status:?}");
    assert!(status.tls.is_some(), "{status:?}");

    // Plaintext to a node's port is refused (it speaks TLS only).
    let port = state.nodes[0].port;
    let plain = async {
        let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .unwrap()
            .get_multiplexed_async_connection()
            .await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    let plain = tokio::time::timeout(Duration::from_secs(5), plain).await;
    assert!(!matches!(plain, Ok(Ok(_))), "plaintext answered: {plain:?}");

    let conn = Connection::open(&url).await.unwrap();
    let recorder = Recorder::new(conn.clone(), RecorderConfig::default()).unwrap();
    let now = chrono::Utc::now().timestamp();
    let result = recorder
        .record_batch(&events("tls", 500, 2, "t", now))
        .await
        .unwrap();
    assert!(
        result
            .outcomes
            .iter()
            .all(|o| matches!(o, Ok(Outcome::Counted)))
    );
    let reader = Reader::new(conn, None, Granularity::Hour);
    assert_eq!(total(&reader, "tls", now).await.0, 1000);

    // A backup from one replica per shard over TLS (the CA from the URL).
    let backup_url = local::role_url(&layout, &state, abstore_operator::credentials::Role::Backup);
    let to = abstore_jobs::storage::Location::parse(&format!(
        "file://{}",
        work.path().join("backups").display()
    ))
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let summary = loop {
        // The primaries learn their replicas by gossip: retried until each shard has one.
        let options = abstore_jobs::backup::BackupOptions {
            from_replica: true,
            ..abstore_jobs::backup::BackupOptions::new(backup_url.clone(), to.clone())
        };
        match abstore_jobs::backup::run(&options).await {
            Ok(summary) if summary.keys > 0 => break summary,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "no backup from the replicas: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    assert_eq!(summary.source.server.split(',').count(), 3, "{summary:?}");
    supervisor.stop().await.unwrap();
}

/// An edited configuration is rolled out under writes: every replica restarted, every primary
/// moved away by `CLUSTER FAILOVER` first, nothing acknowledged lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edited_file_rolls_replicas_then_fails_primaries_over_without_losing_writes() {
    use abstore_operator::cluster::rollout::RolloutStep;
    use abstore_operator::local::{self, ClusterSupervisor};

    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("roll.yaml");
    let example = std::fs::read_to_string(example()).unwrap();
    std::fs::write(&spec, &example).unwrap();
    let dir = work.path().join("store");
    let _cleanup = KillOnDrop(dir.clone());
    let mut supervisor = ClusterSupervisor::up(&spec, &dir).await.unwrap();
    let layout = supervisor.layout().clone();
    let state = supervisor.state().clone();
    let conn = Connection::open(&local::app_url(&layout, &state))
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(&durable(&conn), "roll", now, &stop, Duration::ZERO);

    // maxmemory 300Mi: a change of every member's redis.conf.
    std::fs::write(&spec, format!("{example}  redis:\n    maxmemory: 300Mi\n")).unwrap();
    let (mut restarts, mut failovers) = (BTreeSet::new(), BTreeSet::new());
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        supervisor.heal_pass().await.unwrap();
        match supervisor.last_step() {
            Some(RolloutStep::RestartReplica { endpoint, .. }) => {
                restarts.insert(endpoint.to_string());
            }
            Some(RolloutStep::Failover { primary, .. }) => {
                failovers.insert(primary.to_string());
            }
            Some(RolloutStep::RestartPrimary { .. }) => panic!("a primary restarted in place"),
            _ => {}
        }
        if supervisor.last_step() == Some(&RolloutStep::Done) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rollout not done: {:?}",
            supervisor.last_step()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (acknowledged, failed) = stop_writers(&stop, writers).await;
    assert_eq!(
        restarts.len(),
        6,
        "every member restarted once: {restarts:?}"
    );
    assert_eq!(
        failovers.len(),
        3,
        "every primary moved away first: {failovers:?}"
    );
    let password = std::fs::read_to_string(layout.credential_file("operator")).unwrap();
    for node in &supervisor.state().nodes {
        let mut con = redis::Client::open(format!(
            "redis://operator:{}@127.0.0.1:{}",
            password.trim(),
            node.port
        ))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
        let (_, max): (String, u64) = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory")
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(max, 300 * 1024 * 1024, "node {}", node.port);
    }
    let reader = Reader::new(conn, None, Granularity::Hour);
    let counted = reader
        .days(&Metric::Evaluations, "roll", &["control"], now, now)
        .await
        .unwrap()
        .total["control"]
        .count;
    let counted = usize::try_from(counted).unwrap();
    assert!(acknowledged > 0);
    assert!(
        counted >= acknowledged && counted <= acknowledged + failed,
        "counted {counted}, acknowledged {acknowledged}, failed {failed}"
    );
    eprintln!(
        "rolled 6 members (3 failovers) under writes: acknowledged {acknowledged}, failed {failed}, counted {counted}"
    );
    supervisor.stop().await.unwrap();
}

/// Resharding 3 → 4 → 3 → 4 under writes: new shards are started and given a quarter of the
/// slots, then emptied and stopped, and added again; every event recorded before and during
/// counts exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resharding_three_to_four_to_three_to_four_under_writes_loses_and_doubles_nothing() {
    use abstore_operator::local::{self, ClusterSupervisor};

    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("reshard.yaml");
    let example = std::fs::read_to_string(example()).unwrap();
    std::fs::write(&spec, &example).unwrap();
    let dir = work.path().join("store");
    let _cleanup = KillOnDrop(dir.clone());
    let mut supervisor = ClusterSupervisor::up(&spec, &dir).await.unwrap();
    let layout = supervisor.layout().clone();
    let state = supervisor.state().clone();
    let conn = Connection::open(&local::app_url(&layout, &state))
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    // Data from before: 6 000 events (3 per user), read back exactly at the end.
    let recorder = Recorder::new(conn.clone(), RecorderConfig::default()).unwrap();
    for chunk in events("before", 2000, 3, "b", now).chunks(1000) {
        let result = recorder.record_batch(chunk).await.unwrap();
        assert!(
            result
                .outcomes
                .iter()
                .all(|o| matches!(o, Ok(Outcome::Counted)))
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    // Paced (about 800 events/s in all): every event leaves a dedup flag to migrate.
    let writers = spawn_writers(
        &durable(&conn),
        "reshard",
        now,
        &stop,
        Duration::from_millis(100),
    );
    let started = Instant::now();

    let status_of = |layout: Layout| async move { local::status(&layout).await.unwrap() };
    // Grown, shrunk, and grown again: the shard added last starts empty (the removed one's
    // directory is gone), so nothing stale meets the keys moved to it.
    for (shards, edit) in [
        (4usize, "    shards: 4\n"),
        (3, "    shards: 3\n"),
        (4, "    shards: 4\n"),
    ] {
        std::fs::write(&spec, example.replace("    shards: 3\n", edit)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            supervisor.heal_pass().await.unwrap();
            let status = status_of(layout.clone()).await;
            let primaries: Vec<u32> = status
                .nodes
                .iter()
                .filter(|n| n.role.as_deref() == Some("primary"))
                .map(|n| {
                    n.slots
                        .as_deref()
                        .unwrap_or_default()
                        .split(',')
                        .filter(|r| !r.is_empty())
                        .map(|r| match r.split_once('-') {
                            Some((a, b)) => {
                                b.parse::<u32>().unwrap() - a.parse::<u32>().unwrap() + 1
                            }
                            None => 1,
                        })
                        .sum()
                })
                .collect();
            let even = primaries.len() == shards
                && primaries
                    .iter()
                    .all(|&n| n.abs_diff(16_384 / shards as u32) <= 1);
            if even
                && status.slots_covered == Some(16_384)
                && status.nodes.len() == shards * 2
                && status.nodes.iter().all(|n| n.running)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not resharded to {shards}: {primaries:?} {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let (acknowledged, failed) = stop_writers(&stop, writers).await;
    let reader = Reader::new(conn.clone(), None, Granularity::Hour);
    assert_eq!(
        total(&reader, "before", now).await.0,
        6000,
        "data from before"
    );
    let counted = reader
        .days(&Metric::Evaluations, "reshard", &["control"], now, now)
        .await
        .unwrap()
        .total["control"]
        .count;
    let counted = usize::try_from(counted).unwrap();
    assert!(acknowledged > 0);
    assert!(
        counted >= acknowledged && counted <= acknowledged + failed,
        "counted {counted}, acknowledged {acknowledged}, failed {failed}: lost or double counted"
    );
    eprintln!(
        "resharded 3 -> 4 -> 3 -> 4 under writes in {:?}: acknowledged {acknowledged}, failed {failed}, counted {counted}",
        started.elapsed()
    );
    supervisor.stop().await.unwrap();
}
