//! build: from the validated model (and the store's credentials) to the typed Kubernetes
//! objects the controller applies. Pure: no client, no clock, no randomness.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::DynamicObject;

/// Every object of one store, by kind, in the order they are applied. `apply` destructures
/// this without `..`, so a kind that is built but never applied fails to compile.
#[derive(Clone, Debug, Default)]
pub struct Children {
    /// The ACL file Secret and one credentials Secret per user.
    pub secrets: Vec<Secret>,
    /// redis.conf, sentinel.conf and the start scripts.
    pub config_maps: Vec<ConfigMap>,
    /// Headless and client Services.
    pub services: Vec<Service>,
    /// PodDisruptionBudgets for Redis and Sentinel (empty when disabled).
    pub pod_disruption_budgets: Vec<PodDisruptionBudget>,
    /// The NetworkPolicy (empty when disabled).
    pub network_policies: Vec<NetworkPolicy>,
    /// `<n>-redis` and `<n>-sentinel`.
    pub stateful_sets: Vec<StatefulSet>,
    /// Backup and prune CronJobs (those enabled).
    pub cron_jobs: Vec<CronJob>,
    /// ServiceMonitor and PrometheusRule (Prometheus Operator kinds), when enabled.
    pub monitoring: Vec<DynamicObject>,
}
