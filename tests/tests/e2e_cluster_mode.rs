//! End-to-end of cluster mode (`spec.mode: cluster`, issue 20) on a real Kubernetes (the
//! `../shared/k8s` kit with a node running the pods): `abstore-operator run` as a child process
//! with the chart's namespaced RBAC forms a Redis Cluster of pods, the `abstore` library records
//! through the `cluster-url` of the app user's Secret (the pods' DNS names resolve on this
//! machine while the kit runs), a shard primary's redis-server is killed with SIGKILL under
//! `WAIT 1` writers, a configuration change rolls every pod, and the shards go 3 → 4 → 3 under
//! writes. Nothing acknowledged may be
//! lost, nothing counted twice, and the data from before must read back exactly.
//!
//! Without a cluster the test prints one line saying it was skipped and why
//! (`ABSTORE_E2E_REQUIRED=1` makes that a failure, as in CI).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use abstore::connection::Connection;
use abstore::counters::{Event, Outcome, Recorder, RecorderConfig, WaitForReplicas};
use abstore::keys::Granularity;
use abstore::reads::{Metric, Reader};
use abstore_tests::k8s::{self, Cluster, OperatorSetup, poll, store_status};
use abstore_tests::k8s_store::{PodS3, backup_and_prune_now, container_pid};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use serde_json::Value;

/// Six pods pulled, started and formed into a cluster on a loaded 2-core machine.
const CLUSTER_READY: Duration = Duration::from_secs(300);
const STORE: &str = "experiments";

/// The store with `shards` shards and `maxmemory`; `backup` is the `backup:` YAML (column 0).
fn store_yaml(shards: u32, maxmemory: &str, backup: &str) -> String {
    let backup: String = backup.lines().map(|l| format!("  {l}\n")).collect();
    format!(
        "apiVersion: abstore.dev/v1alpha1\nkind: ABStore\nmetadata:\n  name: {STORE}\nspec:\n  mode: cluster\n  cluster:\n    shards: {shards}\n    replicasPerShard: 1\n    nodeTimeoutMilliseconds: 2000\n  redis:\n    maxmemory: {maxmemory}\n{backup}"
    )
}

fn apply(cluster: &Cluster, ns: &str, yaml: &str) -> Result<String, String> {
    cluster.kubectl_with_input(&["apply", "-n", ns, "-f", "-"], Some(yaml))
}

/// The Redis StatefulSet's update revision.
fn update_revision(cluster: &Cluster, ns: &str) -> String {
    cluster
        .kubectl(&[
            "get",
            "statefulset",
            &format!("{STORE}-redis"),
            "-n",
            ns,
            "-o",
            "jsonpath={.status.updateRevision}",
        ])
        .unwrap_or_else(|error| panic!("{error}"))
}

/// The StatefulSet has a revision other than `before`, and every one of its `pods` runs it and
/// is ready (OnDelete: only the operator's deletions get them there).
async fn wait_rolled_out(cluster: &Cluster, ns: &str, before: &str, pods: usize) {
    poll("every pod on the new revision", CLUSTER_READY, || async {
        let out = cluster
            .kubectl(&[
                "get",
                "statefulset",
                &format!("{STORE}-redis"),
                "-n",
                ns,
                "-o",
                "jsonpath={.status.updateRevision} {.status.updatedReplicas} {.status.readyReplicas}",
            ])
            .map_err(|e| e.to_string())?;
        let fields: Vec<&str> = out.split_whitespace().collect();
        let want = pods.to_string();
        if fields.len() == 3 && fields[0] != before && fields[1] == want && fields[2] == want {
            Ok(())
        } else {
            Err(format!("revision, updated, ready: {out} (was {before})"))
        }
    })
    .await
    .unwrap_or_else(|error| panic!("{error}"));
}

/// The store Ready with `shards` shards serving all 16384 slots, every primary with an even
/// share, every shard with an in-sync replica.
async fn wait_shards(cluster: &Cluster, ns: &str, shards: usize) -> Value {
    poll(
        &format!("{shards} shards serving every slot"),
        CLUSTER_READY,
        || async {
            let status = store_status(cluster, ns, STORE)?;
            let primaries: Vec<u32> = status["pods"]
                .as_array()
                .map(|pods| {
                    pods.iter()
                        .filter(|p| p["role"] == "primary")
                        .map(|p| slot_count(p["slots"].as_str().unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default();
            let even = primaries.len() == shards
                && primaries
                    .iter()
                    .all(|&n| n.abs_diff(16_384 / shards as u32) <= 1);
            let failover_ready =
                k8s::condition(&status, "FailoverReady").is_some_and(|c| c["status"] == "True");
            if status["phase"] == "Ready"
                && status["shards"] == format!("{shards}/{shards}").as_str()
                && status["slotsCovered"] == 16_384
                && status["pods"].as_array().map(Vec::len) == Some(shards * 2)
                && even
                && failover_ready
            {
                Ok(status)
            } else {
                Err(format!("primaries' slots {primaries:?}; status: {status}"))
            }
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}"))
}

/// The pods that are primaries.
fn primaries(status: &Value) -> std::collections::BTreeSet<String> {
    status["pods"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["role"] == "primary")
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect()
}

/// Slots in ranges like `0-4095,8000`.
fn slot_count(ranges: &str) -> u32 {
    ranges
        .split(',')
        .filter(|r| !r.is_empty())
        .map(|r| match r.split_once('-') {
            Some((a, b)) => b.parse::<u32>().unwrap() - a.parse::<u32>().unwrap() + 1,
            None => 1,
        })
        .sum()
}

/// The app user's `cluster-url` from its Secret, with the password in a file beside it.
fn app_url(cluster: &Cluster, ns: &str, dir: &std::path::Path) -> String {
    let json = cluster
        .kubectl(&[
            "get",
            "secret",
            &format!("{STORE}-user-app"),
            "-n",
            ns,
            "-o",
            "json",
        ])
        .unwrap_or_else(|error| panic!("{error}"));
    let secret: Value = serde_json::from_str(&json).unwrap();
    let field = |key: &str| {
        use base64::Engine;
        let encoded = secret["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key} in the app Secret: {secret}"));
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap(),
        )
        .unwrap()
    };
    assert!(
        secret["data"].get("sentinel-url").is_none(),
        "a cluster-mode store has no Sentinel URL"
    );
    let file = dir.join("password");
    std::fs::write(&file, field("password")).unwrap();
    let url = field("cluster-url");
    assert!(
        url.starts_with(&format!(
            "redis+cluster://app@{STORE}-cluster.{ns}.svc.cluster.local:6379"
        )),
        "{url}"
    );
    format!("{url}?password_file={}", file.display())
}

/// Four writers recording batches of 20 events with ids under `WAIT 1` until `stop`; each
/// returns its acknowledged (counted or duplicate) and failed events.
fn spawn_writers(
    recorder: &Recorder,
    flag: &'static str,
    now: i64,
    stop: &Arc<AtomicBool>,
    progress: &Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<(usize, usize)>> {
    (0..4)
        .map(|w| {
            let (recorder, stop, progress) = (recorder.clone(), stop.clone(), progress.clone());
            tokio::spawn(async move {
                let (mut acknowledged, mut failed, mut n) = (0, 0, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let batch: Vec<Event> = (0..20)
                        .map(|i| {
                            Event::evaluation(flag, "control", &format!("u{w}-{n}-{i}"), now)
                                .with_event_id(format!("{flag}-{w}-{n}-{i}"))
                        })
                        .collect();
                    match recorder.record_batch(&batch).await {
                        Ok(result) => {
                            for outcome in result.outcomes {
                                match outcome {
                                    Ok(Outcome::Counted | Outcome::Duplicate) => {
                                        acknowledged += 1;
                                        progress.fetch_add(1, Ordering::Relaxed);
                                    }
                                    _ => failed += 1,
                                }
                            }
                        }
                        Err(_) => failed += batch.len(),
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                (acknowledged, failed)
            })
        })
        .collect()
}

/// Waits until the writers acknowledged `more` further events.
async fn written(progress: &AtomicUsize, more: usize) {
    let target = progress.load(Ordering::Relaxed) + more;
    poll(
        "the writers to get further",
        Duration::from_secs(120),
        || async {
            let now = progress.load(Ordering::Relaxed);
            if now >= target {
                Ok(())
            } else {
                Err(format!("{now} of {target} acknowledged"))
            }
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}"));
}

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

async fn count(reader: &Reader, flag: &str, now: i64) -> u64 {
    let series = reader
        .days(&Metric::Evaluations, flag, &["control"], now, now)
        .await
        .unwrap();
    series.total.values().map(|s| s.count).sum()
}

/// The counted events of `flag` equal the acknowledged ones, at most plus the failed ones
/// (whose outcome is unknown): nothing acknowledged lost, nothing counted twice.
async fn assert_exact(reader: &Reader, flag: &str, now: i64, (acked, failed): (usize, usize)) {
    let counted = poll(
        "the counts to be readable",
        Duration::from_secs(60),
        || async { Ok::<_, String>(count(reader, flag, now).await) },
    )
    .await
    .unwrap();
    let counted = usize::try_from(counted).unwrap();
    println!("{flag}: {acked} acknowledged, {failed} failed, {counted} counted");
    assert!(acked > 0, "{flag}: nothing was acknowledged");
    assert!(
        counted >= acked,
        "{flag}: {} acknowledged events lost ({acked} acknowledged, {counted} counted)",
        acked - counted
    );
    assert!(
        counted <= acked + failed,
        "{flag}: {counted} counted exceeds {acked} acknowledged + {failed} failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_mode_store_forms_from_pods_and_loses_nothing_to_a_killed_primary_a_rollout_or_3_4_3_shards()
 {
    let Some(cluster) = k8s::cluster_with_node("cluster mode") else {
        return;
    };
    let setup = OperatorSetup::start(cluster, "cluster-mode", "").await;
    let ns = setup.ns.name.as_str();

    // Backups go to S3 on this machine (reached from the pods on the node IP).
    let s3 = PodS3::start(cluster, "backups").await;
    let backup = s3.backup_spec(cluster, ns, "backup-s3", "cluster");

    // Formed by the operator from six pods: three shards, an even split, a replica each.
    apply(cluster, ns, &store_yaml(3, "128Mi", &backup)).unwrap_or_else(|error| panic!("{error}"));
    let status = wait_shards(cluster, ns, 3).await;
    let columns = cluster
        .kubectl(&["get", "abstore", STORE, "-n", ns])
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(
        columns.contains("SHARDS") && columns.contains("SLOTS") && columns.contains("3/3"),
        "{columns}"
    );
    assert!(status.get("sentinels").is_none(), "{status}");
    // What cannot change on a running cluster is refused by the API server, naming the field.
    for (patch, field) in [
        (
            r#"{"spec":{"cluster":{"replicasPerShard":2}}}"#,
            "replicasPerShard",
        ),
        (r#"{"spec":{"mode":"sentinel"}}"#, "spec.mode"),
    ] {
        let refused = cluster
            .kubectl(&[
                "patch",
                "abstore",
                STORE,
                "-n",
                ns,
                "--type=merge",
                "-p",
                patch,
            ])
            .expect_err("an immutable field was changed");
        assert!(refused.contains(field), "{patch}: {refused}");
    }

    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::open(&app_url(cluster, ns, dir.path()))
        .await
        .unwrap_or_else(|error| panic!("the library through the Secret's cluster-url: {error}"));
    let reader = Reader::new(conn.clone(), None, Granularity::Hour);
    let now = chrono::Utc::now().timestamp();
    // Data from before: 3 000 events of 1 000 users, read back exactly at the end.
    let plain = Recorder::new(conn.clone(), RecorderConfig::default()).unwrap();
    let before: Vec<Event> = (0..3000)
        .map(|i| {
            Event::evaluation("before", "control", &format!("user-{}", i % 1000), now)
                .with_event_id(format!("before-{i}"))
        })
        .collect();
    for chunk in before.chunks(500) {
        let result = plain.record_batch(chunk).await.unwrap();
        assert!(
            result
                .outcomes
                .iter()
                .all(|o| matches!(o, Ok(Outcome::Counted))),
            "{:?}",
            result.outcomes
        );
    }
    assert_eq!(count(&reader, "before", now).await, 3000);

    let durable = Recorder::new(
        conn.clone(),
        RecorderConfig {
            wait_for_replicas: Some(WaitForReplicas {
                replicas: 1,
                timeout: Duration::from_millis(500),
            }),
            ..RecorderConfig::default()
        },
    )
    .unwrap();

    // kill -9 of a shard primary's redis-server under writes: the kubelet restarts it.
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicUsize::new(0));
    let writers = spawn_writers(&durable, "killed", now, &stop, &progress);
    let primary = status["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["role"] == "primary")
        .and_then(|p| p["name"].as_str())
        .unwrap()
        .to_owned();
    let client = cluster.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let uid = pods.get(&primary).await.unwrap().metadata.uid.unwrap();
    let pid = container_pid(&uid, "redis-server")
        .unwrap_or_else(|| panic!("no redis-server of {primary} on this machine"));
    written(&progress, 1000).await;
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // Back to a whole cluster (the restarted node is primary again or its shard's replica).
    poll("the killed node to be back", CLUSTER_READY, || async {
        let pod = pods.get(&primary).await.map_err(|e| e.to_string())?;
        let restarts = pod
            .status
            .and_then(|s| s.container_statuses)
            .and_then(|c| c.into_iter().find(|c| c.name == "redis"))
            .map(|c| c.restart_count)
            .unwrap_or_default();
        if restarts >= 1 {
            Ok(())
        } else {
            Err(format!("{primary}: {restarts} restarts"))
        }
    })
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    wait_shards(cluster, ns, 3).await;
    written(&progress, 1000).await;
    let totals = stop_writers(&stop, writers).await;
    assert_exact(&reader, "killed", now, totals).await;

    // A configuration change rolls every pod under writes: replicas first, each shard's primary
    // moved away with CLUSTER FAILOVER before its pod is deleted.
    let stop = Arc::new(AtomicBool::new(false));
    let primaries_before = primaries(&wait_shards(cluster, ns, 3).await);
    let writers = spawn_writers(&durable, "rollout", now, &stop, &progress);
    written(&progress, 500).await;
    let before = update_revision(cluster, ns);
    apply(cluster, ns, &store_yaml(3, "160Mi", &backup)).unwrap_or_else(|error| panic!("{error}"));
    wait_rolled_out(cluster, ns, &before, 6).await;
    wait_shards(cluster, ns, 3).await;
    written(&progress, 500).await;
    let totals = stop_writers(&stop, writers).await;
    assert_exact(&reader, "rollout", now, totals).await;
    let restarts = cluster
        .kubectl(&[
            "get",
            "events",
            "-n",
            ns,
            "--field-selector=reason=RollingRestart",
            "-o",
            "name",
        ])
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(
        restarts.lines().count() >= 6,
        "every pod restarted by the operator: {restarts}"
    );
    let after = primaries(&store_status(cluster, ns, STORE).unwrap());
    assert!(
        after.is_disjoint(&primaries_before),
        "each shard's primary moves to its replica before its pod restarts: {primaries_before:?} then {after:?}"
    );

    // Resharding under writes: 3 → 4 (two pods added, a quarter of the slots moved) → 3 (the
    // fourth shard emptied before its pods and claims go).
    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(&durable, "reshard", now, &stop, &progress);
    for shards in [4, 3] {
        apply(cluster, ns, &store_yaml(shards, "160Mi", &backup))
            .unwrap_or_else(|error| panic!("{error}"));
        wait_shards(cluster, ns, shards as usize).await;
    }
    let totals = stop_writers(&stop, writers).await;
    assert_exact(&reader, "reshard", now, totals).await;
    assert_eq!(
        count(&reader, "before", now).await,
        3000,
        "data from before"
    );
    // The removed shard's pods and claims are gone.
    poll(
        "the fourth shard's pods and claims to go",
        CLUSTER_READY,
        || async {
            let left = cluster
                .kubectl(&["get", "pods,pvc", "-n", ns, "-o", "name"])
                .map_err(|e| e.to_string())?;
            if left.contains("redis-6") || left.contains("redis-7") {
                Err(left)
            } else {
                Ok(())
            }
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}"));

    // The CronJobs from the jobs image, through the cluster URL: a backup of every shard (read
    // from their replicas, one manifest) that the CLI verifies from S3, and a prune.
    k8s::import_images().unwrap_or_else(|error| panic!("{error}"));
    let run = backup_and_prune_now(cluster, ns, STORE).await;
    let keys = run.backup_summary["keys"].as_u64().unwrap_or_default();
    assert!(keys >= 3000, "backup summary: {}", run.backup_summary);
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_abstore-jobs-cli"))
        .args(["verify", "--from", "s3://backups/cluster"])
        .envs(s3.server.env())
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    println!("backup of every shard: {}", run.backup_summary);
    drop(setup);
}
