//! The Grafana dashboard the chart ships (`dashboards/abstore.json`, as a ConfigMap for Grafana's
//! dashboard sidecar, behind `grafanaDashboard.enabled`): rendered by the real Helm SDK and
//! validated against Kubernetes' schemas, and every query parsed with promql-parser (Prometheus's
//! grammar) after Grafana's variables are filled in, naming only metrics that exist —
//! redis_exporter's (the list operator/tests/data read from its source) and those the operator's
//! real registry renders — each selector scoped to the store the variables pick.
//! Needs the Python tools of `scripts/install-test-deps.sh`; a missing one fails with its name.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::Value;

use abstore_tests::metric_names::{
    REDIS_EXPORTER_METRICS, listed_metric_names, operator_metric_names,
};
use abstore_tests::{
    OLDEST_KUBERNETES, PROMETHEUS_OPERATOR_KINDS, RenderedChart, chart_dir, chart_refusal,
    newest_kubernetes_version, render_chart_or_panic, validate_manifests,
};

const RELEASE: &str = "abstore";
const RELEASE_NAMESPACE: &str = "abstore-system";
/// The dashboard in the chart, and its key in the ConfigMap.
const DASHBOARD_FILE: &str = "dashboards/abstore.json";
const DASHBOARD_KEY: &str = "abstore.json";
/// What kube-prometheus-stack's Grafana sidecar selects by default.
const SIDECAR_LABEL: &str = "grafana_dashboard";
const SIDECAR_LABEL_VALUE: &str = "1";
const ENABLED: &str = "grafanaDashboard:\n  enabled: true\n";

/// The store the checks pick with the template variables, and what Grafana fills in for its
/// built-in interval variables.
const STORE_NAMESPACE: &str = "experimentation";
const STORE: &str = "experiments";
const GRAFANA_VARIABLES: [(&str, &str); 5] = [
    ("store_namespace", STORE_NAMESPACE),
    ("store", STORE),
    ("__rate_interval", "1m"),
    ("__interval", "30s"),
    ("__range", "6h"),
];

/// What the dashboard must show (issue 8): removing a panel that reads one of these fails here.
const REQUIRED_METRICS: [&str; 24] = [
    "redis_memory_used_bytes",
    "redis_memory_max_bytes",
    "redis_commands_processed_total",
    "redis_commands_duration_seconds_total",
    "redis_commands_total",
    "redis_keyspace_hits_total",
    "redis_keyspace_misses_total",
    "redis_connected_clients",
    "redis_connected_slave_lag_seconds",
    "redis_master_link_up",
    "redis_db_keys",
    "redis_evicted_keys_total",
    "redis_errors_total",
    "redis_rdb_last_bgsave_status",
    "redis_aof_last_write_status",
    "abstore_operator_store_primary_changes_total",
    "abstore_operator_store_redis_ready",
    "abstore_operator_store_redis_desired",
    "abstore_operator_store_sentinels_ready",
    "abstore_operator_store_sentinel_quorum",
    "abstore_operator_backup_last_success_timestamp_seconds",
    "abstore_operator_prune_last_success_timestamp_seconds",
    "abstore_operator_backup_last_run_succeeded",
    "abstore_operator_prune_last_run_succeeded",
];

fn render(values: Option<&str>) -> RenderedChart {
    render_chart_or_panic(values, RELEASE, RELEASE_NAMESPACE)
}

fn refusal(values: &str) -> String {
    chart_refusal(values, RELEASE, RELEASE_NAMESPACE)
}

fn config_maps(chart: &RenderedChart) -> Vec<Value> {
    chart
        .objects()
        .unwrap()
        .into_iter()
        .filter(|o| o["kind"] == "ConfigMap")
        .collect()
}

/// The one ConfigMap of `chart`.
fn dashboard_config_map(chart: &RenderedChart) -> Value {
    let mut found = config_maps(chart);
    assert_eq!(found.len(), 1, "expected one ConfigMap: {found:#?}");
    found.remove(0)
}

fn dashboard_text() -> String {
    let path = chart_dir().join(DASHBOARD_FILE);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn dashboard() -> Value {
    serde_json::from_str(&dashboard_text()).unwrap()
}

/// Valid for the oldest supported Kubernetes and the newest schemas, strict.
fn assert_valid_manifests(chart: &RenderedChart) {
    let newest = newest_kubernetes_version().unwrap();
    for version in [OLDEST_KUBERNETES, newest.as_str()] {
        validate_manifests(&chart.yaml(), version)
            .unwrap()
            .assert_valid(&PROMETHEUS_OPERATOR_KINDS);
    }
}

/// Fills in Grafana's `$name` and `${name}` variables; an unknown one is an error, so a query
/// cannot hide a variable the checks never substituted.
fn interpolate(query: &str) -> Result<String, String> {
    let values: BTreeMap<&str, &str> = GRAFANA_VARIABLES.into_iter().collect();
    let mut out = String::new();
    let mut rest = query;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = match after.strip_prefix('{') {
            Some(braced) => {
                let end = braced
                    .find('}')
                    .ok_or_else(|| format!("unclosed ${{ in {query}"))?;
                (&braced[..end], end + 2)
            }
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        let value = values
            .get(name)
            .ok_or_else(|| format!("unknown Grafana variable ${name} in {query}"))?;
        out.push_str(value);
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// One instant or range selector: its metric name and its equality matchers.
#[derive(Debug)]
struct Selector {
    name: String,
    equal: BTreeMap<String, String>,
}

/// Every selector of a PromQL expression.
fn selectors(expr: &str) -> Result<Vec<Selector>, String> {
    struct Collect(Vec<Selector>);
    impl ExprVisitor for Collect {
        type Error = String;
        fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
            let selector = match expr {
                Expr::VectorSelector(vs) => vs,
                Expr::MatrixSelector(ms) => &ms.vs,
                _ => return Ok(true),
            };
            let name = selector
                .name
                .clone()
                .ok_or_else(|| format!("a selector without a metric name in {expr}"))?;
            let equal = selector
                .matchers
                .matchers
                .iter()
                .filter(|m| matches!(m.op, MatchOp::Equal))
                .map(|m| (m.name.clone(), m.value.clone()))
                .collect();
            self.0.push(Selector { name, equal });
            Ok(true)
        }
    }
    let parsed = parser::parse(expr)?;
    let mut collect = Collect(Vec::new());
    walk_expr(&mut collect, &parsed)?;
    Ok(collect.0)
}

/// The label matchers that confine a selector to the store the variables picked.
fn scope(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Checks queries against the metrics that exist.
struct QueryChecker {
    exporter: BTreeSet<String>,
    operator: BTreeSet<String>,
}

impl QueryChecker {
    fn new() -> Self {
        let checker = QueryChecker {
            exporter: listed_metric_names(&[REDIS_EXPORTER_METRICS]),
            operator: operator_metric_names(),
        };
        // Both lists are real: a broken list would make every check vacuous.
        assert!(
            checker.exporter.contains("redis_up"),
            "{:?}",
            checker.exporter
        );
        assert!(
            checker
                .operator
                .contains("abstore_operator_store_primary_changes_total"),
            "{:?}",
            checker.operator
        );
        checker
    }

    /// A panel query: valid PromQL once the variables are filled in, only known metrics, each
    /// exporter selector on the store's `<store>-metrics` Service in its namespace (the target
    /// labels Prometheus attaches), each operator selector on the store's labels. Returns the
    /// metric names.
    fn panel_query(&self, query: &str) -> Result<BTreeSet<String>, String> {
        let exporter_scope = scope(&[
            ("namespace", STORE_NAMESPACE),
            ("service", &format!("{STORE}-metrics")),
        ]);
        let operator_scope = scope(&[("store_namespace", STORE_NAMESPACE), ("store", STORE)]);
        self.query(query, &exporter_scope, &operator_scope)
    }

    /// A template variable's `label_values(<selector>, <label>)`: its selector must be valid and
    /// name an operator metric, narrowed by the labels `narrowed_by`.
    fn variable_query(&self, query: &str, narrowed_by: &[(&str, &str)]) -> Result<String, String> {
        let (selector, label) = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .and_then(|q| q.rsplit_once(','))
            .ok_or_else(|| format!("not label_values(<selector>, <label>): {query}"))?;
        let names = self.query(selector, &BTreeMap::new(), &scope(narrowed_by))?;
        if names.iter().any(|n| self.exporter.contains(n)) {
            return Err(format!(
                "{query}: the store pickers read the operator's metrics"
            ));
        }
        Ok(label.trim().to_owned())
    }

    fn query(
        &self,
        query: &str,
        exporter_scope: &BTreeMap<String, String>,
        operator_scope: &BTreeMap<String, String>,
    ) -> Result<BTreeSet<String>, String> {
        let expr = interpolate(query)?;
        let selectors = selectors(&expr).map_err(|e| format!("{expr}: {e}"))?;
        if selectors.is_empty() {
            return Err(format!("{expr} selects no metric"));
        }
        let mut names = BTreeSet::new();
        for selector in selectors {
            let scope = if self.exporter.contains(&selector.name) {
                exporter_scope
            } else if self.operator.contains(&selector.name) {
                operator_scope
            } else {
                return Err(format!(
                    "{expr}: {} is neither redis_exporter's nor the operator's",
                    selector.name
                ));
            };
            for (label, value) in scope {
                if selector.equal.get(label) != Some(value) {
                    return Err(format!(
                        "{expr}: {} is not scoped by {label}=\"{value}\"",
                        selector.name
                    ));
                }
            }
            names.insert(selector.name);
        }
        Ok(names)
    }
}

/// Every panel, rows' collapsed panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        all.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            all.extend(nested);
        }
    }
    all
}

fn variable<'a>(dashboard: &'a Value, name: &str) -> &'a Value {
    dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no template variable {name}"))
}

/// A query variable's query: a string, or the object newer Grafana writes.
fn variable_query_text(variable: &Value) -> &str {
    variable["query"]
        .as_str()
        .or_else(|| variable["query"]["query"].as_str())
        .unwrap_or_else(|| panic!("no query in {variable}"))
}

#[test]
fn the_dashboard_is_off_by_default() {
    // Not every cluster runs Grafana: an unasked-for ConfigMap is clutter.
    assert!(config_maps(&render(None)).is_empty());
}

#[test]
fn enabled_it_is_one_config_map_the_grafana_sidecar_loads_holding_the_charts_json() {
    let chart = render(Some(ENABLED));
    let map = dashboard_config_map(&chart);
    let metadata = &map["metadata"];
    assert_eq!(metadata["name"], "abstore-abstore-operator-dashboard");
    assert_eq!(metadata["namespace"], RELEASE_NAMESPACE);
    assert_eq!(metadata["labels"][SIDECAR_LABEL], SIDECAR_LABEL_VALUE);
    assert!(metadata.get("annotations").is_none(), "{metadata}");
    // The chart's standard labels, as on the Deployment.
    let objects = chart.objects().unwrap();
    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    for (key, value) in deployment["metadata"]["labels"].as_object().unwrap() {
        assert_eq!(&metadata["labels"][key], value, "label {key}");
    }

    let data = map["data"].as_object().unwrap();
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        [DASHBOARD_KEY],
        "one dashboard, under the key the sidecar writes as its file name"
    );
    let shipped = data[DASHBOARD_KEY].as_str().unwrap();
    assert_eq!(shipped.trim_end(), dashboard_text().trim_end());
    let parsed: Value = serde_json::from_str(shipped).unwrap();
    assert_eq!(parsed, dashboard());
    assert_eq!(parsed["title"], "ABStore");

    assert_valid_manifests(&chart);
}

#[test]
fn the_label_its_value_the_namespace_and_annotations_can_be_set() {
    // Grafana's own chart lets the sidecar watch another label, value and namespace, and takes
    // the folder from an annotation.
    let chart = render(Some(&format!(
        "{ENABLED}  namespace: monitoring\n  label: grafana.example.com/dashboard\n  labelValue: \"yes\"\n  annotations:\n    grafana_folder: ABStore\n"
    )));
    let map = dashboard_config_map(&chart);
    let metadata = &map["metadata"];
    assert_eq!(metadata["namespace"], "monitoring");
    // Quoted in the manifest: an unquoted `yes` would reach the API server as a boolean, which
    // the strict validation below rejects.
    assert_eq!(metadata["labels"]["grafana.example.com/dashboard"], "yes");
    assert!(metadata["labels"].get(SIDECAR_LABEL).is_none());
    assert_eq!(metadata["annotations"]["grafana_folder"], "ABStore");
    assert_valid_manifests(&chart);

    // With fullnameOverride the name follows the other objects'.
    let chart = render(Some(&format!("{ENABLED}fullnameOverride: abstore\n")));
    assert_eq!(
        dashboard_config_map(&chart)["metadata"]["name"],
        "abstore-dashboard"
    );
}

#[test]
fn dashboard_values_of_the_wrong_type_or_unknown_keys_are_refused_by_the_schema() {
    for (values, named) in [
        (
            "grafanaDashboard:\n  enabled: \"yes\"\n",
            "/grafanaDashboard/enabled",
        ),
        (
            "grafanaDashboard:\n  enabled: true\n  labelValue: 1\n",
            "/grafanaDashboard/labelValue",
        ),
        (
            "grafanaDashboard:\n  enabled: true\n  label: \"not a label\"\n",
            "/grafanaDashboard/label",
        ),
        (
            "grafanaDashboard:\n  enabled: true\n  namespace: Monitoring\n",
            "/grafanaDashboard/namespace",
        ),
        (
            "grafanaDashboard:\n  enabled: true\n  folder: ABStore\n",
            "folder",
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
fn every_panel_has_a_title_a_unit_and_a_query_on_the_chosen_data_source() {
    let dashboard = dashboard();
    let panels = panels(&dashboard);
    assert!(panels.len() >= 15, "{} panels", panels.len());
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "a panel without a title: {panel}");
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "{title}: id reused"
        );
        assert!(
            ["timeseries", "stat"].contains(&panel["type"].as_str().unwrap()),
            "{title}"
        );
        assert!(
            panel["fieldConfig"]["defaults"]["unit"]
                .as_str()
                .is_some_and(|u| !u.is_empty()),
            "{title} has no unit"
        );
        assert!(
            panel["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{title} has no description"
        );
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has no target");
        let mut ref_ids = BTreeSet::new();
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            assert!(target["expr"].is_string(), "{title}: {target}");
            assert!(
                ref_ids.insert(target["refId"].as_str().unwrap()),
                "{title}: refId reused"
            );
        }
        // On Grafana's 24-column grid, overlapping no other panel.
        let grid = &panel["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| grid[k].as_u64().unwrap());
        assert!(w > 0 && h > 0 && x + w <= 24, "{title}: {grid}");
        for column in x..x + w {
            for row in y..y + h {
                assert!(cells.insert((column, row)), "{title} overlaps a panel");
            }
        }
    }
}

#[test]
fn the_template_variables_pick_one_store_from_the_operators_metrics() {
    let dashboard = dashboard();
    let checker = QueryChecker::new();
    let datasource = variable(&dashboard, "datasource");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");

    let namespace = variable(&dashboard, "store_namespace");
    let store = variable(&dashboard, "store");
    assert_eq!(
        variable_query_text(namespace),
        "label_values(abstore_operator_store_redis_desired, store_namespace)"
    );
    assert_eq!(
        variable_query_text(store),
        r#"label_values(abstore_operator_store_redis_desired{store_namespace="$store_namespace"}, store)"#
    );
    assert_eq!(
        checker
            .variable_query(variable_query_text(namespace), &[])
            .unwrap(),
        "store_namespace"
    );
    assert_eq!(
        checker
            .variable_query(
                variable_query_text(store),
                &[("store_namespace", STORE_NAMESPACE)]
            )
            .unwrap(),
        "store"
    );
    for picker in [namespace, store] {
        assert_eq!(picker["type"], "query");
        assert_eq!(picker["datasource"]["uid"], "${datasource}");
        // The queries match with `=`: one value each, never a list or "All".
        assert_eq!(picker["multi"], false, "{picker}");
        assert_eq!(picker["includeAll"], false, "{picker}");
    }
}

#[test]
fn every_query_parses_names_only_metrics_that_exist_and_is_scoped_to_the_store() {
    let checker = QueryChecker::new();
    let dashboard = dashboard();
    let mut used = BTreeSet::new();
    for panel in panels(&dashboard) {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let names = checker
                .panel_query(expr)
                .unwrap_or_else(|e| panic!("{}: {e}", panel["title"]));
            used.extend(names);
        }
    }
    let missing: Vec<&str> = REQUIRED_METRICS
        .into_iter()
        .filter(|m| !used.contains(*m))
        .collect();
    assert!(missing.is_empty(), "no panel shows {missing:?}");
}

#[test]
fn the_query_checks_can_fail() {
    // An invented metric, a typo, an unscoped selector, another store's Service and a variable
    // the checks do not know are all refused.
    let checker = QueryChecker::new();
    let scoped = r#"{namespace="$store_namespace", service="$store-metrics"}"#;
    assert!(
        checker
            .panel_query(&format!("redis_up{scoped}"))
            .unwrap()
            .contains("redis_up")
    );
    for (query, says) in [
        (
            format!("redis_memory_used_percent{scoped}"),
            "neither redis_exporter's nor the operator's",
        ),
        (
            format!("rate(redis_commands_processed_total{scoped}[5m]"),
            "unclosed",
        ),
        ("redis_connected_clients".to_owned(), "not scoped"),
        (
            r#"redis_connected_clients{namespace="$store_namespace", service="other-metrics"}"#
                .to_owned(),
            "not scoped",
        ),
        (
            r#"abstore_operator_store_redis_ready{store_namespace="$store_namespace"}"#.to_owned(),
            "not scoped by store=",
        ),
        (
            format!("redis_up{scoped}[$__step]"),
            "unknown Grafana variable",
        ),
    ] {
        let error = checker
            .panel_query(&query)
            .expect_err(&format!("{query} was accepted"));
        assert!(
            error.to_lowercase().contains(&says.to_lowercase()),
            "{query}: {error:?} does not say {says:?}"
        );
    }
    assert!(
        checker
            .variable_query("label_values(redis_up, namespace)", &[])
            .is_err()
    );
    assert!(checker.variable_query("query_result(up)", &[]).is_err());
}
