//! The store's pods as the topology code needs them: their names and ordinals, where heal reaches
//! them, and the role label that the `<n>-primary` Service selects.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};

use crate::heal::Endpoint;
use crate::model::{
    COMPONENT_LABEL, INSTANCE_LABEL, Model, REDIS, REDIS_PORT, ROLE_LABEL, ROLE_PRIMARY,
    ROLE_REPLICA, SENTINEL, SENTINEL_PORT,
};

/// Errors reading or labelling pods.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("listing the {component} pods of store {store}: {source}")]
    List {
        store: String,
        component: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("setting label {ROLE_LABEL}={role} on pod {pod}: {source}")]
    Label {
        pod: String,
        role: &'static str,
        #[source]
        source: kube::Error,
    },
}

impl PodError {
    /// Short category: metric label and (as PascalCase) Event reason.
    pub fn category(&self) -> &'static str {
        match self {
            PodError::List { .. } => "read-pods",
            PodError::Label { .. } => "label-pods",
        }
    }
}

/// Name of Redis pod `ordinal`.
pub fn redis_pod_name(model: &Model, ordinal: usize) -> String {
    format!("{}-{ordinal}", model.child_name(REDIS))
}

/// Name of sentinel pod `ordinal`.
pub fn sentinel_pod_name(model: &Model, ordinal: usize) -> String {
    format!("{}-{ordinal}", model.child_name(SENTINEL))
}

/// The ordinal of a StatefulSet pod called `<set>-<ordinal>`.
pub fn ordinal_of(pod: &str, set: &str) -> Option<usize> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

/// Where the operator reaches a store's data nodes and sentinels, in ordinal order: their DNS
/// names through the headless Services (the names the nodes announce and Sentinel reports).
pub fn pod_dns_endpoints(model: &Model) -> (Vec<Endpoint>, Vec<Endpoint>) {
    let nodes = (0..model.spec.redis.replicas)
        .map(|ordinal| Endpoint::new(model.redis_pod_fqdn(ordinal), REDIS_PORT))
        .collect();
    let sentinels = (0..model.spec.sentinel.replicas)
        .map(|ordinal| Endpoint::new(model.sentinel_pod_fqdn(ordinal), SENTINEL_PORT))
        .collect();
    (nodes, sentinels)
}

/// Label selector of a component's pods.
pub fn component_selector(store: &str, component: &str) -> String {
    format!("{INSTANCE_LABEL}={store},{COMPONENT_LABEL}={component}")
}

/// Lists a component's pods.
pub async fn list(
    client: &Client,
    namespace: &str,
    store: &str,
    component: &'static str,
) -> Result<Vec<Pod>, PodError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    api.list(&ListParams::default().labels(&component_selector(store, component)))
        .await
        .map(|list| list.items)
        .map_err(|source| PodError::List {
            store: store.to_owned(),
            component,
            source,
        })
}

/// Moves the primary label to Redis pod `primary` (`role=primary`; every other Redis pod
/// `role=replica`). Pods already labelled right are not touched; the old primary loses its
/// label before the new one gets it, so the `<n>-primary` Service never selects two pods (for a
/// moment it may select none: a refused connection, which clients retry, instead of a write to a
/// demoted node). Returns the pods whose label changed.
pub async fn label_primary(
    client: &Client,
    model: &Model,
    primary: usize,
) -> Result<Vec<String>, PodError> {
    let set = model.child_name(REDIS);
    let pods = list(client, &model.namespace, &model.name, REDIS).await?;
    let wanted = |pod: &Pod| {
        if ordinal_of(&pod.name_any(), &set) == Some(primary) {
            ROLE_PRIMARY
        } else {
            ROLE_REPLICA
        }
    };
    let mut changes: Vec<(String, &'static str)> = pods
        .iter()
        .filter(|pod| pod.labels().get(ROLE_LABEL).map(String::as_str) != Some(wanted(pod)))
        .map(|pod| (pod.name_any(), wanted(pod)))
        .collect();
    // Replicas first: the primary label is only added once no other pod carries it.
    changes.sort_by_key(|(_, role)| *role == ROLE_PRIMARY);
    let api: Api<Pod> = Api::namespaced(client.clone(), &model.namespace);
    let mut changed = Vec::with_capacity(changes.len());
    for (pod, role) in changes {
        let patch = serde_json::json!({"metadata": {"labels": {ROLE_LABEL: role}}});
        api.patch(&pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| PodError::Label {
                pod: pod.clone(),
                role,
                source,
            })?;
        tracing::info!(%pod, role, "role label set");
        changed.push(pod);
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_are_read_only_from_the_sets_own_pods() {
        assert_eq!(ordinal_of("shop-redis-2", "shop-redis"), Some(2));
        assert_eq!(ordinal_of("shop-redis-12", "shop-redis"), Some(12));
        assert_eq!(ordinal_of("shop-redis-x-1", "shop-redis"), None);
        assert_eq!(ordinal_of("shop-redisx-1", "shop-redis"), None);
        assert_eq!(ordinal_of("shop-sentinel-0", "shop-redis"), None);
    }
}
