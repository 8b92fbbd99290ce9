//! The Helm chart `charts/abstore-operator`, rendered and linted by the real Helm SDK, its
//! output validated against Kubernetes' own schemas (1.28, the oldest supported, and the newest
//! kubernetes-validate ships), and its examples validated against the CRD's schema.
//! Needs the Python tools of `scripts/install-test-deps.sh`; a missing one fails with its name.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

use abstore_operator::crd::ABStore;
use abstore_tests::{
    OLDEST_KUBERNETES, PROMETHEUS_OPERATOR_KINDS, RenderedChart, Verdict, chart_dir, chart_refusal,
    lint_chart, newest_kubernetes_version, render_chart_or_panic, validate_custom_resources,
    validate_manifests,
};

const RELEASE: &str = "abstore";
const RELEASE_NAMESPACE: &str = "abstore-system";
const CRD_FILE: &str = "crds/abstores.abstore.dev.yaml";
const FULL_VALUES: &str = "ci/full-values.yaml";
/// `app.kubernetes.io/name` of the operator pods, which the stores' NetworkPolicies admit
/// (operator/src/build: `OPERATOR_POD_NAME`).
const OPERATOR_POD_NAME: &str = "abstore-operator";
const EXAMPLES: [&str; 3] = [
    "examples/minimal.yaml",
    "examples/full.yaml",
    "examples/local.yaml",
];

fn read_chart_file(path: &str) -> String {
    let path = chart_dir().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn full_values() -> String {
    read_chart_file(FULL_VALUES)
}

/// Renders the chart, panicking with Helm's message when it refuses.
fn render(values: Option<&str>) -> RenderedChart {
    render_chart_or_panic(values, RELEASE, RELEASE_NAMESPACE)
}

fn refusal(values: &str) -> String {
    chart_refusal(values, RELEASE, RELEASE_NAMESPACE)
}

/// Label of the ClusterRoles for people (aggregated into view, edit and admin).
const USER_ROLES_LABEL: &str = "abstore.dev/user-roles";

/// The operator's objects: everything but the ClusterRoles for people ([`user_roles`]).
fn objects(chart: &RenderedChart) -> Vec<Value> {
    chart
        .objects()
        .unwrap()
        .into_iter()
        .filter(|o| o["metadata"]["labels"][USER_ROLES_LABEL].is_null())
        .collect()
}

/// The ClusterRoles for people.
fn user_roles(chart: &RenderedChart) -> Vec<Value> {
    chart
        .objects()
        .unwrap()
        .into_iter()
        .filter(|o| !o["metadata"]["labels"][USER_ROLES_LABEL].is_null())
        .collect()
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn one_of_kind<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found = of_kind(objects, kind);
    assert_eq!(found.len(), 1, "expected one {kind}, got {}", found.len());
    found[0]
}

fn kinds(objects: &[Value]) -> BTreeSet<String> {
    objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
}

/// A role's rules as `group/resource:verb` triples, so two roles compare regardless of how the
/// rules are grouped.
fn permissions(role: &Value) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    set.insert(format!("{group}/{resource}:{verb}"));
                }
            }
        }
    }
    set
}

fn grant(group: &str, resources: &[&str], verbs: &[&str]) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for resource in resources {
        for verb in verbs {
            set.insert(format!("{group}/{resource}:{verb}"));
        }
    }
    set
}

const CHILD_VERBS: [&str; 7] = [
    "get", "list", "watch", "create", "update", "patch", "delete",
];

/// Exactly what the operator touches (see templates/rbac.yaml for why each rule is there).
fn expected_operator_permissions(prometheus_operator: bool) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    set.extend(grant(
        "abstore.dev",
        &["abstores"],
        &["get", "list", "watch"],
    ));
    set.extend(grant(
        "abstore.dev",
        &["abstores/status"],
        &["get", "patch", "update"],
    ));
    set.extend(grant(
        "",
        &["services", "configmaps", "secrets"],
        &CHILD_VERBS,
    ));
    set.extend(grant(
        "apps",
        &["statefulsets", "deployments"],
        &CHILD_VERBS,
    ));
    set.extend(grant(
        "autoscaling",
        &["horizontalpodautoscalers"],
        &CHILD_VERBS,
    ));
    set.extend(grant("policy", &["poddisruptionbudgets"], &CHILD_VERBS));
    set.extend(grant(
        "networking.k8s.io",
        &["networkpolicies"],
        &CHILD_VERBS,
    ));
    set.extend(grant("batch", &["cronjobs"], &CHILD_VERBS));
    set.extend(grant(
        "",
        &["pods"],
        &["get", "list", "watch", "patch", "delete"],
    ));
    set.extend(grant("batch", &["jobs"], &["get", "list", "watch"]));
    set.extend(grant("", &["events"], &["create", "patch"]));
    set.extend(grant("events.k8s.io", &["events"], &["create", "patch"]));
    if prometheus_operator {
        set.extend(grant(
            "monitoring.coreos.com",
            &["servicemonitors", "prometheusrules"],
            &CHILD_VERBS,
        ));
    }
    set
}

fn operator_container(objects: &[Value]) -> &Value {
    let deployment = one_of_kind(objects, "Deployment");
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1);
    &containers[0]
}

fn chart_app_version() -> String {
    let chart: Value = serde_yaml::from_str(&read_chart_file("Chart.yaml")).unwrap();
    chart["appVersion"].as_str().unwrap().to_owned()
}

#[test]
fn the_chart_lints_clean_in_strict_mode_with_default_and_full_values() {
    // `helm lint --strict` fails on warnings too; run it for the oldest supported Kubernetes.
    for values in [None, Some(full_values())] {
        let report = lint_chart(
            &chart_dir(),
            values.as_deref(),
            true,
            Some(&format!("v{OLDEST_KUBERNETES}")),
        )
        .unwrap();
        assert!(
            report.ok,
            "helm lint --strict failed with {}: {report:#?}",
            if values.is_some() {
                FULL_VALUES
            } else {
                "default values"
            }
        );
    }
}

#[test]
fn lint_reports_values_that_break_the_schema() {
    // The lint run above must be able to fail: a value of the wrong type is a lint error.
    let report = lint_chart(&chart_dir(), Some("replicaCount: one\n"), true, None).unwrap();
    assert!(!report.ok, "lint passed with replicaCount: one");
    assert!(
        report
            .messages
            .iter()
            .any(|m| m.severity == "error" && m.message.contains("/replicaCount")),
        "{report:#?}"
    );
}

#[test]
fn default_values_install_one_operator_with_cluster_wide_rbac_and_no_lease_access() {
    let chart = render(None);
    let objects = objects(&chart);
    assert_eq!(
        kinds(&objects),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "NetworkPolicy",
            "Service",
            "ServiceAccount"
        ]
        .map(str::to_owned)
        .into()
    );
    let deployment = one_of_kind(&objects, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 1);
    // Without leader election a rolling update would run two operators at once.
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    let container = operator_container(&objects);
    assert_eq!(
        strings(&container["args"]),
        [
            "run",
            "--listen=0.0.0.0:8080",
            "--log-format=plain",
            "--cluster-domain=cluster.local",
            "--allowed-images=*",
            "--allowed-service-accounts=*"
        ]
    );
    assert_eq!(
        container["image"],
        format!("ghcr.io/abstore/abstore-operator:{}", chart_app_version())
    );

    let role = one_of_kind(&objects, "ClusterRole");
    assert_eq!(permissions(role), expected_operator_permissions(false));
    let binding = one_of_kind(&objects, "ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["kind"], "ServiceAccount");
    assert_eq!(
        binding["subjects"][0]["name"],
        one_of_kind(&objects, "ServiceAccount")["metadata"]["name"]
    );
    assert_eq!(binding["subjects"][0]["namespace"], RELEASE_NAMESPACE);
    assert!(
        !chart.yaml().contains("coordination.k8s.io"),
        "lease permissions without leader election"
    );
}

#[test]
fn the_operator_pod_is_hardened_and_probed_on_its_metrics_port() {
    let objects = objects(&render(None));
    let deployment = one_of_kind(&objects, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    // The stores' NetworkPolicies let the operator in by this label.
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"],
        OPERATOR_POD_NAME
    );

    let container = operator_container(&objects);
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());

    assert_eq!(container["ports"][0]["name"], "http-metrics");
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(
        container["livenessProbe"]["httpGet"]["port"],
        "http-metrics"
    );
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(
        container["readinessProbe"]["httpGet"]["port"],
        "http-metrics"
    );
    let env: Vec<_> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    // POD_NAME is the Lease holder identity; RUST_LOG is left to the operator's default.
    assert_eq!(env, ["POD_NAME", "POD_NAMESPACE"]);

    let service = one_of_kind(&objects, "Service");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http-metrics");
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn people_get_abstore_rights_through_the_built_in_view_edit_and_admin_roles() {
    // Aggregated ClusterRoles: view reads ABStores, edit and admin also write them. They grant
    // the operator nothing (no binding), and can be left out.
    let chart = render(None);
    let roles = user_roles(&chart);
    let by_name = |suffix: &str| {
        roles
            .iter()
            .find(|r| r["metadata"]["name"].as_str().unwrap().ends_with(suffix))
            .unwrap_or_else(|| panic!("no ClusterRole *{suffix}: {roles:?}"))
    };
    let view = by_name("-view");
    let edit = by_name("-edit");
    for (role, aggregates) in [
        (view, ["view", "edit", "admin"].as_slice()),
        (edit, &["edit", "admin"]),
    ] {
        assert_eq!(role["kind"], "ClusterRole");
        for to in aggregates {
            assert_eq!(
                role["metadata"]["labels"][format!("rbac.authorization.k8s.io/aggregate-to-{to}")],
                "true",
                "{role:?}"
            );
        }
    }
    assert!(view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true");
    assert!(edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"].is_null());
    assert_eq!(
        strings(&view["rules"][0]["verbs"]),
        ["get", "list", "watch"]
    );
    assert_eq!(
        strings(&edit["rules"][0]["verbs"]),
        ["create", "update", "patch", "delete", "deletecollection"]
    );
    let chart = render(Some(
        "rbac:\n  create: true\n  aggregateToDefaultRoles: false\n",
    ));
    assert!(user_roles(&chart).is_empty());
}

#[test]
fn the_store_policy_and_cluster_domain_reach_the_operators_flags() {
    let objects = objects(&render(Some(
        "clusterDomain: corp.example\nstorePolicy:\n  allowedImages: [\"registry.example.com/\", \"docker.io/library/redis:\"]\n  allowedServiceAccounts: []\n",
    )));
    let args = strings(&operator_container(&objects)["args"]);
    for expected in [
        "--cluster-domain=corp.example",
        "--allowed-images=registry.example.com/,docker.io/library/redis:",
        "--allowed-service-accounts=",
    ] {
        assert!(
            args.contains(&expected.to_owned()),
            "{expected} not in {args:?}"
        );
    }
}

#[test]
fn a_watch_namespace_confines_rbac_to_a_role_in_that_namespace() {
    let values = "watchNamespace: experimentation\n";
    let objects = objects(&render(Some(values)));
    assert!(of_kind(&objects, "ClusterRole").is_empty());
    assert!(of_kind(&objects, "ClusterRoleBinding").is_empty());
    let role = one_of_kind(&objects, "Role");
    assert_eq!(role["metadata"]["namespace"], "experimentation");
    assert_eq!(permissions(role), expected_operator_permissions(false));
    let binding = one_of_kind(&objects, "RoleBinding");
    assert_eq!(binding["metadata"]["namespace"], "experimentation");
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(binding["subjects"][0]["namespace"], RELEASE_NAMESPACE);
    assert!(
        strings(&operator_container(&objects)["args"])
            .contains(&"--watch-namespace=experimentation".to_owned())
    );
}

#[test]
fn leader_election_adds_lease_access_in_one_namespace_and_its_flags() {
    let objects = objects(&render(Some(
        "replicaCount: 3\nleaderElection:\n  enabled: true\n",
    )));
    let deployment = one_of_kind(&objects, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 3);
    // Standbys may overlap during a rollout: the Lease keeps one active.
    assert_eq!(deployment["spec"]["strategy"], Value::Null);
    let args = strings(&operator_container(&objects)["args"]);
    assert!(args.contains(&"--leader-election".to_owned()), "{args:?}");
    assert!(
        args.contains(&format!("--lease-namespace={RELEASE_NAMESPACE}")),
        "{args:?}"
    );

    let lease_role = one_of_kind(&objects, "Role");
    assert_eq!(lease_role["metadata"]["namespace"], RELEASE_NAMESPACE);
    assert_eq!(
        permissions(lease_role),
        grant(
            "coordination.k8s.io",
            &["leases"],
            &["get", "create", "update"]
        )
    );
    // The cluster-wide role does not grow lease access.
    assert_eq!(
        permissions(one_of_kind(&objects, "ClusterRole")),
        expected_operator_permissions(false)
    );
}

#[test]
fn full_values_render_every_option() {
    let chart = render(Some(&full_values()));
    let objects = objects(&chart);
    assert_eq!(
        kinds(&objects),
        [
            "ConfigMap",
            "Deployment",
            "NetworkPolicy",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            "ServiceMonitor"
        ]
        .map(str::to_owned)
        .into()
    );
    let roles = of_kind(&objects, "Role");
    assert_eq!(roles.len(), 2, "the operator's Role and the lease Role");
    let operator_role = roles
        .iter()
        .find(|r| r["metadata"]["namespace"] == "experimentation")
        .unwrap();
    assert_eq!(
        permissions(operator_role),
        expected_operator_permissions(true)
    );
    let lease_role = roles
        .iter()
        .find(|r| r["metadata"]["namespace"] == "abstore-leases")
        .unwrap();
    assert!(permissions(lease_role).contains("coordination.k8s.io/leases:update"));

    let deployment = one_of_kind(&objects, "Deployment");
    assert_eq!(deployment["metadata"]["name"], "abstore");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let container = operator_container(&objects);
    assert!(
        container["image"]
            .as_str()
            .unwrap()
            .starts_with("registry.example.com/platform/abstore-operator@sha256:"),
        "a digest wins over the tag: {}",
        container["image"]
    );
    assert_eq!(
        strings(&container["args"]),
        [
            "run",
            "--listen=0.0.0.0:9090",
            "--log-format=json",
            "--watch-namespace=experimentation",
            "--cluster-domain=corp.example",
            "--allowed-images=registry.example.com/,docker.io/library/redis:",
            "--allowed-service-accounts=backup-s3",
            "--leader-election",
            "--lease-namespace=abstore-leases"
        ]
    );
    assert_eq!(container["ports"][0]["containerPort"], 9090);
    assert_eq!(container["env"][0]["name"], "RUST_LOG");
    assert_eq!(container["env"][0]["value"], "info,abstore_operator=debug");
    let monitor = one_of_kind(&objects, "ServiceMonitor");
    assert_eq!(
        monitor["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http-metrics");
    assert_eq!(
        one_of_kind(&objects, "ServiceAccount")["metadata"]["name"],
        "abstore-operator-sa"
    );
    // The Grafana dashboard (tests/tests/dashboard.rs checks its content).
    let dashboard = one_of_kind(&objects, "ConfigMap");
    assert_eq!(dashboard["metadata"]["namespace"], "monitoring");
    assert_eq!(
        dashboard["metadata"]["labels"]["grafana_dashboard_abstore"],
        "yes"
    );
    assert!(chart.notes.contains("experimentation"), "{}", chart.notes);
}

#[test]
fn two_operator_pods_without_leader_election_are_refused_with_a_message() {
    // Two unelected operators would reconcile the same stores at once.
    let message = refusal("replicaCount: 2\n");
    assert!(
        message.contains("leaderElection.enabled"),
        "unhelpful message: {message}"
    );
}

#[test]
fn values_of_the_wrong_type_unknown_keys_and_bad_enums_are_refused_by_the_schema() {
    for (values, named) in [
        ("replicaCount: \"2\"\n", "/replicaCount"),
        ("replicaCount: 0\n", "/replicaCount"),
        (
            "logging:\n  format: xml\n  level: info\n",
            "/logging/format",
        ),
        (
            "image:\n  repository: x\n  pullPolicy: Sometimes\n",
            "/image/pullPolicy",
        ),
        ("metrics:\n  port: 80\n", "/metrics/port"),
        (
            "leaderElection:\n  enabled: \"yes\"\n",
            "/leaderElection/enabled",
        ),
        ("watchNamespace: Not_A_Namespace\n", "/watchNamespace"),
        ("replicas: 2\n", "replicas"),
        (
            "rbac:\n  create: true\n  clusterAdmin: true\n",
            "clusterAdmin",
        ),
    ] {
        let message = refusal(values);
        assert!(
            message.contains(named),
            "the refusal of {values:?} does not name {named}: {message}"
        );
    }
}

#[test]
fn the_servicemonitor_needs_the_metrics_service() {
    let message = refusal(
        "metrics:\n  port: 8080\n  service:\n    enabled: false\n  serviceMonitor:\n    enabled: true\n",
    );
    assert!(message.contains("metrics.service.enabled"), "{message}");
}

#[test]
fn rendered_manifests_are_valid_for_kubernetes_1_28_and_the_newest_schemas_strict() {
    let newest = newest_kubernetes_version().unwrap();
    for values in [
        None,
        Some(full_values()),
        Some("replicaCount: 2\nleaderElection:\n  enabled: true\n".to_owned()),
    ] {
        let chart = render(values.as_deref());
        for version in [OLDEST_KUBERNETES, newest.as_str()] {
            validate_manifests(&chart.yaml(), version)
                .unwrap()
                .assert_valid(&PROMETHEUS_OPERATOR_KINDS);
            // The CRD Helm installs from crds/ is itself a valid apiextensions.k8s.io/v1 object.
            assert_eq!(chart.crds.len(), 1);
            validate_manifests(&chart.crds[0], version)
                .unwrap()
                .assert_valid(&[]);
        }
    }
}

#[test]
fn validate_manifests_catches_unknown_fields_wrong_types_and_unknown_kinds() {
    // The validation above must be able to fail.
    let yaml = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: a}
spec: {replicaz: 1, selector: {}, template: {}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: b}
data: {enabled: yes}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: c}
---
apiVersion: v1
kind: Service
metadata: {name: d}
spec: {ports: [{port: 80}]}
";
    let report = validate_manifests(yaml, OLDEST_KUBERNETES).unwrap();
    let verdicts: Vec<_> = report.objects.iter().map(|o| o.verdict).collect();
    assert_eq!(
        verdicts,
        [
            Verdict::Invalid,
            Verdict::Invalid,
            Verdict::UnknownKind,
            Verdict::Valid
        ]
    );
    assert!(report.objects[0].errors[0].contains("replicaz"));
    // kubectl reads an unquoted `yes` as a boolean, and so does the validator.
    assert!(report.objects[1].errors[0].contains("data.enabled"));
    assert_eq!(report.problems(&["Widget"]).len(), 2);
    assert_eq!(report.problems(&[]).len(), 3);
    assert!(
        validate_manifests("", "1.12.0").is_err(),
        "a version without schemas must be an error, not a silent fallback"
    );
}

fn crd_path() -> PathBuf {
    chart_dir().join(CRD_FILE)
}

#[test]
fn the_examples_are_valid_abstores_for_the_crd_schema() {
    for example in EXAMPLES {
        let yaml = read_chart_file(example);
        let verdicts = validate_custom_resources(&crd_path(), &yaml).unwrap();
        assert_eq!(verdicts.len(), 1, "{example}");
        assert_eq!(
            verdicts[0].verdict,
            Verdict::Valid,
            "{example}: {:?}",
            verdicts[0].errors
        );
        // And the operator's own types read them.
        let store: ABStore = serde_yaml::from_str(&yaml)
            .unwrap_or_else(|e| panic!("{example} does not deserialise: {e}"));
        assert_eq!(store.metadata.name.as_deref(), Some("experiments"));
    }
}

#[test]
fn bad_abstores_are_rejected_by_the_crd_schema_naming_the_field() {
    let header = "apiVersion: abstore.dev/v1alpha1\nkind: ABStore\nmetadata: {name: bad}\n";
    for (spec, field) in [
        ("spec: {sentinel: {quorum: 0}}", "spec.sentinel.quorum"),
        (
            "spec: {persistence: {aof: {fsync: sometimes}}}",
            "spec.persistence.aof.fsync",
        ),
        (
            "spec: {redis: {maxmemoryPolicy: lru}}",
            "spec.redis.maxmemoryPolicy",
        ),
        ("spec: {redis: {replicas: \"3\"}}", "spec.redis.replicas"),
        ("spec: {redis: {replicaz: 3}}", "replicaz"),
        (
            "spec: {backup: {destination: \"ftp://x\"}}",
            "spec.backup.destination",
        ),
        (
            "spec: {auth: {users: [{name: Bob, commands: \"+@read\"}]}}",
            "spec.auth.users.0.name",
        ),
        ("spec: {retention: {days: 0}}", "spec.retention.days"),
    ] {
        let yaml = format!("{header}{spec}\n");
        let verdicts = validate_custom_resources(&crd_path(), &yaml).unwrap();
        assert_eq!(verdicts[0].verdict, Verdict::Invalid, "{spec} was accepted");
        assert!(
            verdicts[0].errors.iter().any(|e| e.contains(field)),
            "the rejection of {spec} does not name {field}: {:?}",
            verdicts[0].errors
        );
    }
}

/// Fields whose schema comes from Kubernetes' own types (Affinity, ResourceRequirements, …):
/// the full example sets them, but not every one of their sub-fields.
const KUBERNETES_TYPED_FIELDS: [&str; 8] = [
    "resources",
    "affinity",
    "topologySpreadConstraints",
    "tolerations",
    "nodeSelector",
    "env",
    "allowedClients",
    "metricsScrapers",
];

/// Paths of schema properties that `value` leaves unset.
fn unset_fields(schema: &Value, value: &Value, path: &str, missing: &mut Vec<String>) {
    let Some(properties) = schema["properties"].as_object() else {
        return;
    };
    for (name, property) in properties {
        let field = format!("{path}.{name}");
        match value.get(name) {
            None => missing.push(field),
            Some(_) if KUBERNETES_TYPED_FIELDS.contains(&name.as_str()) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    unset_fields(&property["items"], item, &format!("{field}.{i}"), missing);
                }
            }
            Some(child) => unset_fields(property, child, &field, missing),
        }
    }
}

#[test]
fn the_full_example_sets_every_spec_field() {
    // So that it documents every field, and a new CRD field without an example fails here.
    let crd = serde_json::to_value(abstore_operator::rules::crd()).unwrap();
    let spec_schema =
        &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let example: Value = serde_yaml::from_str(&read_chart_file("examples/full.yaml")).unwrap();
    let mut missing = Vec::new();
    unset_fields(spec_schema, &example["spec"], "spec", &mut missing);
    // spec.cluster is only read in cluster mode (refused beside mode: sentinel): the cluster
    // example documents it.
    missing.retain(|field| field != "spec.cluster");
    assert!(
        missing.is_empty(),
        "examples/full.yaml leaves unset: {missing:?}"
    );
    let cluster_example = abstore_tests::repo_root().join("docs/examples/cluster.yaml");
    let cluster: Value =
        serde_yaml::from_str(&std::fs::read_to_string(&cluster_example).unwrap()).unwrap();
    assert_eq!(cluster["spec"]["mode"], "cluster");
    let mut missing = Vec::new();
    unset_fields(
        &spec_schema["properties"]["cluster"],
        &cluster["spec"]["cluster"],
        "spec.cluster",
        &mut missing,
    );
    assert!(
        missing.is_empty(),
        "docs/examples/cluster.yaml leaves unset: {missing:?}"
    );
}

#[test]
fn the_chart_installs_the_operator_release_it_was_built_with() {
    // appVersion is the default image tag: it must be this workspace's version.
    assert_eq!(chart_app_version(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn the_chart_ships_the_committed_crd_and_its_notes_say_how_to_start() {
    let chart = render(None);
    assert_eq!(chart.crds, [read_chart_file(CRD_FILE)]);
    for needle in [
        "kind: ABStore",
        "get abstores",
        "abstore.dev/client",
        "crds/abstores.abstore.dev.yaml",
    ] {
        assert!(
            chart.notes.contains(needle),
            "NOTES.txt lacks {needle:?}:\n{}",
            chart.notes
        );
    }
}

#[test]
fn the_objects_render_makes_from_the_examples_are_valid_kubernetes_manifests() {
    // What `abstore-operator render` prints (and the controller applies) must be accepted by the
    // oldest and newest supported API servers, strict: no unknown fields, no wrong types as
    // kubectl reads them. ServiceMonitor and PrometheusRule are the Prometheus Operator's CRs.
    let newest = newest_kubernetes_version().unwrap();
    for example in EXAMPLES {
        let rendered =
            abstore_operator::render::render(&read_chart_file(example), Some("experimentation"))
                .unwrap_or_else(|e| panic!("render {example}: {e}"));
        for version in [OLDEST_KUBERNETES, newest.as_str()] {
            let report = validate_manifests(&rendered, version).unwrap();
            report.assert_valid(&PROMETHEUS_OPERATOR_KINDS);
            let kinds: BTreeSet<&str> = report.objects.iter().map(|o| o.kind()).collect();
            for kind in ["StatefulSet", "Service", "ConfigMap", "Secret"] {
                assert!(kinds.contains(kind), "{example}: no {kind} in {kinds:?}");
            }
            if example.ends_with("full.yaml") {
                for kind in [
                    "CronJob",
                    "NetworkPolicy",
                    "PodDisruptionBudget",
                    "ServiceMonitor",
                    "PrometheusRule",
                ] {
                    assert!(kinds.contains(kind), "{example}: no {kind} in {kinds:?}");
                }
            }
        }
    }
}

/// The plural resource name of a kind, as RBAC rules spell it.
fn resource_of(kind: &str) -> String {
    let lower = kind.to_lowercase();
    match lower.strip_suffix('y') {
        Some(stem) => format!("{stem}ies"),
        None => format!("{lower}s"),
    }
}

#[test]
fn the_chart_lets_the_operator_apply_and_delete_every_kind_render_makes() {
    // A kind the operator builds but the ClusterRole does not grant would fail at the first
    // server-side apply in a real cluster, which no other test here has.
    let rendered = abstore_operator::render::render(
        &read_chart_file("examples/full.yaml"),
        Some("experimentation"),
    )
    .unwrap();
    let objects = objects(&render(Some(
        "rbac:\n  create: true\n  prometheusOperator: true\n",
    )));
    let granted = permissions(one_of_kind(&objects, "ClusterRole"));
    let mut kinds = BTreeSet::new();
    for document in serde_yaml::Deserializer::from_str(&rendered) {
        let object: Value = serde::Deserialize::deserialize(document).unwrap();
        if object.is_null() {
            continue;
        }
        let api_version = object["apiVersion"].as_str().unwrap();
        let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
        kinds.insert((
            group.to_owned(),
            resource_of(object["kind"].as_str().unwrap()),
        ));
    }
    assert!(kinds.len() >= 8, "render made too few kinds: {kinds:?}");
    for (group, resource) in kinds {
        // Server-side apply is a PATCH; orphan clean-up lists and deletes; the controller
        // watches what it owns.
        for verb in ["get", "list", "watch", "patch", "delete"] {
            let permission = format!("{group}/{resource}:{verb}");
            assert!(
                granted.contains(&permission),
                "the chart's ClusterRole lacks {permission}"
            );
        }
    }
}

#[test]
fn the_operator_network_policy_admits_only_metrics_and_reaches_only_dns_the_api_and_redis() {
    // The operator holds every store's admin password: its pods take no connections but scrapes
    // and probes, and talk only to what reconciling needs.
    let default = objects(&render(None));
    let policy = one_of_kind(&default, "NetworkPolicy");
    let deployment = one_of_kind(&default, "Deployment");
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(
        policy["spec"]["policyTypes"],
        serde_json::json!(["Ingress", "Egress"])
    );
    let ingress = policy["spec"]["ingress"].as_array().unwrap();
    assert_eq!(ingress.len(), 1);
    assert_eq!(
        ingress[0]["ports"],
        serde_json::json!([{"port": 8080, "protocol": "TCP"}])
    );
    assert!(ingress[0].get("from").is_none());
    let egress = policy["spec"]["egress"].as_array().unwrap();
    let ports: Vec<Vec<i64>> = egress
        .iter()
        .map(|rule| {
            rule["ports"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["port"].as_i64().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(ports, [vec![53, 53], vec![443, 6443], vec![6379, 26379]]);
    // Redis and Sentinel only of pods the operator manages (their labels), in any namespace.
    let redis = &egress[2]["to"][0];
    assert_eq!(redis["namespaceSelector"], serde_json::json!({}));
    assert_eq!(
        redis["podSelector"]["matchLabels"],
        serde_json::json!({"app.kubernetes.io/name": "abstore", "app.kubernetes.io/managed-by": "abstore-operator"})
    );

    // The scrapers and the API server can be pinned; the policy can be switched off.
    let full = objects(&render(Some(&full_values())));
    let policy = one_of_kind(&full, "NetworkPolicy");
    assert_eq!(
        policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );
    assert_eq!(policy["spec"]["ingress"][0]["ports"][0]["port"], 9090);
    assert_eq!(
        policy["spec"]["egress"][1]["to"],
        serde_json::json!([{"ipBlock": {"cidr": "10.0.0.1/32"}}])
    );
    let off = objects(&render(Some("networkPolicy:\n  enabled: false\n")));
    assert!(of_kind(&off, "NetworkPolicy").is_empty());
}
