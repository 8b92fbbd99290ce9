//! Metric names the alerts and the dashboard may use: redis_exporter's and the kubelet's volume
//! statistics, listed in `operator/tests/data/` (each file says where its names come from:
//! neither program runs on the test machines), and the operator's own, rendered by its real
//! registry.

use std::collections::BTreeSet;

use abstore_operator::job_runs::{Figures, LastRuns, last_runs};
use abstore_operator::metrics::{Metrics, StoreSnapshot};
use k8s_openapi::api::batch::v1::Job;

use crate::python::repo_root;

/// redis_exporter's metric names.
pub const REDIS_EXPORTER_METRICS: &str = "redis_exporter_metrics.txt";
/// The kubelet's volume statistics.
pub const KUBELET_METRICS: &str = "kubelet_metrics.txt";

/// The names listed in the given files of `operator/tests/data/` (comments and blank lines
/// skipped). Panics naming the file when it cannot be read.
pub fn listed_metric_names(files: &[&str]) -> BTreeSet<String> {
    let dir = repo_root().join("operator/tests/data");
    files
        .iter()
        .flat_map(|file| {
            let path = dir.join(file);
            std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
                .lines()
                .map(str::trim)
                .filter(|line| !line.starts_with('#') && !line.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The sample names the operator's /metrics has once it has seen a store with both CronJobs
/// (their runs read from a finished Job by the operator's own code, plus a summary's figures)
/// and a failover: counters with their `_total`.
pub fn operator_metric_names() -> BTreeSet<String> {
    let job: Job = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "shop-backup-1"},
        "status": {"conditions": [{
            "type": "Complete",
            "status": "True",
            "lastTransitionTime": "2026-11-24T00:00:00Z",
        }]},
    }))
    .unwrap_or_default();
    let runs = LastRuns {
        figures: Some(Figures {
            keys: 1,
            bytes: Some(1),
            duration_ms: 1,
        }),
        ..last_runs(&[job])
    };
    let metrics = Metrics::new();
    metrics.observe_store(
        "ab",
        "shop",
        &StoreSnapshot {
            backup: Some(runs),
            prune: Some(runs),
            ..StoreSnapshot::default()
        },
    );
    metrics.primary_changed("ab", "shop", "Failover");
    metrics.reconcile_failed("apply");
    metrics
        .render()
        .unwrap_or_default()
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}
