//! End-to-end with the chart's cluster-wide RBAC (`watchNamespace` empty: a ClusterRole): the
//! operator reconciles stores in any namespace. Also what depends on cluster-scoped state: the
//! Prometheus Operator's CRDs, absent and then installed. One operator at a time watches the
//! whole cluster, so the tests of this file take turns (`CLUSTER_WIDE`); e2e_operator.rs's
//! namespaced tests run in another test binary, never at the same time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use abstore_tests::k8s::{
    self, Cluster, OperatorInstall, STORE_READY, TestNamespace, condition, example, poll,
    rendered_objects, store_status, wait_store_ready,
};
use serde_json::Value;

const OPERATOR_READY: Duration = Duration::from_secs(60);
/// The operator looks for the monitoring CRDs once a minute while they are missing.
const MONITORING_PICKED_UP: Duration = Duration::from_secs(150);
const MONITORING_CRDS: [&str; 3] = [
    "servicemonitors.monitoring.coreos.com",
    "prometheusrules.monitoring.coreos.com",
    "podmonitors.monitoring.coreos.com",
];

static CLUSTER_WIDE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn remove_monitoring_crds(cluster: &Cluster) {
    for crd in MONITORING_CRDS {
        cluster
            .kubectl(&[
                "delete",
                "crd",
                crd,
                "--ignore-not-found",
                "--wait=true",
                "--timeout=120s",
            ])
            .unwrap_or_else(|error| panic!("{error}"));
    }
}

/// The Prometheus Operator's own CRD manifests (v0.93.0, unmodified upstream files in the kit).
fn install_monitoring_crds(cluster: &Cluster) {
    let kit = k8s::kit_dir().expect("the ../shared/k8s kit with the Prometheus Operator's CRDs");
    for file in [
        "monitoring.coreos.com_servicemonitors.yaml",
        "monitoring.coreos.com_prometheusrules.yaml",
    ] {
        let yaml = std::fs::read_to_string(kit.join("manifests").join(file)).unwrap();
        cluster
            .apply(&yaml)
            .unwrap_or_else(|error| panic!("{error}"));
    }
    for crd in &MONITORING_CRDS[..2] {
        cluster
            .kubectl(&[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                &format!("crd/{crd}"),
            ])
            .unwrap_or_else(|error| panic!("{error}"));
    }
}

/// Removes the monitoring CRDs again when the test ends, however it ends: the next run (and
/// every other test) starts from a cluster without them.
struct MonitoringCrds(&'static Cluster);

impl Drop for MonitoringCrds {
    fn drop(&mut self) {
        for crd in MONITORING_CRDS {
            let _ = self
                .0
                .kubectl(&["delete", "crd", crd, "--ignore-not-found", "--wait=false"]);
        }
    }
}

fn monitored_store() -> String {
    "apiVersion: abstore.dev/v1alpha1\nkind: ABStore\nmetadata:\n  name: experiments\nspec:\n  monitoring:\n    serviceMonitor:\n      enabled: true\n    prometheusRule:\n      enabled: true\n".to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_objects_wait_for_the_prometheus_operator_crds_and_appear_once_installed() {
    // Most clusters have no Prometheus Operator: the last round failed every reconcile there
    // (a 404 listing PrometheusRules), so no status was ever written. The store must come up,
    // say why its ServiceMonitor and PrometheusRule are missing, and get them once the CRDs are
    // installed — with the chart's cluster-wide RBAC, rbac.prometheusOperator on.
    let Some(cluster) = k8s::cluster_with_node("monitoring CRDs") else {
        return;
    };
    let _turn = CLUSTER_WIDE.lock().await;
    cluster
        .install_crd()
        .unwrap_or_else(|error| panic!("{error}"));
    remove_monitoring_crds(cluster);
    let _cleanup = MonitoringCrds(cluster);
    let ns = TestNamespace::create(cluster, "monitoring");
    let install = OperatorInstall::install(
        cluster,
        &ns.name,
        "watchNamespace: \"\"\nrbac:\n  prometheusOperator: true\n",
    )
    .unwrap_or_else(|error| panic!("{error}"));
    let mut operator = install.start("abstore-operator-0");
    ns.report_log(&operator.log);
    operator
        .wait_ready(OPERATOR_READY)
        .await
        .unwrap_or_else(|error| panic!("{error}"));

    cluster
        .kubectl_with_input(
            &["apply", "-n", &ns.name, "-f", "-"],
            Some(&monitored_store()),
        )
        .unwrap_or_else(|error| panic!("{error}"));
    let status = wait_store_ready(cluster, &ns.name, "experiments").await;
    let monitoring = condition(&status, "MonitoringApplied").unwrap_or_else(|| panic!("{status}"));
    assert_eq!(monitoring["status"], "False", "{monitoring}");
    assert_eq!(monitoring["reason"], "CRDsMissing", "{monitoring}");
    assert_eq!(condition(&status, "Applied").unwrap()["status"], "True");
    let events = cluster
        .kubectl(&[
            "get",
            "events",
            "-n",
            &ns.name,
            "--field-selector=reason=MonitoringCRDsMissing",
            "-o",
            "name",
        ])
        .unwrap();
    assert_eq!(
        events.lines().count(),
        1,
        "one Warning for the missing CRDs, not one per reconcile: {events}"
    );

    install_monitoring_crds(cluster);
    let installed = std::time::Instant::now();
    poll(
        "the ServiceMonitor and PrometheusRule",
        MONITORING_PICKED_UP,
        || async {
            let objects = cluster.kubectl(&[
                "get",
                "servicemonitors,prometheusrules",
                "-n",
                &ns.name,
                "-o",
                "name",
            ])?;
            let status = store_status(cluster, &ns.name, "experiments")?;
            let applied =
                condition(&status, "MonitoringApplied").is_some_and(|c| c["status"] == "True");
            if objects.lines().count() == 2 && applied {
                Ok(())
            } else {
                Err(format!("{objects:?}, {status}"))
            }
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    println!(
        "monitoring objects applied {} s after the CRDs were installed",
        installed.elapsed().as_secs()
    );
    let uid = cluster
        .kubectl(&[
            "get",
            "abstore",
            "experiments",
            "-n",
            &ns.name,
            "-o",
            "jsonpath={.metadata.uid}",
        ])
        .unwrap();
    for kind in ["servicemonitor", "prometheusrule"] {
        let owner = cluster
            .kubectl(&[
                "get",
                kind,
                "-n",
                &ns.name,
                "-o",
                "jsonpath={.items[0].metadata.ownerReferences[0].uid}",
            ])
            .unwrap();
        assert_eq!(owner, uid, "{kind} not owned by the store");
    }
    drop(operator);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_example_gets_every_object_owned_with_conditions_and_columns() {
    // The example with every field set (TLS, S3 backups through IRSA, an extra user,
    // monitoring, NetworkPolicy, affinity for dedicated nodes) in a namespace the operator was
    // not told about: the cluster-wide RBAC must be enough for every object `render` lists.
    // Its pods ask for dedicated nodes this cluster does not have, so they stay Pending: the
    // status must say so (Ready False, 0/3) rather than nothing.
    let Some(cluster) = k8s::cluster_with_node("full example") else {
        return;
    };
    let _turn = CLUSTER_WIDE.lock().await;
    cluster
        .install_crd()
        .unwrap_or_else(|error| panic!("{error}"));
    let _cleanup = MonitoringCrds(cluster);
    install_monitoring_crds(cluster);
    let operator_ns = TestNamespace::create(cluster, "full-operator");
    let store_ns = TestNamespace::create(cluster, "full");
    let install = OperatorInstall::install(
        cluster,
        &operator_ns.name,
        "watchNamespace: \"\"\nrbac:\n  prometheusOperator: true\n",
    )
    .unwrap_or_else(|error| panic!("{error}"));
    let mut operator = install.start("abstore-operator-0");
    store_ns.report_log(&operator.log);
    operator
        .wait_ready(OPERATOR_READY)
        .await
        .unwrap_or_else(|error| panic!("{error}"));

    let full = example("full").replace(
        "namespace: experimentation",
        &format!("namespace: {}", store_ns.name),
    );
    cluster
        .apply(&full)
        .unwrap_or_else(|error| panic!("{error}"));
    let status = poll("the full example's status", STORE_READY, || async {
        let status = store_status(cluster, &store_ns.name, "experiments")?;
        let reported = condition(&status, "Applied").is_some_and(|c| c["status"] == "True")
            && condition(&status, "MonitoringApplied").is_some_and(|c| c["status"] == "True");
        if reported {
            Ok(status)
        } else {
            Err(format!("{status}"))
        }
    })
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        condition(&status, "Ready").unwrap()["status"],
        "False",
        "{status}"
    );
    assert_eq!(status["ready"], "0/3");
    let uid = cluster
        .kubectl(&[
            "get",
            "abstore",
            "experiments",
            "-n",
            &store_ns.name,
            "-o",
            "jsonpath={.metadata.uid}",
        ])
        .unwrap();
    let rendered = rendered_objects(&full, &store_ns.name);
    let kinds: std::collections::BTreeSet<&str> =
        rendered.iter().map(|(kind, _)| kind.as_str()).collect();
    for kind in [
        "cronjob",
        "servicemonitor",
        "prometheusrule",
        "networkpolicy",
        "statefulset",
    ] {
        assert!(kinds.contains(kind), "render lists no {kind}: {kinds:?}");
    }
    for (kind, name) in &rendered {
        let owner = cluster
            .kubectl(&[
                "get",
                kind,
                name,
                "-n",
                &store_ns.name,
                "-o",
                "jsonpath={.metadata.ownerReferences[0].uid}",
            ])
            .unwrap_or_else(|error| panic!("{kind}/{name}: {error}"));
        assert_eq!(owner, uid, "{kind}/{name} is not owned by the store");
    }
    let table = cluster
        .kubectl(&["get", "abs", "-n", &store_ns.name, "--no-headers"])
        .unwrap();
    let columns: Vec<&str> = table.split_whitespace().collect();
    assert_eq!(columns.first(), Some(&"experiments"), "{table}");
    assert!(columns.contains(&"0/3"), "{table}");
    let phase: Value = status["phase"].clone();
    assert_eq!(
        phase, "Pending",
        "pods that cannot be scheduled on a new store: Pending, not Degraded"
    );
    drop(operator);
}
