//! status: what the operator observed, as the ABStore's `.status`. Computing it is pure (from
//! the generation, the applied StatefulSets' observed state and their pods' revisions, the
//! primary pod and the previous status); writing it is one server-side apply of `/status`, under a timeout, counted by outcome.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};

use crate::crd::{ABStore, ABStoreStatus, LastFailover, Phase, RedisPodStatus};
use crate::metrics::{Metrics, StatusWriteOutcome};
use crate::model::{COMPONENT_LABEL, INSTANCE_LABEL, MANAGER, REDIS, ROLE_LABEL, ROLE_PRIMARY};
use crate::pods;

/// Condition: every desired Redis pod and sentinel is ready.
pub const CONDITION_READY: &str = "Ready";
/// Condition: objects were changed and the StatefulSets have not finished rolling out.
pub const CONDITION_PROGRESSING: &str = "Progressing";
/// Condition: the store was up and now runs with fewer ready pods than desired.
pub const CONDITION_DEGRADED: &str = "Degraded";
/// Condition: the spec was refused by `validate`; nothing was changed in the cluster.
pub const CONDITION_INVALID_SPEC: &str = "InvalidSpec";
/// Condition: a primary is known (elected by the sentinels or chosen by bootstrap) and the
/// operator's heal pass had nothing left to wait for.
pub const CONDITION_PRIMARY_AVAILABLE: &str = "PrimaryAvailable";
/// Sentinel could fail the primary over now: a replica streams from it and every sentinel
/// knows every such replica. False for a while after a store starts (sentinels discover
/// replicas from the primary's `INFO` every 10 s), and whenever no replica is in sync.
pub const CONDITION_FAILOVER_READY: &str = "FailoverReady";
/// Condition: every built object was applied and no orphan was left (False names the objects
/// the API server refused, so `kubectl get abs -o yaml` shows why a change did not land).
pub const CONDITION_APPLIED: &str = "Applied";
/// Condition, present when the spec asks for a ServiceMonitor or PrometheusRule: whether they
/// were applied, or why not (the Prometheus Operator's CRDs missing, or no permission).
pub const CONDITION_MONITORING: &str = "MonitoringApplied";

/// How long a status write may take before it counts as timed out: a stuck API server must
/// not hold a reconcile worker forever.
pub const STATUS_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

const TRUE: &str = "True";
const FALSE: &str = "False";

/// What one StatefulSet reports, against what the store wants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Workload {
    /// Pods the spec asks for.
    pub desired: i32,
    /// Pods that are ready.
    pub ready: i32,
    /// Whether the StatefulSet is still rolling out: its controller has not seen the latest
    /// spec, or not every pod runs the latest revision yet.
    pub rolling_out: bool,
}

impl Workload {
    /// Reads a StatefulSet's status (as returned by the apply) and its pods (as listed at the
    /// start of the reconcile). Rolled out means: the StatefulSet controller has seen the
    /// latest spec (`status.observedGeneration`), every desired ordinal has a pod, every such pod
    /// was created from the set's `status.updateRevision` (by its `controller-revision-hash`,
    /// [`pods::is_up_to_date`], the same answer the rollout uses), and no pod beyond the desired
    /// ones is left (a scale-down in progress). Not `status.currentRevision`: with the OnDelete
    /// update strategy the StatefulSet controller never advances it, so comparing it with the
    /// update revision kept `Progressing` true forever after the first rollout. A StatefulSet
    /// that is absent or has no status yet has nothing ready and counts as rolling out.
    pub fn from_stateful_set_and_pods(
        desired: i32,
        stateful_set: Option<&StatefulSet>,
        pods: &[Pod],
    ) -> Self {
        let starting = Workload {
            desired,
            ready: 0,
            rolling_out: true,
        };
        let Some(stateful_set) = stateful_set else {
            return starting;
        };
        let Some(status) = stateful_set.status.as_ref() else {
            return starting;
        };
        let generation_seen = match (stateful_set.metadata.generation, status.observed_generation) {
            (Some(generation), Some(observed)) => observed >= generation,
            (Some(_), None) => false,
            (None, _) => true,
        };
        let set = stateful_set.metadata.name.as_deref().unwrap_or_default();
        let revision = status.update_revision.as_deref();
        let wanted = usize::try_from(desired).unwrap_or(0);
        let updated = (0..wanted).all(|ordinal| {
            pods.iter().any(|pod| {
                pods::ordinal_of(&pod.name_any(), set) == Some(ordinal)
                    && pods::is_up_to_date(pod, revision)
            })
        });
        let leftover = pods::span(pods, set) > wanted;
        Workload {
            desired,
            ready: status.ready_replicas.unwrap_or(0),
            rolling_out: !generation_seen || !updated || leftover,
        }
    }

    /// Reads a Deployment's status (as returned by the apply): the pods it wants (the
    /// autoscaler's choice when one owns the count, else `desired`) and those available.
    pub fn from_deployment(desired: i32, deployment: Option<&Deployment>) -> Self {
        let Some(deployment) = deployment else {
            return Workload {
                desired,
                ready: 0,
                rolling_out: true,
            };
        };
        let status = deployment.status.clone().unwrap_or_default();
        let wanted = deployment
            .spec
            .as_ref()
            .and_then(|spec| spec.replicas)
            .or(status.replicas)
            .unwrap_or(desired);
        let generation_seen = match (deployment.metadata.generation, status.observed_generation) {
            (Some(generation), Some(observed)) => observed >= generation,
            (Some(_), None) => false,
            (None, _) => true,
        };
        Workload {
            desired: wanted,
            ready: status.available_replicas.unwrap_or(0),
            rolling_out: !generation_seen || status.updated_replicas.unwrap_or(0) < wanted,
        }
    }

    fn all_ready(&self) -> bool {
        self.ready >= self.desired
    }

    /// `ready/desired`, as `kubectl get` shows it.
    pub fn ratio(&self) -> String {
        format!("{}/{}", self.ready, self.desired)
    }
}

/// Everything the status is computed from, besides the previous status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// `metadata.generation` of the ABStore that was applied.
    pub generation: Option<i64>,
    /// The `<n>-redis` StatefulSet.
    pub redis: Workload,
    /// The `<n>-sentinel` StatefulSet.
    pub sentinel: Workload,
    /// The pod labelled primary (by the heal step), if exactly one is.
    pub primary: Option<String>,
    /// What the topology step saw, when it ran.
    pub topology: Option<TopologyObserved>,
    /// The backup CronJob's last runs (`None`: no CronJob, or its Jobs could not be listed).
    pub backup: Option<crate::job_runs::LastRuns>,
    /// The prune CronJob's last runs.
    pub prune: Option<crate::job_runs::LastRuns>,
    /// What the apply phase did.
    pub apply: ApplyObserved,
    /// What became of the monitoring objects.
    pub monitoring: crate::apply::Monitoring,
    /// Cluster mode: the shards as the last pass saw them.
    pub cluster: Option<ClusterObserved>,
    /// The tracking API's Deployment, when `spec.api` is enabled.
    pub api: Option<Workload>,
}

/// A cluster-mode store's shards, for `status.shards` and `status.slotsCovered`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterObserved {
    /// Shards whose primary answered.
    pub serving: usize,
    /// Shards the spec asks for.
    pub desired: usize,
    /// Slots owned by a primary that answered.
    pub slots_covered: u32,
}

/// The apply phase, for the `Applied` condition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyObserved {
    /// Objects applied.
    pub applied: usize,
    /// What the API server refused (apply or orphan clean-up), one line each.
    pub failures: Vec<String>,
}

/// What the topology step (heal) reports for the status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopologyObserved {
    /// The heal decision in words.
    pub summary: String,
    /// Each Redis pod's role and lag.
    pub pods: Vec<RedisPodStatus>,
    /// Heal knows the primary (elected by the sentinels or chosen by bootstrap); a primary
    /// known only from the pod label does not count.
    pub primary_known: bool,
    /// The operator moved the primary itself (rollout or scale-down) since the last status:
    /// a change of primary is a `Switchover`, not a `Failover`.
    pub switchover: bool,
    /// Whether Sentinel could fail over now, for the `FailoverReady` condition.
    pub failover: FailoverReadiness,
}

/// Whether a failover could happen now: a replica streams from the primary and every sentinel
/// knows every such replica ([`crate::heal::failover_readiness`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailoverReadiness {
    pub ready: bool,
    /// Condition reason: `SentinelsKnowReplicas`, or what is missing (`NoReplica`,
    /// `SentinelSilent`, `SentinelElsewhere`, `ReplicaUnknown`, `NoPrimary`).
    pub reason: String,
    pub message: String,
}

/// Why the primary changed, as `lastFailover.reason` and the Event reason say it.
pub const FAILOVER: &str = "Failover";
pub const SWITCHOVER: &str = "Switchover";

/// A change of primary between the previous status and this observation, if there was one (a
/// first primary is not a failover).
pub fn primary_change(
    observed: &Observed,
    previous: Option<&ABStoreStatus>,
    now: Timestamp,
) -> Option<LastFailover> {
    let before = previous.and_then(|status| status.primary.as_ref())?;
    let after = observed.primary.as_ref()?;
    if before == after {
        return None;
    }
    let switchover = observed.topology.as_ref().is_some_and(|t| t.switchover);
    Some(LastFailover {
        time: now.to_string(),
        from: Some(before.clone()),
        to: after.clone(),
        reason: if switchover { SWITCHOVER } else { FAILOVER }.to_owned(),
    })
}

/// Why a spec was refused, as the status and the Event show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidSpec {
    /// `metadata.generation` of the refused spec.
    pub generation: Option<i64>,
    /// Condition reason (PascalCase, see [`reason_from_category`]).
    pub reason: String,
    /// Human-readable message naming the field.
    pub message: String,
}

/// The status of a store whose spec was valid and applied.
///
/// Phase rules: `Ready` when every desired Redis pod and sentinel is ready; `Degraded` when
/// not, no rollout is in progress and the store has been up before (previous phase Ready or
/// Degraded) — something broke; `Pending` otherwise (first start, or a rollout or scale-up
/// is under way). The primary is reported but not required for Ready: the heal step that
/// maintains the primary label decides about primaries.
pub fn applied(
    observed: &Observed,
    previous: Option<&ABStoreStatus>,
    now: Timestamp,
) -> ABStoreStatus {
    // Cluster mode: also every shard with a primary and every slot served.
    let all_ready = observed.redis.all_ready()
        && observed.sentinel.all_ready()
        && observed.cluster.as_ref().is_none_or(|c| {
            c.serving == c.desired && c.slots_covered == u32::from(crate::cluster::nodes::SLOTS)
        });
    let rolling_out = observed.redis.rolling_out || observed.sentinel.rolling_out;
    let was_up = matches!(
        previous.and_then(|status| status.phase),
        Some(Phase::Ready | Phase::Degraded)
    );
    let phase = if all_ready {
        Phase::Ready
    } else if !rolling_out && was_up {
        Phase::Degraded
    } else {
        Phase::Pending
    };
    let readiness = match &observed.cluster {
        Some(cluster) => format!(
            "{} Redis pods ready; {}/{} shards serving {} of 16384 slots",
            observed.redis.ratio(),
            cluster.serving,
            cluster.desired,
            cluster.slots_covered
        ),
        None => format!(
            "{} Redis pods and {} sentinels ready",
            observed.redis.ratio(),
            observed.sentinel.ratio()
        ),
    };
    let previous_conditions = previous
        .map(|status| status.conditions.as_slice())
        .unwrap_or_default();
    let generation = observed.generation;
    let conditions = vec![
        if all_ready {
            condition(
                previous_conditions,
                CONDITION_READY,
                true,
                "AllReplicasReady",
                &readiness,
                generation,
                now,
            )
        } else {
            condition(
                previous_conditions,
                CONDITION_READY,
                false,
                "ReplicasNotReady",
                &readiness,
                generation,
                now,
            )
        },
        if rolling_out {
            condition(
                previous_conditions,
                CONDITION_PROGRESSING,
                true,
                "RollingOut",
                "StatefulSets are rolling out the latest spec",
                generation,
                now,
            )
        } else {
            condition(
                previous_conditions,
                CONDITION_PROGRESSING,
                false,
                "RolloutComplete",
                "every pod runs the latest spec",
                generation,
                now,
            )
        },
        if phase == Phase::Degraded {
            condition(
                previous_conditions,
                CONDITION_DEGRADED,
                true,
                "ReplicasUnavailable",
                &readiness,
                generation,
                now,
            )
        } else {
            condition(
                previous_conditions,
                CONDITION_DEGRADED,
                false,
                "AsExpected",
                &readiness,
                generation,
                now,
            )
        },
        condition(
            previous_conditions,
            CONDITION_INVALID_SPEC,
            false,
            "SpecValid",
            "the spec passed validation",
            generation,
            now,
        ),
    ];
    let mut conditions = conditions;
    if let Some(topology) = &observed.topology {
        conditions.push(match topology.primary_known {
            true => condition(
                previous_conditions,
                CONDITION_PRIMARY_AVAILABLE,
                true,
                "PrimaryKnown",
                &topology.summary,
                generation,
                now,
            ),
            false => condition(
                previous_conditions,
                CONDITION_PRIMARY_AVAILABLE,
                false,
                "NoPrimary",
                &topology.summary,
                generation,
                now,
            ),
        });
    }
    if let Some(topology) = &observed.topology {
        conditions.push(condition(
            previous_conditions,
            CONDITION_FAILOVER_READY,
            topology.failover.ready,
            &topology.failover.reason,
            &topology.failover.message,
            generation,
            now,
        ));
    }
    conditions.push(if observed.apply.failures.is_empty() {
        condition(
            previous_conditions,
            CONDITION_APPLIED,
            true,
            "AllApplied",
            &format!("{} objects applied", observed.apply.applied),
            generation,
            now,
        )
    } else {
        condition(
            previous_conditions,
            CONDITION_APPLIED,
            false,
            "ApplyFailed",
            &format!(
                "{} refused: {}",
                observed.apply.failures.len(),
                observed.apply.failures.join("; ")
            ),
            generation,
            now,
        )
    });
    match &observed.monitoring {
        crate::apply::Monitoring::NotRequested => {}
        crate::apply::Monitoring::Applied { kinds } => conditions.push(condition(
            previous_conditions,
            CONDITION_MONITORING,
            true,
            "Applied",
            &format!("{} applied", kinds.join(", ")),
            generation,
            now,
        )),
        crate::apply::Monitoring::Skipped { kinds, reason } => conditions.push(condition(
            previous_conditions,
            CONDITION_MONITORING,
            false,
            reason.reason(),
            &format!("{} skipped: {}", kinds.join(", "), reason.explanation()),
            generation,
            now,
        )),
    }
    let kept = kept_from(previous);
    ABStoreStatus {
        last_failover: primary_change(observed, previous, now).or(kept.last_failover.clone()),
        pods: observed
            .topology
            .as_ref()
            .map(|topology| topology.pods.clone())
            .unwrap_or_else(|| kept.pods.clone()),
        observed_generation: generation,
        phase: Some(phase),
        conditions,
        primary: observed.primary.clone(),
        ready_replicas: observed.redis.ready,
        replicas: observed.redis.desired,
        ready_sentinels: observed.sentinel.ready,
        ready: Some(observed.redis.ratio()),
        sentinels: observed
            .cluster
            .is_none()
            .then(|| observed.sentinel.ratio()),
        shards: observed
            .cluster
            .as_ref()
            .map(|c| format!("{}/{}", c.serving, c.desired)),
        api: observed.api.as_ref().map(Workload::ratio),
        slots_covered: observed
            .cluster
            .as_ref()
            .map(|c| i32::try_from(c.slots_covered).unwrap_or(i32::MAX)),
        // A success the Jobs still show; otherwise what was recorded before (the Job controller
        // keeps only the last few Jobs).
        last_backup: last_success(observed.backup).or(kept.last_backup.clone()),
        last_prune: last_success(observed.prune).or(kept.last_prune.clone()),
    }
}

/// When the last successful run finished, as RFC 3339.
fn last_success(runs: Option<crate::job_runs::LastRuns>) -> Option<String> {
    runs?.last_success.map(|at| at.to_string())
}

/// The status of a store whose spec was refused. The cluster was not touched, so what the
/// previous status said about pods (counts, primary, Ready/Progressing/Degraded) still holds
/// and is kept; only InvalidSpec, the phase and `observedGeneration` change.
pub fn invalid(
    invalid: &InvalidSpec,
    previous: Option<&ABStoreStatus>,
    now: Timestamp,
) -> ABStoreStatus {
    let mut status = previous.cloned().unwrap_or_default();
    let invalid_condition = condition(
        &status.conditions,
        CONDITION_INVALID_SPEC,
        true,
        &invalid.reason,
        &invalid.message,
        invalid.generation,
        now,
    );
    status
        .conditions
        .retain(|existing| existing.type_ != CONDITION_INVALID_SPEC);
    status.conditions.push(invalid_condition);
    status.observed_generation = invalid.generation;
    status.phase = Some(Phase::Invalid);
    status
}

/// The fields other steps own (the jobs report backups and prunes, heal reports failovers);
/// status keeps them as they were.
fn kept_from(previous: Option<&ABStoreStatus>) -> ABStoreStatus {
    ABStoreStatus {
        last_failover: previous.and_then(|status| status.last_failover.clone()),
        last_backup: previous.and_then(|status| status.last_backup.clone()),
        last_prune: previous.and_then(|status| status.last_prune.clone()),
        pods: previous
            .map(|status| status.pods.clone())
            .unwrap_or_default(),
        ..ABStoreStatus::default()
    }
}

/// A condition whose `lastTransitionTime` moves only when its status flips, so "Ready since"
/// means what it says.
fn condition(
    previous: &[Condition],
    type_: &str,
    is_true: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if is_true { TRUE } else { FALSE };
    let last_transition_time = previous
        .iter()
        .find(|existing| existing.type_ == type_ && existing.status == status)
        .map(|existing| existing.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        observed_generation: generation,
        last_transition_time,
    }
}

/// Turns an error category (`invalid-quorum`, `apply`) into a condition / Event reason
/// (`InvalidQuorum`, `Apply`): the API server requires reasons to be CamelCase identifiers.
pub fn reason_from_category(category: &str) -> String {
    category
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(|word| {
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// Errors writing the status.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("the ABStore has no namespace")]
    NoNamespace,
    #[error("writing the status of ABStore {name}: {source}")]
    Write {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing the status of ABStore {name} timed out after {timeout:?}")]
    TimedOut { name: String, timeout: Duration },
    #[error("listing the Redis pods of ABStore {name}: {source}")]
    ReadPods {
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl StatusError {
    /// Short category: metric label and (as PascalCase) Event reason.
    pub fn category(&self) -> &'static str {
        match self {
            StatusError::NoNamespace => "status-no-namespace",
            StatusError::Write { .. } => "status-write",
            StatusError::TimedOut { .. } => "status-timeout",
            StatusError::ReadPods { .. } => "read-pods",
        }
    }
}

/// Label selector of the Redis pod the heal step labelled primary.
pub fn primary_selector(store: &str) -> String {
    format!("{INSTANCE_LABEL}={store},{COMPONENT_LABEL}={REDIS},{ROLE_LABEL}={ROLE_PRIMARY}")
}

/// The Redis pod labelled primary, when exactly one is. Two labelled pods (heal is moving the
/// label) or none (not healed yet) report no primary rather than a guess.
pub async fn primary_pod(
    client: &kube::Client,
    namespace: &str,
    store: &str,
) -> Result<Option<String>, StatusError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pods = api
        .list(&ListParams::default().labels(&primary_selector(store)))
        .await
        .map_err(|source| StatusError::ReadPods {
            name: store.to_owned(),
            source,
        })?;
    match pods.items.as_slice() {
        [only] => Ok(Some(only.name_any())),
        [] => Ok(None),
        several => {
            tracing::info!(
                count = several.len(),
                "several pods are labelled primary; reporting none"
            );
            Ok(None)
        }
    }
}

/// Writes `status` to the store's `/status` with server-side apply under our field manager,
/// within [`STATUS_WRITE_TIMEOUT`], and counts the outcome.
pub async fn write(
    client: &kube::Client,
    store: &ABStore,
    status: &ABStoreStatus,
    metrics: &Metrics,
) -> Result<(), StatusError> {
    let name = store.name_any();
    let namespace = store.namespace().ok_or(StatusError::NoNamespace)?;
    let api: Api<ABStore> = Api::namespaced(client.clone(), &namespace);
    // Server-side apply needs apiVersion and kind in the body, even on a subresource.
    let body = serde_json::json!({
        "apiVersion": ABStore::api_version(&()),
        "kind": ABStore::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(MANAGER).force();
    let patch = Patch::Apply(&body);
    let write = api.patch_status(&name, &params, &patch);
    match tokio::time::timeout(STATUS_WRITE_TIMEOUT, write).await {
        Ok(Ok(_)) => {
            metrics.status_written(StatusWriteOutcome::Succeeded);
            Ok(())
        }
        Ok(Err(source)) => {
            metrics.status_written(StatusWriteOutcome::Failed);
            Err(StatusError::Write { name, source })
        }
        Err(_) => {
            metrics.status_written(StatusWriteOutcome::TimedOut);
            Err(StatusError::TimedOut {
                name,
                timeout: STATUS_WRITE_TIMEOUT,
            })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSetStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn workload(desired: i32, ready: i32, rolling_out: bool) -> Workload {
        Workload {
            desired,
            ready,
            rolling_out,
        }
    }

    fn observed(redis: Workload, sentinel: Workload) -> Observed {
        Observed {
            generation: Some(4),
            redis,
            sentinel,
            primary: Some("shop-redis-0".to_owned()),
            topology: None,
            backup: None,
            prune: None,
            apply: ApplyObserved {
                applied: 22,
                failures: Vec::new(),
            },
            monitoring: crate::apply::Monitoring::NotRequested,
            cluster: None,
            api: None,
        }
    }

    fn find<'a>(status: &'a ABStoreStatus, type_: &str) -> &'a Condition {
        status
            .conditions
            .iter()
            .find(|condition| condition.type_ == type_)
            .unwrap()
    }

    #[test]
    fn the_api_column_counts_available_pods_of_what_the_deployment_or_its_autoscaler_wants() {
        use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};
        let deployment = |replicas: Option<i32>, status: DeploymentStatus| Deployment {
            metadata: ObjectMeta {
                generation: Some(3),
                ..ObjectMeta::default()
            },
            spec: Some(DeploymentSpec {
                replicas,
                ..DeploymentSpec::default()
            }),
            status: Some(status),
        };
        let settled = DeploymentStatus {
            observed_generation: Some(3),
            replicas: Some(5),
            updated_replicas: Some(5),
            available_replicas: Some(4),
            ..DeploymentStatus::default()
        };
        // An autoscaler owns the count (no spec.replicas): its 5, not the spec's minimum of 2.
        let scaled = Workload::from_deployment(2, Some(&deployment(None, settled.clone())));
        assert_eq!(
            (scaled.ratio(), scaled.rolling_out),
            ("4/5".to_owned(), false)
        );
        let fixed = Workload::from_deployment(2, Some(&deployment(Some(2), settled)));
        assert_eq!(fixed.ratio(), "4/2");
        // Not yet seen by its controller, or absent: rolling out, nothing ready.
        let new =
            Workload::from_deployment(2, Some(&deployment(Some(2), DeploymentStatus::default())));
        assert_eq!((new.ratio(), new.rolling_out), ("0/2".to_owned(), true));
        assert_eq!(Workload::from_deployment(2, None).ratio(), "0/2");
        let mut with_api = observed(workload(3, 3, false), workload(3, 3, false));
        with_api.api = Some(workload(2, 1, true));
        let status = applied(&with_api, None, at(0));
        assert_eq!(status.api.as_deref(), Some("1/2"));
        // The API does not decide the store's phase: the data is served.
        assert_eq!(status.phase, Some(Phase::Ready));
    }

    #[test]
    fn all_pods_ready_makes_the_store_ready_with_ratios() {
        // `kubectl get abs` shows these strings; the printer columns read them verbatim.
        let status = applied(
            &observed(workload(3, 3, false), workload(3, 3, false)),
            None,
            at(0),
        );
        assert_eq!(status.phase, Some(Phase::Ready));
        assert_eq!(status.ready.as_deref(), Some("3/3"));
        assert_eq!(status.sentinels.as_deref(), Some("3/3"));
        assert_eq!(
            (
                status.ready_replicas,
                status.replicas,
                status.ready_sentinels
            ),
            (3, 3, 3)
        );
        assert_eq!(status.observed_generation, Some(4));
        assert_eq!(status.primary.as_deref(), Some("shop-redis-0"));
        assert_eq!(find(&status, CONDITION_READY).status, "True");
        assert_eq!(find(&status, CONDITION_PROGRESSING).status, "False");
        assert_eq!(find(&status, CONDITION_DEGRADED).status, "False");
        assert_eq!(find(&status, CONDITION_INVALID_SPEC).status, "False");
        assert_eq!(find(&status, CONDITION_READY).observed_generation, Some(4));
    }

    #[test]
    fn a_new_store_is_pending_while_pods_start() {
        // Nothing was ever up, so missing pods are not a degradation.
        let status = applied(
            &observed(workload(3, 1, true), workload(3, 0, true)),
            None,
            at(0),
        );
        assert_eq!(status.phase, Some(Phase::Pending));
        assert_eq!(status.ready.as_deref(), Some("1/3"));
        assert_eq!(status.sentinels.as_deref(), Some("0/3"));
        assert_eq!(find(&status, CONDITION_PROGRESSING).status, "True");
        assert_eq!(
            find(&status, CONDITION_READY).message,
            "1/3 Redis pods and 0/3 sentinels ready"
        );
    }

    #[test]
    fn a_store_that_was_up_and_lost_a_pod_is_degraded() {
        // Outside a rollout, fewer ready pods than desired means something broke.
        let up = applied(
            &observed(workload(3, 3, false), workload(3, 3, false)),
            None,
            at(0),
        );
        let status = applied(
            &observed(workload(3, 2, false), workload(3, 3, false)),
            Some(&up),
            at(10),
        );
        assert_eq!(status.phase, Some(Phase::Degraded));
        assert_eq!(status.ready.as_deref(), Some("2/3"));
        assert_eq!(find(&status, CONDITION_DEGRADED).status, "True");
        assert_eq!(find(&status, CONDITION_READY).status, "False");
    }

    #[test]
    fn a_rollout_of_a_running_store_is_pending_not_degraded() {
        // A pod restarting during a planned rollout is expected, not an alarm.
        let up = applied(
            &observed(workload(3, 3, false), workload(3, 3, false)),
            None,
            at(0),
        );
        let status = applied(
            &observed(workload(3, 2, true), workload(3, 3, false)),
            Some(&up),
            at(10),
        );
        assert_eq!(status.phase, Some(Phase::Pending));
        assert_eq!(find(&status, CONDITION_DEGRADED).status, "False");
        assert_eq!(find(&status, CONDITION_PROGRESSING).status, "True");
    }

    #[test]
    fn transition_times_change_only_when_a_condition_flips() {
        // "Ready since" must not reset on every reconcile.
        let first = applied(
            &observed(workload(3, 3, false), workload(3, 3, false)),
            None,
            at(0),
        );
        let same = applied(
            &observed(workload(3, 3, false), workload(3, 3, false)),
            Some(&first),
            at(60),
        );
        assert_eq!(
            find(&same, CONDITION_READY).last_transition_time,
            Time(at(0))
        );
        let broken = applied(
            &observed(workload(3, 2, false), workload(3, 3, false)),
            Some(&same),
            at(120),
        );
        assert_eq!(
            find(&broken, CONDITION_READY).last_transition_time,
            Time(at(120))
        );
        assert_eq!(
            find(&broken, CONDITION_INVALID_SPEC).last_transition_time,
            Time(at(0))
        );
    }

    #[test]
    fn backup_prune_and_failover_times_are_kept() {
        // Other steps write these; a status computed here must not erase them.
        let previous = ABStoreStatus {
            last_backup: Some("2025-01-01T00:00:00Z".to_owned()),
            last_prune: Some("2025-01-01T03:30:00Z".to_owned()),
            last_failover: Some(LastFailover {
                time: "2024-12-31T10:00:00Z".to_owned(),
                from: Some("shop-redis-1".to_owned()),
                to: "shop-redis-0".to_owned(),
                reason: FAILOVER.to_owned(),
            }),
            primary: Some("shop-redis-0".to_owned()),
            ..ABStoreStatus::default()
        };
        let status = applied(
            &observed(workload(3, 3, false), workload(3, 3, false)),
            Some(&previous),
            at(0),
        );
        assert_eq!(status.last_backup, previous.last_backup);
        assert_eq!(status.last_prune, previous.last_prune);
        assert_eq!(status.last_failover, previous.last_failover);
    }

    #[test]
    fn an_invalid_spec_keeps_what_was_observed_and_names_the_field() {
        // The cluster was not changed, so the pods' state is still what the status says.
        let up = applied(
            &observed(workload(3, 3, false), workload(3, 3, false)),
            None,
            at(0),
        );
        let refused = InvalidSpec {
            generation: Some(5),
            reason: "InvalidQuorum".to_owned(),
            message: "spec.sentinel.quorum: 4 is more than the 3 sentinels".to_owned(),
        };
        let status = invalid(&refused, Some(&up), at(30));
        assert_eq!(status.phase, Some(Phase::Invalid));
        assert_eq!(status.observed_generation, Some(5));
        assert_eq!(status.ready.as_deref(), Some("3/3"));
        let condition = find(&status, CONDITION_INVALID_SPEC);
        assert_eq!(condition.status, "True");
        assert_eq!(condition.reason, "InvalidQuorum");
        assert!(condition.message.contains("spec.sentinel.quorum"));
        assert_eq!(condition.last_transition_time, Time(at(30)));
        assert_eq!(
            find(&status, CONDITION_READY).last_transition_time,
            Time(at(0))
        );
        assert_eq!(
            status.conditions.len(),
            5,
            "Ready, Progressing, Degraded, Applied, InvalidSpec"
        );
    }

    #[test]
    fn a_fixed_spec_clears_invalid_spec() {
        // After the user corrects the spec, InvalidSpec flips back to False with a new time.
        let refused = InvalidSpec {
            generation: Some(5),
            reason: "InvalidQuorum".to_owned(),
            message: "spec.sentinel.quorum".to_owned(),
        };
        let bad = invalid(&refused, None, at(0));
        let fixed = applied(
            &observed(workload(3, 3, false), workload(3, 3, false)),
            Some(&bad),
            at(50),
        );
        assert_eq!(find(&fixed, CONDITION_INVALID_SPEC).status, "False");
        assert_eq!(
            find(&fixed, CONDITION_INVALID_SPEC).last_transition_time,
            Time(at(50))
        );
        assert_eq!(fixed.phase, Some(Phase::Ready));
    }

    /// A StatefulSet `shop-redis` at generation 2, observed, with OnDelete's status: the update
    /// revision `update`, the current revision stuck at `r1`.
    fn on_delete_set(update: &str) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("shop-redis".to_owned()),
                generation: Some(2),
                ..ObjectMeta::default()
            },
            status: Some(StatefulSetStatus {
                observed_generation: Some(2),
                replicas: 3,
                ready_replicas: Some(3),
                // The StatefulSet controller counts pods of the update revision here but, with
                // OnDelete, never moves currentRevision.
                updated_replicas: Some(3),
                current_revision: Some("r1".to_owned()),
                update_revision: Some(update.to_owned()),
                ..StatefulSetStatus::default()
            }),
            ..StatefulSet::default()
        }
    }

    /// Pods `shop-redis-<ordinal>` created from the given revisions.
    fn pods_at(revisions: &[(usize, &str)]) -> Vec<Pod> {
        revisions
            .iter()
            .map(|(ordinal, revision)| {
                serde_json::from_value(serde_json::json!({"metadata": {
                    "name": format!("shop-redis-{ordinal}"),
                    "labels": {pods::REVISION_LABEL: revision},
                }}))
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn rolled_out_comes_from_the_pods_revisions_not_the_current_revision() {
        // Issue 16, item 4: with OnDelete, status.currentRevision never advances, so
        // Progressing stayed True/RollingOut forever after a rollout had finished.
        let set = on_delete_set("r2");
        let all = pods_at(&[(0, "r2"), (1, "r2"), (2, "r2")]);
        let workload = Workload::from_stateful_set_and_pods(3, Some(&set), &all);
        assert_eq!((workload.ready, workload.rolling_out), (3, false));
        // (pods, why it is still rolling out)
        let cases = [
            (
                pods_at(&[(0, "r2"), (1, "r1"), (2, "r2")]),
                "a pod on the old revision",
            ),
            (pods_at(&[(0, "r2"), (2, "r2")]), "a missing pod"),
            (
                pods_at(&[(0, "r2"), (1, "r2"), (2, "r2"), (3, "r1")]),
                "a pod beyond the desired ones (scale-down in progress)",
            ),
        ];
        for (pods, why) in cases {
            assert!(
                Workload::from_stateful_set_and_pods(3, Some(&set), &pods).rolling_out,
                "{why}"
            );
        }
        // Another set's pods do not count.
        let foreign: Vec<Pod> = pods_at(&[(0, "r2"), (1, "r2"), (2, "r2")])
            .into_iter()
            .map(|mut pod| {
                pod.metadata.name = pod.metadata.name.map(|n| n.replace("redis", "sentinel"));
                pod
            })
            .collect();
        assert!(Workload::from_stateful_set_and_pods(3, Some(&set), &foreign).rolling_out);
    }

    #[test]
    fn a_stateful_set_not_yet_observed_is_rolling_out_whatever_its_pods() {
        // Right after an apply the StatefulSet controller has not caught up with the spec: the
        // pods' revision label still names the previous update revision as current.
        let mut unseen = on_delete_set("r2");
        unseen.status.as_mut().unwrap().observed_generation = Some(1);
        let all = pods_at(&[(0, "r2"), (1, "r2"), (2, "r2")]);
        assert!(Workload::from_stateful_set_and_pods(3, Some(&unseen), &all).rolling_out);
        assert!(Workload::from_stateful_set_and_pods(3, None, &all).rolling_out);
        let mut no_status = on_delete_set("r2");
        no_status.status = None;
        let workload = Workload::from_stateful_set_and_pods(3, Some(&no_status), &all);
        assert_eq!((workload.ready, workload.rolling_out), (0, true));
    }

    #[test]
    fn categories_become_camel_case_reasons() {
        // The API server refuses condition reasons with dashes.
        assert_eq!(reason_from_category("invalid-quorum"), "InvalidQuorum");
        assert_eq!(reason_from_category("apply"), "Apply");
        assert_eq!(reason_from_category("status_timeout"), "StatusTimeout");
    }
    fn with_topology(primary: Option<&str>, switchover: bool) -> Observed {
        Observed {
            primary: primary.map(str::to_owned),
            topology: Some(TopologyObserved {
                summary: "heal summary".to_owned(),
                pods: vec![RedisPodStatus {
                    name: "shop-redis-0".to_owned(),
                    role: "replica".to_owned(),
                    lag_bytes: Some(12),
                    ..RedisPodStatus::default()
                }],
                primary_known: primary.is_some(),
                switchover,
                failover: FailoverReadiness {
                    ready: primary.is_some(),
                    reason: if primary.is_some() {
                        "SentinelsKnowReplicas"
                    } else {
                        "NoPrimary"
                    }
                    .to_owned(),
                    message: "failover message".to_owned(),
                },
            }),
            ..observed(workload(3, 3, false), workload(3, 3, false))
        }
    }

    #[test]
    fn failover_ready_follows_what_the_sentinels_know() {
        let known = applied(&with_topology(Some("shop-redis-0"), false), None, at(0));
        let condition = find(&known, CONDITION_FAILOVER_READY);
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_str()),
            ("True", "SentinelsKnowReplicas")
        );
        let unknown = applied(&with_topology(None, false), None, at(0));
        let condition = find(&unknown, CONDITION_FAILOVER_READY);
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_str()),
            ("False", "NoPrimary")
        );
    }

    #[test]
    fn a_new_primary_records_the_failover_with_from_and_to() {
        let before = applied(&with_topology(Some("shop-redis-0"), false), None, at(0));
        assert_eq!(
            before.last_failover, None,
            "a first primary is not a failover"
        );
        let after = applied(
            &with_topology(Some("shop-redis-1"), false),
            Some(&before),
            at(10),
        );
        let failover = after.last_failover.clone().unwrap();
        assert_eq!(failover.from.as_deref(), Some("shop-redis-0"));
        assert_eq!(failover.to, "shop-redis-1");
        assert_eq!(failover.reason, FAILOVER);
        assert_eq!(failover.time, at(10).to_string());
        assert_eq!(after.pods[0].lag_bytes, Some(12));

        // Same primary later: the record stays as it was.
        let later = applied(
            &with_topology(Some("shop-redis-1"), false),
            Some(&after),
            at(20),
        );
        assert_eq!(later.last_failover, after.last_failover);

        // A primary unknown for a while (failover in progress) is not a change either.
        let unknown = applied(&with_topology(None, false), Some(&later), at(30));
        assert_eq!(unknown.last_failover, after.last_failover);

        // The operator's own move is a switchover.
        let moved = applied(
            &with_topology(Some("shop-redis-2"), true),
            Some(&later),
            at(40),
        );
        assert_eq!(moved.last_failover.unwrap().reason, SWITCHOVER);
    }

    #[test]
    fn primary_available_follows_the_heal_summary() {
        let known = applied(&with_topology(Some("shop-redis-0"), false), None, at(0));
        let condition = find(&known, CONDITION_PRIMARY_AVAILABLE);
        assert_eq!(condition.status, "True");
        assert_eq!(condition.message, "heal summary");
        let unknown = applied(&with_topology(None, false), Some(&known), at(5));
        let condition = find(&unknown, CONDITION_PRIMARY_AVAILABLE);
        assert_eq!(condition.status, "False");
        assert_eq!(condition.reason, "NoPrimary");
        // Without a topology observation the condition is not invented.
        let none = applied(
            &observed(workload(3, 3, false), workload(3, 3, false)),
            None,
            at(0),
        );
        assert!(
            none.conditions
                .iter()
                .all(|c| c.type_ != CONDITION_PRIMARY_AVAILABLE)
        );
    }

    #[test]
    fn refused_objects_set_applied_false_naming_each_one() {
        // One refused object must show in `kubectl get abs -o yaml`, not only in a log line.
        let mut refused = observed(workload(3, 3, false), workload(3, 3, false));
        refused.apply.failures = vec![
            "applying StatefulSet shop-redis: forbidden field".to_owned(),
            "applying CronJob shop-prune: denied by webhook".to_owned(),
        ];
        let status = applied(&refused, None, at(10));
        let condition = find(&status, CONDITION_APPLIED);
        assert_eq!(condition.status, "False");
        assert_eq!(condition.reason, "ApplyFailed");
        assert!(
            condition.message.contains("StatefulSet shop-redis"),
            "{}",
            condition.message
        );
        assert!(
            condition.message.contains("CronJob shop-prune"),
            "{}",
            condition.message
        );
        // The rest of the status is still computed from what was observed.
        assert_eq!(status.phase, Some(Phase::Ready));
        let fixed = applied(
            &observed(workload(3, 3, false), workload(3, 3, false)),
            Some(&status),
            at(20),
        );
        assert_eq!(find(&fixed, CONDITION_APPLIED).status, "True");
    }

    #[test]
    fn skipped_monitoring_says_why_and_is_absent_when_not_requested() {
        // Clusters without the Prometheus Operator are the common case: the store is fine, and
        // the condition tells the user what to install.
        let mut skipped = observed(workload(3, 3, false), workload(3, 3, false));
        skipped.monitoring = crate::apply::Monitoring::Skipped {
            kinds: vec!["ServiceMonitor".to_owned(), "PrometheusRule".to_owned()],
            reason: crate::apply::MonitoringSkipped::NotServed,
        };
        let status = applied(&skipped, None, at(10));
        let condition = find(&status, CONDITION_MONITORING);
        assert_eq!(condition.status, "False");
        assert_eq!(condition.reason, "CRDsMissing");
        assert!(
            condition
                .message
                .starts_with("ServiceMonitor, PrometheusRule skipped"),
            "{}",
            condition.message
        );
        assert_eq!(status.phase, Some(Phase::Ready));
        let without = applied(
            &observed(workload(3, 3, false), workload(3, 3, false)),
            Some(&status),
            at(20),
        );
        assert!(
            without
                .conditions
                .iter()
                .all(|c| c.type_ != CONDITION_MONITORING)
        );
    }
}
