//! What the Redis and Sentinel StatefulSets share: scheduling, the locked-down pod, the
//! parallel rolling update and the config-hash annotation that rolls pods on a config change.
//! Each component brings its containers, volumes, grace period and volume claims.

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaim, PodSpec, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::meta::{object_meta, selector};
use super::pod::{REDIS_UID, pod_security_context, scheduling};
use crate::model::{CONFIG_HASH_ANNOTATION, Model};

/// One component's pods.
pub(crate) struct ComponentPods {
    /// `redis` or `sentinel`: the name suffix and the component label.
    pub component: &'static str,
    pub replicas: i32,
    /// Suffix of the headless Service that gives the pods their DNS names.
    pub headless_suffix: &'static str,
    pub containers: Vec<Container>,
    pub volumes: Vec<Volume>,
    pub termination_grace_period_seconds: i64,
    pub volume_claim_templates: Option<Vec<PersistentVolumeClaim>>,
}

/// The StatefulSet `<store>-<component>`.
pub(crate) fn stateful_set(model: &Model, config_hash: &str, pods: ComponentPods) -> StatefulSet {
    let spec = &model.spec;
    let (affinity, topology_spread_constraints) = scheduling(model, pods.component);
    let pod = PodSpec {
        containers: pods.containers,
        volumes: Some(pods.volumes),
        affinity,
        topology_spread_constraints,
        node_selector: spec.node_selector.clone(),
        tolerations: spec.tolerations.clone(),
        priority_class_name: spec.priority_class_name.clone(),
        security_context: Some(pod_security_context(REDIS_UID)),
        // Neither Redis nor Sentinel pods call the Kubernetes API; the operator relabels them.
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(pods.termination_grace_period_seconds),
        ..PodSpec::default()
    };
    StatefulSet {
        metadata: object_meta(model, model.child_name(pods.component), pods.component),
        spec: Some(StatefulSetSpec {
            replicas: Some(pods.replicas),
            selector: selector(model.selector_labels(pods.component)),
            service_name: Some(model.child_name(pods.headless_suffix)),
            // Parallel: pods start and come back independently. With OrderedReady a replica
            // waits for pod 0 to be Ready, and a lost pod 0 (no longer the primary after a
            // failover) would block replacing the others. Who is primary is decided by the
            // start script and by Sentinel, not by start order; sentinels are peers. Rolling
            // updates are still one pod at a time either way.
            pod_management_policy: Some("Parallel".to_owned()),
            // OnDelete: the StatefulSet controller never restarts a pod on its own; the operator
            // deletes them in a failover-aware order (replicas one at a time once back in sync,
            // then a planned switchover away from the primary, then the old primary; sentinels
            // last keeping quorum — see `rollout`). The preStop hook still moves the primary
            // away when something else (a node drain) stops it.
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".to_owned()),
                rolling_update: None,
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(model.labels(pods.component)),
                    annotations: Some(
                        [(CONFIG_HASH_ANNOTATION.to_owned(), config_hash.to_owned())].into(),
                    ),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            volume_claim_templates: pods.volume_claim_templates,
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}
