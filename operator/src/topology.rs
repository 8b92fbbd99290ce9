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

use crate::config;
use crate::crd::{ABStore, RedisPodStatus};
use crate::credentials::{Credentials, Role};
use crate::follow;
use crate::heal::acl::AclDesired;
use crate::heal::{
    Action, Decision, Endpoint, FailoverGap, HealError, HealTarget, NodeRole, ReplicaReason,
    Report, failover_readiness, heal_once,
};
use crate::model::Model;
use crate::pods::{self, PodError, redis_pod_name, sentinel_pod_name};
use crate::status::FailoverReadiness;

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
    #[error("reading the TLS Secret {namespace}/{secret} (keys {CA_KEY}, {CERT_KEY}): {reason}")]
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
    /// Whether Sentinel could fail over now (the `FailoverReady` condition).
    pub failover: FailoverReadiness,
    /// The full report (for logs and tests).
    pub report: Report,
}

/// What the ACL pass makes true: every user's rules and accepted passwords, `masterauth`, and
/// the sentinels' `auth-pass` while the sentinel user's password rotates.
pub fn acl_desired(model: &Model, credentials: &Credentials) -> AclDesired {
    AclDesired {
        users: config::acl_users(model, credentials),
        sentinel_users: config::sentinel_acl_users(model, credentials),
        masterauth: credentials.role_password(Role::Replication).to_owned(),
        sentinel_auth_pass: credentials
            .previous(Role::Sentinel.username())
            .map(|_| credentials.role_password(Role::Sentinel).to_owned()),
    }
}

/// Key of the certificate in a TLS Secret.
pub const CERT_KEY: &str = "tls.crt";

/// What the operator takes from the store's TLS Secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsMaterial {
    /// `ca.crt`: the heal and follower connections trust it.
    pub ca: Vec<u8>,
    /// SHA-256 of `ca.crt` and `tls.crt` (hex, first 16 characters): stamped on the pod
    /// templates, so a renewed certificate rolls the pods (Redis and Sentinel read their
    /// certificate files only when they start).
    pub fingerprint: String,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl TlsMaterial {
    /// From a TLS Secret's `ca.crt` and `tls.crt`.
    pub fn new(ca: Vec<u8>, cert: &[u8]) -> TlsMaterial {
        use sha2::{Digest, Sha256};
        let mut digest = Sha256::new();
        digest.update((ca.len() as u64).to_be_bytes());
        digest.update(&ca);
        digest.update(cert);
        let fingerprint = hex::encode(digest.finalize())[..16].to_owned();
        TlsMaterial { ca, fingerprint }
    }
}

/// Checks that the tracking API's key (`spec.api.apiKeySecret`, when the API is enabled) can be
/// read: without it the API pods cannot start (their volume waits for it). Says which Secret and
/// key otherwise. The pods follow the mounted key themselves: a new key needs no rollout.
pub async fn check_api_key(client: &Client, model: &Model) -> Result<(), String> {
    let api = &model.spec.api;
    let Some(reference) = api.api_key_secret.as_ref().filter(|_| api.enabled) else {
        return Ok(());
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &model.namespace);
    let where_ = format!(
        "spec.api.apiKeySecret: Secret {}/{} key {}",
        model.namespace, reference.name, reference.key
    );
    let secret = secrets
        .get_opt(&reference.name)
        .await
        .map_err(|e| format!("{where_}: {e}"))?
        .ok_or_else(|| format!("{where_}: the Secret does not exist"))?;
    let value = secret
        .data
        .unwrap_or_default()
        .remove(&reference.key)
        .ok_or_else(|| format!("{where_}: the Secret has no such key"))?;
    if String::from_utf8_lossy(&value.0).trim().is_empty() {
        return Err(format!("{where_}: the key is empty"));
    }
    Ok(())
}

/// The store's TLS Secret (`ca.crt` and `tls.crt`) when TLS is on; `None` when it is off. Read
/// once per reconcile: the pod templates' fingerprint and the heal connections' CA come from the
/// same read.
pub async fn tls_material(
    client: &Client,
    model: &Model,
) -> Result<Option<TlsMaterial>, TopologyError> {
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
    let mut data = api
        .get_opt(&secret)
        .await
        .map_err(|e| failed(e.to_string()))?
        .ok_or_else(|| failed("the Secret does not exist".to_owned()))?
        .data
        .unwrap_or_default();
    let ca = data
        .remove(CA_KEY)
        .ok_or_else(|| failed(format!("the Secret has no key {CA_KEY}")))?;
    let cert = data
        .remove(CERT_KEY)
        .ok_or_else(|| failed(format!("the Secret has no key {CERT_KEY}")))?;
    Ok(Some(TlsMaterial::new(ca.0, &cert.0)))
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
    let failover = failover(model, target, &report);
    // A sentinel that has not discovered a replica yet changes nothing the operator watches:
    // reconcile again soon so that FailoverReady turns True when it does. (No replica at all is
    // a state the pods' own events report.)
    let discovering = !failover.ready && failover.reason != "NoReplica";
    let settled = primary.is_some()
        && report.ok()
        && !matches!(report.decision, Decision::Wait { .. })
        && !discovering;
    Ok(TopologyOutcome {
        primary,
        relabelled,
        settled,
        summary: summary(model, target, &report),
        events: events(model, target, &report),
        pods: pod_statuses(model, &report),
        failover,
        report,
    })
}

/// The `FailoverReady` condition from a heal report, naming pods.
pub fn failover(model: &Model, target: &HealTarget, report: &Report) -> FailoverReadiness {
    let name = |endpoint: &Endpoint| pod_of(model, target, endpoint);
    let Some(primary) = &report.primary else {
        return FailoverReadiness {
            ready: false,
            reason: "NoPrimary".into(),
            message: "no primary is known".into(),
        };
    };
    let (reason, message) = match failover_readiness(primary, &report.observation) {
        Ok(replicas) => {
            return FailoverReadiness {
                ready: true,
                reason: "SentinelsKnowReplicas".into(),
                message: format!(
                    "every sentinel monitors {} and knows its {replicas} replica(s) in sync",
                    name(primary)
                ),
            };
        }
        Err(FailoverGap::NoReplica) => (
            "NoReplica",
            format!("no replica is in sync with {}", name(primary)),
        ),
        Err(FailoverGap::SentinelSilent { sentinel }) => (
            "SentinelSilent",
            format!(
                "{} does not answer or does not monitor the store",
                name(&sentinel)
            ),
        ),
        Err(FailoverGap::SentinelElsewhere { sentinel }) => (
            "SentinelElsewhere",
            format!(
                "{} reports another primary than {}",
                name(&sentinel),
                name(primary)
            ),
        ),
        Err(FailoverGap::ReplicaUnknown { sentinel, replica }) => (
            "ReplicaUnknown",
            format!(
                "{} has not discovered the replica {} yet",
                name(&sentinel),
                name(&replica)
            ),
        ),
    };
    FailoverReadiness {
        ready: false,
        reason: reason.into(),
        message,
    }
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
                        shard: None,
                        slots: None,
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::crd::ABStore;
    use crate::heal::{Applied, NodeInfo, NodeObservation, Observation};

    fn model() -> Model {
        let store: ABStore = serde_yaml::from_str(
            "apiVersion: abstore.dev/v1alpha1\nkind: ABStore\nmetadata:\n  name: shop\n  namespace: shop\nspec: {}\n",
        )
        .unwrap();
        crate::validate::validate(&store).unwrap()
    }

    fn node(port: u16) -> Endpoint {
        Endpoint::new("10.0.0.1", port)
    }

    fn target() -> HealTarget {
        let model = model();
        let credentials =
            Credentials::resolve(&model, &std::collections::BTreeMap::new(), &mut || {
                "pw".to_owned()
            });
        HealTarget::for_model(
            &model,
            &credentials,
            vec![node(1), node(2), node(3)],
            vec![node(11), node(12), node(13)],
            None,
        )
    }

    fn info(role: NodeRole, offset: u64) -> NodeInfo {
        NodeInfo {
            role,
            offset,
            keys: 10,
            loading: false,
            min_replicas_to_write: Some(1),
        }
    }

    fn report(decision: Decision, applied: Vec<Applied>) -> Report {
        let replica = |offset| {
            Ok(info(
                NodeRole::Replica {
                    primary: node(2),
                    link_up: true,
                },
                offset,
            ))
        };
        Report {
            primary: Some(node(2)),
            decision,
            applied,
            observation: Observation {
                nodes: vec![
                    NodeObservation {
                        endpoint: node(1),
                        state: replica(900),
                    },
                    NodeObservation {
                        endpoint: node(2),
                        state: Ok(info(NodeRole::Primary, 1000)),
                    },
                    NodeObservation {
                        endpoint: node(3),
                        state: Err("connection refused".to_owned()),
                    },
                ],
                sentinels: Vec::new(),
            },
        }
    }

    fn ok(action: Action) -> Applied {
        Applied {
            action,
            error: None,
        }
    }

    #[test]
    fn a_healthy_pass_publishes_nothing_and_reports_roles_and_lag() {
        let report = report(Decision::Elected { votes: 3 }, Vec::new());
        assert!(events(&model(), &target(), &report).is_empty());
        assert_eq!(
            summary(&model(), &target(), &report),
            "shop-redis-1 is the primary, elected by 3 sentinel(s)"
        );
        let pods = pod_statuses(&model(), &report);
        assert_eq!(pods[0].name, "shop-redis-0");
        assert_eq!(pods[0].role, "replica");
        assert_eq!(pods[0].lag_bytes, Some(100));
        assert_eq!(pods[0].link_up, Some(true));
        assert_eq!(pods[1].role, "primary");
        assert_eq!(pods[1].lag_bytes, None);
        assert_eq!(pods[2].role, "unreachable");
        assert_eq!(pods[2].message.as_deref(), Some("connection refused"));
    }

    #[test]
    fn repairs_become_events_naming_pods() {
        let report = report(
            Decision::Elected { votes: 3 },
            vec![
                ok(Action::ReplicaOf {
                    node: node(1),
                    primary: node(2),
                    reason: ReplicaReason::SplitBrain,
                }),
                ok(Action::ReplicaOf {
                    node: node(3),
                    primary: node(2),
                    reason: ReplicaReason::Rejoin,
                }),
                ok(Action::Monitor {
                    sentinel: node(12),
                    primary: node(2),
                }),
                ok(Action::ResetSentinel {
                    sentinel: node(13),
                    stale: vec![node(99)],
                }),
                Applied {
                    action: Action::SetMinReplicasToWrite {
                        node: node(2),
                        value: 1,
                    },
                    error: Some("NOPERM".to_owned()),
                },
            ],
        );
        let events = events(&model(), &target(), &report);
        let reasons: Vec<&str> = events.iter().map(|e| e.reason).collect();
        assert_eq!(
            reasons,
            [
                REASON_SPLIT_BRAIN_REPAIRED,
                REASON_REPLICA_REJOINED,
                REASON_SENTINEL_MONITORING,
                REASON_SENTINEL_RESET,
                REASON_HEAL_FAILED
            ]
        );
        assert!(events[0].warning && events[4].warning);
        assert!(!events[1].warning);
        assert!(events[0].note.contains("shop-redis-0") && events[0].note.contains("shop-redis-1"));
        assert!(events[2].note.contains("shop-sentinel-1"));
        assert!(
            events[3].note.contains("shop-sentinel-2") && events[3].note.contains("10.0.0.1:99")
        );
        assert!(events[4].note.contains("NOPERM"));
    }

    #[test]
    fn a_bootstrap_is_one_event_not_one_per_sentinel_told() {
        let report = report(
            Decision::Bootstrap {
                reason: "it holds data".to_owned(),
            },
            vec![
                ok(Action::Monitor {
                    sentinel: node(11),
                    primary: node(2),
                }),
                ok(Action::ReplicaOf {
                    node: node(1),
                    primary: node(2),
                    reason: ReplicaReason::Bootstrap,
                }),
            ],
        );
        let events = events(&model(), &target(), &report);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].reason, REASON_BOOTSTRAPPED);
        assert!(
            events[0].note.contains("shop-redis-1") && events[0].note.contains("it holds data")
        );
    }
}
