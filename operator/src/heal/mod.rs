//! heal: the part of the operator that talks to Redis and Sentinel. One pass observes every data
//! node and every sentinel, decides (purely, in [`plan`]) what is wrong, and applies the fixes:
//!
//! - **bootstrap**: no sentinel monitors the store, and enough of them answered to know it (the
//!   quorum and a majority; a sentinel that does not answer may be monitoring it) → choose the
//!   primary (a node already serving as primary to linked replicas keeps the role; otherwise
//!   never an empty node while another holds data: a non-empty dataset and the highest
//!   replication offset win; node 0 only when every node is reachable and empty), point the
//!   other nodes at it, and make every sentinel monitor it with the configured quorum, timings
//!   and auth;
//! - **steady state**: the primary is the one the sentinels elected; a node that replicates
//!   someone else is repointed, a second node claiming to be primary is demoted (split brain), a
//!   sentinel that lost its configuration monitors again, stale sentinel state (replicas or
//!   sentinels that no longer exist) is reset one sentinel at a time and never during a failover;
//! - **durability**: `min-replicas-to-write` is kept at what the spec asks, never above the
//!   replicas that exist.
//!
//! Nothing is done while a failover is in progress or while the sentinels disagree: Sentinel owns
//! failover, the operator only repairs what Sentinel cannot. Passes are idempotent; the controller
//! runs one per reconcile, `local up` runs them on a timer. Endpoints are pod DNS names in
//! Kubernetes and loopback addresses locally.

pub mod acl;
mod act;
mod observe;
pub mod plan;

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::credentials::{Credentials, Role};
use crate::model::Model;

pub(crate) use observe::client_for;
pub use observe::{
    NodeAccess, NodeInfo, NodeObservation, NodeRole, Observation, SentinelObservation,
    SentinelView, observe,
};
pub(crate) use observe::{connect, connect_sentinel, endpoint_of, fields_of, info_fields};
pub use plan::{Action, Decision, FailoverGap, Plan, ReplicaReason, failover_readiness, plan};

/// Timeout of each connection and command: a stopped (SIGSTOP) or partitioned node must not stall
/// a pass.
pub const IO_TIMEOUT: Duration = Duration::from_millis(1500);

/// `host:port` as the nodes announce themselves (and as Sentinel reports them).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn new(host: impl Into<String>, port: u16) -> Endpoint {
        Endpoint {
            host: host.into(),
            port,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// A user name and password.
#[derive(Clone, PartialEq, Eq)]
pub struct Auth {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Sentinel's per-master settings, applied when a sentinel starts monitoring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentinelSettings {
    pub quorum: u32,
    pub down_after_ms: u64,
    pub failover_timeout_ms: u64,
    pub parallel_syncs: u32,
}

/// What one store looks like: who to talk to and what it should be.
#[derive(Clone, Debug)]
pub struct HealTarget {
    /// The name the sentinels monitor the primary under.
    pub master_name: String,
    /// Data nodes in ordinal order (node 0 bootstraps an empty store).
    pub nodes: Vec<Endpoint>,
    pub sentinels: Vec<Endpoint>,
    pub sentinel: SentinelSettings,
    /// `min-replicas-to-write` the spec asks for (lowered to the replicas that exist).
    pub min_replicas_to_write: u32,
    /// The operator's admin user on the data nodes (`None`: the default user, no password).
    pub operator_auth: Option<Auth>,
    /// The operator's previous password while it rotates: tried when the current one is
    /// refused.
    pub operator_auth_previous: Option<Auth>,
    /// The user sentinels authenticate to the data nodes with (`sentinel auth-user/auth-pass`).
    pub sentinel_auth: Option<Auth>,
    /// The operator's admin user on the sentinels (`None`: sentinels without authentication).
    pub operator_sentinel_auth: Option<Auth>,
    /// PEM CA to verify TLS connections with; `None` for plaintext.
    pub tls_ca: Option<Vec<u8>>,
}

impl HealTarget {
    /// The target of a validated store whose data nodes and sentinels answer at `nodes` and
    /// `sentinels` (ordinal order): pod DNS names in Kubernetes, loopback ports locally. The
    /// operator and sentinel users authenticate with the store's credentials; the operator user
    /// is the same on the data nodes and the sentinels.
    pub fn for_model(
        model: &Model,
        credentials: &Credentials,
        nodes: Vec<Endpoint>,
        sentinels: Vec<Endpoint>,
        tls_ca: Option<Vec<u8>>,
    ) -> HealTarget {
        let sentinel = &model.spec.sentinel;
        let auth = |role: Role| Auth {
            username: role.username().to_owned(),
            password: credentials.role_password(role).to_owned(),
        };
        HealTarget {
            master_name: model.master_name().to_owned(),
            nodes,
            sentinels,
            sentinel: SentinelSettings {
                quorum: u32::try_from(sentinel.quorum).unwrap_or(1),
                down_after_ms: u64::try_from(sentinel.down_after_milliseconds).unwrap_or(5000),
                failover_timeout_ms: u64::try_from(sentinel.failover_timeout_milliseconds)
                    .unwrap_or(60_000),
                parallel_syncs: u32::try_from(sentinel.parallel_syncs).unwrap_or(1),
            },
            min_replicas_to_write: u32::try_from(model.min_replicas_to_write()).unwrap_or(0),
            operator_auth: Some(auth(Role::Operator)),
            operator_auth_previous: credentials
                .previous(Role::Operator.username())
                .and_then(|previous| previous.password.clone())
                .map(|password| Auth {
                    username: Role::Operator.username().to_owned(),
                    password,
                }),
            sentinel_auth: Some(auth(Role::Sentinel)),
            operator_sentinel_auth: Some(auth(Role::Operator)),
            tls_ca,
        }
    }

    /// Ordinal of the data node at `endpoint`.
    pub fn node_index(&self, endpoint: &Endpoint) -> Option<usize> {
        self.nodes.iter().position(|node| node == endpoint)
    }

    /// `min-replicas-to-write` in force: the spec's, never more than the replicas that exist.
    pub fn effective_min_replicas_to_write(&self) -> u32 {
        let replicas = u32::try_from(self.nodes.len().saturating_sub(1)).unwrap_or(u32::MAX);
        self.min_replicas_to_write.min(replicas)
    }
}

/// Errors of a heal pass that stop it (a single unreachable node does not: it is observed as
/// such and planned around).
#[derive(Debug, thiserror::Error)]
pub enum HealError {
    #[error("{action} on {endpoint} failed: {reason}")]
    Action {
        action: String,
        endpoint: Endpoint,
        reason: String,
    },
    #[error("invalid heal target: {0}")]
    Target(String),
}

/// What one pass saw, decided and did.
#[derive(Debug, Serialize)]
pub struct Report {
    pub primary: Option<Endpoint>,
    pub decision: Decision,
    /// Actions applied, in order, with the error of any that failed.
    pub applied: Vec<Applied>,
    #[serde(skip)]
    pub observation: Observation,
}

#[derive(Debug, Serialize)]
pub struct Applied {
    pub action: Action,
    pub error: Option<String>,
}

impl Report {
    /// Whether every applied action succeeded.
    pub fn ok(&self) -> bool {
        self.applied.iter().all(|a| a.error.is_none())
    }
}

/// One heal pass: observe, plan, apply. Actions are applied in plan order; a failed action is
/// recorded and the pass goes on with the next (they are independent), so one broken node does
/// not keep the others unhealed. The next pass observes again.
pub async fn heal_once(target: &HealTarget) -> Result<Report, HealError> {
    if target.nodes.is_empty() {
        return Err(HealError::Target("no data nodes".to_owned()));
    }
    let observation = observe(target).await;
    let plan = plan(target, &observation);
    let mut applied = Vec::with_capacity(plan.actions.len());
    for action in plan.actions {
        let error = act::apply(target, &action)
            .await
            .err()
            .map(|e| e.to_string());
        match &error {
            None => tracing::info!(action = %action, "heal: applied"),
            Some(e) => tracing::warn!(action = %action, error = %e, "heal: action failed"),
        }
        applied.push(Applied { action, error });
    }
    Ok(Report {
        primary: plan.primary,
        decision: plan.decision,
        applied,
        observation,
    })
}
