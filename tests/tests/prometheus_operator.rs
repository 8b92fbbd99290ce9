//! The ServiceMonitor and PrometheusRule objects — the operator's for a store, and the chart's
//! for the operator — validated against the Prometheus Operator's CRD schemas (the npm package
//! kubernetes-models generates from the upstream CRDs, run with node): what the API server
//! would accept once the Prometheus Operator is installed. kubernetes-validate knows only
//! built-in kinds, so the chart and render tests skip these.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

use abstore_tests::{chart_dir, render_chart, repo_root, validate_prometheus_operator_objects};

const KINDS: [&str; 3] = ["ServiceMonitor", "PodMonitor", "PrometheusRule"];

/// The Prometheus Operator objects among the documents of a multi-document YAML.
fn monitoring_objects(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .filter_map(|document| {
            let value: Value = serde::Deserialize::deserialize(document).ok()?;
            KINDS
                .contains(&value["kind"].as_str().unwrap_or_default())
                .then_some(value)
        })
        .collect()
}

fn assert_all_valid(objects: &[Value]) {
    let verdicts = validate_prometheus_operator_objects(objects).unwrap();
    assert_eq!(verdicts.len(), objects.len());
    for verdict in &verdicts {
        assert!(verdict.valid, "{verdict:?}");
    }
}

#[test]
fn the_operators_service_monitor_and_prometheus_rule_match_the_crds() {
    // The full example turns on every monitoring object and every alert (backup, retention).
    let example =
        std::fs::read_to_string(repo_root().join("charts/abstore-operator/examples/full.yaml"))
            .unwrap();
    let yaml = abstore_operator::render::render(&example, None).unwrap();
    let objects = monitoring_objects(&yaml);
    let kinds: Vec<&str> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ServiceMonitor", "PrometheusRule"]);
    assert!(
        objects[1]["spec"]["groups"][0]["rules"]
            .as_array()
            .unwrap()
            .len()
            >= 18,
        "every alert is in the rule: {}",
        objects[1]
    );
    assert_all_valid(&objects);
}

#[test]
fn the_charts_service_monitor_for_the_operator_matches_the_crd() {
    let chart = render_chart(
        &chart_dir(),
        Some("metrics: {serviceMonitor: {enabled: true, labels: {release: prometheus}}}"),
        "abstore",
        "abstore-system",
    )
    .unwrap()
    .unwrap();
    let objects = monitoring_objects(&chart.yaml());
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_all_valid(&objects);
}

#[test]
fn the_schemas_refuse_what_the_api_server_would() {
    // The control for the tests above: a rule whose `for` is not a duration and a group whose
    // rules are not a list are refused, naming the field.
    let rule = |group: Value| {
        json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": "shop", "namespace": "ab"}, "spec": {"groups": [group]}})
    };
    let objects = [
        rule(
            json!({"name": "g", "rules": [{"alert": "A", "expr": "up == 0", "for": "ten minutes"}]}),
        ),
        rule(json!({"name": "g", "rules": "up == 0"})),
        rule(json!({"name": "g", "rules": [{"alert": "A", "expr": "up == 0", "for": "5m"}]})),
    ];
    let verdicts = validate_prometheus_operator_objects(&objects).unwrap();
    assert!(!verdicts[0].valid, "{verdicts:?}");
    assert!(
        verdicts[0].error.as_deref().unwrap().contains("for"),
        "{verdicts:?}"
    );
    assert!(!verdicts[1].valid, "{verdicts:?}");
    assert!(
        verdicts[1].error.as_deref().unwrap().contains("rules"),
        "{verdicts:?}"
    );
    assert!(verdicts[2].valid, "{verdicts:?}");
}
