//! The controller's topology step with real Redis behind kube-rs's mock API server: the store's
//! redis-server and redis-sentinel processes run on loopback from the configs the operator
//! renders (`local up` starts them), the reconcile runs against a fake API server holding the
//! store's pods and credentials, and heal reaches the processes through an endpoint resolver
//! instead of pod DNS names. Checked: the primary pod is labelled, the status reports each pod's
//! role and lag, and after a `kill -9` of the primary the `+switch-master` follower moves the
//! label within a second of Sentinel's announcement, and the next reconcile records the failover
//! (status and Event). And a password edited in its Secret rotates across reconciles: both
//! passwords log in on every node and sentinel during the grace, only the new one after it, an
//! application writing throughout never fails, and neither password reaches the operator's logs,
//! Events, status or rotation state.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../operator/src/fixtures.rs"]
mod fixtures;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use http::Method;
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

use abstore_operator::build::build;
use abstore_operator::controller::{Context, REQUEUE_AFTER, reconcile};
use abstore_operator::crd::ABStore;
use abstore_operator::heal::Endpoint;
use abstore_operator::local::{self, Layout, Supervisor};
use abstore_operator::metrics::Metrics;
use abstore_tests::local_store::{KillOnDrop, user_url};
use fixtures::{FakeCluster, Recorded, mock_client};

const STORE: &str = "\
apiVersion: abstore.dev/v1alpha1
kind: ABStore
metadata:
  name: shop
  namespace: shop
  uid: 0b5c6f2e-1111-4222-8333-444455556666
  generation: 1
spec:
  sentinel:
    downAfterMilliseconds: 1000
    failoverTimeoutMilliseconds: 3000
";
const STATUS_PATH: &str = "/apis/abstore.dev/v1alpha1/namespaces/shop/abstores/shop/status";
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";
const RECONCILE_TIMEOUT: Duration = Duration::from_secs(30);
/// The bound: the `<n>-primary` Service follows within 1 s of `+switch-master`.
const RELABEL_WITHIN: Duration = Duration::from_secs(1);

/// A Ready pod created from revision `r1`.
fn pod(name: &str, component: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "labels": {
                "app.kubernetes.io/name": "abstore",
                "app.kubernetes.io/instance": "shop",
                "app.kubernetes.io/component": component,
                "app.kubernetes.io/managed-by": "abstore-operator",
                "controller-revision-hash": "r1",
            },
        },
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    })
}

/// The cluster as the operator would find it: the store, its credentials Secrets (holding the
/// passwords `local up` gave the processes), its pods and ready StatefulSets at `revision`
/// (`r1` is what the pods run).
fn cluster(spec: &Path, layout: &Layout, store: &ABStore, revision: &str) -> FakeCluster {
    let model = local::load_model(spec).unwrap();
    let credentials = local::credentials(&model, layout).unwrap();
    let children = build(&model, &credentials).unwrap();
    let mut objects: Vec<Value> = children
        .secrets
        .iter()
        .map(|secret| serde_json::to_value(secret).unwrap())
        .collect();
    for ordinal in 0..3 {
        objects.push(pod(&format!("shop-redis-{ordinal}"), "redis"));
        objects.push(pod(&format!("shop-sentinel-{ordinal}"), "sentinel"));
    }
    objects.push(serde_json::to_value(store).unwrap());
    let ready = json!({"observedGeneration": 1, "replicas": 3, "readyReplicas": 3,
        "updatedReplicas": 3, "currentRevision": "r1", "updateRevision": revision});
    FakeCluster {
        objects,
        stateful_set_status: BTreeMap::from([
            ("shop-redis".to_owned(), ready.clone()),
            ("shop-sentinel".to_owned(), ready),
        ]),
        ..FakeCluster::default()
    }
}

/// One reconcile of `store`; returns the requests it made (and what followers did meanwhile).
async fn reconcile_once(
    ctx: &Arc<Context>,
    store: &ABStore,
    live: &mut UnboundedReceiver<(Instant, Recorded)>,
) -> Vec<(Instant, Recorded)> {
    tokio::time::timeout(
        RECONCILE_TIMEOUT,
        reconcile(Arc::new(store.clone()), ctx.clone()),
    )
    .await
    .unwrap()
    .unwrap();
    drain(live)
}

/// Requests that arrived so far.
fn drain(live: &mut UnboundedReceiver<(Instant, Recorded)>) -> Vec<(Instant, Recorded)> {
    let mut seen = Vec::new();
    while let Ok(request) = live.try_recv() {
        seen.push(request);
    }
    seen
}

/// `(pod, role)` of every role-label patch, in order.
fn role_patches(requests: &[(Instant, Recorded)]) -> Vec<(String, String)> {
    requests
        .iter()
        .filter(|(_, r)| r.method == Method::PATCH && r.path.contains("/pods/"))
        .map(|(_, r)| {
            (
                r.path.rsplit('/').next().unwrap().to_owned(),
                r.body["metadata"]["labels"]["abstore.dev/role"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect()
}

fn last_status(requests: &[(Instant, Recorded)]) -> Value {
    requests
        .iter()
        .rev()
        .find(|(_, r)| r.method == Method::PATCH && r.path == STATUS_PATH)
        .map(|(_, r)| r.body["status"].clone())
        .expect("a status patch")
}

fn events(requests: &[(Instant, Recorded)]) -> Vec<Value> {
    requests
        .iter()
        .filter(|(_, r)| r.method == Method::POST && r.path == EVENTS_PATH)
        .map(|(_, r)| r.body.clone())
        .collect()
}

/// `local up` of the store in a temporary directory. Bind the tuple in this order: locals drop in
/// reverse, so the guard (which reads the pids from the directory) goes before the directory.
async fn up_store(manifest: &str) -> (tempfile::TempDir, PathBuf, PathBuf, Supervisor, KillOnDrop) {
    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("shop.yaml");
    std::fs::write(&spec, manifest).unwrap();
    let dir = work.path().join("store");
    let cleanup = KillOnDrop(dir.clone());
    let supervisor = Supervisor::up(&spec, &dir).await.unwrap();
    (work, spec, dir, supervisor, cleanup)
}

/// Where the heal reaches the store's data nodes and sentinels: their loopback ports.
fn endpoints(state: &local::LocalState) -> (Vec<Endpoint>, Vec<Endpoint>) {
    let on_loopback = |p: &local::ProcessState| Endpoint::new("127.0.0.1", p.port);
    (
        state.nodes.iter().map(on_loopback).collect(),
        state.sentinels.iter().map(on_loopback).collect(),
    )
}

fn ordinal_of(state: &local::LocalState, addr: &str) -> usize {
    state
        .nodes
        .iter()
        .position(|node| format!("127.0.0.1:{}", node.port) == addr)
        .unwrap()
}

#[tokio::test]
async fn the_primary_label_follows_sentinel_within_a_second_and_the_failover_is_recorded() {
    let (_work, spec, _dir, supervisor, _cleanup) = up_store(STORE).await;
    let layout = supervisor.layout().clone();
    let state = supervisor.state().clone();
    let primary = ordinal_of(&state, state.primary.as_deref().unwrap());

    let mut store: ABStore = serde_yaml::from_str(STORE).unwrap();
    let mut cluster = cluster(&spec, &layout, &store, "r1");
    let (live_tx, mut live) = tokio::sync::mpsc::unbounded_channel();
    cluster.live = Some(live_tx);
    let (client, server) = mock_client();
    let served = tokio::spawn(cluster.serve(server));
    let resolved = endpoints(&state);
    let sentinels = resolved.1.clone();
    let ctx = Arc::new(
        Context::new(client, Arc::new(Metrics::new()), "test-operator", None)
            .with_endpoints(Arc::new(move |_, _, _| resolved.clone())),
    );

    // A healthy store is one Sentinel can fail over: the sentinels learn the replicas from the
    // primary's INFO (every 10 s), so `local up` returns before they know them. Until then the
    // reconcile requeues after 10 s (FailoverReady False), which is not what this test is about.
    sentinels_know_everyone(&layout, &sentinels).await;

    // First reconcile: heal finds the primary Sentinel elected and labels the pods.
    let action = tokio::time::timeout(
        RECONCILE_TIMEOUT,
        reconcile(Arc::new(store.clone()), ctx.clone()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(REQUEUE_AFTER),
        "a healthy store is settled"
    );
    let first = drain(&mut live);
    // The store was healthy: labelling is all the first pass does (one Event: the objects
    // were applied).
    let reasons: Vec<Value> = events(&first).iter().map(|e| e["reason"].clone()).collect();
    assert_eq!(reasons, vec![json!("Applied")]);
    let mut expected: Vec<(String, String)> = (0..3)
        .filter(|&o| o != primary)
        .map(|o| (format!("shop-redis-{o}"), "replica".to_owned()))
        .collect();
    expected.push((format!("shop-redis-{primary}"), "primary".to_owned()));
    assert_eq!(
        role_patches(&first),
        expected,
        "replicas first, then the primary"
    );
    let status = last_status(&first);
    assert_eq!(status["primary"], format!("shop-redis-{primary}"));
    let roles: Vec<&str> = status["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["role"].as_str().unwrap())
        .collect();
    let mut expected_roles = vec!["replica"; 3];
    expected_roles[primary] = "primary";
    assert_eq!(roles, expected_roles, "{status}");
    for pod in status["pods"].as_array().unwrap() {
        if pod["role"] == "replica" {
            assert_eq!(pod["linkUp"], true, "{pod}");
            assert!(pod["lagBytes"].as_u64().is_some(), "{pod}");
        }
    }
    let available = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PrimaryAvailable")
        .unwrap();
    assert_eq!(available["status"], "True", "{available}");
    let failover_ready = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "FailoverReady")
        .unwrap();
    assert_eq!(failover_ready["status"], "True", "{failover_ready}");
    assert!(status.get("lastFailover").is_none(), "{status}");
    store.status = Some(serde_json::from_value(status).unwrap());

    // A second pass on a healthy store changes nothing.
    let second = reconcile_once(&ctx, &store, &mut live).await;
    assert_eq!(role_patches(&second), Vec::new());
    assert!(events(&second).is_empty(), "{:?}", events(&second));

    // kill -9 the primary; watch every sentinel's announcement ourselves to time the follower
    // against the first one.
    let mut watchers = Vec::new();
    for sentinel in &sentinels {
        // As the app: following +switch-master is what a client may do on a sentinel.
        let mut watcher = redis::Client::open(user_url(&layout, "app", sentinel))
            .unwrap()
            .get_async_pubsub()
            .await
            .unwrap();
        watcher.subscribe("+switch-master").await.unwrap();
        watchers.push(watcher.into_on_message());
    }
    let mut announcements = futures::stream::select_all(watchers);
    let pid = state.nodes[primary].pid.unwrap();
    let killed_at = Instant::now();
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let announcement = tokio::time::timeout(Duration::from_secs(30), announcements.next())
        .await
        .expect("no +switch-master within 30 s of the kill")
        .unwrap();
    let switched_at = Instant::now();
    let payload: String = announcement.get_payload().unwrap();
    let parts: Vec<&str> = payload.split(' ').collect();
    let new_primary = ordinal_of(&state, &format!("{}:{}", parts[3], parts[4]));
    assert_ne!(new_primary, primary);

    // The follower moves the label without any reconcile.
    let new_pod = format!("shop-redis-{new_primary}");
    let deadline = switched_at + Duration::from_secs(10);
    let mut seen = Vec::new();
    let labelled_at = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let Ok(Some((at, request))) = tokio::time::timeout(remaining, live.recv()).await else {
            panic!(
                "the follower did not label {new_pod} primary within 10 s of +switch-master; requests: {:?}",
                seen.iter().map(Recorded::line).collect::<Vec<_>>()
            );
        };
        let is_new_primary = request.method == Method::PATCH
            && request.path.ends_with(&format!("/pods/{new_pod}"))
            && request.body["metadata"]["labels"]["abstore.dev/role"] == "primary";
        seen.push(request);
        if is_new_primary {
            break at;
        }
    };
    // The follower may hear another sentinel before this test hears its one: then the label
    // moved before `switched_at` and the delay is zero.
    let relabel = labelled_at.saturating_duration_since(switched_at);
    let early = switched_at.saturating_duration_since(labelled_at);
    println!(
        "kill -9 → +switch-master (seen by the test): {:?}; label on {new_pod}: {relabel:?} after it ({early:?} before it)",
        switched_at - killed_at
    );
    assert!(
        relabel <= RELABEL_WITHIN,
        "the label moved {relabel:?} after +switch-master"
    );
    let old_pod = format!("shop-redis-{primary}");
    let moved: Vec<(String, String)> = seen
        .iter()
        .filter(|r| r.method == Method::PATCH && r.path.contains("/pods/"))
        .map(|r| {
            (
                r.path.rsplit('/').next().unwrap().to_owned(),
                r.body["metadata"]["labels"]["abstore.dev/role"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        moved,
        vec![
            (old_pod.clone(), "replica".to_owned()),
            (new_pod.clone(), "primary".to_owned())
        ],
        "the old primary loses the label before the new one gets it"
    );

    // The next reconcile records the failover in the status and as a Warning Event.
    let third = reconcile_once(&ctx, &store, &mut live).await;
    let status = last_status(&third);
    assert_eq!(status["primary"], new_pod);
    let failover = &status["lastFailover"];
    assert_eq!(failover["from"], old_pod, "{status}");
    assert_eq!(failover["to"], new_pod, "{status}");
    assert_eq!(failover["reason"], "Failover", "{status}");
    let unreachable = &status["pods"][primary];
    assert_eq!(unreachable["role"], "unreachable", "{status}");
    let events = events(&third);
    let event = events
        .iter()
        .find(|e| e["reason"] == "Failover")
        .unwrap_or_else(|| panic!("no Failover Event in {events:?}"));
    assert_eq!(event["type"], "Warning");
    assert!(
        event["note"].as_str().unwrap().contains(&old_pod)
            && event["note"].as_str().unwrap().contains(&new_pod),
        "{event}"
    );

    // Dropping the context stops the follower; the API server then sees the client go.
    assert_eq!(ctx.followers.stores(), vec!["shop/shop".to_owned()]);
    drop(ctx);
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("the follower kept the client alive")
        .unwrap();
    supervisor.stop().await.unwrap();
}

/// Polls until every sentinel lists two replicas and two other sentinels of `shop` (a slow
/// answer counts as not yet).
async fn sentinels_know_everyone(layout: &Layout, sentinels: &[Endpoint]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for sentinel in sentinels {
        let client = redis::Client::open(user_url(layout, "app", sentinel)).unwrap();
        let mut last: String;
        loop {
            let counts = async {
                let mut conn = client.get_multiplexed_async_connection().await?;
                let replicas: Vec<redis::Value> = redis::cmd("SENTINEL")
                    .arg("REPLICAS")
                    .arg("shop")
                    .query_async(&mut conn)
                    .await?;
                let others: Vec<redis::Value> = redis::cmd("SENTINEL")
                    .arg("SENTINELS")
                    .arg("shop")
                    .query_async(&mut conn)
                    .await?;
                Ok::<_, redis::RedisError>((replicas.len(), others.len()))
            }
            .await;
            match counts {
                Ok((2, 2)) => break,
                Ok((replicas, others)) => {
                    last = format!("{replicas} replicas and {others} sentinels");
                }
                Err(error) => last = error.to_string(),
            }
            assert!(
                Instant::now() < deadline,
                "sentinel {sentinel} after 30 s: {last}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Pids of the store's processes as `local up` recorded them last.
fn pids(dir: &Path) -> local::LocalState {
    local::LocalState::read(&dir.join(local::STATE_FILE)).unwrap()
}

/// Stops a process the way a pod is stopped (SIGTERM) and waits until it is gone.
async fn stop_process(pid: u32) {
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z")
    {
        assert!(Instant::now() < deadline, "pid {pid} did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_new_revision_rolls_replicas_then_switches_over_then_the_old_primary_then_sentinels() {
    let (_work, spec, dir, supervisor, _cleanup) = up_store(STORE).await;
    let layout = supervisor.layout().clone();
    let state = supervisor.state().clone();
    let old_primary = ordinal_of(&state, state.primary.as_deref().unwrap());
    // `local up` plays kubelet and the start script: a stopped process comes back (a data node
    // as a replica of the current primary).
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let kubelet = tokio::spawn(supervisor.run_until(async {
        let _ = stop_rx.await;
    }));

    // A value written before the rollout must be there after it.
    let password = std::fs::read_to_string(layout.credential_file("app")).unwrap();
    let primary_url = |addr: &str| format!("redis://app:{}@{addr}", password.trim());
    let mut app = redis::Client::open(primary_url(state.primary.as_deref().unwrap()))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("ec:1700000000:rollout:a")
        .arg(41)
        .query_async(&mut app)
        .await
        .unwrap();

    // The StatefulSets' update revision is r2; every pod runs r1.
    let store: ABStore = serde_yaml::from_str(STORE).unwrap();
    let mut cluster = cluster(&spec, &layout, &store, "r2");
    cluster.recreate_deleted_pods = true;
    let (live_tx, mut live) = tokio::sync::mpsc::unbounded_channel();
    cluster.live = Some(live_tx);
    let (client, server) = mock_client();
    let served = tokio::spawn(cluster.serve(server));
    let endpoints = endpoints(&state);
    let ctx = Arc::new(
        Context::new(client, Arc::new(Metrics::new()), "test-operator", None)
            .with_endpoints(Arc::new(move |_, _, _| endpoints.clone())),
    );

    // Count Sentinel's switches on one sentinel that is restarted last.
    let mut switches = redis::Client::open(user_url(
        &layout,
        "app",
        format!("127.0.0.1:{}", state.sentinels[2].port),
    ))
    .unwrap()
    .get_async_pubsub()
    .await
    .unwrap();
    switches.subscribe("+switch-master").await.unwrap();
    let mut switches = switches.into_on_message();

    // Reconcile until nothing is left to roll; stop each deleted pod's process as kubelet would.
    let mut restarted: Vec<String> = Vec::new();
    let mut store = store;
    let deadline = Instant::now() + Duration::from_secs(150);
    let started = Instant::now();
    loop {
        assert!(
            Instant::now() < deadline,
            "rollout not done within 150 s; restarted so far: {restarted:?}"
        );
        let requests = reconcile_once(&ctx, &store, &mut live).await;
        let status = last_status(&requests);
        store.status = Some(serde_json::from_value(status.clone()).unwrap());
        for (_, request) in &requests {
            if request.method == Method::DELETE && request.path.contains("/pods/") {
                let pod = request.path.rsplit('/').next().unwrap().to_owned();
                let (set, ordinal) = pod.rsplit_once('-').unwrap();
                let ordinal: usize = ordinal.parse().unwrap();
                let now = pids(&dir);
                let process = if set == "shop-redis" {
                    &now.nodes[ordinal]
                } else {
                    &now.sentinels[ordinal]
                };
                stop_process(process.pid.unwrap()).await;
                restarted.push(pod);
            }
        }
        let summary = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "PrimaryAvailable")
            .map(|c| c["message"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default();
        if restarted.len() == 6 && !summary.contains("rollout:") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    println!("rolled 6 pods in {:?}: {restarted:?}", started.elapsed());

    // Replicas first (ordinal order), then the old primary after a switchover, sentinels last.
    let mut expected: Vec<String> = (0..3)
        .filter(|&o| o != old_primary)
        .map(|o| format!("shop-redis-{o}"))
        .collect();
    expected.push(format!("shop-redis-{old_primary}"));
    expected.extend((0..3).map(|o| format!("shop-sentinel-{o}")));
    assert_eq!(restarted, expected);
    let status = store.status.clone().unwrap();
    let failover = status
        .last_failover
        .clone()
        .expect("the switchover is recorded");
    assert_eq!(failover.reason, "Switchover");
    assert_eq!(
        failover.from.as_deref(),
        Some(format!("shop-redis-{old_primary}").as_str())
    );

    // Exactly one switch of primary during the whole rollout.
    let mut seen = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), switches.next()).await
    {
        seen += 1;
    }
    assert_eq!(seen, 1, "+switch-master events during the rollout");

    // The value is on the new primary.
    let new_primary = pids(&dir).primary.unwrap();
    let mut app = redis::Client::open(primary_url(&new_primary))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    // MGET, as the library reads counters (the app role has no GET).
    let value: Vec<i64> = redis::cmd("MGET")
        .arg("ec:1700000000:rollout:a")
        .query_async(&mut app)
        .await
        .unwrap();
    assert_eq!(value, vec![41]);

    drop(ctx);
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .unwrap()
        .unwrap();
    let _ = stop_tx.send(());
    kubelet.await.unwrap().unwrap();
}

/// Seconds both passwords are accepted in the rotation test.
const ROTATION_GRACE_SECS: u64 = 3;

/// Everything the process logs, for the test that looks for passwords in it.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    /// Installs the process-wide subscriber at the most verbose level the operator logs at
    /// (debug for libraries, trace for the operator). Only this test installs one.
    fn install() -> CapturedLogs {
        let logs = CapturedLogs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "debug,abstore_operator=trace,abstore=trace",
            ))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Whether `port` accepts `user` with `password` (AUTH needs no permission).
async fn accepts(port: u16, user: &str, password: &str) -> bool {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return false;
    };
    redis::cmd("AUTH")
        .arg(user)
        .arg(password)
        .query_async::<()>(&mut conn)
        .await
        .is_ok()
}

/// Ports of every data node and sentinel that accept `user` with `password`.
async fn accepting(ports: &[u16], user: &str, password: &str) -> Vec<u16> {
    let mut yes = Vec::new();
    for &port in ports {
        if accepts(port, user, password).await {
            yes.push(port);
        }
    }
    yes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_password_secret_rotates_live_across_reconciles_and_is_never_logged() {
    let logs = CapturedLogs::install();
    let manifest = format!("{STORE}  auth:\n    rotationGraceSeconds: {ROTATION_GRACE_SECS}\n");
    let (_work, spec, _dir, supervisor, _cleanup) = up_store(&manifest).await;
    let layout = supervisor.layout().clone();
    let state = supervisor.state().clone();
    let ports: Vec<u16> = state
        .nodes
        .iter()
        .chain(&state.sentinels)
        .map(|p| p.port)
        .collect();

    let store: ABStore = serde_yaml::from_str(&manifest).unwrap();
    let model = abstore_operator::validate::validate(&store).unwrap();
    let mut cluster = cluster(&spec, &layout, &store, "r1");
    cluster.store_applied = true;
    let (live_tx, mut live) = tokio::sync::mpsc::unbounded_channel();
    cluster.live = Some(live_tx);
    let (client, server) = mock_client();
    let served = tokio::spawn(cluster.serve(server));
    let resolved = endpoints(&state);
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            Arc::new(Metrics::new()),
            "test-operator",
            None,
        )
        .with_endpoints(Arc::new(move |_, _, _| resolved.clone())),
    );
    let mut requests = reconcile_once(&ctx, &store, &mut live).await;
    let reasons = |requests: &[(Instant, Recorded)]| -> Vec<String> {
        events(requests)
            .iter()
            .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert!(
        !reasons(&requests)
            .iter()
            .any(|r| r.starts_with("PasswordRotation")),
        "{:?}",
        reasons(&requests)
    );

    // An application writes through Sentinel as `app`, its password from the mounted file.
    let mut writer = abstore_tests::local_store::Writer::start(
        &layout,
        &state,
        "ec:1700000000:rotation:a",
        Duration::from_millis(20),
    )
    .await
    .unwrap();

    // Someone rotates the app's password the documented way: a new value in its Secret.
    let old = std::fs::read_to_string(layout.credential_file("app"))
        .unwrap()
        .trim()
        .to_owned();
    let new = abstore_operator::credentials::generate_password();
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(client.clone(), "shop");
    let secret = abstore_operator::credentials::credentials_secret_name(&model, "app");
    secrets
        .patch(
            &secret,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"data": {"password": base64_of(&new)}})),
        )
        .await
        .unwrap();
    requests.extend(drain(&mut live));

    // The next reconcile starts the rotation: both passwords log in everywhere.
    let second = reconcile_once(&ctx, &store, &mut live).await;
    assert!(
        reasons(&second).contains(&"PasswordRotationStarted".to_owned()),
        "{:?}",
        reasons(&second)
    );
    requests.extend(second);
    assert_eq!(accepting(&ports, "app", &old).await, ports, "old password");
    assert_eq!(accepting(&ports, "app", &new).await, ports, "new password");
    // Kubelet updates the mounted file some time later; new connections read it.
    std::fs::write(layout.credential_file("app"), &new).unwrap();

    // Reconciles go on; the rotation ends after the grace and only the new password works.
    let deadline = Instant::now() + Duration::from_secs(ROTATION_GRACE_SECS + 30);
    loop {
        let pass = reconcile_once(&ctx, &store, &mut live).await;
        let completed = reasons(&pass).contains(&"PasswordRotationCompleted".to_owned());
        requests.extend(pass);
        if completed {
            break;
        }
        assert!(Instant::now() < deadline, "the rotation did not complete");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        accepting(&ports, "app", &old).await,
        Vec::<u16>::new(),
        "old password"
    );
    assert_eq!(accepting(&ports, "app", &new).await, ports, "new password");

    // The application never failed, and it writes on after the old password stopped working.
    let acked = writer.log().await.acked;
    let deadline = Instant::now() + Duration::from_secs(10);
    while writer.log().await.acked < acked + 10 {
        assert!(
            Instant::now() < deadline,
            "writes stopped after the rotation"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = writer.stop().await;
    assert!(log.errors.is_empty(), "{:?}", log.errors);

    // Neither password appears in any log line, Event or status the operator wrote, nor in
    // the rotation state (which keeps hashes of other users' passwords only).
    let logs = logs.text();
    assert!(
        logs.contains("reconciled") && logs.contains("abstore_operator"),
        "the operator's logs were captured"
    );
    let forms = [old.clone(), new.clone(), base64_of(&old), base64_of(&new)];
    let mut states = 0;
    for (_, request) in &requests {
        let body = request.body.to_string();
        if request.path == EVENTS_PATH || request.path == STATUS_PATH {
            for form in &forms {
                assert!(
                    !body.contains(form.as_str()),
                    "a password in {}: {body}",
                    request.line()
                );
            }
        }
        let acl_secret = abstore_operator::credentials::acl_secret_name(&model);
        if request.method == Method::PATCH
            && request.path.ends_with(&format!("/secrets/{acl_secret}"))
            && let Some(encoded) =
                request.body["data"][abstore_operator::rotation::STATE_KEY].as_str()
        {
            let decoded = decode_base64(encoded);
            states += 1;
            assert!(
                !decoded.contains(&old) && !decoded.contains(&new),
                "{decoded}"
            );
        }
    }
    assert!(states > 0, "the rotation state was applied");
    for form in &forms {
        assert!(
            !logs.contains(form.as_str()),
            "a password in the operator's logs"
        );
    }

    drop((ctx, secrets, client));
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .unwrap()
        .unwrap();
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn decode_base64(text: &str) -> String {
    use base64::Engine as _;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap(),
    )
    .unwrap()
}
