//! Prometheus Operator objects (ServiceMonitor, PrometheusRule), built as dynamic objects so
//! the operator does not depend on their CRDs being installed unless a store asks for them.

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use super::meta::owner_references;
use super::volumes::DATA_VOLUME;
use super::{METRICS_COMPONENT, METRICS_PORT_NAME, METRICS_SUFFIX};
use crate::model::Model;
use crate::model::REDIS;

/// API group and version of the Prometheus Operator's kinds.
pub const MONITORING_GROUP: &str = "monitoring.coreos.com";
pub const MONITORING_VERSION: &str = "v1";
pub const SERVICE_MONITOR_KIND: &str = "ServiceMonitor";
pub const PROMETHEUS_RULE_KIND: &str = "PrometheusRule";

/// The ServiceMonitor (needs the exporter) and the PrometheusRule, those enabled.
pub(crate) fn monitoring(model: &Model) -> Vec<DynamicObject> {
    let spec = &model.spec.monitoring;
    let mut objects = Vec::new();
    if spec.service_monitor.enabled && spec.exporter.enabled {
        let data = json!({
            "spec": {
                "selector": { "matchLabels": model.labels(METRICS_COMPONENT) },
                "namespaceSelector": { "matchNames": [model.namespace] },
                "endpoints": [{
                    "port": METRICS_PORT_NAME,
                    "interval": spec.service_monitor.interval,
                }],
            }
        });
        objects.push(object(
            model,
            SERVICE_MONITOR_KIND,
            &spec.service_monitor.labels,
            data,
        ));
    }
    if spec.prometheus_rule.enabled {
        objects.push(object(
            model,
            PROMETHEUS_RULE_KIND,
            &spec.prometheus_rule.labels,
            json!({ "spec": { "groups": [alert_group(model)] } }),
        ));
    }
    objects
}

/// One alerting rule: `name` is also the runbook's anchor in docs/operations.md (lowercased).
struct Alert {
    name: &'static str,
    expr: String,
    for_: &'static str,
    severity: &'static str,
    summary: String,
    description: String,
}

/// The store's alerts: from what redis_exporter reports for its Redis pods (scoped to the store's
/// metrics Service) and from the operator's per-store metrics (scoped by `store_namespace` and
/// `store`). Each has a runbook section in docs/operations.md.
fn alerts(model: &Model) -> Vec<Alert> {
    let scope = format!(
        r#"namespace="{}",service="{}""#,
        model.namespace,
        model.child_name(METRICS_SUFFIX)
    );
    let store = &model.name;
    let replicas = model.redis_replica_count();
    let limits = &model.spec.monitoring.prometheus_rule.thresholds;
    let memory = limits.memory_used_percent;
    let latency_ms = limits.command_latency_milliseconds;
    let lag = limits.replication_lag_seconds;
    // The operator's own per-store metrics (from its /metrics: scrape the operator, e.g. the
    // chart's metrics.serviceMonitor.enabled).
    let ours = format!(
        r#"store_namespace="{}",store="{}""#,
        model.namespace, model.name
    );
    // The kubelet's volume metrics for the Redis pods' data PVCs (`data-<n>-redis-<ordinal>`).
    let volumes = format!(
        r#"namespace="{}",persistentvolumeclaim=~"{}-{}-[0-9]+""#,
        model.namespace,
        DATA_VOLUME,
        model.child_name(REDIS)
    );
    let volume = limits.volume_used_percent;
    let mut alerts = vec![
        Alert {
            name: "ABStoreRedisDown",
            expr: format!("redis_up{{{scope}}} == 0"),
            for_: "2m",
            severity: "critical",
            summary: format!("Redis pod {{{{ $labels.pod }}}} of ABStore {store} is down"),
            description: "redis_exporter cannot reach its Redis: the process is down, hung, or refuses the exporter's login.".to_owned(),
        },
        Alert {
            name: "ABStoreNoPrimary",
            expr: format!(r#"absent(redis_instance_info{{{scope},role="master"}})"#),
            for_: "1m",
            severity: "critical",
            summary: format!("ABStore {store} has no primary: writes fail"),
            description: "No Redis pod reports the master role. Sentinel should elect one within seconds; a minute without one means the sentinels cannot agree or no replica is eligible.".to_owned(),
        },
        Alert {
            name: "ABStoreSeveralPrimaries",
            expr: format!(r#"count(redis_instance_info{{{scope},role="master"}}) > 1"#),
            for_: "2m",
            severity: "critical",
            summary: format!("ABStore {store} has more than one primary"),
            description: "More than one Redis pod reports the master role: writes to the one Sentinel does not name will be lost when the operator demotes it.".to_owned(),
        },
        Alert {
            name: "ABStoreReplicasMissing",
            expr: format!(
                r#"max(redis_connected_slaves{{{scope}}} and on(pod) redis_instance_info{{{scope},role="master"}}) < {replicas}"#
            ),
            for_: "10m",
            severity: "warning",
            summary: format!("The primary of ABStore {store} has fewer than {replicas} replicas connected"),
            description: "A replica is down or cannot sync: the next failure of the primary could lose acknowledged writes, or leave no replica to promote.".to_owned(),
        },
        Alert {
            name: "ABStoreReplicaLinkDown",
            expr: format!("redis_master_link_up{{{scope}}} == 0"),
            for_: "2m",
            severity: "warning",
            summary: format!("Replica {{{{ $labels.pod }}}} of ABStore {store} lost its link to the primary"),
            description: "The replica is not receiving the replication stream: it serves stale reads and cannot be promoted safely.".to_owned(),
        },
        Alert {
            name: "ABStoreReplicationLag",
            expr: format!("redis_connected_slave_lag_seconds{{{scope}}} > {lag}"),
            for_: "5m",
            severity: "warning",
            summary: format!("A replica of ABStore {store} is more than {lag}s behind"),
            description: "A replica's last acknowledgement is old: with min-replicas-max-lag exceeded the primary refuses writes (NOREPLICAS), and a failover now would lose data.".to_owned(),
        },
        Alert {
            name: "ABStoreMemoryNearLimit",
            expr: format!(
                "redis_memory_used_bytes{{{scope}}} / (redis_memory_max_bytes{{{scope}}} > 0) * 100 > {memory}"
            ),
            for_: "5m",
            severity: "warning",
            summary: format!("Redis pod {{{{ $labels.pod }}}} of ABStore {store} uses more than {memory}% of maxmemory"),
            description: "With maxmemoryPolicy noeviction (the default) a full store refuses every write (OOM); with an eviction policy it drops keys. Raise spec.redis.maxmemory and the pod's memory, or shorten retention.".to_owned(),
        },
        Alert {
            name: "ABStoreKeysEvicted",
            expr: format!("increase(redis_evicted_keys_total{{{scope}}}[5m]) > 0"),
            for_: "0m",
            severity: "critical",
            summary: format!("Redis pod {{{{ $labels.pod }}}} of ABStore {store} evicted keys"),
            description: "Counters and HyperLogLogs were dropped to make room: experiment results are now wrong. Use maxmemoryPolicy noeviction (the default) and enough memory.".to_owned(),
        },
        Alert {
            name: "ABStoreWritesRejected",
            expr: format!(
                r#"sum by (pod, err) (increase(redis_errors_total{{{scope},err=~"OOM|NOREPLICAS|READONLY|MISCONF"}}[5m])) > 0"#
            ),
            for_: "0m",
            severity: "warning",
            summary: format!("Redis pod {{{{ $labels.pod }}}} of ABStore {store} rejected writes ({{{{ $labels.err }}}})"),
            description: "OOM: memory full; NOREPLICAS: no replica acknowledged within min-replicas-max-lag; READONLY: a client wrote to a replica; MISCONF: RDB snapshots fail.".to_owned(),
        },
        Alert {
            name: "ABStoreCommandLatencyHigh",
            expr: format!(
                "sum by (pod, cmd) (rate(redis_commands_duration_seconds_total{{{scope}}}[5m])) / sum by (pod, cmd) (rate(redis_commands_total{{{scope}}}[5m])) > {}",
                f64::from(latency_ms) / 1000.0
            ),
            for_: "10m",
            severity: "warning",
            summary: format!("{{{{ $labels.cmd }}}} on {{{{ $labels.pod }}}} of ABStore {store} averages more than {latency_ms} ms"),
            description: "A command's average execution time is high: the node is overloaded, swapping, or a script or large read blocks it.".to_owned(),
        },
        Alert {
            name: "ABStorePersistenceFailing",
            expr: format!(
                "redis_rdb_last_bgsave_status{{{scope}}} == 0 or redis_aof_last_write_status{{{scope}}} == 0 or redis_aof_last_bgrewrite_status{{{scope}}} == 0"
            ),
            for_: "1m",
            severity: "critical",
            summary: format!("Redis pod {{{{ $labels.pod }}}} of ABStore {store} cannot write its RDB or AOF"),
            description: "A failed snapshot or AOF write means a restart loses data, and Redis refuses writes (MISCONF) after a failed snapshot. Usually a full or read-only volume.".to_owned(),
        },
        Alert {
            name: "ABStoreVolumeFilling",
            expr: format!(
                "kubelet_volume_stats_used_bytes{{{volumes}}} / kubelet_volume_stats_capacity_bytes{{{volumes}}} * 100 > {volume}"
            ),
            for_: "10m",
            severity: "warning",
            summary: format!("Volume {{{{ $labels.persistentvolumeclaim }}}} of ABStore {store} is more than {volume}% full"),
            description: "The RDB snapshot and the AOF rewrite write a second copy of the data before replacing the first: a full volume fails persistence (MISCONF stops writes). Grow the PVC.".to_owned(),
        },
        Alert {
            name: "ABStoreFailover",
            expr: format!(
                r#"increase(abstore_operator_store_primary_changes_total{{{ours},reason="Failover"}}[15m]) > 0"#
            ),
            for_: "0m",
            severity: "warning",
            summary: format!("ABStore {store} failed over to a new primary"),
            description: "Sentinel promoted a replica because the primary stopped answering. Writes acknowledged only by the old primary may be lost; find out why it failed.".to_owned(),
        },
        Alert {
            name: "ABStoreSentinelQuorumLost",
            expr: format!(
                "abstore_operator_store_sentinels_ready{{{ours}}} < abstore_operator_store_sentinel_quorum{{{ours}}}"
            ),
            for_: "2m",
            severity: "critical",
            summary: format!("ABStore {store} has fewer ready sentinels than its quorum"),
            description: "Sentinel cannot fail over with fewer than quorum sentinels: losing the primary now means no writes until a person acts.".to_owned(),
        },
    ];
    if model.spec.backup.destination.is_some() && model.spec.backup.enabled {
        let hours = limits.backup_max_age_hours;
        alerts.push(Alert {
            name: "ABStoreBackupTooOld",
            expr: format!(
                "time() - abstore_operator_backup_last_success_timestamp_seconds{{{ours}}} > {}",
                u64::from(hours) * 3600
            ),
            for_: "10m",
            severity: "critical",
            summary: format!("ABStore {store} has no successful backup in the last {hours} hours"),
            description: "Backups run twice a day; the newest one is too old to restore from without losing more than a day of counts.".to_owned(),
        });
        alerts.push(Alert {
            name: "ABStoreBackupFailed",
            expr: format!("abstore_operator_backup_last_run_succeeded{{{ours}}} == 0"),
            for_: "0m",
            severity: "warning",
            summary: format!("The last backup of ABStore {store} failed"),
            description: "The newest backup Job failed. Its pod's log names the cause (destination, credentials, Redis).".to_owned(),
        });
    }
    if model.spec.retention.enabled {
        let hours = limits.prune_max_age_hours;
        alerts.push(Alert {
            name: "ABStorePruneTooOld",
            expr: format!(
                "time() - abstore_operator_prune_last_success_timestamp_seconds{{{ours}}} > {}",
                u64::from(hours) * 3600
            ),
            for_: "10m",
            severity: "warning",
            summary: format!("ABStore {store} has not been pruned in the last {hours} hours"),
            description: "Day-keyed counters past retention are not being removed: memory grows until the store is full.".to_owned(),
        });
        alerts.push(Alert {
            name: "ABStorePruneFailed",
            expr: format!("abstore_operator_prune_last_run_succeeded{{{ours}}} == 0"),
            for_: "0m",
            severity: "warning",
            summary: format!("The last prune of ABStore {store} failed"),
            description: "The newest prune Job failed. Its pod's log names the cause.".to_owned(),
        });
    }
    alerts
}

/// The PrometheusRule's group.
fn alert_group(model: &Model) -> serde_json::Value {
    let base = model
        .spec
        .monitoring
        .prometheus_rule
        .runbook_base_url
        .trim_end_matches('#');
    let rules: Vec<serde_json::Value> = alerts(model)
        .into_iter()
        .map(|alert| {
            json!({
                "alert": alert.name,
                "expr": alert.expr,
                "for": alert.for_,
                "labels": { "severity": alert.severity, "abstore": model.name },
                "annotations": {
                    "summary": alert.summary,
                    "description": alert.description,
                    "runbook_url": format!("{base}#{}", alert.name.to_lowercase()),
                },
            })
        })
        .collect();
    json!({ "name": format!("abstore-{}", model.name), "rules": rules })
}

fn object(
    model: &Model,
    kind: &str,
    extra_labels: &std::collections::BTreeMap<String, String>,
    data: serde_json::Value,
) -> DynamicObject {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        MONITORING_GROUP,
        MONITORING_VERSION,
        kind,
    ));
    let mut object = DynamicObject::new(&model.name, &resource)
        .within(&model.namespace)
        .data(data);
    // The spec's labels first, so they cannot replace the ones apply selects children by.
    let mut labels = extra_labels.clone();
    labels.extend(model.labels(METRICS_COMPONENT));
    object.metadata.labels = Some(labels);
    object.metadata.owner_references = owner_references(model);
    object
}
