//! Prometheus Operator objects (ServiceMonitor, PrometheusRule), built as dynamic objects so
//! the operator does not depend on their CRDs being installed unless a store asks for them.
//! The alert set is minimal here; the observability work extends it.

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use super::meta::owner_references;
use super::{METRICS_COMPONENT, METRICS_PORT_NAME, METRICS_SUFFIX};
use crate::model::Model;

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
            json!({ "spec": { "groups": [alerts(model)] } }),
        ));
    }
    objects
}

/// Basic alerts: a Redis pod the exporter cannot reach, and a primary with fewer replicas
/// than the store should have (the next failure could lose acknowledged writes).
fn alerts(model: &Model) -> serde_json::Value {
    let scope = format!(
        r#"namespace="{}",service="{}""#,
        model.namespace,
        model.child_name(METRICS_SUFFIX)
    );
    let replicas = model.redis_replica_count();
    json!({
        "name": format!("abstore-{}", model.name),
        "rules": [
            {
                "alert": "ABStoreRedisDown",
                "expr": format!("redis_up{{{scope}}} == 0"),
                "for": "2m",
                "labels": { "severity": "critical" },
                "annotations": {
                    "summary": format!("Redis pod {{{{ $labels.pod }}}} of ABStore {} is down", model.name),
                },
            },
            {
                "alert": "ABStoreReplicasMissing",
                "expr": format!(
                    r#"max(redis_connected_slaves{{{scope}}} and on(pod) redis_instance_info{{{scope},role="master"}}) < {replicas}"#
                ),
                "for": "10m",
                "labels": { "severity": "warning" },
                "annotations": {
                    "summary": format!("The primary of ABStore {} has fewer than {replicas} replicas connected", model.name),
                },
            },
        ],
    })
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
