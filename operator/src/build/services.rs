//! Services: headless ones that give every pod the stable DNS name Redis and Sentinel announce,
//! and client ones (`-primary`, `-replicas`, `-sentinel`, `-metrics`) that applications and
//! Prometheus use.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::object_meta;
use super::{
    CLUSTER_SUFFIX, METRICS_COMPONENT, METRICS_PORT_NAME, METRICS_SUFFIX, PRIMARY_SUFFIX,
    REDIS_HEADLESS_SUFFIX, REDIS_PORT_NAME, REPLICAS_SUFFIX, SENTINEL_HEADLESS_SUFFIX,
    SENTINEL_PORT_NAME,
};
use crate::model::{
    EXPORTER_PORT, Model, REDIS, REDIS_PORT, ROLE_LABEL, ROLE_PRIMARY, ROLE_REPLICA, SENTINEL,
    SENTINEL_PORT,
};

/// Every Service of the store, headless ones first.
pub(crate) fn services(model: &Model) -> Vec<Service> {
    let redis_port = port(REDIS_PORT_NAME, REDIS_PORT);
    let sentinel_port = port(SENTINEL_PORT_NAME, SENTINEL_PORT);
    let redis_pods = model.selector_labels(REDIS);
    let sentinel_pods = model.selector_labels(SENTINEL);
    let with_role = |role: &str| {
        let mut labels = redis_pods.clone();
        labels.insert(ROLE_LABEL.to_owned(), role.to_owned());
        labels
    };

    if model.cluster().is_some() {
        // Cluster mode: the headless Service names every pod (what the nodes announce), and
        // `<n>-cluster` over every Redis pod is a cluster client's seed. No Sentinel, and no
        // single primary to follow.
        let mut services = vec![
            headless(
                model,
                REDIS_HEADLESS_SUFFIX,
                REDIS,
                redis_pods.clone(),
                redis_port.clone(),
            ),
            client(model, CLUSTER_SUFFIX, REDIS, redis_pods.clone(), redis_port),
        ];
        services.extend(metrics_service(model, redis_pods));
        return services;
    }
    let mut services = vec![
        headless(
            model,
            REDIS_HEADLESS_SUFFIX,
            REDIS,
            redis_pods.clone(),
            redis_port.clone(),
        ),
        headless(
            model,
            SENTINEL_HEADLESS_SUFFIX,
            SENTINEL,
            sentinel_pods.clone(),
            sentinel_port.clone(),
        ),
        // The operator moves the primary label to whichever pod Sentinel reports, so this
        // Service follows failover for clients that cannot speak Sentinel.
        client(
            model,
            PRIMARY_SUFFIX,
            REDIS,
            with_role(ROLE_PRIMARY),
            redis_port.clone(),
        ),
        client(
            model,
            REPLICAS_SUFFIX,
            REDIS,
            with_role(ROLE_REPLICA),
            redis_port,
        ),
        client(model, SENTINEL, SENTINEL, sentinel_pods, sentinel_port),
    ];
    services.extend(metrics_service(model, redis_pods));
    services
}

/// The exporter's Service, when the exporter runs: its own Service (and component label) so a
/// ServiceMonitor selects exactly the exporter endpoints, one per pod, not the client ports.
fn metrics_service(model: &Model, redis_pods: BTreeMap<String, String>) -> Option<Service> {
    model.spec.monitoring.exporter.enabled.then(|| {
        client(
            model,
            METRICS_SUFFIX,
            METRICS_COMPONENT,
            redis_pods,
            port(METRICS_PORT_NAME, EXPORTER_PORT),
        )
    })
}

fn port(name: &str, number: u16) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port: i32::from(number),
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    }
}

/// A headless Service that publishes not-ready pods too: a replica must resolve the primary's
/// name (and sentinels each other's) before anything is ready, or bootstrap deadlocks.
fn headless(
    model: &Model,
    suffix: &str,
    component: &str,
    selector: BTreeMap<String, String>,
    port: ServicePort,
) -> Service {
    Service {
        metadata: object_meta(model, model.child_name(suffix), component),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector),
            ports: Some(vec![port]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn client(
    model: &Model,
    suffix: &str,
    component: &str,
    selector: BTreeMap<String, String>,
    port: ServicePort,
) -> Service {
    Service {
        metadata: object_meta(model, model.child_name(suffix), component),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector),
            ports: Some(vec![port]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}
