//! The store's pods as the topology code needs them: their names and ordinals, where heal reaches
//! them, and the role label that the `<n>-primary` Service selects.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
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

/// Whether pod `ordinal` of StatefulSet `set` is among `pods`.
pub fn exists(pods: &[Pod], set: &str, ordinal: usize) -> bool {
    pods.iter()
        .any(|pod| ordinal_of(&pod.name_any(), set) == Some(ordinal))
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

/// Whether `pod` was created from `revision`, the StatefulSet's `status.updateRevision`, by its
/// [`REVISION_LABEL`]; without a revision every pod counts as up to date. The one place that
/// answers "does this pod run the current spec": the rollout's [`members`] and the status's
/// Progressing condition both ask it (with OnDelete, `status.currentRevision` never says).
pub fn is_up_to_date(pod: &Pod, revision: Option<&str>) -> bool {
    revision.is_none_or(|revision| {
        pod.labels().get(REVISION_LABEL).map(String::as_str) == Some(revision)
    })
}

/// Reasons Kubernetes gives for a pod that cannot run its containers and will not until it is
/// replaced (or its spec fixed, which for a StatefulSet with OnDelete means the same): a
/// container (init containers too) waiting because its image cannot be pulled, it crashes in a
/// loop, its configuration or command is refused; or the scheduler cannot place the pod
/// (`PodScheduled` false, `Unschedulable`). `ContainerCreating` and `PodInitializing` are
/// ordinary starts and are not listed.
pub const STUCK_REASONS: [&str; 9] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "Unschedulable",
];

/// The first of [`STUCK_REASONS`] that `pod` reports, if any; none for a pod being deleted (its
/// replacement is already on its way).
pub fn stuck_reason(pod: &Pod) -> Option<&'static str> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    let waiting = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .filter_map(|container| {
            container
                .state
                .as_ref()?
                .waiting
                .as_ref()?
                .reason
                .as_deref()
        });
    let unschedulable = status
        .conditions
        .iter()
        .flatten()
        .filter(|c| c.type_ == "PodScheduled" && c.status == "False")
        .filter_map(|c| c.reason.as_deref());
    waiting
        .chain(unschedulable)
        .find_map(|reason| STUCK_REASONS.iter().copied().find(|known| *known == reason))
}

/// How long `pod` has not been ready at `now`: since its Ready condition last turned false, or
/// since it was created when it has no Ready condition yet. `None` when it is ready, being
/// deleted, or carries neither time.
pub fn not_ready_for(pod: &Pod, now: Timestamp) -> Option<Duration> {
    if pod.metadata.deletion_timestamp.is_some() || is_ready(pod) {
        return None;
    }
    let ready_since = pod
        .status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Ready"))
        .and_then(|ready| ready.last_transition_time.as_ref());
    let since = ready_since.or(pod.metadata.creation_timestamp.as_ref())?.0;
    // A clock behind the API server's: not ready since "now".
    Some(Duration::try_from(now.duration_since(since)).unwrap_or(Duration::ZERO))
}

/// The rollout's view of ordinals `0..count` of `set` at `now`: created from `revision` (the
/// StatefulSet's update revision, see [`is_up_to_date`]), ready, stuck in a state only a new pod
/// ends, and for how long not ready. A missing pod is neither up to date nor ready, and not
/// stuck (there is nothing to replace).
pub fn members(
    pods: &[Pod],
    set: &str,
    count: usize,
    revision: Option<&str>,
    now: Timestamp,
) -> Vec<Member> {
    (0..count)
        .map(|ordinal| {
            let pod = pods
                .iter()
                .find(|pod| ordinal_of(&pod.name_any(), set) == Some(ordinal));
            match pod {
                None => Member::default(),
                Some(pod) => Member {
                    up_to_date: is_up_to_date(pod, revision),
                    ready: is_ready(pod),
                    stuck: stuck_reason(pod),
                    not_ready_for: not_ready_for(pod, now),
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

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    #[test]
    fn members_read_revision_and_readiness_and_missing_pods_are_neither() {
        let pods = vec![
            pod("s-redis-0", &[(REVISION_LABEL, "r2")], true),
            pod("s-redis-2", &[(REVISION_LABEL, "r1")], false),
        ];
        let seen = members(&pods, "s-redis", 3, Some("r2"), at(0));
        assert_eq!(
            seen,
            vec![
                Member {
                    up_to_date: true,
                    ready: true,
                    ..Member::default()
                },
                Member::default(),
                Member::default(),
            ]
        );
        assert_eq!(span(&pods, "s-redis"), 3);
        // No update revision known yet: nothing is outdated.
        assert!(members(&pods, "s-redis", 3, None, at(0))[2].up_to_date);
    }

    /// A not-ready pod of revision `r1` whose Ready condition turned false at `at(0)`, with
    /// `status` fields merged in.
    fn failing(name: &str, status: serde_json::Value) -> Pod {
        let mut pod = serde_json::json!({
            "metadata": {
                "name": name,
                "labels": {REVISION_LABEL: "r1"},
                "creationTimestamp": at(-600).to_string(),
            },
            "status": {"conditions": [{"type": "Ready", "status": "False",
                "lastTransitionTime": at(0).to_string()}]},
        });
        crate::fixtures::merge_patch(&mut pod["status"], &status);
        serde_json::from_value(pod).unwrap()
    }

    #[test]
    fn members_say_which_pods_only_a_new_pod_can_fix_and_how_long_they_have_not_been_ready() {
        // The rollout replaces an outdated pod that cannot start (issue 16, item 7); the reasons
        // and times come from what the kubelet and the scheduler report.
        let waiting = |reason: &str| {
            serde_json::json!({"containerStatuses": [{"name": "redis", "image": "x", "imageID": "",
                "ready": false, "restartCount": 3, "state": {"waiting": {"reason": reason}}}]})
        };
        let pods = vec![
            failing("s-redis-0", waiting("ImagePullBackOff")),
            failing("s-redis-1", waiting("ContainerCreating")),
            failing(
                "s-redis-2",
                serde_json::json!({"initContainerStatuses": [{"name": "init", "image": "x",
                    "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": "CreateContainerConfigError"}}}]}),
            ),
            failing(
                "s-redis-3",
                serde_json::json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
                    "status": "False", "reason": "Unschedulable"}]}),
            ),
        ];
        let seen = members(&pods, "s-redis", 4, Some("r2"), at(90));
        let stuck: Vec<Option<&str>> = seen.iter().map(|m| m.stuck).collect();
        assert_eq!(
            stuck,
            [
                Some("ImagePullBackOff"),
                None,
                Some("CreateContainerConfigError"),
                Some("Unschedulable")
            ]
        );
        assert!(seen.iter().all(|m| !m.up_to_date && !m.ready));
        // Since the Ready condition turned false; without one, since the pod was created.
        assert_eq!(seen[0].not_ready_for, Some(Duration::from_secs(90)));
        assert_eq!(seen[3].not_ready_for, Some(Duration::from_secs(690)));
        // A ready pod, or one being deleted, has no such age and is never stuck.
        let mut deleted = failing("s-redis-0", waiting("CrashLoopBackOff"));
        deleted.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(80)));
        let ready = pod("s-redis-1", &[(REVISION_LABEL, "r1")], true);
        let seen = members(&[deleted, ready], "s-redis", 2, Some("r2"), at(90));
        assert_eq!((seen[0].stuck, seen[0].not_ready_for), (None, None));
        assert_eq!((seen[1].stuck, seen[1].not_ready_for), (None, None));
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
