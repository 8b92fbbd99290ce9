//! The PrometheusRule's alerts: every expression is valid PromQL (promql-parser, the grammar
//! Prometheus uses) and names only metrics that exist — redis_exporter's, from the list in
//! operator/tests/data read from its source (it cannot run here), and the operator's own,
//! rendered by its real registry — every threshold comes from the spec, and every alert links to a runbook
//! section that exists in docs/operations.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::Value;

use abstore_operator::build::build;
use abstore_operator::crd::ABStore;
use abstore_operator::credentials::Credentials;
use abstore_operator::validate::validate;
use abstore_tests::metric_names::{
    KUBELET_METRICS, REDIS_EXPORTER_METRICS, listed_metric_names, operator_metric_names,
};

/// Every metric name an expression selects (instant and range selectors).
fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    struct Names(BTreeSet<String>);
    impl ExprVisitor for Names {
        type Error = String;
        fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
            let selector = match expr {
                Expr::VectorSelector(vs) => Some(vs),
                Expr::MatrixSelector(ms) => Some(&ms.vs),
                _ => None,
            };
            if let Some(selector) = selector {
                let name = selector
                    .name
                    .clone()
                    .ok_or_else(|| format!("a selector without a metric name in {expr}"))?;
                self.0.insert(name);
            }
            Ok(true)
        }
    }
    let parsed = parser::parse(expr)?;
    let mut names = Names(BTreeSet::new());
    walk_expr(&mut names, &parsed)?;
    Ok(names.0)
}

/// The rules of the PrometheusRule built for `spec` (monitoring on).
fn rules(spec: &str) -> Vec<Value> {
    let indented: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    let yaml = format!(
        "apiVersion: abstore.dev/v1alpha1\nkind: ABStore\nmetadata:\n  name: shop\n  namespace: ab\nspec:\n{indented}"
    );
    let store: ABStore = serde_yaml::from_str(&yaml).unwrap();
    let model = validate(&store).unwrap();
    let mut password = || "p".repeat(32);
    let credentials = Credentials::resolve(&model, &Default::default(), &mut password);
    let children = build(&model, &credentials).unwrap();
    let rule = children
        .monitoring
        .iter()
        .find(|o| o.types.as_ref().is_some_and(|t| t.kind == "PrometheusRule"))
        .expect("a PrometheusRule");
    rule.data["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .clone()
}

const MONITORED: &str = "monitoring: {prometheusRule: {enabled: true}}";
/// Monitoring with a backup destination (retention is on by default): every alert.
const WITH_JOBS: &str =
    "monitoring: {prometheusRule: {enabled: true}}\nbackup: {destination: 's3://backups/shop'}";

#[test]
fn every_alert_parses_and_names_only_metrics_that_exist() {
    let exporter = listed_metric_names(&[REDIS_EXPORTER_METRICS, KUBELET_METRICS]);
    let ours = operator_metric_names();
    assert!(
        ours.contains("abstore_operator_store_primary_changes_total"),
        "{ours:?}"
    );
    let known: BTreeSet<String> = exporter.union(&ours).cloned().collect();
    let rules = rules(WITH_JOBS);
    assert!(rules.len() >= 17, "{rules:?}");
    for rule in &rules {
        let expr = rule["expr"].as_str().unwrap();
        let names = metric_names(expr).unwrap_or_else(|e| panic!("{}: {expr}: {e}", rule["alert"]));
        assert!(!names.is_empty(), "{}: selects nothing", rule["alert"]);
        let unknown: Vec<&String> = names.difference(&known).collect();
        assert!(
            unknown.is_empty(),
            "{} uses {unknown:?}, which neither redis_exporter, the kubelet nor the operator exports",
            rule["alert"]
        );
        // Scoped to this store: every exporter selector names the store's metrics Service,
        // every operator selector the store.
        assert_eq!(
            expr.matches(r#"service="shop-metrics""#).count(),
            expr.matches("redis_").count(),
            "{}: {expr}",
            rule["alert"]
        );
        assert_eq!(
            expr.matches(r#"store_namespace="ab",store="shop""#).count(),
            expr.matches("abstore_operator_").count(),
            "{}: {expr}",
            rule["alert"]
        );
        assert_eq!(
            expr.matches(r#"namespace="ab",persistentvolumeclaim=~"data-shop-redis-[0-9]+""#)
                .count(),
            expr.matches("kubelet_").count(),
            "{}: {expr}",
            rule["alert"]
        );
        for key in ["summary", "description", "runbook_url"] {
            assert!(
                rule["annotations"][key]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{} has no {key}",
                rule["alert"]
            );
        }
        assert!(
            ["critical", "warning"].contains(&rule["labels"]["severity"].as_str().unwrap()),
            "{rule}"
        );
    }
    // The checks can fail: a typo is not PromQL, an invented metric is not the exporter's.
    assert!(metric_names("redis_up{namespace=\"ab\"").is_err());
    let invented = metric_names("redis_memory_used_percent > 90").unwrap();
    assert!(!invented.is_subset(&known));
}

#[test]
fn every_alert_links_to_its_runbook_section_in_docs_operations() {
    let runbooks = include_str!("../../docs/operations.md");
    let anchors: BTreeSet<String> = runbooks
        .lines()
        .filter_map(|line| line.strip_prefix("### "))
        .map(|heading| heading.trim().to_lowercase())
        .collect();
    for rule in rules(WITH_JOBS) {
        let alert = rule["alert"].as_str().unwrap();
        let url = rule["annotations"]["runbook_url"].as_str().unwrap();
        assert_eq!(
            url,
            format!(
                "https://github.com/abstore/abstore/blob/main/docs/operations.md#{}",
                alert.to_lowercase()
            )
        );
        assert!(
            anchors.contains(&alert.to_lowercase()),
            "docs/operations.md has no `### {alert}` runbook section"
        );
    }
    let custom = rules(
        "monitoring: {prometheusRule: {enabled: true, runbookBaseUrl: 'https://wiki.example/abstore'}}",
    );
    assert_eq!(
        custom[0]["annotations"]["runbook_url"],
        "https://wiki.example/abstore#abstoreredisdown"
    );
}

#[test]
fn thresholds_come_from_the_spec() {
    let expr = |rules: &[Value], alert: &str| -> String {
        rules
            .iter()
            .find(|r| r["alert"] == alert)
            .unwrap_or_else(|| panic!("no {alert}"))["expr"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let alerts = |rules: &[Value]| -> Vec<String> {
        rules
            .iter()
            .map(|r| r["alert"].as_str().unwrap().to_owned())
            .collect()
    };
    // Backup alerts only with a backup destination, prune alerts only with retention on.
    assert!(!alerts(&rules(MONITORED)).contains(&"ABStoreBackupTooOld".to_owned()));
    let no_prune = alerts(&rules(&format!(
        "{WITH_JOBS}\nretention: {{enabled: false}}"
    )));
    assert!(
        no_prune.contains(&"ABStoreBackupFailed".to_owned()),
        "{no_prune:?}"
    );
    assert!(
        !no_prune.contains(&"ABStorePruneFailed".to_owned()),
        "{no_prune:?}"
    );
    let defaults = rules(WITH_JOBS);
    assert!(expr(&defaults, "ABStoreBackupTooOld").ends_with("> 46800"));
    assert!(expr(&defaults, "ABStorePruneTooOld").ends_with("> 93600"));
    assert!(expr(&defaults, "ABStoreVolumeFilling").ends_with("* 100 > 80"));
    assert!(expr(&defaults, "ABStoreMemoryNearLimit").ends_with("* 100 > 90"));
    assert!(expr(&defaults, "ABStoreCommandLatencyHigh").ends_with("> 0.01"));
    assert!(expr(&defaults, "ABStoreReplicationLag").ends_with("> 30"));
    let tuned = rules(
        "backup: {destination: 's3://backups/shop'}\nmonitoring:\n  prometheusRule:\n    enabled: true\n    thresholds: {memoryUsedPercent: 75, commandLatencyMilliseconds: 250, replicationLagSeconds: 5, backupMaxAgeHours: 25, pruneMaxAgeHours: 49, volumeUsedPercent: 70}",
    );
    assert!(expr(&tuned, "ABStoreBackupTooOld").ends_with("> 90000"));
    assert!(expr(&tuned, "ABStorePruneTooOld").ends_with("> 176400"));
    assert!(expr(&tuned, "ABStoreVolumeFilling").ends_with("* 100 > 70"));
    assert!(expr(&tuned, "ABStoreMemoryNearLimit").ends_with("* 100 > 75"));
    assert!(expr(&tuned, "ABStoreCommandLatencyHigh").ends_with("> 0.25"));
    assert!(expr(&tuned, "ABStoreReplicationLag").ends_with("> 5"));
    // The replica count the store should have is in the missing-replicas alert.
    let three = rules(&format!("redis: {{replicas: 4}}\n{MONITORED}"));
    assert!(expr(&three, "ABStoreReplicasMissing").ends_with("< 3"));
}
