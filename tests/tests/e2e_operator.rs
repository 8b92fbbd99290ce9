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

use abstore_tests::k8s::{self, Cluster, OperatorInstall, OperatorProcess, TestNamespace, poll};
use k8s_openapi::api::core::v1::{Endpoints, Pod};
use kube::api::{Api, ListParams};
use serde_json::Value;

/// A store of three Redis pods and three sentinels from images already on the node comes up
/// in about 45 s; on a loaded 2-core machine it takes longer.
const STORE_READY: Duration = Duration::from_secs(300);
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
    cluster
        .install_crd()
        .unwrap_or_else(|error| panic!("{error}"));
    let ns = TestNamespace::create(cluster, test);
    let values = format!("watchNamespace: {}\n{extra_values}", ns.name);
    let install = OperatorInstall::install(cluster, &ns.name, &values)
        .unwrap_or_else(|error| panic!("{error}"));
    let mut operator = install.start("abstore-operator-0");
    ns.report_log(&operator.log);
    operator
        .wait_ready(OPERATOR_READY)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    Setup {
        cluster,
        ns,
        install,
        operator,
    }
}

fn example(name: &str) -> String {
    std::fs::read_to_string(
        abstore_tests::chart_dir()
            .join("examples")
            .join(format!("{name}.yaml")),
    )
    .unwrap_or_else(|error| panic!("reading example {name}: {error}"))
}

/// The store's `.status` as JSON (`Value::Null` when it has none yet).
fn status(cluster: &Cluster, ns: &str, store: &str) -> Result<Value, String> {
    let json = cluster.kubectl(&["get", "abstore", store, "-n", ns, "-o", "json"])?;
    let object: Value = serde_json::from_str(&json).map_err(|error| error.to_string())?;
    Ok(object["status"].clone())
}

fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|condition| condition["type"] == type_)
}

/// Waits until the store is Ready with a primary, and returns its status.
async fn wait_store_ready(cluster: &Cluster, ns: &str, store: &str) -> Value {
    poll(
        &format!("ABStore {store} Ready with a primary"),
        STORE_READY,
        || async {
            let status = status(cluster, ns, store)?;
            let ready = status["phase"] == "Ready"
                && status["primary"].is_string()
                && condition(&status, "PrimaryAvailable").is_some_and(|c| c["status"] == "True");
            if ready {
                Ok(status)
            } else {
                Err(format!("status: {status}"))
            }
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}"))
}

/// `(kind, name)` of every object `abstore-operator render` prints for `yaml` in `ns`.
fn rendered_objects(yaml: &str, ns: &str) -> Vec<(String, String)> {
    let mut render = std::process::Command::new(k8s::operator_binary())
        .args(["render", "-f", "-", "-n", ns])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("abstore-operator render: {error}"));
    std::io::Write::write_all(&mut render.stdin.take().expect("stdin"), yaml.as_bytes())
        .unwrap_or_else(|error| panic!("{error}"));
    let output = render
        .wait_with_output()
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(output.status.success(), "render failed");
    serde_yaml::Deserializer::from_str(&String::from_utf8_lossy(&output.stdout))
        .filter_map(|document| serde::Deserialize::deserialize(document).ok())
        .filter_map(|object: Value| {
            Some((
                object["kind"].as_str()?.to_lowercase(),
                object["metadata"]["name"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// The addresses behind a Service.
async fn endpoint_ips(client: &kube::Client, ns: &str, service: &str) -> Vec<String> {
    let api: Api<Endpoints> = Api::namespaced(client.clone(), ns);
    let Ok(endpoints) = api.get(service).await else {
        return Vec::new();
    };
    endpoints
        .subsets
        .unwrap_or_default()
        .into_iter()
        .flat_map(|subset| subset.addresses.unwrap_or_default())
        .map(|address| address.ip)
        .collect()
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
