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
use crate::rollout::Member;

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
    #[error("deleting pod {pod} to restart it: {source}")]
    Delete {
        pod: String,
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
            PodError::Delete { .. } => "restart-pod",
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

/// Where the operator reaches a store's first `nodes` data nodes and `sentinels` sentinels, in
/// ordinal order: their DNS names through the headless Services (the names the nodes announce
/// and Sentinel reports).
pub fn pod_dns_endpoints(
    model: &Model,
    nodes: usize,
    sentinels: usize,
) -> (Vec<Endpoint>, Vec<Endpoint>) {
    let ordinals = |count: usize| (0..count).filter_map(|o| i32::try_from(o).ok());
    let nodes = ordinals(nodes)
        .map(|ordinal| Endpoint::new(model.redis_pod_fqdn(ordinal), REDIS_PORT))
        .collect();
    let sentinels = ordinals(sentinels)
        .map(|ordinal| Endpoint::new(model.sentinel_pod_fqdn(ordinal), SENTINEL_PORT))
        .collect();
    (nodes, sentinels)
}

/// Label the StatefulSet controller puts on each pod: the revision the pod was created from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// One past the highest ordinal among `pods` of StatefulSet `set` (0 without pods).
pub fn span(pods: &[Pod], set: &str) -> usize {
    pods.iter()
        .filter_map(|pod| ordinal_of(&pod.name_any(), set))
        .map(|ordinal| ordinal + 1)
        .max()
        .unwrap_or(0)
}

/// The ordinal of the pod labelled primary, when exactly one is.
pub fn labelled_primary(pods: &[Pod], set: &str) -> Option<usize> {
    let mut primaries = pods
        .iter()
        .filter(|pod| pod.labels().get(ROLE_LABEL).map(String::as_str) == Some(ROLE_PRIMARY));
    let only = primaries.next()?;
    if primaries.next().is_some() {
        return None;
    }
    ordinal_of(&only.name_any(), set)
}

/// Whether a pod is Ready and not being deleted.
pub fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|status| status.conditions.as_ref())
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
}

/// The rollout's view of ordinals `0..count` of `set`: ready, and created from `revision` (the
/// StatefulSet's update revision; without one every pod counts as up to date). A missing pod is
/// neither.
pub fn members(pods: &[Pod], set: &str, count: usize, revision: Option<&str>) -> Vec<Member> {
    (0..count)
        .map(|ordinal| {
            let pod = pods
                .iter()
                .find(|pod| ordinal_of(&pod.name_any(), set) == Some(ordinal));
            match pod {
                None => Member::default(),
                Some(pod) => Member {
                    up_to_date: revision.is_none_or(|revision| {
                        pod.labels().get(REVISION_LABEL).map(String::as_str) == Some(revision)
                    }),
                    ready: is_ready(pod),
                },
            }
        })
        .collect()
}

/// Deletes a pod so that its StatefulSet (update strategy OnDelete) recreates it from the
/// current revision.
pub async fn restart(client: &Client, namespace: &str, pod: &str) -> Result<(), PodError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    api.delete(pod, &Default::default())
        .await
        .map(|_| ())
        .map_err(|source| PodError::Delete {
            pod: pod.to_owned(),
            source,
        })
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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pod(name: &str, labels: &[(&str, &str)], ready: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name,
                "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<std::collections::BTreeMap<_, _>>(),
            },
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .unwrap_or_default()
    }

    #[test]
    fn members_read_revision_and_readiness_and_missing_pods_are_neither() {
        let pods = vec![
            pod("s-redis-0", &[(REVISION_LABEL, "r2")], true),
            pod("s-redis-2", &[(REVISION_LABEL, "r1")], false),
        ];
        let seen = members(&pods, "s-redis", 3, Some("r2"));
        assert_eq!(
            seen,
            vec![
                Member {
                    up_to_date: true,
                    ready: true
                },
                Member::default(),
                Member {
                    up_to_date: false,
                    ready: false
                },
            ]
        );
        assert_eq!(span(&pods, "s-redis"), 3);
        // No update revision known yet: nothing is outdated.
        assert!(members(&pods, "s-redis", 3, None)[2].up_to_date);
    }

    #[test]
    fn the_labelled_primary_is_the_only_pod_labelled_so() {
        let one = vec![
            pod("s-redis-0", &[(ROLE_LABEL, ROLE_REPLICA)], true),
            pod("s-redis-1", &[(ROLE_LABEL, ROLE_PRIMARY)], true),
        ];
        assert_eq!(labelled_primary(&one, "s-redis"), Some(1));
        let two = vec![
            pod("s-redis-0", &[(ROLE_LABEL, ROLE_PRIMARY)], true),
            pod("s-redis-1", &[(ROLE_LABEL, ROLE_PRIMARY)], true),
        ];
        assert_eq!(labelled_primary(&two, "s-redis"), None);
        assert_eq!(labelled_primary(&[], "s-redis"), None);
    }

    #[test]
    fn ordinals_are_read_only_from_the_sets_own_pods() {
        assert_eq!(ordinal_of("shop-redis-2", "shop-redis"), Some(2));
        assert_eq!(ordinal_of("shop-redis-12", "shop-redis"), Some(12));
        assert_eq!(ordinal_of("shop-redis-x-1", "shop-redis"), None);
        assert_eq!(ordinal_of("shop-redisx-1", "shop-redis"), None);
        assert_eq!(ordinal_of("shop-sentinel-0", "shop-redis"), None);
    }
}
