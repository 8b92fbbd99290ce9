//! The reconcile call sequence against kube-rs's mock API server: the real validate, build,
//! apply and status steps run against a fake API server that answers like the real one and
//! records every request, so each test asserts what the operator asked of the cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../src/fixtures.rs"]
mod fixtures;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::Method;
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use abstore_operator::build::{Children, TLS_FINGERPRINT_ANNOTATION, build};
use abstore_operator::controller::{
    Context, INVALID_SPEC_REQUEUE_AFTER, REASON_APPLIED, REASON_DELETED_ORPHANS,
    REASON_MONITORING_UNAVAILABLE, REASON_ROLLING_RESTART, TOPOLOGY_REQUEUE_AFTER, reconcile,
};
use abstore_operator::crd::ABStore;
use abstore_operator::credentials::{Credentials, acl_secret_name};
use abstore_operator::error::Error;
use abstore_operator::heal::Endpoint;
use abstore_operator::leader::Leadership;
use abstore_operator::metrics::Metrics;
use abstore_operator::model::Model;
use abstore_operator::validate::validate;
use fixtures::{FakeCluster, Recorded, mock_client};

/// Longest a reconcile may take against the fake server: it answers at once, so only a
/// call that never completes can reach this.
const RECONCILE_TIMEOUT: Duration = Duration::from_secs(20);
const NAMESPACE: &str = "shop";
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";
const STATUS_PATH: &str = "/apis/abstore.dev/v1alpha1/namespaces/shop/abstores/shop/status";

/// A store named `shop` in namespace `shop` at generation 2, with `spec` given as YAML.
fn store(spec: &str) -> ABStore {
    let yaml = format!(
        "apiVersion: abstore.dev/v1alpha1\nkind: ABStore\nmetadata:\n  name: shop\n  namespace: shop\n  uid: 0b5c6f2e-1111-4222-8333-444455556666\n  generation: 2\nspec:\n{}",
        indent(spec)
    );
    serde_yaml::from_str(&yaml).unwrap()
}

fn indent(text: &str) -> String {
    if text.trim().is_empty() {
        return "  {}\n".to_owned();
    }
    text.lines().map(|line| format!("  {line}\n")).collect()
}

/// What build makes for `store` with the given existing passwords (the test's expectation).
fn built(store: &ABStore, existing: &BTreeMap<String, String>) -> Children {
    let model = validate(store).unwrap();
    let mut fixed = || "generated-password-0123456789".to_owned();
    let credentials = Credentials::resolve(&model, existing, &mut fixed);
    build(&model, &credentials).unwrap()
}

/// A labelled child of `shop`, as it would exist in the cluster.
fn existing_child(api_version: &str, kind: &str, name: &str, component: &str) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {
                "app.kubernetes.io/name": "abstore",
                "app.kubernetes.io/instance": "shop",
                "app.kubernetes.io/component": component,
                "app.kubernetes.io/managed-by": "abstore-operator",
            },
        },
    })
}

/// StatefulSet statuses with every pod ready and update revision `r1`. `currentRevision` is
/// still `r0`, as the OnDelete strategy leaves it: rolled out is read from the pods' revision
/// labels (see `store_pods`), never from it.
fn all_ready() -> BTreeMap<String, Value> {
    let ready = json!({"observedGeneration": 1, "replicas": 3, "readyReplicas": 3,
        "updatedReplicas": 3, "currentRevision": "r0", "updateRevision": "r1"});
    BTreeMap::from([
        ("shop-redis".to_owned(), ready.clone()),
        ("shop-sentinel".to_owned(), ready),
    ])
}

/// Runs one reconcile against `cluster`; returns its result and every request it made.
async fn reconcile_against(
    mut cluster: FakeCluster,
    store: ABStore,
) -> (Result<Action, Error>, Vec<Recorded>) {
    cluster.objects.push(serde_json::to_value(&store).unwrap());
    let (client, server) = mock_client();
    let served = tokio::spawn(cluster.serve(server));
    let ctx = Arc::new(
        Context::new(client, Arc::new(Metrics::new()), "test-operator", None)
            .with_endpoints(Arc::new(nothing_listens)),
    );
    let result = tokio::time::timeout(RECONCILE_TIMEOUT, reconcile(Arc::new(store), ctx))
        .await
        .expect("reconcile never finished: a request was never answered");
    // The context (and with it every client clone) is gone, so the server sees the end.
    let requests = tokio::time::timeout(RECONCILE_TIMEOUT, served)
        .await
        .expect("the client was never dropped")
        .unwrap();
    (result, requests)
}

/// Endpoints where nothing listens (port 1 on loopback: refused at once): the heal pass sees
/// every node and sentinel unreachable, decides nothing and labels nothing. The topology with
/// real Redis behind the mock API server is tested in the tests crate (operator_topology.rs).
fn nothing_listens(_: &Model, nodes: usize, sentinels: usize) -> (Vec<Endpoint>, Vec<Endpoint>) {
    let closed = |count: usize| vec![Endpoint::new("127.0.0.1", 1); count];
    (closed(nodes), closed(sentinels))
}

fn plural_of(path: &str) -> String {
    fixtures::parse_path(path).unwrap().plural
}

fn name_of(path: &str) -> String {
    fixtures::parse_path(path).unwrap().name.unwrap_or_default()
}

fn events(requests: &[Recorded]) -> Vec<&Value> {
    requests
        .iter()
        .filter(|request| request.method == Method::POST && request.path == EVENTS_PATH)
        .map(|request| &request.body)
        .collect()
}

fn applies(requests: &[Recorded]) -> Vec<&Recorded> {
    requests
        .iter()
        .filter(|request| request.method == Method::PATCH && !request.path.ends_with("/status"))
        .collect()
}

/// `(plural, name)` of every object in `children`, in the order apply must send them.
fn expected_applies(children: &Children) -> Vec<(String, String)> {
    let named = |plural: &str, name: &Option<String>| (plural.to_owned(), name.clone().unwrap());
    let mut expected = Vec::new();
    expected.extend(
        children
            .secrets
            .iter()
            .map(|o| named("secrets", &o.metadata.name)),
    );
    expected.extend(
        children
            .config_maps
            .iter()
            .map(|o| named("configmaps", &o.metadata.name)),
    );
    expected.extend(
        children
            .services
            .iter()
            .map(|o| named("services", &o.metadata.name)),
    );
    expected.extend(
        children
            .pod_disruption_budgets
            .iter()
            .map(|o| named("poddisruptionbudgets", &o.metadata.name)),
    );
    expected.extend(
        children
            .network_policies
            .iter()
            .map(|o| named("networkpolicies", &o.metadata.name)),
    );
    expected.extend(
        children
            .stateful_sets
            .iter()
            .map(|o| named("statefulsets", &o.metadata.name)),
    );
    expected.extend(
        children
            .cron_jobs
            .iter()
            .map(|o| named("cronjobs", &o.metadata.name)),
    );
    expected
}

#[tokio::test]
async fn a_default_store_is_applied_in_dependency_order() {
    // Pods must find their Secrets, ConfigMaps and Services when they start; CronJobs come
    // last. Every object goes through server-side apply under our one field manager.
    let store = store("");
    let children = built(&store, &BTreeMap::new());
    let (result, requests) = reconcile_against(FakeCluster::default(), store).await;
    assert_eq!(result.unwrap(), Action::requeue(TOPOLOGY_REQUEUE_AFTER));

    let first = &requests[0];
    assert_eq!(first.line(), "GET /api/v1/namespaces/shop/secrets");
    assert_eq!(
        first.query.get("labelSelector").map(String::as_str),
        Some("app.kubernetes.io/instance=shop,app.kubernetes.io/component=credentials")
    );

    let sent: Vec<(String, String)> = applies(&requests)
        .iter()
        .map(|request| (plural_of(&request.path), name_of(&request.path)))
        .collect();
    assert_eq!(sent, expected_applies(&children));
    let kinds: Vec<String> =
        sent.iter()
            .map(|(plural, _)| plural.clone())
            .fold(Vec::new(), |mut kinds, plural| {
                if kinds.last() != Some(&plural) {
                    kinds.push(plural);
                }
                kinds
            });
    assert_eq!(
        kinds,
        [
            "secrets",
            "configmaps",
            "services",
            "poddisruptionbudgets",
            "networkpolicies",
            "statefulsets",
            "cronjobs"
        ]
    );
    for request in applies(&requests) {
        assert_eq!(
            request.query.get("fieldManager").map(String::as_str),
            Some("abstore-operator")
        );
        assert_eq!(request.query.get("force").map(String::as_str), Some("true"));
        assert_eq!(
            request.body["metadata"]["name"].as_str(),
            Some(name_of(&request.path).as_str())
        );
        assert!(
            request.body["kind"].is_string(),
            "apply body without kind: {}",
            request.path
        );
        assert_eq!(
            request.body["metadata"]["ownerReferences"][0]["kind"], "ABStore",
            "{} has no owner reference",
            request.path
        );
    }
    // After the applies: the orphan search by our labels (reverse order, monitoring kinds
    // first), the primary pod, the status, the Event.
    let last_apply = requests
        .iter()
        .rposition(|request| request.method == Method::PATCH && request.path != STATUS_PATH)
        .unwrap();
    let tail: Vec<String> = requests[last_apply + 1..]
        .iter()
        .map(Recorded::line)
        .collect();
    assert_eq!(
        tail,
        [
            "GET /apis/monitoring.coreos.com/v1/namespaces/shop/prometheusrules",
            "GET /apis/monitoring.coreos.com/v1/namespaces/shop/servicemonitors",
            "GET /apis/batch/v1/namespaces/shop/cronjobs",
            "GET /apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers",
            "GET /apis/apps/v1/namespaces/shop/deployments",
            "GET /apis/apps/v1/namespaces/shop/statefulsets",
            "GET /apis/networking.k8s.io/v1/namespaces/shop/networkpolicies",
            "GET /apis/policy/v1/namespaces/shop/poddisruptionbudgets",
            "GET /api/v1/namespaces/shop/services",
            "GET /api/v1/namespaces/shop/configmaps",
            "GET /api/v1/namespaces/shop/secrets",
            "GET /api/v1/namespaces/shop/pods",
            // The prune CronJob's Jobs: lastPrune and the per-store metrics.
            "GET /apis/batch/v1/namespaces/shop/jobs",
            &format!("PATCH {STATUS_PATH}"),
            &format!("POST {EVENTS_PATH}"),
        ]
    );
    // No object of the store is deleted when everything built was applied.
    assert!(
        requests
            .iter()
            .all(|request| request.method != Method::DELETE)
    );
    let events = events(&requests);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["reason"], REASON_APPLIED);
    assert_eq!(events[0]["type"], "Normal");
    assert_eq!(events[0]["regarding"]["name"], "shop");
}

#[tokio::test]
async fn the_status_patch_reports_generation_conditions_readiness_and_primary() {
    // `kubectl get abs` and alerting read these fields; they are written with server-side
    // apply on /status under our field manager.
    // Every pod runs the update revision: Progressing is False although the StatefulSets'
    // currentRevision never moved (OnDelete).
    let mut objects = store_pods();
    objects[2]["metadata"]["labels"]["abstore.dev/role"] = json!("primary");
    assert_eq!(objects[2]["metadata"]["name"], "shop-redis-1");
    let cluster = FakeCluster {
        objects,
        stateful_set_status: all_ready(),
        ..FakeCluster::default()
    };
    let (result, requests) = reconcile_against(cluster, store("")).await;
    result.unwrap();

    // The primary comes from the role label (heal reached no Redis here).
    let pods = requests
        .iter()
        .filter(|request| request.path == "/api/v1/namespaces/shop/pods")
        .find(|request| {
            request
                .query
                .get("labelSelector")
                .is_some_and(|selector| selector.contains("abstore.dev/role"))
        })
        .unwrap();
    assert_eq!(
        pods.query.get("labelSelector").map(String::as_str),
        Some(
            "app.kubernetes.io/instance=shop,app.kubernetes.io/component=redis,abstore.dev/role=primary"
        )
    );
    let patch = requests
        .iter()
        .find(|request| request.path == STATUS_PATH)
        .unwrap();
    assert_eq!(patch.method, Method::PATCH);
    assert_eq!(
        patch.query.get("fieldManager").map(String::as_str),
        Some("abstore-operator")
    );
    assert_eq!(patch.query.get("force").map(String::as_str), Some("true"));
    let body = &patch.body;
    assert_eq!(body["apiVersion"], "abstore.dev/v1alpha1");
    assert_eq!(body["kind"], "ABStore");
    let status = &body["status"];
    assert_eq!(status["observedGeneration"], 2);
    assert_eq!(status["phase"], "Ready");
    assert_eq!(status["ready"], "3/3");
    assert_eq!(status["sentinels"], "3/3");
    assert_eq!(status["readyReplicas"], 3);
    assert_eq!(status["readySentinels"], 3);
    assert_eq!(status["primary"], "shop-redis-1");
    let conditions: BTreeMap<&str, &str> = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|condition| {
            (
                condition["type"].as_str().unwrap(),
                condition["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        conditions,
        BTreeMap::from([
            ("Applied", "True"),
            ("Degraded", "False"),
            // Heal reached no sentinel, so nothing says a failover could happen.
            ("FailoverReady", "False"),
            ("InvalidSpec", "False"),
            // Heal reached no Redis (nothing listens): the primary comes from the pod label
            // only, which is not enough for this condition.
            ("PrimaryAvailable", "False"),
            ("Progressing", "False"),
            ("Ready", "True")
        ])
    );
}

#[tokio::test]
async fn children_no_longer_built_are_deleted_and_unlabelled_objects_are_kept() {
    // The backup CronJob of a removed destination and a removed user's Secret go; a Secret
    // the user made (no labels) and another store's objects stay; PVCs are never touched.
    let cluster = FakeCluster {
        objects: vec![
            existing_child("batch/v1", "CronJob", "shop-backup", "backup"),
            existing_child("v1", "Secret", "shop-user-olduser", "credentials"),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "shop-tls", "namespace": NAMESPACE}}),
            {
                let mut other = existing_child("v1", "ConfigMap", "other-config", "config");
                other["metadata"]["labels"]["app.kubernetes.io/instance"] = json!("other");
                other
            },
            existing_child("v1", "PersistentVolumeClaim", "data-shop-redis-0", "redis"),
        ],
        ..FakeCluster::default()
    };
    let (result, requests) = reconcile_against(cluster, store("")).await;
    result.unwrap();

    let deletes: Vec<String> = requests
        .iter()
        .filter(|request| request.method == Method::DELETE)
        .map(Recorded::line)
        .collect();
    assert_eq!(
        deletes,
        [
            "DELETE /apis/batch/v1/namespaces/shop/cronjobs/shop-backup",
            "DELETE /api/v1/namespaces/shop/secrets/shop-user-olduser",
        ]
    );
    assert!(
        requests
            .iter()
            .all(|request| !request.path.contains("persistentvolumeclaims"))
    );
    // Orphans are found by our labels only.
    for list in requests
        .iter()
        .filter(|request| request.method == Method::GET && request.path.ends_with("cronjobs"))
    {
        assert_eq!(
            list.query.get("labelSelector").map(String::as_str),
            Some("app.kubernetes.io/instance=shop,app.kubernetes.io/managed-by=abstore-operator")
        );
    }
    let events = events(&requests);
    let deleted = events
        .iter()
        .find(|event| event["reason"] == REASON_DELETED_ORPHANS)
        .unwrap();
    let note = deleted["note"].as_str().unwrap();
    assert!(
        note.contains("CronJob/shop-backup") && note.contains("Secret/shop-user-olduser"),
        "{note}"
    );
}

#[tokio::test]
async fn an_invalid_spec_only_writes_the_status_and_a_warning_event() {
    // A refused spec must not change anything that runs: no reads of Secrets, no applies,
    // no deletes — only the InvalidSpec condition and an Event naming the field.
    let store = store("sentinel:\n  replicas: 3\n  quorum: 5\n");
    let (result, requests) = reconcile_against(FakeCluster::default(), store).await;
    assert_eq!(result.unwrap(), Action::requeue(INVALID_SPEC_REQUEUE_AFTER));

    let lines: Vec<String> = requests.iter().map(Recorded::line).collect();
    assert_eq!(
        lines,
        [
            format!("PATCH {STATUS_PATH}"),
            format!("POST {EVENTS_PATH}")
        ]
    );
    let status = &requests[0].body["status"];
    assert_eq!(status["phase"], "Invalid");
    assert_eq!(status["observedGeneration"], 2);
    let invalid = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|condition| condition["type"] == "InvalidSpec")
        .unwrap();
    assert_eq!(invalid["status"], "True");
    assert!(
        invalid["message"]
            .as_str()
            .unwrap()
            .contains("spec.sentinel.quorum"),
        "{invalid}"
    );
    let event = &requests[1].body;
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "InvalidSpec");
    assert!(
        event["note"]
            .as_str()
            .unwrap()
            .contains("spec.sentinel.quorum")
    );
}

#[tokio::test]
async fn existing_passwords_are_kept_in_the_credentials_secret_and_the_acl() {
    // Regenerating passwords on every reconcile would lock every client out.
    const KEPT: &str = "kept-password-0123456789abcdef";
    let mut secret = existing_child("v1", "Secret", "shop-user-app", "credentials");
    secret["data"] = json!({"username": BASE64.encode("app"), "password": BASE64.encode(KEPT)});
    let cluster = FakeCluster {
        objects: vec![secret],
        ..FakeCluster::default()
    };
    let store = store("");
    let model = validate(&store).unwrap();
    let (result, requests) = reconcile_against(cluster, store).await;
    result.unwrap();

    let applied_secret = |name: &str| {
        applies(&requests)
            .into_iter()
            .find(|request| request.path == format!("/api/v1/namespaces/shop/secrets/{name}"))
            .unwrap_or_else(|| panic!("Secret {name} was not applied"))
            .body
            .clone()
    };
    let decoded =
        |value: &Value| String::from_utf8(BASE64.decode(value.as_str().unwrap()).unwrap()).unwrap();
    let app = applied_secret("shop-user-app");
    let password = app["data"]["password"]
        .as_str()
        .map(|_| decoded(&app["data"]["password"]))
        .or_else(|| app["stringData"]["password"].as_str().map(str::to_owned))
        .unwrap();
    assert_eq!(password, KEPT);
    let acl = applied_secret(&acl_secret_name(&model));
    let acl_text: String = acl["data"]
        .as_object()
        .map(|data| data.values().map(decoded).collect())
        .or_else(|| {
            acl["stringData"]
                .as_object()
                .map(|data| data.values().filter_map(Value::as_str).collect())
        })
        .unwrap();
    let digest = hex::encode(Sha256::digest(KEPT.as_bytes()));
    assert!(
        acl_text.contains(&format!("#{digest}")),
        "ACL file lacks the kept password's hash"
    );
}

#[tokio::test]
async fn monitoring_objects_are_skipped_with_a_condition_when_the_crds_are_absent() {
    // A cluster without the Prometheus Operator (most clusters) still gets a working store: the
    // API server answers a plain-text 404 for the group, which must neither fail the reconcile
    // (the orphan search used to) nor be sent an apply; the condition and an Event say why.
    let store = store("monitoring:\n  serviceMonitor:\n    enabled: true\n");
    let cluster = FakeCluster {
        absent_groups: vec!["monitoring.coreos.com".to_owned()],
        ..FakeCluster::default()
    };
    let (result, requests) = reconcile_against(cluster, store).await;
    assert_eq!(result.unwrap(), Action::requeue(TOPOLOGY_REQUEUE_AFTER));
    assert!(
        requests
            .iter()
            .all(|request| !request.path.contains("/servicemonitors")
                && !request.path.contains("/prometheusrules")),
        "a request to a kind the server does not serve"
    );
    let events = events(&requests);
    let warning = events
        .iter()
        .find(|event| event["reason"] == REASON_MONITORING_UNAVAILABLE)
        .unwrap();
    assert_eq!(warning["type"], "Warning");
    let status = status_patch(&requests);
    let condition = condition_of(&status, "MonitoringApplied");
    assert_eq!(condition["status"], "False");
    assert_eq!(condition["reason"], "CRDsMissing");
    assert_eq!(condition_of(&status, "Applied")["status"], "True");
}

#[tokio::test]
async fn monitoring_objects_are_applied_once_the_crds_are_served() {
    // The same store on a cluster that serves the group: the ServiceMonitor is applied and the
    // condition says so (the operator asks discovery every reconcile, so CRDs installed later
    // are picked up).
    let store = store("monitoring:\n  serviceMonitor:\n    enabled: true\n");
    let (result, requests) = reconcile_against(FakeCluster::default(), store).await;
    assert_eq!(result.unwrap(), Action::requeue(TOPOLOGY_REQUEUE_AFTER));
    assert!(requests.iter().any(
        |request| request.method == Method::PATCH && request.path.contains("/servicemonitors/")
    ));
    let status = status_patch(&requests);
    assert_eq!(condition_of(&status, "MonitoringApplied")["status"], "True");
    assert!(
        events(&requests)
            .iter()
            .all(|event| event["reason"] != REASON_MONITORING_UNAVAILABLE)
    );
}

/// The body of the reconcile's status patch.
fn status_patch(requests: &[Recorded]) -> Value {
    requests
        .iter()
        .find(|request| request.path == STATUS_PATH)
        .map(|request| request.body["status"].clone())
        .expect("no status patch")
}

fn condition_of<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|conditions| conditions.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

#[tokio::test]
async fn a_store_without_monitoring_reconciles_when_monitoring_kinds_are_forbidden() {
    // The chart grants Prometheus Operator kinds only on request; the orphan search of those
    // kinds must then find nothing rather than fail every reconcile.
    let cluster = FakeCluster {
        forbidden_groups: vec!["monitoring.coreos.com".to_owned()],
        ..FakeCluster::default()
    };
    let (result, requests) = reconcile_against(cluster, store("")).await;
    assert_eq!(result.unwrap(), Action::requeue(TOPOLOGY_REQUEUE_AFTER));
    assert!(
        events(&requests)
            .iter()
            .all(|event| event["reason"] != REASON_MONITORING_UNAVAILABLE)
    );
}

#[tokio::test]
async fn a_refused_object_does_not_stop_the_others_heal_or_the_status() {
    // One rejected object (a webhook, an immutable StatefulSet field) used to end the reconcile
    // at the first `?`: nothing after it was applied, heal never ran and the status never said
    // why. Now every other object is applied, orphans are not deleted for it, the status's
    // Applied condition names it, a Warning Event carries it, and the reconcile reports an
    // error only so that retries back off.
    let store = store("");
    let children = built(&store, &BTreeMap::new());
    let cluster = FakeCluster {
        refused_applies: BTreeMap::from([(
            "secrets/shop-user-app".to_owned(),
            (
                422,
                "denied by admission webhook policy.example.com".to_owned(),
            ),
        )]),
        // An object of ours that exists: it must not be deleted as an orphan.
        objects: vec![existing_child(
            "v1",
            "Secret",
            "shop-user-app",
            "credentials",
        )],
        ..FakeCluster::default()
    };
    let (result, requests) = reconcile_against(cluster, store).await;
    let error = result.unwrap_err();
    assert_eq!(error.category(), "apply");
    let sent: Vec<(String, String)> = applies(&requests)
        .iter()
        .map(|request| (plural_of(&request.path), name_of(&request.path)))
        .collect();
    assert_eq!(
        sent,
        expected_applies(&children),
        "every object was still applied"
    );
    assert!(
        requests
            .iter()
            .all(|request| request.method != Method::DELETE),
        "a refused object was deleted as an orphan"
    );
    // Heal ran (it read the pods), and the status was written.
    let status = status_patch(&requests);
    let applied = condition_of(&status, "Applied");
    assert_eq!(applied["status"], "False");
    assert!(
        applied["message"]
            .as_str()
            .unwrap()
            .contains("Secret shop-user-app"),
        "{applied}"
    );
    assert!(
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "PrimaryAvailable")
    );
    let events = events(&requests);
    let warning = events
        .iter()
        .find(|event| event["reason"] == "ReconcileFailedApply")
        .unwrap();
    assert_eq!(warning["type"], "Warning");
    assert!(
        warning["note"]
            .as_str()
            .unwrap()
            .contains("admission webhook")
    );
    assert_eq!(
        events
            .iter()
            .filter(|event| event["type"] == "Warning")
            .count(),
        1,
        "one Warning per failing phase, not one more for the returned error"
    );
    assert!(events.iter().all(|event| event["reason"] != REASON_APPLIED));
}

#[tokio::test]
async fn a_standby_replica_does_not_touch_the_cluster() {
    // With leader election only the Lease holder reconciles; a queued reconcile on a replica
    // that just lost the Lease must not race the new leader.
    let (client, server) = mock_client();
    let (_leadership_tx, leadership) = tokio::sync::watch::channel(Leadership::Following {
        holder: Some("other-pod".to_owned()),
    });
    let ctx = Arc::new(Context::new(
        client,
        Arc::new(Metrics::new()),
        "test-operator",
        Some(leadership),
    ));
    let action = tokio::time::timeout(RECONCILE_TIMEOUT, reconcile(Arc::new(store("")), ctx))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(action, Action::await_change());
    server.done().await;
}

#[tokio::test]
async fn a_scale_down_keeps_the_pod_labelled_primary_until_it_has_moved() {
    // Removing the primary's pod would force an unplanned failover: the StatefulSet keeps its
    // replicas until a switchover has moved the primary to a pod that stays.
    let pods = |primary: usize| -> Vec<Value> {
        (0..3)
            .map(|ordinal| {
                let mut pod =
                    existing_child("v1", "Pod", &format!("shop-redis-{ordinal}"), "redis");
                let role = if ordinal == primary {
                    "primary"
                } else {
                    "replica"
                };
                pod["metadata"]["labels"]["abstore.dev/role"] = json!(role);
                pod
            })
            .collect()
    };
    let replicas_applied = |requests: &[Recorded]| {
        requests
            .iter()
            .find(|r| r.method == Method::PATCH && r.path.ends_with("/statefulsets/shop-redis"))
            .map(|r| r.body["spec"]["replicas"].as_i64().unwrap())
            .unwrap()
    };
    let scaled = store("redis:\n  replicas: 1\n");

    let held = FakeCluster {
        objects: pods(2),
        ..FakeCluster::default()
    };
    let (result, requests) = reconcile_against(held, scaled.clone()).await;
    result.unwrap();
    assert_eq!(
        replicas_applied(&requests),
        3,
        "held while shop-redis-2 is primary"
    );

    let moved = FakeCluster {
        objects: pods(0),
        ..FakeCluster::default()
    };
    let (result, requests) = reconcile_against(moved, scaled).await;
    result.unwrap();
    assert_eq!(
        replicas_applied(&requests),
        1,
        "scaled down once the primary stays"
    );
}

#[tokio::test]
async fn a_renewed_tls_certificate_restamps_both_pod_templates_and_restarts_nothing_itself() {
    // Redis and Sentinel read their certificates only when they start: a certificate renewed
    // in the Secret (cert-manager) must change the pod templates so the rollout planner restarts
    // the pods in its failover-aware order. The reconcile itself deletes no pod.
    // (Heal then dials with the Secret's CA: rustls needs its provider, as in the operator.)
    abstore::crypto::install_default_provider();
    let tls_secret = |cert: &str| {
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "shop-tls", "namespace": NAMESPACE},
            "data": {"ca.crt": BASE64.encode("CA"), "tls.crt": BASE64.encode(cert),
                "tls.key": BASE64.encode("KEY")}})
    };
    let spec = "tls: {enabled: true, secretName: shop-tls}";
    // The fingerprint on each applied StatefulSet's pod template, by StatefulSet name.
    let stamps = |requests: &[Recorded]| -> BTreeMap<String, Option<String>> {
        requests
            .iter()
            .filter(|r| r.method == Method::PATCH && r.path.contains("/statefulsets/"))
            .map(|r| {
                (
                    r.path.rsplit('/').next().unwrap().to_owned(),
                    r.body["spec"]["template"]["metadata"]["annotations"]
                        [TLS_FINGERPRINT_ANNOTATION]
                        .as_str()
                        .map(str::to_owned),
                )
            })
            .collect()
    };
    let with_cert = |cert: &str| FakeCluster {
        objects: vec![tls_secret(cert)],
        ..FakeCluster::default()
    };
    let (_, first) = reconcile_against(with_cert("cert-1"), store(spec)).await;
    let (_, again) = reconcile_against(with_cert("cert-1"), store(spec)).await;
    let (_, renewed) = reconcile_against(with_cert("cert-2"), store(spec)).await;
    let first_stamps = stamps(&first);
    assert_eq!(
        first_stamps.keys().collect::<Vec<_>>(),
        ["shop-redis", "shop-sentinel"]
    );
    let stamp = first_stamps["shop-redis"].clone().expect("a fingerprint");
    assert_eq!(first_stamps["shop-sentinel"].as_ref(), Some(&stamp));
    assert_eq!(
        stamps(&again),
        first_stamps,
        "same certificate, same templates"
    );
    let renewed_stamps = stamps(&renewed);
    assert!(
        renewed_stamps
            .values()
            .all(|s| s.is_some() && s.as_ref() != Some(&stamp)),
        "{renewed_stamps:?} after renewal, {stamp} before"
    );

    // Without a readable Secret the templates carry no stamp, and still nothing restarts (the
    // rollout only runs after a heal pass, which needs the CA).
    let (_, missing) = reconcile_against(FakeCluster::default(), store(spec)).await;
    assert!(
        stamps(&missing).values().all(Option::is_none),
        "{:?}",
        stamps(&missing)
    );
    for requests in [&first, &again, &renewed, &missing] {
        assert!(
            !requests
                .iter()
                .any(|r| r.method == Method::DELETE && r.path.contains("/pods/")),
            "{:?}",
            requests.iter().map(Recorded::line).collect::<Vec<_>>()
        );
    }
}

/// A Ready pod of the store's `component`, created from StatefulSet revision `revision`.
fn store_pod(name: &str, component: &str, revision: &str) -> Value {
    let mut pod = existing_child("v1", "Pod", name, component);
    pod["metadata"]["labels"]["controller-revision-hash"] = json!(revision);
    pod["status"] = json!({"conditions": [{"type": "Ready", "status": "True"}]});
    pod
}

/// Every pod of the default store, Ready and on revision `r1` (what `all_ready()` reports as
/// both StatefulSets' update revision).
fn store_pods() -> Vec<Value> {
    (0..3)
        .flat_map(|ordinal| {
            [
                store_pod(&format!("shop-redis-{ordinal}"), "redis", "r1"),
                store_pod(&format!("shop-sentinel-{ordinal}"), "sentinel", "r1"),
            ]
        })
        .collect()
}

#[tokio::test]
async fn an_outdated_pod_that_cannot_pull_its_image_is_replaced_even_while_heal_waits() {
    // Issue 16, item 7: a rollout moved shop-redis-1 to revision r2, whose image cannot be
    // pulled; the spec was reverted (update revision r1 again). With OnDelete nothing replaces
    // the pod but the operator, and before, the rollout ran only on a settled topology and
    // then waited for every pod to be Ready: recovering took a `kubectl delete pod`. Here heal
    // reaches nothing (it waits), and the stuck pod is still replaced; nothing else is touched.
    let mut objects = store_pods();
    objects[2] = store_pod("shop-redis-1", "redis", "r2");
    objects[2]["status"] = json!({
        "conditions": [{"type": "Ready", "status": "False"}],
        "containerStatuses": [{"name": "redis", "image": "redis:bad", "imageID": "",
            "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}],
    });
    let cluster = FakeCluster {
        objects,
        stateful_set_status: all_ready(),
        recreate_deleted_pods: true,
        ..FakeCluster::default()
    };
    let (result, requests) = reconcile_against(cluster, store("")).await;
    assert_eq!(result.unwrap(), Action::requeue(TOPOLOGY_REQUEUE_AFTER));
    let deletes: Vec<String> = requests
        .iter()
        .filter(|request| request.method == Method::DELETE)
        .map(Recorded::line)
        .collect();
    assert_eq!(
        deletes,
        ["DELETE /api/v1/namespaces/shop/pods/shop-redis-1"]
    );
    let restarts: Vec<&Value> = events(&requests)
        .into_iter()
        .filter(|event| event["reason"] == REASON_ROLLING_RESTART)
        .collect();
    assert_eq!(restarts.len(), 1, "{restarts:?}");
    let note = restarts[0]["note"].as_str().unwrap();
    assert!(
        note.contains("shop-redis-1") && note.contains("ImagePullBackOff"),
        "{note}"
    );
}

/// A Job of the store's `component` CronJob that finished at `at` (`Complete` or `Failed`).
fn finished_job(component: &str, name: &str, condition: &str, at: &str) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {
            "app.kubernetes.io/name": "abstore",
            "app.kubernetes.io/instance": "shop",
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/managed-by": "abstore-operator",
        }},
        "status": {"conditions": [{"type": condition, "status": "True", "lastTransitionTime": at}]},
    })
}

#[tokio::test]
async fn the_last_backup_and_prune_runs_reach_the_status_and_the_per_store_metrics() {
    // Alerts on backup and prune age read the operator's metrics, so the jobs need no scraping:
    // the operator reads their outcome from the Jobs the CronJobs leave behind.
    let cluster = FakeCluster {
        objects: vec![
            finished_job(
                "backup",
                "shop-backup-1",
                "Complete",
                "2026-11-23T00:00:05Z",
            ),
            finished_job(
                "backup",
                "shop-backup-2",
                "Complete",
                "2026-11-23T12:00:07Z",
            ),
            finished_job("prune", "shop-prune-1", "Complete", "2026-11-22T03:30:00Z"),
            finished_job("prune", "shop-prune-2", "Failed", "2026-11-23T03:30:09Z"),
            // The newest successful backup's pod, with its summary line as termination message.
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "shop-backup-2-x7k2p", "namespace": NAMESPACE, "labels": {
                    "job-name": "shop-backup-2",
                    "app.kubernetes.io/instance": "shop",
                    "app.kubernetes.io/component": "backup",
                }},
                "status": {"containerStatuses": [{
                    "name": "backup", "image": "abstore-jobs", "imageID": "", "ready": false,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "message":
                        "{\"command\":\"backup\",\"ok\":true,\"keys\":5210,\"bytes\":73400,\"parts\":1,\"duration_ms\":2500}\n"}},
                }]},
            }),
            // Another store's backup is not this store's.
            {
                let mut other = finished_job(
                    "backup",
                    "other-backup-1",
                    "Complete",
                    "2026-11-24T00:00:00Z",
                );
                other["metadata"]["labels"]["app.kubernetes.io/instance"] = json!("other");
                other
            },
        ],
        ..FakeCluster::default()
    };
    let store = store("backup: {destination: 's3://backups/shop'}");
    let mut cluster = cluster;
    cluster.objects.push(serde_json::to_value(&store).unwrap());
    let (client, server) = mock_client();
    let served = tokio::spawn(cluster.serve(server));
    let metrics = Arc::new(Metrics::new());
    let ctx = Arc::new(
        Context::new(client, metrics.clone(), "test-operator", None)
            .with_endpoints(Arc::new(nothing_listens)),
    );
    tokio::time::timeout(RECONCILE_TIMEOUT, reconcile(Arc::new(store), ctx))
        .await
        .unwrap()
        .unwrap();
    let requests = tokio::time::timeout(RECONCILE_TIMEOUT, served)
        .await
        .unwrap()
        .unwrap();

    let status = &requests
        .iter()
        .rfind(|r| r.method == Method::PATCH && r.path == STATUS_PATH)
        .unwrap()
        .body["status"];
    assert_eq!(status["lastBackup"], "2026-11-23T12:00:07Z", "{status}");
    assert_eq!(status["lastPrune"], "2026-11-22T03:30:00Z", "{status}");

    // The operator's /metrics, scraped over HTTP as Prometheus does.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = abstore_operator::metrics::router(
        metrics,
        Arc::new(abstore_operator::metrics::Readiness::default()),
    );
    let server = tokio::spawn(async move { axum_serve(listener, app).await });
    let text = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: test\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    })
    .await
    .unwrap();
    server.abort();
    let labels = r#"{store_namespace="shop",store="shop"}"#;
    let at = |s: &str| {
        s.parse::<k8s_openapi::jiff::Timestamp>()
            .unwrap()
            .as_second()
    };
    for expected in [
        format!(
            "abstore_operator_backup_last_success_timestamp_seconds{labels} {}",
            at("2026-11-23T12:00:07Z")
        ),
        format!("abstore_operator_backup_last_run_succeeded{labels} 1"),
        // The figures of that run's summary line.
        format!("abstore_operator_backup_last_keys{labels} 5210"),
        format!("abstore_operator_backup_last_bytes{labels} 73400"),
        format!("abstore_operator_backup_last_duration_seconds{labels} 2.5"),
        format!(
            "abstore_operator_prune_last_success_timestamp_seconds{labels} {}",
            at("2026-11-22T03:30:00Z")
        ),
        format!(
            "abstore_operator_prune_last_run_timestamp_seconds{labels} {}",
            at("2026-11-23T03:30:09Z")
        ),
        format!("abstore_operator_prune_last_run_succeeded{labels} 0"),
        format!("abstore_operator_store_redis_desired{labels} 3"),
        format!("abstore_operator_store_sentinel_quorum{labels} 2"),
        // Heal reached nothing here (every endpoint refuses): no primary known.
        format!("abstore_operator_store_primary_available{labels} 0"),
    ] {
        assert!(text.contains(&expected), "missing {expected} in\n{text}");
    }
    assert!(!text.contains(r#"store="other""#), "{text}");
    // The successful prune's pod is gone: no figures rather than stale ones.
    assert!(
        !text.contains("abstore_operator_prune_last_keys{"),
        "{text}"
    );
}

async fn axum_serve(listener: tokio::net::TcpListener, app: axum::Router) -> std::io::Result<()> {
    axum::serve(listener, app).await
}
