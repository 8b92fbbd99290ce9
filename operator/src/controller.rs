//! The controller: watches ABStores and the kinds they own, and runs the reconcile pipeline
//! validate → build → apply → status for each store that changes. The wrapper around the
//! pipeline does tracing, metrics, Events and requeues; leader election gates whether it runs.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{PredicateConfig, WatchStreamExt, predicates, reflector, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::watch;
use tracing::Instrument;

use crate::apply::{self, ApplyError};
use crate::build::build;
use crate::build::{
    BACKUP_COMPONENT, Children, PROMETHEUS_RULE_KIND, PRUNE_COMPONENT, SERVICE_MONITOR_KIND,
};
use crate::crd::ABStore;
use crate::credentials::{Credentials, acl_secret_name, generate_password};
use crate::error::Error;
use crate::heal::{self, Endpoint, HealTarget};
use crate::job_runs::{self, LastRuns};
use crate::leader::{LeaderElector, Leadership};
use crate::metrics::{Metrics, Readiness, StoreSnapshot};
use crate::model::{INSTANCE_LABEL, MANAGED_BY_LABEL, MANAGER, Model, Platform, REDIS, SENTINEL};
use crate::pods;
use crate::rollout::{self, RolloutInput, Step};
use crate::rotation;
use crate::status::{
    self, InvalidSpec, Observed, TopologyObserved, Workload, reason_from_category,
};
use crate::topology::{
    self, Followers, REASON_FAILOVER, REASON_SWITCHOVER, TopologyError, TopologyOutcome,
};
use crate::validate::validate_on;

/// Requeue of a healthy store: a periodic re-apply repairs drift the watches did not see.
pub const REQUEUE_AFTER: Duration = Duration::from_secs(5 * 60);
/// Changes to a store's objects within this long of each other make one reconcile.
pub const RECONCILE_DEBOUNCE: Duration = Duration::from_millis(500);
/// Requeue while a rollout or scale-down is under way: the next pod goes as soon as the last
/// one is back (pod changes trigger a reconcile too; this is the fallback).
pub const ROLLOUT_REQUEUE_AFTER: Duration = Duration::from_secs(5);
/// How much longer than Sentinel's failover timeout a switchover may take.
const SWITCHOVER_MARGIN: Duration = Duration::from_secs(10);
/// Event reasons of rollouts.
pub const REASON_ROLLING_RESTART: &str = "RollingRestart";
pub const REASON_ROLLOUT_FAILED: &str = "RolloutFailed";

/// Requeue of a store whose monitoring objects were skipped (the Prometheus Operator's CRDs
/// not installed): they are applied within this long of the CRDs appearing. The operator does
/// not watch CRDs (that would need cluster-wide RBAC on CustomResourceDefinitions).
pub const MONITORING_RECHECK_AFTER: Duration = Duration::from_secs(60);

/// Requeue of a store whose topology is not settled (no primary known, a heal action failed,
/// heal waiting for Sentinel): heal runs again soon.
pub const TOPOLOGY_REQUEUE_AFTER: Duration = Duration::from_secs(10);
/// Requeue of a store whose spec was refused: nothing changes until the user edits it (which
/// triggers a reconcile at once), so this only refreshes the status now and then.
pub const INVALID_SPEC_REQUEUE_AFTER: Duration = Duration::from_secs(30 * 60);
/// First retry after a failed reconcile; doubled per consecutive failure.
pub const ERROR_BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest wait between retries of a failing store.
pub const ERROR_BACKOFF_MAX: Duration = Duration::from_secs(5 * 60);

/// Event reasons for what the operator did.
pub const REASON_APPLIED: &str = "Applied";
/// ACL users on a data node differed from the store's and were set live.
pub const REASON_ACL_HEALED: &str = "ACLHealed";
pub const REASON_DELETED_ORPHANS: &str = "DeletedOrphans";
pub const REASON_MONITORING_UNAVAILABLE: &str = "MonitoringCRDsMissing";
pub const REASON_RECONCILE_FAILED_PREFIX: &str = "ReconcileFailed";
/// Event actions (what the operator was doing).
const ACTION_RECONCILE: &str = "Reconcile";
const ACTION_VALIDATE: &str = "Validate";
const ACTION_HEAL: &str = "Heal";
const ACTION_ROLLOUT: &str = "Rollout";

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Publishes Events on ABStores.
    events: crate::events::Publisher,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    /// With leader election: whether this replica leads. `None` when election is off.
    pub leadership: Option<watch::Receiver<Leadership>>,
    /// Consecutive failures per store (`namespace/name`), for the retry backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Where heal reaches a store's data nodes and sentinels.
    endpoints: EndpointResolver,
    /// `+switch-master` followers, one per store.
    pub followers: Followers,
    /// What the stores are validated and built for (cluster domain, operator namespace).
    pub platform: Platform,
}

/// Where the operator reaches a store's data nodes and sentinels (ordinal order): pod DNS names
/// in the cluster ([`pods::pod_dns_endpoints`]); tests point it at processes on loopback.
pub type EndpointResolver =
    Arc<dyn Fn(&Model, usize, usize) -> (Vec<Endpoint>, Vec<Endpoint>) + Send + Sync>;

impl Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("metrics", &self.metrics)
            .field("leadership", &self.leadership)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// Stores validated and built for `platform` instead of the default (cluster.local, the
    /// operator in abstore-system).
    pub fn with_platform(mut self, platform: Platform) -> Self {
        self.platform = platform;
        self
    }

    /// A context whose Events are reported by `identity` (the pod name).
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        identity: &str,
        leadership: Option<watch::Receiver<Leadership>>,
    ) -> Self {
        Context {
            events: crate::events::Publisher::new(client.clone(), MANAGER, identity),
            client,
            metrics,
            leadership,
            failures: Mutex::new(HashMap::new()),
            endpoints: Arc::new(pods::pod_dns_endpoints),
            followers: Followers::default(),
            platform: Platform::default(),
        }
    }

    /// This context with heal reaching stores where `endpoints` says.
    pub fn with_endpoints(mut self, endpoints: EndpointResolver) -> Self {
        self.endpoints = endpoints;
        self
    }

    fn is_leader(&self) -> bool {
        self.leadership
            .as_ref()
            .is_none_or(|leadership| *leadership.borrow() == Leadership::Leading)
    }

    /// Publishes an Event on `store`. A failure to publish is logged, never fatal: the Event
    /// reports what happened, it is not what happened.
    async fn publish(
        &self,
        store: &ABStore,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.publish_related(store, type_, reason, action, note, None)
            .await;
    }

    /// Publishes an Event on `store` that is also about the pod `related` (restarted, promoted).
    async fn publish_about_pod(
        &self,
        store: &ABStore,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
        pod: &str,
    ) {
        let related = ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Pod".to_owned()),
            name: Some(pod.to_owned()),
            namespace: store.namespace(),
            ..ObjectReference::default()
        };
        self.publish_related(store, type_, reason, action, note, Some(related))
            .await;
    }

    async fn publish_related(
        &self,
        store: &ABStore,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
        related: Option<ObjectReference>,
    ) {
        let event = crate::events::Event {
            type_,
            reason,
            action,
            note: truncate_note(note),
            related,
        };
        if let Err(error) = self.events.publish(&store.object_ref(&()), event).await {
            tracing::warn!(%error, %reason, "publishing an Event");
        }
    }

    /// A Warning Event `ReconcileFailed<Category>` with the error as its note.
    async fn publish_failure(
        &self,
        store: &ABStore,
        category: &str,
        action: &str,
        error: &(dyn std::fmt::Display + Sync),
    ) {
        let reason = format!(
            "{REASON_RECONCILE_FAILED_PREFIX}{}",
            reason_from_category(category)
        );
        self.publish(
            store,
            EventType::Warning,
            &reason,
            action,
            error.to_string(),
        )
        .await;
    }

    fn consecutive_failures(&self, key: &str, failed: bool) -> u32 {
        let Ok(mut failures) = self.failures.lock() else {
            return 0;
        };
        if failed {
            let count = failures.entry(key.to_owned()).or_insert(0);
            *count = count.saturating_add(1);
            *count
        } else {
            failures.remove(key);
            0
        }
    }
}

/// Event notes are limited to 1 kB by the API server.
fn truncate_note(mut note: String) -> String {
    const MAX_NOTE: usize = 1024;
    if note.len() > MAX_NOTE {
        let mut end = MAX_NOTE - 3;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push_str("...");
    }
    note
}

fn store_key(store: &ABStore) -> String {
    format!(
        "{}/{}",
        store.namespace().unwrap_or_default(),
        store.name_any()
    )
}

/// Reconciles one store: the controller's entry point. Times and counts the run; a failure is
/// reported as a Warning Event (reason `ReconcileFailed<Category>`) before the error goes to
/// `error_policy`.
pub async fn reconcile(store: Arc<ABStore>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = tracing::info_span!(
        "reconcile",
        store = %store.name_any(),
        namespace = %store.namespace().unwrap_or_default(),
        generation = store.metadata.generation.unwrap_or_default(),
    );
    async move {
        if !ctx.is_leader() {
            // Lost the Lease while this reconcile was queued: the new leader takes it.
            return Ok(Action::await_change());
        }
        if store.metadata.deletion_timestamp.is_some() {
            // Children carry owner references: the garbage collector removes them (PVCs stay).
            ctx.followers.remove(&store_key(&store));
            return Ok(Action::await_change());
        }
        let _timer = ctx.metrics.reconcile_started();
        match reconcile_store(&store, &ctx).await {
            Ok(action) => {
                ctx.consecutive_failures(&store_key(&store), false);
                Ok(action)
            }
            Err(error) => {
                // An incomplete apply was reported phase by phase already.
                if !matches!(error, Error::Incomplete(_)) {
                    ctx.publish_failure(&store, error.category(), ACTION_RECONCILE, &error)
                        .await;
                }
                Err(error)
            }
        }
    }
    .instrument(span)
    .await
}

/// The pipeline, phase by phase: validate → credentials → build → apply → delete orphans →
/// heal → rollout → status. Validate, credentials and build must succeed for anything to
/// happen: nothing can be built without them. From apply on, a failing phase goes to its
/// condition and a Warning Event and the phases that do not depend on it still run — one
/// refused object must not stop healing, nor hide the reason from `kubectl get abs`.
async fn reconcile_store(store: &ABStore, ctx: &Context) -> Result<Action, Error> {
    let previous = store.status.as_ref();
    let model = match validate_on(store, &ctx.platform) {
        Ok(model) => model,
        Err(error) => return refuse_spec(store, ctx, &error).await,
    };
    let client = &ctx.client;

    // Credentials: the passwords to keep, and where a rotation stands.
    let existing = apply::existing_passwords(client, &model.namespace, &model.name).await?;
    let prior = apply::password_state(client, &model.namespace, &acl_secret_name(&model)).await?;
    let (credentials, rotations, rotation_ends) = rotation::roll(
        Credentials::resolve(&model, &existing, &mut generate_password),
        prior.as_ref(),
        chrono::Utc::now(),
        chrono::Duration::seconds(model.spec.auth.rotation_grace_seconds),
    );

    // Build, from the spec and what is read once per reconcile.
    let mut children = build(&model, &credentials)?;
    // The TLS Secret, read once: its fingerprint on the pod templates (a renewed certificate
    // rolls the pods) and its CA for the heal connections. Unreadable, the templates go
    // unstamped, but nothing restarts: the rollout runs only after a heal pass that needs it.
    let tls = topology::tls_material(client, &model).await;
    if let Ok(Some(material)) = &tls {
        crate::build::stamp_tls_fingerprint(&mut children, &material.fingerprint);
    }
    // The API key's Secret: missing, the API pods cannot start (their volume waits for it).
    match topology::check_api_key(client, &model).await {
        Ok(()) => {}
        Err(reason) => {
            tracing::warn!(store = %model.name, %reason, "the tracking API's key is not readable");
            ctx.publish(
                store,
                EventType::Warning,
                "ApiKeyUnreadable",
                ACTION_RECONCILE,
                reason,
            )
            .await;
        }
    }
    // The pods as they are before anything changes: who is labelled primary (a scale-down
    // waits until the primary is not among the pods to remove) and what runs where.
    let pods = StorePods::list(client, &model).await?;
    let hold = if model.cluster().is_some() {
        let tls_ca = tls
            .as_ref()
            .ok()
            .and_then(|m| m.as_ref().map(|m| m.ca.clone()));
        cluster_scale_in_hold(&model, &credentials, &pods, tls_ca, ctx).await
    } else {
        pods.scale_down_hold(&model)
    };
    if let Some(hold) = hold {
        hold_replicas(&mut children, &model.child_name(REDIS), hold);
    }

    // Apply, then clean up what is no longer built. Failures are collected, not returned.
    let ApplyPhase {
        applied,
        stateful_sets,
        deleted,
        failures,
    } = apply_phase(client, &model, children).await;
    for rotation in &rotations {
        ctx.publish(
            store,
            EventType::Normal,
            rotation.reason(),
            ACTION_RECONCILE,
            rotation.note(),
        )
        .await;
    }

    // Heal and roll out: they talk to Redis (and Sentinel), whatever the apply did.
    let heal = if model.cluster().is_some() {
        cluster_phase(store, &model, &credentials, &pods, tls, &stateful_sets, ctx).await
    } else {
        sentinel_phase(
            store,
            &model,
            &credentials,
            &pods,
            tls,
            &stateful_sets,
            previous,
            ctx,
        )
        .await?
    };

    // Status.
    let mut observed = observe(
        &model,
        store.metadata.generation,
        &stateful_sets,
        &pods,
        heal.primary.clone(),
    );
    observed.topology = Some(heal.topology.clone());
    observed.cluster = heal.cluster.clone();
    (observed.backup, observed.prune) = job_runs(client, &model).await;
    observed.apply = status::ApplyObserved {
        applied: applied.count(),
        failures: failures.iter().map(ToString::to_string).collect(),
    };
    observed.monitoring = applied.monitoring.clone();
    let api_name = model.child_name(crate::build::API_COMPONENT);
    observed.api = model.spec.api.enabled.then(|| {
        status::Workload::from_deployment(
            model.spec.api.replicas,
            applied
                .deployments
                .iter()
                .find(|d| d.metadata.name.as_deref() == Some(api_name.as_str())),
        )
    });
    let new_status = status::applied(&observed, previous, Timestamp::now());
    status::write(client, store, &new_status, &ctx.metrics).await?;
    ctx.metrics.observe_store(
        &model.namespace,
        &model.name,
        &StoreSnapshot {
            redis_ready: i64::from(observed.redis.ready),
            redis_desired: i64::from(observed.redis.desired),
            sentinels_ready: i64::from(observed.sentinel.ready),
            // Cluster mode has no sentinels (and no quorum to fall below).
            sentinel_quorum: if model.cluster().is_some() {
                0
            } else {
                i64::from(model.spec.sentinel.quorum)
            },
            primary_available: observed
                .topology
                .as_ref()
                .is_some_and(|topology| topology.primary_known),
            backup: observed.backup,
            prune: observed.prune,
        },
    );

    // Events: what changed, and each failing phase.
    if let Some(change) = &new_status.last_failover
        && previous.and_then(|status| status.last_failover.as_ref()) != Some(change)
    {
        let switchover = change.reason == status::SWITCHOVER;
        ctx.metrics
            .primary_changed(&model.namespace, &model.name, &change.reason);
        ctx.publish_about_pod(
            store,
            if switchover {
                EventType::Normal
            } else {
                EventType::Warning
            },
            if switchover {
                REASON_SWITCHOVER
            } else {
                REASON_FAILOVER
            },
            ACTION_HEAL,
            format!(
                "the primary moved from {} to {}",
                change.from.as_deref().unwrap_or("an unknown pod"),
                change.to
            ),
            &change.to,
        )
        .await;
    }
    // One Event per new generation applied, per orphan clean-up, per change of the monitoring
    // condition — not one per periodic resync.
    let generation_is_new = previous.and_then(|status| status.observed_generation)
        != store.metadata.generation
        || previous.and_then(|status| status.phase) == Some(crate::crd::Phase::Invalid);
    if generation_is_new && failures.is_empty() {
        ctx.publish(
            store,
            EventType::Normal,
            REASON_APPLIED,
            ACTION_RECONCILE,
            format!(
                "applied {} objects for generation {}",
                applied.count(),
                store.metadata.generation.unwrap_or_default()
            ),
        )
        .await;
    }
    if !deleted.is_empty() {
        ctx.publish(
            store,
            EventType::Normal,
            REASON_DELETED_ORPHANS,
            ACTION_RECONCILE,
            format!("deleted objects no longer built: {}", deleted.join(", ")),
        )
        .await;
    }
    if let apply::Monitoring::Skipped { kinds, reason } = &applied.monitoring
        && condition_changed(previous, &new_status, status::CONDITION_MONITORING)
    {
        ctx.publish(
            store,
            EventType::Warning,
            REASON_MONITORING_UNAVAILABLE,
            ACTION_RECONCILE,
            format!("skipped {}: {}", kinds.join(", "), reason.explanation()),
        )
        .await;
    }
    if !failures.is_empty() {
        let notes: Vec<String> = failures.iter().map(ToString::to_string).collect();
        let category = failures.first().map_or("apply", ApplyError::category);
        ctx.publish_failure(store, category, ACTION_RECONCILE, &notes.join("; "))
            .await;
    }

    let HealPhase {
        settled,
        rolling,
        rollout,
        requeue: heal_requeue,
        ..
    } = heal;
    tracing::info!(applied = applied.count(), refused = failures.len(), deleted = deleted.len(), phase = ?new_status.phase, primary = ?new_status.primary, settled, rollout = ?rollout, "reconciled");
    if let Some(first) = failures.into_iter().next() {
        // Reported above; the error only drives the retry backoff.
        return Err(Error::Incomplete(Box::new(first)));
    }
    let requeue = if let Some(soon) = heal_requeue {
        soon
    } else if !settled {
        TOPOLOGY_REQUEUE_AFTER
    } else if rolling {
        ROLLOUT_REQUEUE_AFTER
    } else if matches!(applied.monitoring, apply::Monitoring::Skipped { .. }) {
        MONITORING_RECHECK_AFTER
    } else {
        REQUEUE_AFTER
    };
    // A rotation ends on time, not at the next periodic resync.
    let rotation_due = rotation_ends
        .and_then(|end| (end - chrono::Utc::now()).to_std().ok())
        .map(|left| left + Duration::from_secs(1));
    Ok(Action::requeue(
        rotation_due.map_or(requeue, |due| due.min(requeue)),
    ))
}

/// What the heal-and-rollout phase reports for the status, the log and the requeue.
struct HealPhase {
    topology: TopologyObserved,
    /// The primary pod (Sentinel mode).
    primary: Option<String>,
    cluster: Option<status::ClusterObserved>,
    /// Nothing left to repair or wait for.
    settled: bool,
    /// A rollout (or scale change) is under way.
    rolling: bool,
    /// The rollout or resharding step, for the log.
    rollout: Option<String>,
    /// Come back this soon (a resharding moving slots), whatever else says.
    requeue: Option<Duration>,
}

/// Sentinel mode: the heal pass (and its Events), then one rollout step.
#[allow(clippy::too_many_arguments)]
async fn sentinel_phase(
    store: &ABStore,
    model: &Model,
    credentials: &Credentials,
    pods: &StorePods,
    tls: Result<Option<topology::TlsMaterial>, TopologyError>,
    stateful_sets: &[StatefulSet],
    previous: Option<&crate::crd::ABStoreStatus>,
    ctx: &Context,
) -> Result<HealPhase, Error> {
    let mut topology = topology_step(store, model, credentials, pods, tls, ctx).await;
    // Also on an unsettled topology: next_step waits whenever heal would, except to replace an
    // outdated pod that cannot start (which heal may well be waiting on).
    let rollout = match &mut topology {
        Ok((target, outcome)) => {
            Some(rollout_step(store, model, target, outcome, pods, stateful_sets, ctx).await)
        }
        Err(_) => None,
    };
    let topology = topology.map(|(_, outcome)| outcome);
    let primary = match topology.as_ref().ok().and_then(|outcome| outcome.primary) {
        Some(ordinal) => Some(pods::redis_pod_name(model, ordinal)),
        None => status::primary_pod(&ctx.client, &model.namespace, &model.name).await?,
    };
    let switched_over = rollout.as_ref().is_some_and(|r| r.switched_over);
    let observed = match &topology {
        Ok(outcome) => TopologyObserved {
            summary: match &rollout {
                // While heal waits, the rollout waits for the same reason: say it once.
                Some(RolloutOutcome {
                    step: Step::Wait { .. },
                    ..
                }) if !outcome.settled => outcome.summary.clone(),
                Some(RolloutOutcome { step, .. }) if *step != Step::Done => {
                    format!("{}; rollout: {step}", outcome.summary)
                }
                _ => outcome.summary.clone(),
            },
            pods: outcome.pods.clone(),
            primary_known: outcome.primary.is_some(),
            switchover: switched_over,
            failover: outcome.failover.clone(),
        },
        Err(error) => TopologyObserved {
            summary: format!("heal did not run: {error}"),
            pods: previous
                .map(|status| status.pods.clone())
                .unwrap_or_default(),
            primary_known: false,
            switchover: false,
            failover: status::FailoverReadiness {
                ready: false,
                reason: "NoPrimary".into(),
                message: format!("heal did not run: {error}"),
            },
        },
    };
    match &topology {
        Ok(outcome) => {
            for event in &outcome.events {
                ctx.publish(
                    store,
                    event.event_type(),
                    event.reason,
                    ACTION_HEAL,
                    event.note.clone(),
                )
                .await;
            }
        }
        Err(error) => {
            ctx.publish_failure(store, error.category(), ACTION_HEAL, error)
                .await;
        }
    }
    Ok(HealPhase {
        topology: observed,
        primary,
        cluster: None,
        settled: topology.as_ref().is_ok_and(|outcome| outcome.settled),
        rolling: rollout.as_ref().is_some_and(|r| r.step != Step::Done),
        rollout: rollout.as_ref().map(|r| r.step.to_string()),
        requeue: None,
    })
}

/// Event reasons of cluster mode.
pub const REASON_CLUSTER_HEALED: &str = "ClusterHealed";
pub const REASON_RESHARDED: &str = "Resharded";
/// How long one reconcile may move slots before it writes the status and comes back.
const RESHARD_BUDGET: Duration = Duration::from_secs(3);
/// Requeue while slots are moving.
const RESHARD_REQUEUE_AFTER: Duration = Duration::from_millis(500);

/// The heal target of a cluster-mode store: every pod the spec asks for, plus pods beyond it
/// that still exist (a scale-in in progress).
fn cluster_target(
    model: &Model,
    credentials: &Credentials,
    pods: &StorePods,
    tls_ca: Option<Vec<u8>>,
    ctx: &Context,
) -> crate::cluster::heal::ClusterHealTarget {
    let (nodes, _) = pods.counts(model);
    let (endpoints, _) = (ctx.endpoints)(model, nodes, 0);
    crate::cluster::kubernetes::target(model, credentials, endpoints, tls_ca)
}

/// Cluster mode, before the apply: the StatefulSet's replicas while a scale-in must wait for
/// the resharding to empty the shards whose pods go.
async fn cluster_scale_in_hold(
    model: &Model,
    credentials: &Credentials,
    pods: &StorePods,
    tls_ca: Option<Vec<u8>>,
    ctx: &Context,
) -> Option<i32> {
    let keep = usize::try_from(model.redis_pods()).unwrap_or(0);
    let existing = pods::span(&pods.redis, &model.child_name(REDIS));
    if existing <= keep {
        return None;
    }
    let target = cluster_target(model, credentials, pods, tls_ca, ctx);
    let observation = crate::cluster::heal::observe(&target).await;
    if crate::cluster::kubernetes::may_remove_beyond(keep, &observation) {
        tracing::info!(
            from = existing,
            to = keep,
            "scale-in: the removed shards are empty"
        );
        None
    } else {
        Some(i32::try_from(existing).unwrap_or(i32::MAX))
    }
}

/// Cluster mode: ACLs, one cluster heal pass (form, repair), then — on a settled cluster — one
/// rollout step (replicas first; a primary moved away with `CLUSTER FAILOVER` before its pod is
/// deleted), then — with nothing to roll — the resharding towards `spec.cluster.shards`.
async fn cluster_phase(
    store: &ABStore,
    model: &Model,
    credentials: &Credentials,
    pods: &StorePods,
    tls: Result<Option<topology::TlsMaterial>, TopologyError>,
    stateful_sets: &[StatefulSet],
    ctx: &Context,
) -> HealPhase {
    use crate::cluster::heal::{ReshardOutcome, failover, heal_once, observe, reshard_pass};
    use crate::cluster::kubernetes::{view, wanted_shards};
    use crate::cluster::rollout::{RolloutStep, next_step};

    let tls_ca = match tls {
        Ok(material) => material.map(|m| m.ca),
        Err(error) => {
            ctx.publish_failure(store, error.category(), ACTION_HEAL, &error)
                .await;
            let summary = format!("heal did not run: {error}");
            return HealPhase {
                topology: TopologyObserved {
                    summary: summary.clone(),
                    failover: status::FailoverReadiness {
                        ready: false,
                        reason: "NoPrimary".into(),
                        message: summary,
                    },
                    ..TopologyObserved::default()
                },
                primary: None,
                cluster: None,
                settled: false,
                rolling: false,
                rollout: None,
                requeue: None,
            };
        }
    };
    let target = cluster_target(model, credentials, pods, tls_ca, ctx);
    // ACLs first (users and passwords set live, as in Sentinel mode: the mounted ACL file
    // changes only when the kubelet syncs the Secret).
    let acl_target = topology::target(
        model,
        credentials,
        (
            target
                .cluster
                .members
                .iter()
                .map(|m| m.endpoint.clone())
                .collect(),
            Vec::new(),
        ),
        target.tls_ca.clone(),
    );
    let acls = heal::acl::heal_acls(&acl_target, &topology::acl_desired(model, credentials)).await;
    if let Some(note) = acls.change_note() {
        ctx.publish(
            store,
            EventType::Normal,
            REASON_ACL_HEALED,
            ACTION_HEAL,
            note,
        )
        .await;
    }

    let report = heal_once(&target).await;
    let applied: Vec<String> = report
        .applied
        .iter()
        .map(|(action, error)| match error {
            None => action.to_string(),
            Some(error) => format!("{action} failed: {error}"),
        })
        .collect();
    if !applied.is_empty() {
        let failed = report.applied.iter().any(|(_, error)| error.is_some());
        ctx.publish(
            store,
            if failed {
                EventType::Warning
            } else {
                EventType::Normal
            },
            REASON_CLUSTER_HEALED,
            ACTION_HEAL,
            applied.join("; "),
        )
        .await;
    }
    for warning in &report.warnings {
        tracing::warn!(%warning, "cluster heal");
    }

    let mut summary = match &report.decision {
        crate::cluster::plan::Decision::Wait { reason } => format!("cluster heal waits: {reason}"),
        crate::cluster::plan::Decision::Migrating { reason } => {
            format!("a slot move is being finished: {reason}")
        }
        crate::cluster::plan::Decision::Bootstrap => "cluster bootstrapped".to_owned(),
        crate::cluster::plan::Decision::Steady if report.applied.is_empty() => {
            "cluster healthy".to_owned()
        }
        crate::cluster::plan::Decision::Steady => {
            format!("cluster repaired: {}", applied.join("; "))
        }
    };
    let mut rolling = false;
    let mut rollout = None;
    let mut requeue = None;
    // A move left half-way (a MIGRATE refused, a crash) is finished only by the resharding.
    let mut reshard = report.migrating();
    if report.settled() {
        // Rollout: outdated pods, by the StatefulSet's update revision (OnDelete: only the
        // operator deletes pods).
        let stale = stateful_sets.iter().any(|set| {
            set.status.as_ref().and_then(|s| s.observed_generation) < set.metadata.generation
        });
        let revision = stateful_sets
            .iter()
            .find(|set| set.metadata.name.as_deref() == Some(model.child_name(REDIS).as_str()))
            .and_then(|set| set.status.as_ref())
            .and_then(|status| status.update_revision.clone());
        let members = pods::members(
            &pods.redis,
            &model.child_name(REDIS),
            target.cluster.members.len(),
            revision.as_deref(),
            Timestamp::now(),
        );
        let outdated: Vec<bool> = members
            .iter()
            .enumerate()
            .map(|(i, m)| pods::exists(&pods.redis, &model.child_name(REDIS), i) && !m.up_to_date)
            .collect();
        let observation = observe(&target).await;
        // An outdated pod that cannot start (a bad image, unschedulable) is replaced at once,
        // as in Sentinel mode: the step below would wait for it to answer forever.
        let broken = members.iter().enumerate().find_map(|(i, m)| {
            let loading = observation
                .get(i)
                .and_then(|o| o.state.as_ref().ok())
                .is_some_and(|s| s.loading);
            m.broken(loading).map(|reason| (i, reason))
        });
        let step = if stale {
            RolloutStep::Wait {
                reason: "the StatefulSet controller has not yet seen the latest spec".into(),
            }
        } else if let Some((member, reason)) = broken {
            tracing::warn!(member, %reason, "replacing an outdated pod that cannot start");
            RolloutStep::RestartReplica {
                member,
                endpoint: target.cluster.members[member].endpoint.clone(),
            }
        } else {
            next_step(&target.cluster, &observation, &outdated)
        };
        let delete = |member: usize, what: &'static str| {
            restart_pod(store, model, ctx, pods::redis_pod_name(model, member), what)
        };
        match &step {
            RolloutStep::RestartReplica { member, .. } => {
                delete(*member, "an in-sync replica").await
            }
            RolloutStep::RestartPrimary { member, .. } => {
                delete(*member, "a primary without replicas").await;
            }
            RolloutStep::Failover {
                endpoint, primary, ..
            } => {
                if let Err(error) = failover(&target, endpoint).await {
                    ctx.publish(
                        store,
                        EventType::Warning,
                        REASON_ROLLOUT_FAILED,
                        ACTION_ROLLOUT,
                        format!("CLUSTER FAILOVER away from {primary}: {error}"),
                    )
                    .await;
                } else {
                    tracing::info!(to = %endpoint, from = %primary, "rollout: shard primary moved");
                }
            }
            RolloutStep::Wait { .. } | RolloutStep::Done => {}
        }
        if step != RolloutStep::Done {
            rolling = true;
            requeue = Some(ROLLOUT_REQUEUE_AFTER);
            summary = format!("{summary}; rollout: {step:?}");
            rollout = Some(format!("{step:?}"));
        } else {
            reshard = true;
        }
    }
    if reshard {
        // Resharding towards spec.cluster.shards (new shards' pods must have joined; the
        // heal introduced them).
        match reshard_pass(&target, wanted_shards(model), RESHARD_BUDGET).await {
            ReshardOutcome::Done => {}
            ReshardOutcome::Waiting { reason } => {
                rolling = true;
                summary = format!("{summary}; resharding waits: {reason}");
                rollout = Some(format!("reshard waits: {reason}"));
            }
            ReshardOutcome::Moved { slots, keys } => {
                rolling = true;
                requeue = Some(RESHARD_REQUEUE_AFTER);
                let note = format!(
                    "moved {slots} slots ({keys} keys) towards {} shards",
                    wanted_shards(model)
                );
                tracing::info!(slots, keys, "resharding");
                ctx.publish(
                    store,
                    EventType::Normal,
                    REASON_RESHARDED,
                    ACTION_HEAL,
                    note.clone(),
                )
                .await;
                summary = format!("{summary}; resharding: {note}");
                rollout = Some(note);
            }
            ReshardOutcome::Failed { slots, error } => {
                rolling = true;
                ctx.publish(
                    store,
                    EventType::Warning,
                    REASON_RESHARDED,
                    ACTION_HEAL,
                    format!("slot move failed after {slots} slots (retried): {error}"),
                )
                .await;
                requeue = Some(ROLLOUT_REQUEUE_AFTER);
                summary = format!("{summary}; resharding: a slot move failed: {error}");
                rollout = Some(format!("reshard failed: {error}"));
            }
        }
    }
    // A scale-in whose shards are empty now: the next reconcile releases the hold.
    let keep = usize::try_from(model.redis_pods()).unwrap_or(0);
    if target.cluster.members.len() > keep {
        rolling = true;
        requeue.get_or_insert(ROLLOUT_REQUEUE_AFTER);
    }
    let observation = observe(&target).await;
    let cluster_view = view(model, &observation, |i| pods::redis_pod_name(model, i));
    let settled = report.settled() && !rolling;
    HealPhase {
        topology: TopologyObserved {
            summary,
            pods: cluster_view.pods,
            primary_known: cluster_view.observed.serving == cluster_view.observed.desired,
            switchover: false,
            failover: cluster_view.failover,
        },
        primary: None,
        cluster: Some(cluster_view.observed),
        settled,
        rolling,
        rollout,
        requeue,
    }
}

/// A spec `validate` refused: nothing in the cluster changes, only the status and an Event.
async fn refuse_spec(
    store: &ABStore,
    ctx: &Context,
    error: &crate::validate::ValidationError,
) -> Result<Action, Error> {
    tracing::warn!(%error, field = error.field(), "invalid spec");
    ctx.metrics.reconcile_failed(error.category());
    let reason = reason_from_category(error.category());
    let refused = InvalidSpec {
        generation: store.metadata.generation,
        reason: reason.clone(),
        message: error.to_string(),
    };
    let new_status = status::invalid(&refused, store.status.as_ref(), Timestamp::now());
    status::write(&ctx.client, store, &new_status, &ctx.metrics).await?;
    ctx.publish(
        store,
        EventType::Warning,
        &reason,
        ACTION_VALIDATE,
        error.to_string(),
    )
    .await;
    Ok(Action::requeue(INVALID_SPEC_REQUEUE_AFTER))
}

/// Whether condition `type_` is new or flipped between the previous status and `new`.
fn condition_changed(
    previous: Option<&crate::crd::ABStoreStatus>,
    new: &crate::crd::ABStoreStatus,
    type_: &str,
) -> bool {
    let find = |conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]| {
        conditions
            .iter()
            .find(|condition| condition.type_ == type_)
            .map(|condition| (condition.status.clone(), condition.reason.clone()))
    };
    find(&new.conditions) != previous.and_then(|status| find(&status.conditions))
}

/// What the apply phase did.
struct ApplyPhase {
    applied: apply::Applied,
    /// The store's StatefulSets with their observed status: as the apply returned them, or
    /// read back when their apply was refused (readiness must not read as zero then).
    stateful_sets: Vec<StatefulSet>,
    /// `Kind/name` of orphans deleted.
    deleted: Vec<String>,
    /// Everything the API server refused, in order.
    failures: Vec<ApplyError>,
}

/// Applies the children and deletes the orphans; never fails as a whole.
async fn apply_phase(client: &Client, model: &Model, children: Children) -> ApplyPhase {
    let mut failures = Vec::new();
    // Asked every reconcile: a CRD installed since the last one is picked up.
    let served = match apply::served_monitoring_kinds(client).await {
        Ok(served) => served,
        Err(error) => {
            failures.push(error);
            // Unknown: try, and let each apply say whether the kind is served.
            [PROMETHEUS_RULE_KIND, SERVICE_MONITOR_KIND]
                .map(str::to_owned)
                .into()
        }
    };
    let mut applied = apply::apply_children(client, &model.namespace, children, &served).await;
    let (deleted, orphan_failures) =
        apply::delete_orphans(client, &model.namespace, &model.name, &applied, &served).await;
    let mut stateful_sets = applied.stateful_sets.clone();
    let built_sets = applied
        .built
        .get("StatefulSet")
        .cloned()
        .unwrap_or_default();
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), &model.namespace);
    for name in built_sets {
        if stateful_sets
            .iter()
            .any(|set| set.metadata.name.as_deref() == Some(name.as_str()))
        {
            continue;
        }
        match api.get_opt(&name).await {
            Ok(Some(set)) => stateful_sets.push(set),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, %name, "reading a StatefulSet whose apply was refused")
            }
        }
    }
    let mut all_failures = std::mem::take(&mut applied.failures);
    all_failures.append(&mut failures);
    all_failures.extend(orphan_failures);
    ApplyPhase {
        applied,
        stateful_sets,
        deleted,
        failures: all_failures,
    }
}

/// A store's Redis and sentinel pods as listed at the start of a reconcile.
struct StorePods {
    redis: Vec<Pod>,
    sentinels: Vec<Pod>,
}

impl StorePods {
    async fn list(client: &Client, model: &Model) -> Result<StorePods, Error> {
        Ok(StorePods {
            redis: pods::list(client, &model.namespace, &model.name, REDIS).await?,
            sentinels: pods::list(client, &model.namespace, &model.name, SENTINEL).await?,
        })
    }

    /// Data nodes and sentinels heal and the rollout look at: what the spec asks for, plus pods
    /// beyond it that still exist (a scale-down in progress).
    fn counts(&self, model: &Model) -> (usize, usize) {
        let desired = |replicas: i32| usize::try_from(replicas).unwrap_or(0);
        (
            desired(model.redis_pods()).max(pods::span(&self.redis, &model.child_name(REDIS))),
            desired(model.spec.sentinel.replicas)
                .max(pods::span(&self.sentinels, &model.child_name(SENTINEL))),
        )
    }

    /// The Redis StatefulSet's replicas while a scale-down must wait: the pod labelled primary
    /// is among those the scale-down would remove, so it keeps running until a switchover has
    /// moved the primary to a pod that stays.
    fn scale_down_hold(&self, model: &Model) -> Option<i32> {
        let desired = usize::try_from(model.spec.redis.replicas).unwrap_or(0);
        let primary = pods::labelled_primary(&self.redis, &model.child_name(REDIS))?;
        let existing = pods::span(&self.redis, &model.child_name(REDIS));
        (primary >= desired).then(|| i32::try_from(existing.max(primary + 1)).unwrap_or(i32::MAX))
    }
}

fn hold_replicas(children: &mut Children, name: &str, replicas: i32) {
    for stateful_set in &mut children.stateful_sets {
        if stateful_set.metadata.name.as_deref() == Some(name)
            && let Some(spec) = stateful_set.spec.as_mut()
        {
            tracing::info!(replicas, "scale-down held until the primary has moved");
            spec.replicas = Some(replicas);
        }
    }
}

/// What the rollout step decided and did.
struct RolloutOutcome {
    step: Step,
    /// A switchover moved the primary in this reconcile.
    switched_over: bool,
}

/// One step of a failover-aware rollout or scale-down (see [`rollout::next_step`]): delete one
/// outdated pod (the StatefulSets use OnDelete, so only this restarts pods), or switch the
/// primary over before its pod is restarted or removed. Runs after every heal pass; next_step
/// itself waits while heal has not settled, except to replace an outdated pod that cannot start.
async fn rollout_step(
    store: &ABStore,
    model: &Model,
    target: &HealTarget,
    outcome: &mut TopologyOutcome,
    pods: &StorePods,
    stateful_sets: &[StatefulSet],
    ctx: &Context,
) -> RolloutOutcome {
    // Right after an apply that changed a template, the returned StatefulSet still carries the
    // old updateRevision until its controller has seen the new generation: wait for that
    // (its status change triggers the next reconcile) rather than act on a stale revision.
    if let Some(set) = stateful_sets.iter().find(|set| {
        set.status
            .as_ref()
            .and_then(|status| status.observed_generation)
            < set.metadata.generation
    }) {
        return RolloutOutcome {
            step: Step::Wait {
                reason: format!(
                    "the StatefulSet controller has not yet seen the latest spec of {}",
                    set.metadata.name.as_deref().unwrap_or_default()
                ),
            },
            switched_over: false,
        };
    }
    let revision = |name: String| {
        stateful_sets
            .iter()
            .find(|set| set.metadata.name.as_deref() == Some(name.as_str()))
            .and_then(|set| set.status.as_ref())
            .and_then(|status| status.update_revision.clone())
    };
    let redis_set = model.child_name(REDIS);
    let sentinel_set = model.child_name(SENTINEL);
    let redis = pods::members(
        &pods.redis,
        &redis_set,
        target.nodes.len(),
        revision(redis_set.clone()).as_deref(),
        Timestamp::now(),
    );
    let sentinels = pods::members(
        &pods.sentinels,
        &sentinel_set,
        target.sentinels.len(),
        revision(sentinel_set.clone()).as_deref(),
        Timestamp::now(),
    );
    let desired_redis = usize::try_from(model.spec.redis.replicas).unwrap_or(0);
    let desired_sentinels = usize::try_from(model.spec.sentinel.replicas).unwrap_or(0);
    // Nothing outdated and nothing to remove: done, whatever a plan would wait for.
    let current = redis.iter().chain(&sentinels).all(|m| m.up_to_date)
        && redis.len() <= desired_redis
        && sentinels.len() <= desired_sentinels;
    let step = if current {
        Step::Done
    } else {
        rollout::next_step(&RolloutInput {
            redis: &redis,
            sentinels: &sentinels,
            desired_redis,
            desired_sentinels,
            target,
            observation: &outcome.report.observation,
        })
    };
    let mut switched_over = false;
    let restart = |pod: String, what: String| async move {
        restart_pod(store, model, ctx, pod, &what).await;
    };
    match &step {
        Step::RestartRedis { index } => {
            let role = if outcome.primary == Some(*index) {
                "the only data node"
            } else {
                "an in-sync replica"
            };
            restart(pods::redis_pod_name(model, *index), role.to_owned()).await;
        }
        Step::RestartSentinel { index } => {
            restart(
                pods::sentinel_pod_name(model, *index),
                "sentinel".to_owned(),
            )
            .await;
        }
        Step::ReplaceRedis { index, reason } => {
            restart(pods::redis_pod_name(model, *index), reason.clone()).await;
        }
        Step::ReplaceSentinel { index, reason } => {
            restart(pods::sentinel_pod_name(model, *index), reason.clone()).await;
        }
        Step::Switchover { from, avoid } => {
            let timeout =
                Duration::from_millis(target.sentinel.failover_timeout_ms) + SWITCHOVER_MARGIN;
            match rollout::switchover(target, avoid, timeout).await {
                Ok(new_primary) => {
                    switched_over = true;
                    if let Some(ordinal) = target.node_index(&new_primary) {
                        outcome.primary = Some(ordinal);
                        if let Err(error) = pods::label_primary(&ctx.client, model, ordinal).await {
                            tracing::warn!(%error, "labelling the new primary after a switchover");
                        }
                    }
                    tracing::info!(from = %pods::redis_pod_name(model, *from), to = %new_primary, "switchover done");
                }
                Err(error) => {
                    ctx.publish(
                        store,
                        EventType::Warning,
                        REASON_ROLLOUT_FAILED,
                        ACTION_ROLLOUT,
                        format!(
                            "switchover away from {}: {error}",
                            pods::redis_pod_name(model, *from)
                        ),
                    )
                    .await;
                }
            }
        }
        Step::Done
        | Step::Wait { .. }
        | Step::RemoveRedis { .. }
        | Step::RemoveSentinels { .. } => {}
    }
    RolloutOutcome {
        step,
        switched_over,
    }
}

/// Deletes a pod so that its StatefulSet recreates it from the current revision (OnDelete), with
/// an Event saying why (`what`), or a Warning when the API server refuses.
async fn restart_pod(store: &ABStore, model: &Model, ctx: &Context, pod: String, what: &str) {
    match pods::restart(&ctx.client, &model.namespace, &pod).await {
        Ok(()) => {
            ctx.publish_about_pod(
                store,
                EventType::Normal,
                REASON_ROLLING_RESTART,
                ACTION_ROLLOUT,
                format!("restarting {pod} ({what}) to run the current revision"),
                &pod,
            )
            .await;
        }
        Err(error) => {
            ctx.publish(
                store,
                EventType::Warning,
                REASON_ROLLOUT_FAILED,
                ACTION_ROLLOUT,
                error.to_string(),
            )
            .await;
        }
    }
}

/// Heal pass and primary label for a store, and its `+switch-master` follower.
async fn topology_step(
    store: &ABStore,
    model: &Model,
    credentials: &Credentials,
    pods: &StorePods,
    tls: Result<Option<topology::TlsMaterial>, TopologyError>,
    ctx: &Context,
) -> Result<(HealTarget, TopologyOutcome), TopologyError> {
    let tls_ca = tls?.map(|material| material.ca);
    let (nodes, sentinels) = pods.counts(model);
    let target = topology::target(
        model,
        credentials,
        (ctx.endpoints)(model, nodes, sentinels),
        tls_ca,
    );
    ctx.followers
        .ensure(&store_key(store), &ctx.client, model, &target);
    // ACLs first: during a rotation of the operator's own password, the rest of the pass then
    // logs in with the new one.
    let acls = heal::acl::heal_acls(&target, &topology::acl_desired(model, credentials)).await;
    if let Some(note) = acls.change_note() {
        ctx.publish(
            store,
            EventType::Normal,
            REASON_ACL_HEALED,
            ACTION_HEAL,
            note,
        )
        .await;
    }
    let failures: Vec<String> = acls
        .failures()
        .map(|node| {
            format!(
                "{}: {}",
                node.endpoint
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                node.error.as_deref().unwrap_or_default()
            )
        })
        .collect();
    if !failures.is_empty() {
        tracing::warn!(failures = ?failures, "ACL heal incomplete");
    }
    let outcome = topology::reconcile(&ctx.client, model, &target).await?;
    if !outcome.relabelled.is_empty() {
        tracing::info!(relabelled = ?outcome.relabelled, "role labels moved");
    }
    Ok((target, outcome))
}

/// The inputs of the status, from what the apply returned and the pods as listed before it
/// (whether every pod runs the update revision: rolled out or not).
fn observe(
    model: &Model,
    generation: Option<i64>,
    stateful_sets: &[StatefulSet],
    pods: &StorePods,
    primary: Option<String>,
) -> Observed {
    let named = |name: String| {
        stateful_sets
            .iter()
            .find(|stateful_set| stateful_set.metadata.name.as_deref() == Some(name.as_str()))
    };
    Observed {
        generation,
        redis: Workload::from_stateful_set_and_pods(
            model.redis_pods(),
            named(model.child_name(REDIS)),
            &pods.redis,
        ),
        // Cluster mode runs no sentinels.
        sentinel: Workload::from_stateful_set_and_pods(
            if model.cluster().is_some() {
                0
            } else {
                model.spec.sentinel.replicas
            },
            named(model.child_name(SENTINEL)),
            &pods.sentinels,
        ),
        primary,
        topology: None,
        backup: None,
        prune: None,
        apply: status::ApplyObserved::default(),
        monitoring: apply::Monitoring::NotRequested,
        cluster: None,
        api: None,
    }
}

/// The last runs of the store's backup and prune CronJobs (those it has). A failure to list
/// the Jobs is logged and leaves them unknown: the status keeps what it had, the gauges go.
async fn job_runs(client: &kube::Client, model: &Model) -> (Option<LastRuns>, Option<LastRuns>) {
    let runs = |component: &'static str| async move {
        let jobs = match job_runs::list(client, &model.namespace, &model.name, component).await {
            Ok(jobs) => jobs,
            Err(error) => {
                tracing::warn!(%error, component, "listing the store's Jobs");
                return None;
            }
        };
        let mut runs = job_runs::last_runs(&jobs);
        // The figures of the newest success, from its pod's termination message (the job's
        // summary line) while the pod is kept.
        if let Some(name) =
            job_runs::newest_success(&jobs).and_then(|job| job.metadata.name.clone())
        {
            match job_runs::pods_of(client, &model.namespace, &name).await {
                Ok(pods) => {
                    runs.figures =
                        job_runs::termination_message(&pods, component).and_then(job_runs::figures);
                }
                Err(error) => tracing::warn!(%error, job = %name, "listing the Job's pods"),
            }
        }
        Some(runs)
    };
    let backup = match model.spec.backup.destination {
        Some(_) => runs(BACKUP_COMPONENT).await,
        None => None,
    };
    let prune = match model.spec.retention.enabled {
        true => runs(PRUNE_COMPONENT).await,
        false => None,
    };
    (backup, prune)
}

/// Backoff after `failures` consecutive failures: 5 s, 10 s, 20 s, … up to 5 minutes.
pub fn error_backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    ERROR_BACKOFF_BASE
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(ERROR_BACKOFF_MAX)
}

/// After a failed reconcile: log, count by category, retry with backoff.
pub fn error_policy(store: Arc<ABStore>, error: &Error, ctx: Arc<Context>) -> Action {
    let failures = ctx.consecutive_failures(&store_key(&store), true);
    let retry = error_backoff(failures);
    tracing::warn!(
        store = %store.name_any(),
        namespace = %store.namespace().unwrap_or_default(),
        category = error.category(),
        %error,
        failures,
        retry_in = ?retry,
        "reconcile failed"
    );
    ctx.metrics.reconcile_failed(error.category());
    Action::requeue(retry)
}

/// Leader election settings.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    /// Namespace of the Lease (the operator's own).
    pub namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
}

/// How `run` runs.
#[derive(Clone, Debug, Default)]
pub struct RunConfig {
    /// Watch only this namespace; all namespaces when `None`.
    pub watch_namespace: Option<String>,
    /// Leader election; off when `None`.
    pub leader_election: Option<LeaderElection>,
    /// This replica's identity (pod name): Event reporter and Lease holder.
    pub identity: String,
    /// The cluster domain and the operator's namespace.
    pub platform: Platform,
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// The store an object of ours belongs to, by its instance label.
fn store_of<K: Resource>(object: K) -> Option<ObjectRef<ABStore>> {
    let name = object.labels().get(INSTANCE_LABEL)?.clone();
    let store = ObjectRef::new(&name);
    Some(match object.namespace() {
        Some(namespace) => store.within(&namespace),
        None => store,
    })
}

async fn until_shutdown(mut shutdown: watch::Receiver<bool>) {
    // A dropped sender also means shut down.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Runs the controller until `shutdown` turns true. With leader election, reconciles only
/// while this replica holds the Lease, and goes back to standby when it loses it.
pub async fn run(
    client: Client,
    config: RunConfig,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    shutdown: watch::Receiver<bool>,
) {
    let Some(election) = config.leader_election.clone() else {
        metrics.leader.set(1);
        let ctx = Arc::new(
            Context::new(client.clone(), metrics, &config.identity, None)
                .with_platform(config.platform.clone()),
        );
        run_controller(
            client,
            &config,
            ctx,
            readiness,
            until_shutdown(shutdown.clone()),
        )
        .await;
        return;
    };
    let elector = LeaderElector::new(
        client.clone(),
        &election.namespace,
        &election.lease_name,
        &config.identity,
    );
    let (leadership_tx, mut leadership) = watch::channel(Leadership::Unknown);
    let election_task = tokio::spawn(elector.run(leadership_tx, until_shutdown(shutdown.clone())));
    loop {
        // Standby: ready once the Lease API answered (see `Readiness`).
        let became_leader = tokio::select! {
            () = until_shutdown(shutdown.clone()) => false,
            changed = leadership.wait_for(|state| {
                if *state != Leadership::Unknown {
                    readiness.set(true);
                }
                *state == Leadership::Leading
            }) => changed.is_ok(),
        };
        if !became_leader {
            break;
        }
        metrics.leader.set(1);
        let ctx = Arc::new(
            Context::new(
                client.clone(),
                metrics.clone(),
                &config.identity,
                Some(leadership.clone()),
            )
            .with_platform(config.platform.clone()),
        );
        let mut lost = leadership.clone();
        let stop = until_shutdown(shutdown.clone());
        let lost_or_stopped = async move {
            tokio::select! {
                () = stop => {}
                _ = lost.wait_for(|state| *state != Leadership::Leading) => {}
            }
        };
        run_controller(
            client.clone(),
            &config,
            ctx,
            readiness.clone(),
            lost_or_stopped,
        )
        .await;
        metrics.leader.set(0);
        metrics.forget_stores();
        if *shutdown.borrow() {
            break;
        }
        tracing::warn!("no longer leader; reconciles stopped, waiting to lead again");
    }
    if let Err(error) = election_task.await {
        tracing::warn!(%error, "leader election task ended abnormally");
    }
}

async fn run_controller(
    client: Client,
    config: &RunConfig,
    ctx: Arc<Context>,
    readiness: Arc<Readiness>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let namespace = config.watch_namespace.as_deref();
    // The ABStore watch is built here rather than by `Controller::new`, for two things the
    // built-in one cannot do: readiness when its first list is done, and a generation
    // predicate. Without the predicate every status write would trigger a reconcile of its own,
    // which writes a status again: a loop as fast as the API server answers whenever the
    // status changes between passes (a rollout waiting for a replica under writes).
    let (reader, writer) = reflector::store::<ABStore>();
    let ready = readiness.clone();
    let metrics = ctx.metrics.clone();
    let stores = watcher(api::<ABStore>(&client, namespace), watcher::Config::default())
        .default_backoff()
        .inspect(move |event| match event {
            Ok(watcher::Event::InitDone) => {
                if !ready.is_ready() {
                    tracing::info!("ABStore watch synced; ready");
                }
                ready.set(true);
            }
            // A deleted store is never reconciled again (its children go with it, by owner
            // references): its metrics go now, not at the operator's next restart.
            Ok(watcher::Event::Delete(store)) => {
                if let (Some(ns), Some(name)) = (&store.metadata.namespace, &store.metadata.name) {
                    tracing::info!(namespace = %ns, store = %name, "store deleted; its metrics removed");
                    metrics.forget_store(ns, name);
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "watching ABStores (is the CRD installed? `abstore-operator crd | kubectl apply -f -`)"),
        })
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, PredicateConfig::default());
    // Owned kinds are watched only when they carry our managed-by label: the operator need
    // not cache every Secret in the cluster.
    let children = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGER}"));
    let controller = Controller::for_stream(stores, reader)
        // Bursts of changes (a pod restarting goes through several states within a second)
        // make one reconcile, not one each.
        .with_config(ControllerConfig::default().debounce(RECONCILE_DEBOUNCE))
        .owns(api::<StatefulSet>(&client, namespace), children.clone())
        .owns(api::<Service>(&client, namespace), children.clone())
        .owns(api::<ConfigMap>(&client, namespace), children.clone())
        .owns(api::<Secret>(&client, namespace), children.clone())
        .owns(api::<CronJob>(&client, namespace), children.clone())
        .owns(
            api::<PodDisruptionBudget>(&client, namespace),
            children.clone(),
        )
        .owns(api::<NetworkPolicy>(&client, namespace), children.clone())
        .owns(api::<Deployment>(&client, namespace), children.clone())
        // Pods belong to the StatefulSets and Jobs to the CronJobs, not to the store: map them
        // back by their instance label, so readiness and role-label changes, and a finished
        // backup or prune (lastBackup, lastPrune), reach the status at once.
        .watches(api::<Pod>(&client, namespace), children.clone(), store_of)
        .watches(api::<Job>(&client, namespace), children, store_of)
        .graceful_shutdown_on(stop);
    tracing::info!(
        namespace = namespace.unwrap_or("<all>"),
        "controller started"
    );
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((store, _)) => tracing::debug!(%store, "reconciled"),
                Err(error) => tracing::debug!(%error, "reconcile stream error"),
            }
        })
        .await;
    tracing::info!("controller stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        // A broken store must not hammer the API server, nor wait hours after a fix.
        assert_eq!(error_backoff(1), Duration::from_secs(5));
        assert_eq!(error_backoff(2), Duration::from_secs(10));
        assert_eq!(error_backoff(4), Duration::from_secs(40));
        assert_eq!(error_backoff(100), ERROR_BACKOFF_MAX);
    }

    #[test]
    fn long_event_notes_are_cut_at_a_character_boundary() {
        // The API server refuses Events whose note exceeds 1 kB.
        let note = truncate_note("é".repeat(1000));
        assert!(note.len() <= 1024);
        assert!(note.ends_with("..."));
    }
}
