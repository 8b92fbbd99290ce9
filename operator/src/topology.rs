//! The controller's topology step: one heal pass against the store's pods, the primary label
//! moved to the pod Sentinel elected, what the pass did turned into Events, and each Redis pod's
//! role and replication lag for the status.
//!
//! Turning a heal report into Events and pod statuses is pure (tested with plain values); the
//! pass itself and the labelling talk to Redis and the API server.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use kube::runtime::events::EventType;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::crd::{ABStore, RedisPodStatus};
use crate::credentials::Credentials;
use crate::follow;
use crate::heal::{
    Action, Decision, Endpoint, HealError, HealTarget, NodeRole, ReplicaReason, Report, heal_once,
};
use crate::model::Model;
use crate::pods::{self, PodError, redis_pod_name, sentinel_pod_name};

/// Key of the CA certificate in a TLS Secret (cert-manager's layout).
pub const CA_KEY: &str = "ca.crt";

/// Event reasons of the topology step.
pub const REASON_BOOTSTRAPPED: &str = "Bootstrapped";
pub const REASON_SPLIT_BRAIN_REPAIRED: &str = "SplitBrainRepaired";
pub const REASON_REPLICA_REJOINED: &str = "ReplicaRejoined";
pub const REASON_SENTINEL_MONITORING: &str = "SentinelMonitoring";
pub const REASON_SENTINEL_RESET: &str = "SentinelReset";
pub const REASON_HEAL_FAILED: &str = "HealActionFailed";
pub const REASON_FAILOVER: &str = "Failover";
pub const REASON_SWITCHOVER: &str = "Switchover";

/// Errors of the topology step that fail the reconcile (Redis being unreachable does not: that
/// is an observation).
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error(transparent)]
    Pods(#[from] PodError),
    #[error(transparent)]
    Heal(#[from] HealError),
    #[error("reading the TLS CA from Secret {namespace}/{secret} (key {CA_KEY}): {reason}")]
    TlsCa {
        namespace: String,
        secret: String,
        reason: String,
    },
}

impl TopologyError {
    /// Short category: metric label and (as PascalCase) Event reason.
    pub fn category(&self) -> &'static str {
        match self {
            TopologyError::Pods(error) => error.category(),
            TopologyError::Heal(_) => "heal",
            TopologyError::TlsCa { .. } => "tls-ca",
        }
    }
}

/// An Event the topology step wants published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopologyEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

impl TopologyEvent {
    pub fn event_type(&self) -> EventType {
        if self.warning {
            EventType::Warning
        } else {
            EventType::Normal
        }
    }
}

/// What the topology step found and did.
#[derive(Debug)]
pub struct TopologyOutcome {
    /// Ordinal of the primary Sentinel elected (or bootstrap chose), if known.
    pub primary: Option<usize>,
    /// Pods whose role label changed.
    pub relabelled: Vec<String>,
    /// Whether the topology is settled: a primary is known, every action succeeded, nothing
    /// is waited for. An unsettled store is reconciled again soon.
    pub settled: bool,
    /// The heal decision, in words (status condition message).
    pub summary: String,
    pub events: Vec<TopologyEvent>,
    pub pods: Vec<RedisPodStatus>,
    /// The full report (for logs and tests).
    pub report: Report,
}

/// The CA to verify the store's TLS with: `ca.crt` of the store's TLS Secret.
pub async fn tls_ca(client: &Client, model: &Model) -> Result<Option<Vec<u8>>, TopologyError> {
    let tls = &model.spec.tls;
    if !tls.enabled {
        return Ok(None);
    }
    let secret = tls.secret_name.clone().unwrap_or_default();
    let failed = |reason: String| TopologyError::TlsCa {
        namespace: model.namespace.clone(),
        secret: secret.clone(),
        reason,
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), &model.namespace);
    let found = api
        .get_opt(&secret)
        .await
        .map_err(|e| failed(e.to_string()))?
        .ok_or_else(|| failed("the Secret does not exist".to_owned()))?;
    found
        .data
        .and_then(|mut data| data.remove(CA_KEY))
        .map(|bytes| Some(bytes.0))
        .ok_or_else(|| failed("the Secret has no such key".to_owned()))
}

/// The heal target of a store in the cluster, reaching its pods at `nodes` and `sentinels`.
pub fn target(
    model: &Model,
    credentials: &Credentials,
    (nodes, sentinels): (Vec<Endpoint>, Vec<Endpoint>),
    tls_ca: Option<Vec<u8>>,
) -> HealTarget {
    HealTarget::for_model(model, credentials, nodes, sentinels, tls_ca)
}

/// One heal pass, then the primary label. The label follows what Sentinel reports (or what
/// bootstrap chose); while the primary is unknown (a failover in progress, sentinels
/// disagreeing) labels are left as they are.
pub async fn reconcile(
    client: &Client,
    model: &Model,
    target: &HealTarget,
) -> Result<TopologyOutcome, TopologyError> {
    let report = heal_once(target).await?;
    let primary = report
        .primary
        .as_ref()
        .and_then(|endpoint| target.node_index(endpoint));
    let relabelled = match primary {
        Some(ordinal) => pods::label_primary(client, model, ordinal).await?,
        None => Vec::new(),
    };
    let settled =
        primary.is_some() && report.ok() && !matches!(report.decision, Decision::Wait { .. });
    Ok(TopologyOutcome {
        primary,
        relabelled,
        settled,
        summary: summary(model, target, &report),
        events: events(model, target, &report),
        pods: pod_statuses(model, &report),
        report,
    })
}

/// The pod name behind an endpoint of the target (data node or sentinel), or the endpoint.
fn pod_of(model: &Model, target: &HealTarget, endpoint: &Endpoint) -> String {
    if let Some(ordinal) = target.node_index(endpoint) {
        return redis_pod_name(model, ordinal);
    }
    if let Some(ordinal) = target.sentinels.iter().position(|s| s == endpoint) {
        return sentinel_pod_name(model, ordinal);
    }
    endpoint.to_string()
}

/// The heal decision in words, naming pods.
pub fn summary(model: &Model, target: &HealTarget, report: &Report) -> String {
    let primary = report
        .primary
        .as_ref()
        .map(|endpoint| pod_of(model, target, endpoint));
    match (&report.decision, primary) {
        (Decision::Elected { votes }, Some(primary)) => {
            format!("{primary} is the primary, elected by {votes} sentinel(s)")
        }
        (Decision::Bootstrap { reason }, Some(primary)) => {
            format!("bootstrapped with {primary} as the primary: {reason}")
        }
        (Decision::Wait { reason }, _) => format!("waiting: {reason}"),
        (_, None) => "no primary known".to_owned(),
    }
}

/// Events for what the pass changed (nothing on a healthy store).
pub fn events(model: &Model, target: &HealTarget, report: &Report) -> Vec<TopologyEvent> {
    let pod = |endpoint: &Endpoint| pod_of(model, target, endpoint);
    let mut events = Vec::new();
    if let (Decision::Bootstrap { reason }, Some(primary)) = (&report.decision, &report.primary)
        && report.ok()
    {
        events.push(TopologyEvent {
            warning: false,
            reason: REASON_BOOTSTRAPPED,
            note: format!(
                "no sentinel monitored the store; {} is the primary ({reason})",
                pod(primary)
            ),
        });
    }
    for applied in &report.applied {
        if let Some(error) = &applied.error {
            events.push(TopologyEvent {
                warning: true,
                reason: REASON_HEAL_FAILED,
                note: format!("{}: {error}", applied.action),
            });
            continue;
        }
        let event = match &applied.action {
            Action::ReplicaOf {
                node,
                primary,
                reason: ReplicaReason::SplitBrain,
            } => Some(TopologyEvent {
                warning: true,
                reason: REASON_SPLIT_BRAIN_REPAIRED,
                note: format!(
                    "{} also claimed to be primary; demoted to a replica of {}, which the sentinels elected (writes it took since the split are discarded by the resync)",
                    pod(node),
                    pod(primary)
                ),
            }),
            Action::ReplicaOf {
                node,
                primary,
                reason: ReplicaReason::Rejoin,
            } => Some(TopologyEvent {
                warning: false,
                reason: REASON_REPLICA_REJOINED,
                note: format!(
                    "{} replicated another node; now a replica of the primary {}",
                    pod(node),
                    pod(primary)
                ),
            }),
            Action::Monitor { sentinel, primary }
                if !matches!(report.decision, Decision::Bootstrap { .. }) =>
            {
                Some(TopologyEvent {
                    warning: false,
                    reason: REASON_SENTINEL_MONITORING,
                    note: format!(
                        "{} did not monitor the store (restarted without its configuration); it monitors {} again",
                        pod(sentinel),
                        pod(primary)
                    ),
                })
            }
            Action::ResetSentinel { sentinel, stale } => Some(TopologyEvent {
                warning: false,
                reason: REASON_SENTINEL_RESET,
                note: format!(
                    "SENTINEL RESET on {}: it knew {} that are not part of the store",
                    pod(sentinel),
                    stale
                        .iter()
                        .map(Endpoint::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
            _ => None,
        };
        events.extend(event);
    }
    events
}

/// Each Redis pod's role and how far it is behind the primary, from the pass's observation.
pub fn pod_statuses(model: &Model, report: &Report) -> Vec<RedisPodStatus> {
    let nodes = &report.observation.nodes;
    let primary_offset = report.primary.as_ref().and_then(|primary| {
        nodes
            .iter()
            .find(|node| &node.endpoint == primary)
            .and_then(|node| node.state.as_ref().ok())
            .map(|info| info.offset)
    });
    nodes
        .iter()
        .enumerate()
        .map(|(ordinal, node)| {
            let name = redis_pod_name(model, ordinal);
            match &node.state {
                Err(error) => RedisPodStatus {
                    name,
                    role: "unreachable".to_owned(),
                    message: Some(error.clone()),
                    ..RedisPodStatus::default()
                },
                Ok(info) => {
                    let (role, link_up, lag) = match &info.role {
                        NodeRole::Primary => ("primary", None, None),
                        NodeRole::Replica { link_up, .. } => (
                            "replica",
                            Some(*link_up),
                            primary_offset.map(|p| p.saturating_sub(info.offset)),
                        ),
                    };
                    RedisPodStatus {
                        name,
                        role: if info.loading { "loading" } else { role }.to_owned(),
                        link_up,
                        lag_bytes: lag,
                        offset: Some(info.offset),
                        message: None,
                    }
                }
            }
        })
        .collect()
}

/// How often a follower checks that its store still exists (stores are deleted without a
/// finalizer, so no reconcile says goodbye).
pub const FOLLOWER_EXISTENCE_CHECK: Duration = Duration::from_secs(60);

/// One `+switch-master` follower per store: it relabels the pods as soon as a sentinel announces
/// a new primary, so the `<n>-primary` Service follows a failover within a second instead of at
/// the next reconcile. Dropping `Followers` (the controller stopped, or lost its Lease) stops them
/// all.
#[derive(Default)]
pub struct Followers {
    running: Mutex<HashMap<String, Follower>>,
}

struct Follower {
    /// The sentinels and TLS setting it follows; a change restarts it.
    key: (Vec<Endpoint>, bool),
    task: JoinHandle<()>,
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for Followers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stores: Vec<String> = self
            .running
            .lock()
            .map(|running| running.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("Followers")
            .field("stores", &stores)
            .finish()
    }
}

impl Followers {
    /// Makes sure a follower runs for `store_key` with `target`'s sentinels; (re)starts it when
    /// none runs, it ended, or the sentinels changed.
    pub fn ensure(&self, store_key: &str, client: &Client, model: &Model, target: &HealTarget) {
        let Ok(mut running) = self.running.lock() else {
            return;
        };
        let key = (target.sentinels.clone(), target.tls_ca.is_some());
        if let Some(existing) = running.get(store_key)
            && existing.key == key
            && !existing.task.is_finished()
        {
            return;
        }
        let task = tokio::spawn(follow_store(client.clone(), model.clone(), target.clone()));
        running.insert(store_key.to_owned(), Follower { key, task });
    }

    /// Stops the follower of a deleted store.
    pub fn remove(&self, store_key: &str) {
        if let Ok(mut running) = self.running.lock() {
            running.remove(store_key);
        }
    }

    /// Stores with a running follower.
    pub fn stores(&self) -> Vec<String> {
        self.running
            .lock()
            .map(|running| {
                running
                    .iter()
                    .filter(|(_, follower)| !follower.task.is_finished())
                    .map(|(store, _)| store.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Relabels the store's pods on every `+switch-master`, until the store is gone.
async fn follow_store(client: Client, model: Model, target: HealTarget) {
    let (events_tx, mut events) = mpsc::channel(16);
    let subscriptions = tokio::spawn(follow::subscribe_switches(target.clone(), events_tx));
    let stores: Api<ABStore> = Api::namespaced(client.clone(), &model.namespace);
    let mut existence = tokio::time::interval_at(
        tokio::time::Instant::now() + FOLLOWER_EXISTENCE_CHECK,
        FOLLOWER_EXISTENCE_CHECK,
    );
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break };
                let Some(ordinal) = target.node_index(&event.to) else {
                    tracing::warn!(store = %model.name, to = %event.to, "+switch-master to an address that is not one of the store's pods");
                    continue;
                };
                match pods::label_primary(&client, &model, ordinal).await {
                    Ok(changed) if !changed.is_empty() => tracing::info!(
                        store = %model.name,
                        primary = %redis_pod_name(&model, ordinal),
                        sentinel = %event.sentinel,
                        "primary label moved on +switch-master"
                    ),
                    Ok(_) => {}
                    Err(error) => tracing::warn!(store = %model.name, %error, "relabelling on +switch-master"),
                }
            }
            _ = existence.tick() => {
                if let Ok(None) = stores.get_opt(&model.name).await {
                    tracing::info!(store = %model.name, "store deleted; its +switch-master follower stops");
                    break;
                }
            }
        }
    }
    subscriptions.abort();
}
