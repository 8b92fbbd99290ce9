//! PodDisruptionBudgets and NetworkPolicies: how many pods a node drain may take at once, and
//! who may open a connection to Redis, Sentinel and the exporter.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::{object_meta, selector};
use super::{API_COMPONENT, BACKUP_COMPONENT, OPERATOR_POD_NAME, PRUNE_COMPONENT};
use crate::model::{
    CLIENT_LABEL, CLUSTER_BUS_PORT, EXPORTER_PORT, Model, NAME_LABEL, REDIS, REDIS_PORT, SENTINEL,
    SENTINEL_PORT,
};

/// One PodDisruptionBudget per StatefulSet, or none when disabled.
pub(crate) fn pod_disruption_budgets(model: &Model) -> Vec<PodDisruptionBudget> {
    let spec = &model.spec.pod_disruption_budget;
    if !spec.enabled {
        return Vec::new();
    }
    let components: &[&str] = if model.cluster().is_some() {
        &[REDIS]
    } else {
        &[REDIS, SENTINEL]
    };
    components
        .iter()
        .map(|&component| PodDisruptionBudget {
            metadata: object_meta(model, model.child_name(component), component),
            spec: Some(PodDisruptionBudgetSpec {
                // maxUnavailable rather than minAvailable: it keeps meaning "one at a time"
                // when the store is scaled, and never blocks drains of a 1-pod store forever.
                max_unavailable: Some(IntOrString::Int(spec.max_unavailable)),
                selector: Some(selector(model.selector_labels(component))),
                ..PodDisruptionBudgetSpec::default()
            }),
            status: None,
        })
        .collect()
}

/// A NetworkPolicy for the Redis pods and one for the sentinels, or none when disabled.
///
/// Egress is not restricted: replicas, sentinels and the jobs' storage uploads go to places
/// this policy cannot know about.
pub(crate) fn network_policies(model: &Model) -> Vec<NetworkPolicy> {
    if !model.spec.network_policy.enabled {
        return Vec::new();
    }
    let clients = client_peers(model);
    let redis_pods = pods(model.selector_labels(REDIS));
    let sentinel_pods = pods(model.selector_labels(SENTINEL));
    // The jobs, and the tracking API's pods when it runs: clients of their own.
    let mut jobs: Vec<NetworkPolicyPeer> = [BACKUP_COMPONENT, PRUNE_COMPONENT]
        .map(|c| pods(model.selector_labels(c)))
        .into();
    if model.spec.api.enabled {
        jobs.push(pods(model.selector_labels(API_COMPONENT)));
    }
    let operator = operator_peer(model);

    // Redis: clients and jobs for data; sentinels monitor; other Redis pods replicate; the
    // operator bootstraps and heals.
    let mut redis_from = clients.clone();
    redis_from.extend([sentinel_pods.clone(), redis_pods.clone(), operator.clone()]);
    redis_from.extend(jobs.clone());
    let mut redis_rules = vec![rule(REDIS_PORT, Some(redis_from))];
    let cluster = model.cluster().is_some();
    if cluster {
        // The cluster bus: gossip, failover votes and replication between the nodes only.
        redis_rules.push(rule(CLUSTER_BUS_PORT, Some(vec![redis_pods.clone()])));
    }
    if model.spec.monitoring.exporter.enabled {
        let scrapers = &model.spec.network_policy.metrics_scrapers;
        // No `from` means any source: with no scrapers listed, whatever Prometheus the
        // cluster runs may scrape the exporter.
        let from = (!scrapers.is_empty()).then(|| scrapers.clone());
        redis_rules.push(rule(EXPORTER_PORT, from));
    }

    // Sentinel: clients and jobs resolve the primary through it; sentinels gossip; Redis pods
    // ask it for a failover before they stop; the operator heals it.
    let mut sentinel_from = clients;
    sentinel_from.extend([sentinel_pods, redis_pods, operator]);
    sentinel_from.extend(jobs);
    let sentinel_rules = vec![rule(SENTINEL_PORT, Some(sentinel_from))];

    if cluster {
        return vec![policy(model, REDIS, redis_rules)];
    }
    vec![
        policy(model, REDIS, redis_rules),
        policy(model, SENTINEL, sentinel_rules),
    ]
}

/// Pods in the store's namespace labelled as its clients, plus the declared peers.
fn client_peers(model: &Model) -> Vec<NetworkPolicyPeer> {
    let mut peers = vec![pods(BTreeMap::from([(
        CLIENT_LABEL.to_owned(),
        model.name.clone(),
    )]))];
    peers.extend(model.spec.network_policy.allowed_clients.iter().cloned());
    peers
}

/// Pods of the store's namespace with these labels.
fn pods(labels: BTreeMap<String, String>) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(selector(labels)),
        ..NetworkPolicyPeer::default()
    }
}

/// Label the API server sets on every namespace: its own name (Kubernetes ≥ 1.21).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The operator's pods: the chart's pod label, in the operator's namespace only. The label alone
/// would admit any pod anyone labels so in any namespace; the namespace's name label is set by
/// the API server and cannot be forged.
fn operator_peer(model: &Model) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(selector(BTreeMap::from([(
            NAMESPACE_NAME_LABEL.to_owned(),
            model.platform.operator_namespace.clone(),
        )]))),
        pod_selector: Some(selector(BTreeMap::from([(
            NAME_LABEL.to_owned(),
            OPERATOR_POD_NAME.to_owned(),
        )]))),
        ip_block: None,
    }
}

fn rule(port: u16, from: Option<Vec<NetworkPolicyPeer>>) -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule {
        from,
        ports: Some(vec![NetworkPolicyPort {
            port: Some(IntOrString::Int(i32::from(port))),
            protocol: Some("TCP".to_owned()),
            end_port: None,
        }]),
    }
}

fn policy(model: &Model, component: &str, ingress: Vec<NetworkPolicyIngressRule>) -> NetworkPolicy {
    NetworkPolicy {
        metadata: object_meta(model, model.child_name(component), component),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(model.selector_labels(component))),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(ingress),
            egress: None,
        }),
    }
}
