//! End-to-end: `abstore-operator run` as a child process against a real Kubernetes (the
//! `../shared/k8s` kit: a v1.28 control plane and a node whose kubelet runs the pods on
//! containerd), authenticated as the chart's ServiceAccount with only the chart's namespaced
//! RBAC (`watchNamespace` set: a Role in the test's namespace). Each test has a namespace of
//! its own, so tests run side by side; see `e2e_cluster.rs` for the cluster-wide variant.
//!
//! Without a cluster each test prints one line saying it was skipped and why
//! (`ABSTORE_E2E_REQUIRED=1` makes that a failure, as in CI).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use abstore_operator::crd::ABStore;
use abstore_tests::k8s::{
    self, Cluster, OperatorInstall, OperatorProcess, OperatorSetup, STORE_READY, TestNamespace,
    condition, endpoint_ips, example, poll, rendered_objects, store_status, wait_failover_ready,
    wait_store_ready,
};
use abstore_tests::k8s_store::{
    AppAccess, PodS3, app_access, backup_and_prune_now, container_pid, counter_key, write_more,
};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::Value;

const OPERATOR_READY: Duration = Duration::from_secs(60);

/// The namespace, the chart's namespaced RBAC and a running operator, dropped in field order:
/// the operator stops before its RBAC and the namespace go.
#[allow(dead_code)]
struct Setup {
    operator: OperatorProcess,
    install: OperatorInstall,
    ns: TestNamespace,
    cluster: &'static Cluster,
}

async fn setup(test: &str, cluster: &'static Cluster, extra_values: &str) -> Setup {
    let OperatorSetup {
        operator,
        install,
        ns,
    } = OperatorSetup::start(cluster, test, extra_values).await;
    Setup {
        cluster,
        ns,
        install,
        operator,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_starts_with_the_charts_rbac_and_brings_up_the_minimal_store() {
    // The path of every new user: the chart's RBAC, `abstore-operator run`, the minimal example.
    // The last round panicked at start on a real API server; this is the test that would have
    // seen it. Every object must exist with an owner reference, the status and printer columns
    // must be filled in, and `<n>-primary` must route to exactly the primary.
    let Some(cluster) = k8s::cluster_with_node("minimal store") else {
        return;
    };
    let setup = setup("minimal", cluster, "").await;
    let ns = setup.ns.name.as_str();
    cluster
        .kubectl_with_input(&["apply", "-n", ns, "-f", "-"], Some(&example("minimal")))
        .unwrap_or_else(|error| panic!("{error}"));
    let status = wait_store_ready(cluster, ns, "experiments").await;
    let primary = status["primary"].as_str().unwrap_or_default().to_owned();

    // Every object `abstore-operator render` lists for this file exists, owned by the store.
    let uid = cluster
        .kubectl(&[
            "get",
            "abstore",
            "experiments",
            "-n",
            ns,
            "-o",
            "jsonpath={.metadata.uid}",
        ])
        .unwrap_or_else(|error| panic!("{error}"));
    let rendered = rendered_objects(&example("minimal"), ns);
    assert!(rendered.len() >= 20, "render listed only {rendered:?}");
    for (kind, name) in &rendered {
        let owner = cluster
            .kubectl(&[
                "get",
                kind,
                name,
                "-n",
                ns,
                "-o",
                "jsonpath={.metadata.ownerReferences[0].uid}",
            ])
            .unwrap_or_else(|error| panic!("{kind}/{name}: {error}"));
        assert_eq!(owner, uid, "{kind}/{name} is not owned by the ABStore");
    }

    // Conditions and printer columns.
    for (type_, expected) in [
        ("Ready", "True"),
        ("PrimaryAvailable", "True"),
        ("InvalidSpec", "False"),
        ("Degraded", "False"),
    ] {
        let found = condition(&status, type_).unwrap_or_else(|| panic!("no {type_} in {status}"));
        assert_eq!(found["status"], expected, "{type_}: {found}");
    }
    let table = cluster
        .kubectl(&["get", "abs", "experiments", "-n", ns, "--no-headers"])
        .unwrap_or_else(|error| panic!("{error}"));
    let columns: Vec<&str> = table.split_whitespace().collect();
    assert_eq!(columns.first(), Some(&"experiments"), "{table}");
    assert!(
        columns.contains(&primary.as_str()),
        "no primary column: {table}"
    );
    assert!(columns.contains(&"3/3"), "no ready columns: {table}");

    // `<n>-primary` routes to exactly the pod Sentinel elected.
    let client = cluster.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let primary_ip = pods
        .get(&primary)
        .await
        .ok()
        .and_then(|pod| pod.status?.pod_ip)
        .unwrap_or_else(|| panic!("primary pod {primary} has no IP"));
    let routed = poll(
        "exactly one endpoint, the primary",
        Duration::from_secs(30),
        || async {
            let ips = endpoint_ips(&client, ns, "experiments-primary").await;
            if ips == [primary_ip.clone()] {
                Ok(ips)
            } else {
                Err(format!("experiments-primary routes to {ips:?}"))
            }
        },
    )
    .await;
    routed.unwrap_or_else(|error| panic!("{error}"));
    let labelled = pods
        .list(&ListParams::default().labels("abstore.dev/role=primary"))
        .await
        .map(|list| list.items.len())
        .unwrap_or_default();
    assert_eq!(labelled, 1, "pods labelled primary");

    // Memory: the default maxmemory in the running server, and the container limit the formula
    // gives for it (abstore_operator::memory), as the kubelet applied it.
    let exporter = abstore_tests::k8s_store::user_access(cluster, ns, "experiments", "exporter");
    let mut conn = redis::Client::open(exporter.primary_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        info.lines()
            .any(|l| l.trim()
                == format!("maxmemory:{}", abstore_operator::memory::DEFAULT_MAXMEMORY)),
        "the primary's maxmemory: {info}"
    );
    let limit = cluster
        .kubectl(&[
            "get",
            "pod",
            &primary,
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.containers[?(@.name==\"redis\")].resources.limits.memory}",
        ])
        .unwrap();
    let expected = abstore_operator::memory::limit_for(abstore_operator::memory::DEFAULT_MAXMEMORY);
    assert_eq!(
        limit,
        format!("{}Mi", expected / abstore_operator::memory::MIB)
    );

    // Events: what was applied, and no warning on the way to Ready.
    let events = cluster
        .kubectl(&[
            "get",
            "events",
            "-n",
            ns,
            "--field-selector=involvedObject.kind=ABStore",
            "-o",
            "jsonpath={range .items[*]}{.type}/{.reason} {end}",
        ])
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(
        events.split_whitespace().any(|e| e == "Normal/Applied"),
        "no Applied Event: {events}"
    );
    assert!(
        !events.contains("Warning/"),
        "warnings on the way to Ready: {events}"
    );
    drop(setup);
}

// ---------------------------------------------------------------------------------------------
// Helpers of the tests with pods running.

/// A store named `experiments` with `spec` (YAML, indented under `spec:`).
fn store_yaml(spec: &str) -> String {
    let spec: String = spec.lines().map(|line| format!("  {line}\n")).collect();
    format!(
        "apiVersion: abstore.dev/v1alpha1\nkind: ABStore\nmetadata:\n  name: experiments\nspec:\n{spec}"
    )
}

/// Sentinel settings that fail over within seconds (production waits 5 s before calling a
/// primary down).
const FAST_SENTINEL: &str =
    "sentinel:\n  downAfterMilliseconds: 1000\n  failoverTimeoutMilliseconds: 10000\n";

fn apply_store(cluster: &Cluster, ns: &str, yaml: &str) {
    cluster
        .kubectl_with_input(&["apply", "-n", ns, "-f", "-"], Some(yaml))
        .unwrap_or_else(|error| panic!("{error}"));
}

/// The store's status once `validate` refused it (phase Invalid).
async fn wait_invalid(cluster: &Cluster, ns: &str) -> Value {
    poll("InvalidSpec", Duration::from_secs(60), || async {
        let status = store_status(cluster, ns, "experiments")?;
        if status["phase"] == "Invalid" {
            Ok(status)
        } else {
            Err(format!("{status}"))
        }
    })
    .await
    .unwrap_or_else(|error| panic!("{error}"))
}

fn patch_store(cluster: &Cluster, ns: &str, patch: &str) {
    cluster
        .kubectl(&[
            "patch",
            "abstore",
            "experiments",
            "-n",
            ns,
            "--type=merge",
            "-p",
            patch,
        ])
        .unwrap_or_else(|error| panic!("{error}"));
}

/// The primary the sentinels name (`host`), asked through the `<n>-sentinel` Service as the
/// app user, as the library does.
async fn sentinel_primary(ns: &str, access: &AppAccess) -> Result<String, String> {
    let url = format!(
        "redis://app:{}@experiments-sentinel.{ns}.svc.cluster.local:26379",
        access.password
    );
    let client = redis::Client::open(url).map_err(|error| error.to_string())?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(1)));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|error| error.to_string())?;
    let reply: Vec<String> = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg(&access.master)
        .query_async(&mut conn)
        .await
        .map_err(|error| error.to_string())?;
    reply
        .into_iter()
        .next()
        .ok_or_else(|| "no primary".to_owned())
}

/// The pod name of a Redis pod FQDN (`experiments-redis-1.experiments-redis-headless...`).
fn pod_of(host: &str) -> String {
    host.split('.').next().unwrap_or_default().to_owned()
}

fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

async fn pod(client: &kube::Client, ns: &str, name: &str) -> Option<Pod> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()
        .flatten()
}

/// The IP of pod `name` while it is Ready.
async fn ready_ip(client: &kube::Client, ns: &str, name: &str) -> Option<String> {
    let pod = pod(client, ns, name).await?;
    let status = pod.status?;
    let ready = status
        .conditions
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    ready.then_some(status.pod_ip).flatten()
}

/// Warning Events on the store, as `reason: note` lines.
fn warnings(cluster: &Cluster, ns: &str) -> Vec<String> {
    cluster
        .kubectl(&[
            "get",
            "events",
            "-n",
            ns,
            "--field-selector=involvedObject.kind=ABStore,type=Warning",
            "-o",
            "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
        ])
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Event reasons on the store, oldest first, with their counts folded out.
fn event_reasons(cluster: &Cluster, ns: &str) -> Vec<String> {
    cluster
        .kubectl(&[
            "get",
            "events",
            "-n",
            ns,
            "--field-selector=involvedObject.kind=ABStore",
            "--sort-by=.metadata.creationTimestamp",
            "-o",
            "jsonpath={range .items[*]}{.reason}={.message}{\"\\n\"}{end}",
        ])
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The operator's reconcile count so far.
fn reconciles(operator: &OperatorProcess) -> f64 {
    operator
        .metric("abstore_operator_reconcile_runs_total", &[])
        .unwrap_or_else(|error| panic!("{error}"))
}

/// Waits until every Redis pod runs the StatefulSet's update revision and the store is Ready
/// with Progressing False.
async fn wait_rolled_out(cluster: &Cluster, ns: &str, within: Duration) -> Value {
    poll("the rollout to finish", within, || async {
        let status = store_status(cluster, ns, "experiments")?;
        let progressing = condition(&status, "Progressing").map(|c| c["status"].clone());
        if status["phase"] == "Ready" && progressing == Some(Value::from("False")) {
            Ok(status)
        } else {
            Err(format!("status: {status}"))
        }
    })
    .await
    .unwrap_or_else(|error| panic!("{error}"))
}

/// The writer's outage: from the first failed write to the first success after the last one.
fn outage(log: &abstore_tests::local_store::WriterLog) -> Duration {
    match (log.errors.first(), log.errors.last()) {
        (Some(first), Some(last)) => last.failed.duration_since(first.sent),
        _ => Duration::ZERO,
    }
}

/// Stops the writer and checks that every acknowledged increment is in the counter (and no
/// more than those acknowledged plus those whose outcome is unknown).
async fn assert_nothing_lost(writer: &mut abstore_tests::local_store::PlainWriter, what: &str) {
    let log = writer.stop().await;
    let value = poll(
        "the counter to be readable",
        Duration::from_secs(30),
        || async { writer.value().await.map_err(|error| error.to_string()) },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    println!(
        "{what}: {} increments acknowledged, counter {value}, lost {}, unknown outcome {}, {} failed writes, writer outage {} ms",
        log.acked,
        (log.acked as i64 - value).max(0),
        log.unknown,
        log.errors.len(),
        outage(&log).as_millis()
    );
    assert!(
        value >= log.acked as i64,
        "{what}: {} acknowledged increments lost ({} acknowledged, counter {value})",
        log.acked as i64 - value,
        log.acked
    );
    assert!(
        value <= (log.acked + log.unknown) as i64,
        "{what}: counter {value} exceeds {} acknowledged + {} unknown",
        log.acked,
        log.unknown
    );
}

// ---------------------------------------------------------------------------------------------
// Durability: planned deletion, crash, rollout, scaling.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_primary_pod_under_writes_loses_no_acknowledged_write() {
    // `kubectl delete pod` is what drains, `rollout restart` and node maintenance do to the
    // primary. Its preStop hook must pause writes, wait for the replicas and fail over before
    // the pod stops: an application writing through `<n>-primary` loses nothing it was told
    // was written. (A run with the old hook lost 0.6–1.7 % of acknowledged increments.)
    let Some(cluster) = k8s::cluster_with_node("delete primary pod") else {
        return;
    };
    let setup = setup("delete-primary", cluster, "").await;
    let ns = setup.ns.name.as_str();
    apply_store(cluster, ns, &store_yaml("{}"));
    wait_store_ready(cluster, ns, "experiments").await;
    // The hook's SENTINEL FAILOVER needs a replica the sentinels know.
    let status = wait_failover_ready(cluster, ns, "experiments").await;
    let old = status["primary"].as_str().unwrap().to_owned();
    let access = app_access(cluster, ns, "experiments");
    let mut writer =
        abstore_tests::local_store::PlainWriter::start(&access.primary_url, &counter_key("delete"));
    write_more(&writer, 2_000, Duration::from_secs(60)).await;

    cluster
        .kubectl(&["delete", "pod", &old, "-n", ns, "--wait=false"])
        .unwrap_or_else(|error| panic!("{error}"));
    let client = cluster.client().await;
    let new = poll(
        "another pod to be primary and Ready behind <n>-primary",
        Duration::from_secs(120),
        || async {
            let status = store_status(cluster, ns, "experiments")?;
            let primary = status["primary"].as_str().unwrap_or_default().to_owned();
            if primary.is_empty() || primary == old {
                return Err(format!("primary {primary:?}"));
            }
            let ip = ready_ip(&client, ns, &primary)
                .await
                .ok_or("new primary not ready")?;
            let ips = endpoint_ips(&client, ns, "experiments-primary").await;
            if ips == [ip] {
                Ok(primary)
            } else {
                Err(format!("endpoints {ips:?}"))
            }
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    write_more(&writer, 1_000, Duration::from_secs(60)).await;
    // The deleted pod comes back as a replica and the store is whole again.
    wait_rolled_out(cluster, ns, STORE_READY).await;
    assert_nothing_lost(
        &mut writer,
        &format!("kubectl delete pod {old} (primary moved to {new})"),
    )
    .await;
    let status = store_status(cluster, ns, "experiments").unwrap();
    assert_eq!(status["primary"], new.as_str(), "the primary moved again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_primary_is_failed_over_and_the_primary_service_follows_within_a_second() {
    // redis-server in the primary pod stops answering (SIGSTOP) past Sentinel's down-after and
    // is then killed: Sentinel fails over; the operator's +switch-master follower must move the
    // `<n>-primary` endpoint within 1 s of the switch, and an application recording with event
    // ids and WAIT 1 through the Sentinel URL from the Secret must lose no acknowledged event.
    use abstore::counters::{Event, Outcome, Recorder, RecorderConfig, WaitForReplicas};
    let Some(cluster) = k8s::cluster_with_node("hung primary") else {
        return;
    };
    let setup = setup("hung-primary", cluster, "").await;
    let ns = setup.ns.name.as_str();
    apply_store(cluster, ns, &store_yaml(FAST_SENTINEL));
    wait_store_ready(cluster, ns, "experiments").await;
    // Stopped before the sentinels discovered the replicas, the primary could not be failed
    // over (-failover-abort-no-good-slave): the store says when it can.
    let status = wait_failover_ready(cluster, ns, "experiments").await;
    let old = status["primary"].as_str().unwrap().to_owned();
    let access = app_access(cluster, ns, "experiments");
    assert_eq!(pod_of(&sentinel_primary(ns, &access).await.unwrap()), old);

    let connection = abstore::connection::Connection::open(&format!(
        "{}&failover_timeout_ms=30000",
        access.sentinel_url
    ))
    .await
    .unwrap_or_else(|error| panic!("the library through the Secret's sentinel-url: {error}"));
    let recorder = Recorder::new(
        connection,
        RecorderConfig {
            wait_for_replicas: Some(WaitForReplicas {
                replicas: 1,
                timeout: Duration::from_millis(500),
            }),
            ..RecorderConfig::default()
        },
    )
    .unwrap();
    let now = chrono::Utc::now().timestamp();
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (recorder, acked, stop) = (recorder.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut errors = Vec::new();
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let event = Event::evaluation("hung", "v", &format!("user-{}", i % 100), now)
                    .with_event_id(format!("hung-{i}"));
                // The same event id until it is acknowledged: dedup makes the retry safe.
                match recorder.record(&event).await {
                    Ok(Outcome::Counted | Outcome::Duplicate) => {
                        acked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        i += 1;
                    }
                    Ok(other) => errors.push(format!("{other:?}")),
                    Err(error) => errors.push(error.to_string()),
                }
            }
            errors
        })
    };
    let acked_now = || acked.load(std::sync::atomic::Ordering::Relaxed);
    poll("events to be recorded", Duration::from_secs(60), || async {
        if acked_now() >= 300 {
            Ok(())
        } else {
            Err(format!("{} acknowledged", acked_now()))
        }
    })
    .await
    .unwrap_or_else(|error| panic!("{error}"));

    let client = cluster.client().await;
    let uid = pod(&client, ns, &old)
        .await
        .and_then(|p| p.metadata.uid)
        .unwrap();
    let pid = container_pid(&uid, "redis-server")
        .unwrap_or_else(|| panic!("no redis-server of {old} on this machine"));
    signal(pid, "STOP");
    let stopped_at = std::time::Instant::now();
    // Both ends of the measurement are polled every 20 ms.
    let fast = Duration::from_millis(20);
    let (switched_at, new) = k8s::poll_every(
        fast,
        "Sentinel to fail over",
        Duration::from_secs(60),
        || async {
            let host = sentinel_primary(ns, &access).await?;
            let pod = pod_of(&host);
            if pod != old {
                Ok((std::time::Instant::now(), pod))
            } else {
                Err(format!("still {pod}"))
            }
        },
    )
    .await
    .unwrap_or_else(|error| {
        signal(pid, "CONT");
        panic!("{error}")
    });
    // The crash: the process never answers again; the kubelet restarts the container.
    signal(pid, "KILL");
    let (followed_at, _) = k8s::poll_every(
        fast,
        "<n>-primary to route to the new primary",
        Duration::from_secs(30),
        || async {
            let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
            let ip = pods
                .get(&new)
                .await
                .ok()
                .and_then(|p| p.status?.pod_ip)
                .ok_or("no ip")?;
            let ips = endpoint_ips(&client, ns, "experiments-primary").await;
            if ips == [ip.clone()] {
                Ok((std::time::Instant::now(), ips))
            } else {
                Err(format!("{ips:?}"))
            }
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    let follow = followed_at.saturating_duration_since(switched_at);
    println!(
        "hung primary {old}: Sentinel switched to {new} {} ms after SIGSTOP; <n>-primary followed {} ms after the switch was seen",
        switched_at.duration_since(stopped_at).as_millis(),
        follow.as_millis()
    );
    assert!(
        follow <= Duration::from_secs(1),
        "<n>-primary followed {follow:?} after Sentinel's switch"
    );

    // The killed node comes back (as a replica) and the writer goes on.
    wait_store_ready(cluster, ns, "experiments").await;
    let before = acked_now();
    poll(
        "more events after the failover",
        Duration::from_secs(60),
        || async {
            if acked_now() >= before + 300 {
                Ok(())
            } else {
                Err(format!("{} acknowledged", acked_now()))
            }
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let errors = writer.await.unwrap();
    let total = acked_now();
    let reader = abstore::reads::Reader::new(
        recorder.connection().clone(),
        None,
        abstore::keys::Granularity::Hour,
    );
    let counted = poll(
        "the count to be readable",
        Duration::from_secs(30),
        || async {
            reader
                .hour(&abstore::reads::Metric::Evaluations, "hung", &["v"], now)
                .await
                .map_err(|error| error.to_string())
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    let counted = counted.variations.get("v").map_or(0, |stats| stats.count);
    println!(
        "hung primary: {total} events acknowledged, {counted} counted, {} errors on the way",
        errors.len()
    );
    assert_eq!(counted, total, "acknowledged events lost or double counted");
}

/// Redis pods' `(name, uid, controller-revision-hash)`.
async fn redis_pods(client: &kube::Client, ns: &str) -> Vec<(String, String, String)> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut out: Vec<(String, String, String)> = pods
        .list(&ListParams::default().labels("app.kubernetes.io/component=redis"))
        .await
        .map(|list| list.items)
        .unwrap_or_default()
        .into_iter()
        .map(|pod| {
            let hash = pod
                .metadata
                .labels
                .as_ref()
                .and_then(|labels| labels.get("controller-revision-hash").cloned())
                .unwrap_or_default();
            (
                pod.metadata.name.unwrap_or_default(),
                pod.metadata.uid.unwrap_or_default(),
                hash,
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_change_rolls_the_replicas_then_the_primary_by_one_switchover_under_writes() {
    // New Redis settings restart every data pod. With OnDelete the operator decides the order:
    // replicas one at a time, then one switchover away from the primary, then the old primary.
    // Under plain writes through `<n>-primary` nothing acknowledged may be lost, the rollout
    // must not spin (the last round saw ~530 reconciles for one rollout), and Progressing must
    // clear once every pod runs the new revision.
    let Some(cluster) = k8s::cluster_with_node("rollout") else {
        return;
    };
    let setup = setup("rollout", cluster, "").await;
    let ns = setup.ns.name.as_str();
    apply_store(cluster, ns, &store_yaml("{}"));
    let status = wait_store_ready(cluster, ns, "experiments").await;
    let old_primary = status["primary"].as_str().unwrap().to_owned();
    let client = cluster.client().await;
    let before = redis_pods(&client, ns).await;
    let access = app_access(cluster, ns, "experiments");
    let mut writer = abstore_tests::local_store::PlainWriter::start(
        &access.primary_url,
        &counter_key("rollout"),
    );
    write_more(&writer, 1_000, Duration::from_secs(60)).await;

    let reconciles_before = reconciles(&setup.operator);
    let started = std::time::Instant::now();
    patch_store(cluster, ns, r#"{"spec":{"redis":{"config":{"hz":"15"}}}}"#);
    // Every pod replaced (new uid) and on the new revision, the store Ready, Progressing False.
    let after = poll("every Redis pod to be replaced", STORE_READY, || async {
        let now = redis_pods(&client, ns).await;
        let replaced = now.len() == 3
            && now
                .iter()
                .all(|(name, uid, _)| before.iter().any(|(n, u, _)| n == name && u != uid));
        if replaced {
            Ok(now)
        } else {
            Err(format!("{now:?}"))
        }
    })
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    let status = wait_rolled_out(cluster, ns, STORE_READY).await;
    let took = started.elapsed();
    let reconciled = reconciles(&setup.operator) - reconciles_before;
    write_more(&writer, 500, Duration::from_secs(60)).await;
    assert_nothing_lost(&mut writer, "a rollout of every data pod").await;
    let hashes: std::collections::BTreeSet<&String> =
        after.iter().map(|(_, _, hash)| hash).collect();
    assert_eq!(hashes.len(), 1, "pods on different revisions: {after:?}");

    let events = event_reasons(cluster, ns);
    let restarts: Vec<&String> = events
        .iter()
        .filter(|e| e.starts_with("RollingRestart="))
        .collect();
    let switchovers: Vec<&String> = events
        .iter()
        .filter(|e| e.starts_with("Switchover="))
        .collect();
    println!(
        "rollout of 3 data pods: {took:?}, {reconciled} reconciles, {} restarts, {} switchover(s); events:\n{}",
        restarts.len(),
        switchovers.len(),
        events.join("\n")
    );
    assert_eq!(restarts.len(), 3, "{events:#?}");
    assert_eq!(switchovers.len(), 1, "{events:#?}");
    assert!(
        restarts[2].contains(&old_primary),
        "the old primary was not restarted last: {restarts:?}"
    );
    assert_eq!(status["lastFailover"]["reason"], "Switchover");
    assert!(
        warnings(cluster, ns).is_empty(),
        "{:?}",
        warnings(cluster, ns)
    );
    // Bounded by what changes: each pod's restart is a handful of pod and StatefulSet
    // updates (debounced), plus a 5 s requeue while rolling; not a loop.
    let bound = 60.0 + took.as_secs_f64() / 5.0;
    assert!(
        reconciled <= bound,
        "{reconciled} reconciles for one rollout (bound {bound})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_3_5_3_keeps_one_primary_the_data_and_the_volumes_and_deletion_keeps_the_volumes() {
    // Scale-up adds replicas of the primary; scale-down removes the highest ordinals (never the
    // primary without a switchover) and keeps their PVCs, as StatefulSets do. Deleting the
    // store garbage-collects every object it owns and keeps every PVC: data outlives mistakes.
    let Some(cluster) = k8s::cluster_with_node("scaling") else {
        return;
    };
    let setup = setup("scaling", cluster, "").await;
    let ns = setup.ns.name.as_str();
    apply_store(cluster, ns, &store_yaml("{}"));
    wait_store_ready(cluster, ns, "experiments").await;
    let access = app_access(cluster, ns, "experiments");
    let mut writer = abstore_tests::local_store::PlainWriter::start(
        &access.primary_url,
        &counter_key("scaling"),
    );
    write_more(&writer, 500, Duration::from_secs(60)).await;

    for replicas in [5, 3] {
        patch_store(
            cluster,
            ns,
            &format!(r#"{{"spec":{{"redis":{{"replicas":{replicas}}}}}}}"#),
        );
        let want = format!("{replicas}/{replicas}");
        let status = poll(
            &format!("{want} Redis pods, one primary"),
            STORE_READY,
            || async {
                let status = store_status(cluster, ns, "experiments")?;
                let pods = status["pods"].as_array().cloned().unwrap_or_default();
                let primaries = pods.iter().filter(|p| p["role"] == "primary").count();
                let replicas_linked = pods
                    .iter()
                    .filter(|p| p["role"] == "replica" && p["linkUp"] == true)
                    .count();
                if status["ready"] == want.as_str()
                    && status["phase"] == "Ready"
                    && pods.len() == replicas
                    && primaries == 1
                    && replicas_linked == replicas - 1
                {
                    Ok(status)
                } else {
                    Err(format!("status: {status}"))
                }
            },
        )
        .await
        .unwrap_or_else(|error| panic!("{error}"));
        write_more(&writer, 300, Duration::from_secs(60)).await;
        println!("scaled to {replicas}: primary {}", status["primary"]);
    }
    assert_nothing_lost(&mut writer, "scaling 3 -> 5 -> 3").await;
    let client = cluster.client().await;
    let names: Vec<String> = redis_pods(&client, ns)
        .await
        .into_iter()
        .map(|(name, _, _)| name)
        .collect();
    assert_eq!(
        names,
        [
            "experiments-redis-0",
            "experiments-redis-1",
            "experiments-redis-2"
        ]
    );
    let claims = |cluster: &Cluster| {
        cluster
            .kubectl(&[
                "get",
                "pvc",
                "-n",
                ns,
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ])
            .unwrap_or_default()
    };
    let before = claims(cluster);
    for ordinal in 0..5 {
        assert!(
            before.contains(&format!("experiments-redis-{ordinal}")),
            "PVC of pod {ordinal} missing: {before}"
        );
    }

    let series = format!(r#"store_namespace="{ns}",store="experiments""#);
    let metrics = setup
        .operator
        .metrics()
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(
        metrics.contains(&series),
        "the store's series before its deletion: {metrics}"
    );

    // Delete the store: owned objects go, PVCs stay.
    cluster
        .kubectl(&[
            "delete",
            "abstore",
            "experiments",
            "-n",
            ns,
            "--wait=true",
            "--timeout=60s",
        ])
        .unwrap_or_else(|error| panic!("{error}"));
    poll("the garbage collector to remove every owned object", Duration::from_secs(120), || async {
        let left = cluster.kubectl(&[
            "get",
            "statefulsets,services,configmaps,secrets,cronjobs,poddisruptionbudgets,networkpolicies,pods",
            "-n",
            ns,
            "-l",
            "app.kubernetes.io/instance=experiments",
            "-o",
            "name",
        ])?;
        if left.is_empty() { Ok(()) } else { Err(left) }
    })
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        claims(cluster),
        before,
        "PVCs changed when the store was deleted"
    );
    // Its metrics go with it (not at the operator's next restart): no series of the store.
    poll(
        "the deleted store's metrics to go",
        Duration::from_secs(60),
        || async {
            let text = setup.operator.metrics()?;
            let left: Vec<&str> = text.lines().filter(|l| l.contains(&series)).collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(left.join("\n"))
            }
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_store_and_a_store_under_writes_cost_no_reconciles() {
    // The operator reconciles on changes and on its periodic resync, not on a timer: an idle
    // store, and one under steady writes (offsets move, status would change), must not be
    // reconciled again and again.
    let Some(cluster) = k8s::cluster_with_node("reconcile rate") else {
        return;
    };
    let setup = setup("rate", cluster, "").await;
    let ns = setup.ns.name.as_str();
    apply_store(cluster, ns, &store_yaml("{}"));
    wait_rolled_out(cluster, ns, STORE_READY).await;
    // Let the start-up settle (the last pod and label changes), then measure.
    poll(
        "the reconciles to settle",
        Duration::from_secs(60),
        || async {
            let before = reconciles(&setup.operator);
            tokio::time::sleep(Duration::from_secs(5)).await;
            let after = reconciles(&setup.operator);
            if after == before {
                Ok(())
            } else {
                Err(format!("{} reconciles in 5 s", after - before))
            }
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    let window = Duration::from_secs(30);
    let idle = reconciles(&setup.operator);
    tokio::time::sleep(window).await; // the measurement window itself, not a synchronisation
    let idle = reconciles(&setup.operator) - idle;
    let access = app_access(cluster, ns, "experiments");
    let mut writer =
        abstore_tests::local_store::PlainWriter::start(&access.primary_url, &counter_key("rate"));
    write_more(&writer, 200, Duration::from_secs(60)).await;
    let busy = reconciles(&setup.operator);
    tokio::time::sleep(window).await;
    let busy = reconciles(&setup.operator) - busy;
    assert_nothing_lost(&mut writer, "steady writes").await;
    println!("reconciles in {window:?}: idle {idle}, under writes {busy}");
    assert!(
        idle <= 1.0,
        "{idle} reconciles of an idle store in {window:?}"
    );
    assert!(
        busy <= 1.0,
        "{busy} reconciles of a store under writes in {window:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// What the API server and the operator refuse, and what they accept.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_specs_are_refused_by_the_schema_or_reported_as_invalid_and_cron_macros_are_accepted() {
    // Two layers: the CRD's schema refuses what it can express (kubectl apply fails, naming the
    // field) and `validate` refuses the rest after admission (phase Invalid, an InvalidSpec
    // condition naming the field, a Warning Event, nothing created). Cron macros that validate
    // accepts must pass the schema too (its old minLength 9 refused `@daily`).
    let Some(cluster) = k8s::cluster("bad specs") else {
        return;
    };
    let setup = setup("bad-specs", cluster, "").await;
    let ns = setup.ns.name.as_str();

    for (spec, field) in [
        ("sentinel:\n  quorum: 0\n", "spec.sentinel.quorum"),
        // A cross-field rule: the CRD's CEL (the same rule validate applies).
        (
            "sentinel:\n  replicas: 3\n  quorum: 4\n",
            "spec.sentinel.quorum",
        ),
        ("redis:\n  replicas: 0\n", "spec.redis.replicas"),
        (
            "backup:\n  schedule: \"every hour\"\n",
            "spec.backup.schedule",
        ),
        (
            "backup:\n  destination: ftp://host/path\n",
            "spec.backup.destination",
        ),
    ] {
        let refused = cluster
            .kubectl_with_input(&["apply", "-n", ns, "-f", "-"], Some(&store_yaml(spec)))
            .expect_err(&format!("the API server accepted {spec:?}"));
        assert!(
            refused.contains(field),
            "refusal of {spec:?} does not name {field}: {refused}"
        );
    }

    // Accepted by the schema, refused by validate: a schedule with a minute 61, and an image
    // reference the kubelet would refuse (InvalidImageName).
    apply_store(
        cluster,
        ns,
        &store_yaml(
            "backup:\n  schedule: \"61 * * * *\"\n  destination: file:///backups/experiments\nredis:\n  image: \"redis@sha256:abc\"\n",
        ),
    );
    let status = wait_invalid(cluster, ns).await;
    let invalid = condition(&status, "InvalidSpec").unwrap();
    assert_eq!(invalid["status"], "True");
    for field in [
        "spec.backup.schedule",
        "spec.redis.image",
        "spec.backup.destination",
    ] {
        assert!(
            invalid["message"].as_str().unwrap().contains(field),
            "{field} not named: {invalid}"
        );
    }
    assert!(
        warnings(cluster, ns)
            .iter()
            .any(|w| w.contains("spec.backup.schedule")),
        "no Warning Event naming the field: {:?}",
        warnings(cluster, ns)
    );
    let created = cluster
        .kubectl(&[
            "get",
            "statefulsets,cronjobs,secrets",
            "-n",
            ns,
            "-l",
            "app.kubernetes.io/instance=experiments",
            "-o",
            "name",
        ])
        .unwrap();
    assert!(created.is_empty(), "an invalid spec created {created}");

    // Fixed, with cron macros and every image pinned by digest: accepted, and the CronJobs and
    // StatefulSets carry them as written.
    let digest = format!("sha256:{}", "5e".repeat(32));
    let images = [
        format!("docker.io/library/redis@{digest}"),
        format!("docker.io/library/redis:7.2.16@{digest}"),
        format!("ghcr.io/abstore/abstore-jobs@{digest}"),
        format!("docker.io/oliver006/redis_exporter@{digest}"),
    ];
    apply_store(
        cluster,
        ns,
        &store_yaml(&format!(
            "sentinel:\n  replicas: 3\n  quorum: 2\n  image: {}\nredis:\n  image: {}\njobs:\n  image: {}\nmonitoring:\n  exporter:\n    image: {}\nbackup:\n  schedule: \"@hourly\"\n  destination: s3://bucket/prefix\nretention:\n  schedule: \"@daily\"\n",
            images[1], images[0], images[2], images[3]
        )),
    );
    let schedules = poll(
        "the CronJobs with the macros",
        Duration::from_secs(60),
        || async {
            let backup = cluster.kubectl(&[
                "get",
                "cronjob",
                "experiments-backup",
                "-n",
                ns,
                "-o",
                "jsonpath={.spec.schedule}",
            ])?;
            let prune = cluster.kubectl(&[
                "get",
                "cronjob",
                "experiments-prune",
                "-n",
                ns,
                "-o",
                "jsonpath={.spec.schedule}",
            ])?;
            Ok((backup, prune))
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(schedules, ("@hourly".to_owned(), "@daily".to_owned()));
    let used = cluster
        .kubectl(&[
            "get",
            "statefulsets,cronjobs",
            "-n",
            ns,
            "-l",
            "app.kubernetes.io/instance=experiments",
            "-o",
            "jsonpath={..image}",
        ])
        .unwrap();
    for image in &images {
        assert!(
            used.split_whitespace().any(|u| u == image),
            "{image} is not in the built objects: {used}"
        );
    }
    let status = poll("InvalidSpec cleared", Duration::from_secs(60), || async {
        let status = store_status(cluster, ns, "experiments")?;
        if status["phase"] != "Invalid" {
            Ok(status)
        } else {
            Err(format!("{status}"))
        }
    })
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        condition(&status, "InvalidSpec").unwrap()["status"],
        "False"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_policy_refuses_other_images_and_service_accounts_and_people_get_abstore_roles() {
    // Editing an ABStore is as powerful as creating pods in its namespace: the chart's
    // storePolicy limits the images and backup ServiceAccounts stores may name, and the
    // operator refuses the rest by field. The chart's aggregated ClusterRoles give the people
    // with `view` or `edit` in a namespace the matching rights on its ABStores.
    let Some(cluster) = k8s::cluster("store policy") else {
        return;
    };
    let setup = setup(
        "store-policy",
        cluster,
        "storePolicy:\n  allowedImages: [\"docker.io/\"]\n  allowedServiceAccounts: [backup-s3]\n",
    )
    .await;
    let ns = setup.ns.name.as_str();
    // The default jobs image is on ghcr.io; the ServiceAccount is not the allowed one.
    apply_store(
        cluster,
        ns,
        &store_yaml(
            "backup:\n  destination: s3://ab-backups/e2e\n  serviceAccountName: cluster-admin-ish\n",
        ),
    );
    let status = wait_invalid(cluster, ns).await;
    let message = condition(&status, "InvalidSpec").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    for expected in [
        "spec.jobs.image",
        "spec.backup.serviceAccountName",
        "docker.io/",
    ] {
        assert!(message.contains(expected), "{expected:?} not in {message}");
    }
    assert!(!message.contains("spec.redis.image"), "{message}");
    let created = cluster
        .kubectl(&["get", "statefulsets,cronjobs", "-n", ns, "-o", "name"])
        .unwrap();
    assert!(created.is_empty(), "a refused store created {created}");

    // Within the policy: accepted.
    apply_store(
        cluster,
        ns,
        &store_yaml(
            "jobs:\n  image: docker.io/abstore/abstore-jobs:mirror\nbackup:\n  destination: s3://ab-backups/e2e\n  serviceAccountName: backup-s3\n",
        ),
    );
    poll("the store accepted", Duration::from_secs(60), || async {
        let status = store_status(cluster, ns, "experiments")?;
        if status["phase"] != "Invalid"
            && condition(&status, "InvalidSpec").is_some_and(|c| c["status"] == "False")
        {
            Ok(())
        } else {
            Err(format!("{status}"))
        }
    })
    .await
    .unwrap_or_else(|error| panic!("{error}"));

    // People: a ServiceAccount bound to the built-in view role reads ABStores, one bound to
    // edit also writes them (the aggregation controller merges the chart's rules in).
    for (who, role) in [("viewer", "view"), ("editor", "edit")] {
        cluster
            .apply(&format!(
                "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {who}, namespace: {ns}}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: {who}, namespace: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}\nsubjects: [{{kind: ServiceAccount, name: {who}, namespace: {ns}}}]\n"
            ))
            .unwrap_or_else(|error| panic!("{error}"));
    }
    let can = |who: &str, verb: &str| {
        cluster
            .kubectl(&[
                "auth",
                "can-i",
                verb,
                "abstores.abstore.dev",
                "-n",
                ns,
                &format!("--as=system:serviceaccount:{ns}:{who}"),
            ])
            // `can-i` answers "no" with exit status 1.
            .map_or_else(
                |error| {
                    if error.contains("exit status: 1") {
                        "no".to_owned()
                    } else {
                        error
                    }
                },
                |answer| answer.trim().to_owned(),
            )
    };
    poll(
        "view and edit to carry the ABStore rules",
        Duration::from_secs(60),
        || async {
            let answers = [
                can("viewer", "list"),
                can("viewer", "create"),
                can("editor", "list"),
                can("editor", "create"),
                can("editor", "delete"),
            ];
            if answers
                .iter()
                .map(String::as_str)
                .eq(["yes", "no", "yes", "yes", "yes"])
            {
                Ok(())
            } else {
                Err(format!(
                    "viewer list/create, editor list/create/delete: {answers:?}"
                ))
            }
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cross_field_rule_is_refused_by_the_api_server_and_by_validate_with_one_message() {
    // The CRD's CEL rules (x-kubernetes-validations) and validate come from one table
    // (abstore_operator::rules): kubectl apply must refuse each bad spec naming the field with
    // the rule's message, and validate the same spec with the same field and message. The
    // immutable storage fields are refused on update, with how to change them.
    let Some(cluster) = k8s::cluster("CEL rules") else {
        return;
    };
    cluster
        .install_crd()
        .unwrap_or_else(|error| panic!("{error}"));
    let ns = TestNamespace::create(cluster, "cel-rules");
    let bad_specs = [
        (
            "self.quorum <= self.replicas",
            "sentinel:\n  replicas: 3\n  quorum: 4\n",
        ),
        (
            "!self.enabled || size(self.save) > 0",
            "persistence:\n  rdb:\n    enabled: true\n    save: []\n",
        ),
        (
            "!self.enabled || has(self.secretName)",
            "tls:\n  enabled: true\n",
        ),
    ];
    assert_eq!(
        bad_specs.len(),
        abstore_operator::rules::RULES.len(),
        "every rule needs a bad spec here"
    );
    for rule in &abstore_operator::rules::RULES {
        let spec = bad_specs
            .iter()
            .find(|(cel, _)| *cel == rule.cel)
            .unwrap_or_else(|| panic!("no bad spec for {}", rule.cel))
            .1;
        let yaml = store_yaml(spec);
        let refused = cluster
            .kubectl_with_input(&["apply", "-n", &ns.name, "-f", "-"], Some(&yaml))
            .expect_err(&format!("the API server accepted {spec:?}"));
        let field = rule.field_path();
        assert!(
            refused.contains(rule.message) && refused.contains(&field),
            "kubectl apply of {spec:?} must name {field} with {:?}: {refused}",
            rule.message
        );
        let mut store: ABStore = serde_yaml::from_str(&yaml).unwrap();
        store.metadata.namespace = Some(ns.name.clone());
        let error = abstore_operator::validate::validate(&store).unwrap_err();
        assert!(
            error
                .errors()
                .iter()
                .any(|e| e.field == field && e.message == rule.message),
            "validate of {spec:?}: {error}"
        );
    }

    // Transition rules: the volume claim template's fields cannot change on a live store.
    apply_store(
        cluster,
        &ns.name,
        &store_yaml("redis:\n  storage:\n    size: 8Gi\n    storageClassName: standard\n"),
    );
    for (spec, field) in [
        (
            "redis:\n  storage:\n    size: 16Gi\n    storageClassName: standard\n",
            "spec.redis.storage.size",
        ),
        (
            "redis:\n  storage:\n    size: 8Gi\n    storageClassName: fast\n",
            "spec.redis.storage.storageClassName",
        ),
    ] {
        let refused = cluster
            .kubectl_with_input(
                &["apply", "-n", &ns.name, "-f", "-"],
                Some(&store_yaml(spec)),
            )
            .expect_err(&format!("the API server accepted the change {spec:?}"));
        assert!(
            refused.contains(field) && refused.contains("cannot be changed on an existing store"),
            "{refused}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The operator's own availability: leader election, restarts.

fn lease_holder(cluster: &Cluster, ns: &str) -> String {
    cluster
        .kubectl(&[
            "get",
            "lease",
            "abstore-operator-leader",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])
        .unwrap_or_default()
}

/// Waits until the store's status reports the generation it is at now.
async fn wait_observed(cluster: &Cluster, ns: &str, within: Duration) {
    poll("the new generation to be reconciled", within, || async {
        let object: Value = serde_json::from_str(&cluster.kubectl(&[
            "get",
            "abstore",
            "experiments",
            "-n",
            ns,
            "-o",
            "json",
        ])?)
        .map_err(|error| error.to_string())?;
        let (generation, observed) = (
            &object["metadata"]["generation"],
            &object["status"]["observedGeneration"],
        );
        if generation == observed {
            Ok(())
        } else {
            Err(format!("generation {generation}, observed {observed}"))
        }
    })
    .await
    .unwrap_or_else(|error| panic!("{error}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_leader_election_one_of_two_operators_reconciles_and_the_other_takes_over() {
    // The chart's replicaCount 2 + leaderElection: both processes are ready (a standby must be,
    // or a Deployment rollout never ends), only the Lease holder reconciles, and when it dies
    // (SIGKILL: no Lease release) the other takes over within the Lease duration and reconciles.
    let Some(cluster) = k8s::cluster_with_node("leader election") else {
        return;
    };
    let mut setup = setup(
        "leader",
        cluster,
        "replicaCount: 2\nleaderElection:\n  enabled: true\n",
    )
    .await;
    let ns = setup.ns.name.clone();
    let ns = ns.as_str();
    let mut second = setup.install.start("abstore-operator-1");
    setup.ns.report_log(&second.log);
    second
        .wait_ready(OPERATOR_READY)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let holder = poll("a Lease holder", Duration::from_secs(60), || async {
        let holder = lease_holder(cluster, ns);
        if holder.is_empty() {
            Err("no holder yet".to_owned())
        } else {
            Ok(holder)
        }
    })
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    apply_store(cluster, ns, &store_yaml("{}"));
    wait_store_ready(cluster, ns, "experiments").await;
    let (leader, standby) = if holder == setup.operator.identity {
        (&mut setup.operator, &mut second)
    } else {
        (&mut second, &mut setup.operator)
    };
    assert!(
        reconciles(leader) > 0.0,
        "the Lease holder {holder} did not reconcile"
    );
    assert_eq!(
        reconciles(standby),
        0.0,
        "the standby {} reconciled",
        standby.identity
    );
    assert_eq!(leader.metric("abstore_operator_leader", &[]).unwrap(), 1.0);
    assert_eq!(standby.metric("abstore_operator_leader", &[]).unwrap(), 0.0);

    leader.kill();
    let killed = std::time::Instant::now();
    let standby_name = standby.identity.clone();
    poll(
        "the standby to take the Lease",
        Duration::from_secs(60),
        || async {
            let holder = lease_holder(cluster, ns);
            if holder == standby_name {
                Ok(())
            } else {
                Err(format!("held by {holder:?}"))
            }
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    println!(
        "the standby took the Lease {} ms after the leader was killed",
        killed.elapsed().as_millis()
    );
    patch_store(cluster, ns, r#"{"spec":{"retention":{"days":30}}}"#);
    wait_observed(cluster, ns, Duration::from_secs(60)).await;
    assert!(reconciles(standby) > 0.0);
    let args = cluster
        .kubectl(&[
            "get",
            "cronjob",
            "experiments-prune",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.jobTemplate.spec.template.spec.containers[0].args}",
        ])
        .unwrap();
    assert!(
        args.contains("30"),
        "the new leader did not apply the change: {args}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_restarted_mid_rollout_finishes_it_without_a_second_restart_or_switchover() {
    // The operator keeps no rollout state of its own: the StatefulSets' revisions and the pods'
    // hashes say what is left. Killed after the first restart, a new process must finish the
    // rollout restarting each pod once and switching over once, under writes, losing nothing.
    let Some(cluster) = k8s::cluster_with_node("restart mid-rollout") else {
        return;
    };
    let mut setup = setup("restart-rollout", cluster, "").await;
    let ns = setup.ns.name.clone();
    let ns = ns.as_str();
    apply_store(cluster, ns, &store_yaml("{}"));
    wait_store_ready(cluster, ns, "experiments").await;
    let client = cluster.client().await;
    let before = redis_pods(&client, ns).await;
    let access = app_access(cluster, ns, "experiments");
    let mut writer = abstore_tests::local_store::PlainWriter::start(
        &access.primary_url,
        &counter_key("restart"),
    );
    write_more(&writer, 500, Duration::from_secs(60)).await;

    patch_store(cluster, ns, r#"{"spec":{"redis":{"config":{"hz":"12"}}}}"#);
    poll("the first restart", STORE_READY, || async {
        let restarts = event_reasons(cluster, ns)
            .iter()
            .filter(|e| e.starts_with("RollingRestart="))
            .count();
        if restarts >= 1 {
            Ok(())
        } else {
            Err("no restart yet".to_owned())
        }
    })
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    setup.operator.kill();
    let mut replacement = setup.install.start("abstore-operator-1");
    setup.ns.report_log(&replacement.log);
    replacement
        .wait_ready(OPERATOR_READY)
        .await
        .unwrap_or_else(|error| panic!("{error}"));

    poll("every Redis pod to be replaced", STORE_READY, || async {
        let now = redis_pods(&client, ns).await;
        let replaced = now.len() == 3
            && now
                .iter()
                .all(|(name, uid, _)| before.iter().any(|(n, u, _)| n == name && u != uid));
        if replaced {
            Ok(now)
        } else {
            Err(format!("{now:?}"))
        }
    })
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    wait_rolled_out(cluster, ns, STORE_READY).await;
    write_more(&writer, 300, Duration::from_secs(60)).await;
    assert_nothing_lost(&mut writer, "a rollout across an operator restart").await;
    let events = event_reasons(cluster, ns);
    let restarts: Vec<&String> = events
        .iter()
        .filter(|e| e.starts_with("RollingRestart="))
        .collect();
    let switchovers = events
        .iter()
        .filter(|e| e.starts_with("Switchover="))
        .count();
    println!("rollout across an operator restart:\n{}", events.join("\n"));
    assert_eq!(
        restarts.len(),
        3,
        "each pod restarted exactly once: {restarts:#?}"
    );
    let distinct: std::collections::BTreeSet<&String> = restarts.iter().copied().collect();
    assert_eq!(distinct.len(), 3, "a pod restarted twice: {restarts:#?}");
    assert_eq!(switchovers, 1, "{events:#?}");
    drop(replacement);
}

// ---------------------------------------------------------------------------------------------
// The backup and prune CronJobs, from the jobs image.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backup_and_prune_cronjobs_run_from_the_jobs_image_and_fill_last_backup_and_last_prune()
{
    // The CronJobs run `ghcr.io/abstore/abstore-jobs:<version>` (built offline by
    // scripts/build-images.sh, imported into the node) against the store's pods, as UID 65532
    // with a read-only root. A backup goes to S3 (SeaweedFS on this machine, reached on the node
    // IP) with credentials from a Secret, exactly as the full example configures it; the finished
    // Jobs must reach `lastBackup` and `lastPrune` without waiting for a resync.
    let Some(cluster) = k8s::cluster_with_node("backup and prune jobs") else {
        return;
    };
    k8s::import_images().unwrap_or_else(|error| panic!("{error}"));
    let s3 = PodS3::start(cluster, "backups").await;
    let setup = setup("backup-prune", cluster, "").await;
    let ns = setup.ns.name.as_str();
    apply_store(
        cluster,
        ns,
        &store_yaml(&s3.backup_spec(cluster, ns, "backup-s3", "e2e")),
    );
    wait_store_ready(cluster, ns, "experiments").await;
    let access = app_access(cluster, ns, "experiments");
    let mut writer =
        abstore_tests::local_store::PlainWriter::start(&access.primary_url, &counter_key("backup"));
    write_more(&writer, 300, Duration::from_secs(60)).await;
    let written = writer.stop().await.acked;

    let run = backup_and_prune_now(cluster, ns, "experiments").await;
    println!(
        "lastBackup {}, lastPrune {}",
        run.status["lastBackup"], run.status["lastPrune"]
    );
    let table = cluster
        .kubectl(&["get", "abs", "experiments", "-n", ns])
        .unwrap();
    assert!(table.contains("LAST BACKUP"), "{table}");

    // The backup is complete and restorable: the jobs CLI verifies it from S3.
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_abstore-jobs-cli"))
        .args(["verify", "--from", "s3://backups/e2e"])
        .envs(s3.server.env())
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    let summary = &run.backup_summary;
    assert!(
        summary["keys"].as_u64().unwrap_or_default() >= 1,
        "backup summary: {summary}"
    );
    println!("backup of {written} increments: {summary}");
    // The Jobs' pods get no API token: the store names no ServiceAccount for cloud identity, and
    // the jobs never talk to the API server (a token would only be something to steal).
    for job in ["manual-backup", "manual-prune"] {
        let pod = cluster
            .kubectl(&[
                "get",
                "pods",
                "-n",
                ns,
                "-l",
                &format!("job-name={job}"),
                "-o",
                "json",
            ])
            .unwrap();
        let pods: serde_json::Value = serde_json::from_str(&pod).unwrap();
        let spec = &pods["items"][0]["spec"];
        assert_eq!(spec["automountServiceAccountToken"], false, "{job}: {spec}");
        let token_volumes: Vec<&serde_json::Value> = spec["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| {
                v["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("kube-api-access"))
            })
            .collect();
        assert!(
            token_volumes.is_empty(),
            "{job} mounts an API token: {token_volumes:?}"
        );
    }
    let backup_time = setup
        .operator
        .metric(
            "abstore_operator_backup_last_success_timestamp_seconds",
            &[("store", "experiments")],
        )
        .unwrap();
    assert!(
        backup_time > 0.0,
        "no backup success in the operator's metrics"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_from_an_older_operator_with_labelled_claim_templates_still_applies() {
    // Claim templates lost their labels (they crash kube-controller-manager 1.28.0–1.28.2, see
    // build/redis.rs); a StatefulSet created with them cannot change them (immutable), so the
    // operator must keep the existing labels or every apply of that StatefulSet is refused.
    let Some(cluster) = k8s::cluster("old claim templates") else {
        return;
    };
    let setup = setup("old-claims", cluster, "").await;
    let ns = setup.ns.name.as_str();
    let yaml = store_yaml("{}");
    // What an older operator applied: the StatefulSet with labelled claim templates.
    let mut old_set = k8s::rendered(&yaml, ns)
        .into_iter()
        .find(|object| {
            object["kind"] == "StatefulSet" && object["metadata"]["name"] == "experiments-redis"
        })
        .unwrap();
    old_set["spec"]["volumeClaimTemplates"][0]["metadata"]["labels"] =
        old_set["spec"]["selector"]["matchLabels"].clone();
    cluster
        .kubectl_with_input(
            &[
                "apply",
                "--server-side",
                "--field-manager=abstore-operator",
                "-n",
                ns,
                "-f",
                "-",
            ],
            Some(&serde_json::to_string(&old_set).unwrap()),
        )
        .unwrap_or_else(|error| panic!("{error}"));
    apply_store(cluster, ns, &yaml);
    let status = poll(
        "the status of the first reconcile",
        Duration::from_secs(60),
        || async {
            let status = store_status(cluster, ns, "experiments")?;
            condition(&status, "Applied")
                .cloned()
                .ok_or_else(|| format!("{status}"))
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(status["status"], "True", "{status}");
    let labels = cluster
        .kubectl(&[
            "get",
            "statefulset",
            "experiments-redis",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.volumeClaimTemplates[0].metadata.labels}",
        ])
        .unwrap();
    assert!(
        labels.contains("app.kubernetes.io/instance"),
        "the old labels were dropped: {labels}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_to_an_image_that_cannot_be_pulled_recovers_when_the_spec_is_reverted() {
    // A bad image (a typo, a tag that was never pushed) must not wedge the store: the first
    // replica restarted onto it stays in ImagePullBackOff, the rollout stops there (the
    // primary keeps serving), and reverting the spec must bring that pod back without
    // `kubectl delete pod` — with OnDelete nothing else would ever replace it.
    let Some(cluster) = k8s::cluster_with_node("bad image rollout") else {
        return;
    };
    let setup = setup("bad-image", cluster, "").await;
    let ns = setup.ns.name.as_str();
    // The good image pinned by digest (on the kit; other clusters use the default tag): the store
    // runs, is rolled and recovers on an `image@sha256:…` reference.
    let spec = match k8s::redis_image_by_digest() {
        Some(image) => format!("redis:\n  image: \"{image}\"\n"),
        None => "{}".to_owned(),
    };
    apply_store(cluster, ns, &store_yaml(&spec));
    let status = wait_store_ready(cluster, ns, "experiments").await;
    let primary = status["primary"].as_str().unwrap().to_owned();
    let good_image = cluster
        .kubectl(&[
            "get",
            "statefulset",
            "experiments-redis",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
        .unwrap();
    if let Some(image) = k8s::redis_image_by_digest() {
        assert_eq!(
            good_image, image,
            "the StatefulSet runs the image as written"
        );
    }
    let access = app_access(cluster, ns, "experiments");
    let mut writer = abstore_tests::local_store::PlainWriter::start(
        &access.primary_url,
        &counter_key("badimage"),
    );
    write_more(&writer, 300, Duration::from_secs(60)).await;

    patch_store(
        cluster,
        ns,
        r#"{"spec":{"redis":{"image":"docker.io/library/redis:0.0.0-never-pushed"}}}"#,
    );
    let client = cluster.client().await;
    let stuck = poll(
        "a replica stuck pulling the bad image",
        STORE_READY,
        || async {
            let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
            let list = pods
                .list(&ListParams::default().labels("app.kubernetes.io/component=redis"))
                .await
                .map_err(|e| e.to_string())?;
            list.items
                .iter()
                .find_map(|pod| {
                    let waiting = pod
                        .status
                        .as_ref()?
                        .container_statuses
                        .as_ref()?
                        .iter()
                        .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())?;
                    (waiting == "ErrImagePull" || waiting == "ImagePullBackOff")
                        .then(|| pod.metadata.name.clone().unwrap_or_default())
                })
                .ok_or_else(|| "no pod waiting on the image yet".to_owned())
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    assert_ne!(
        stuck, primary,
        "the primary was restarted onto an image nobody tried first"
    );
    // The rollout holds: the primary still serves writes.
    write_more(&writer, 300, Duration::from_secs(60)).await;

    patch_store(
        cluster,
        ns,
        &format!(r#"{{"spec":{{"redis":{{"image":"{good_image}"}}}}}}"#),
    );
    let recovered = std::time::Instant::now();
    let status = wait_rolled_out(cluster, ns, STORE_READY).await;
    println!(
        "{stuck} stuck on the bad image; reverted, Ready again {} s later",
        recovered.elapsed().as_secs()
    );
    assert_eq!(status["ready"], "3/3");
    let events = event_reasons(cluster, ns);
    assert!(
        events.iter().any(|e| e.starts_with("RollingRestart=")
            && e.contains(&stuck)
            && e.contains("ImagePull")),
        "the stuck pod was not replaced by the operator: {events:#?}"
    );
    write_more(&writer, 300, Duration::from_secs(60)).await;
    assert_nothing_lost(&mut writer, "a bad-image rollout and its revert").await;
}
