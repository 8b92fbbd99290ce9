//! ACLs live: every pass makes each data node's users exactly the store's (`ACL SETUSER … reset`
//! per user, `ACL DELUSER` for users nobody declared, `default` off), sets `masterauth` to the
//! replication user's current password, and, while the sentinel user's password rotates, the
//! sentinels' `auth-pass`. No restart: a changed user, a rotated password or a hand-made user
//! is healed within one reconcile. ACLs are not replicated, so every node is told.
//!
//! A node's ACL is compared before and after (`ACL LIST`): only a real change is reported, so a
//! settled store produces no Events. `ACL SETUSER` with the same rules leaves existing
//! connections alone (Redis disconnects clients only for a deleted user or revoked channels).

use redis::aio::MultiplexedConnection;
use serde::Serialize;

use super::observe::connect;
use super::{Endpoint, HealTarget};
use crate::config::{AclUser, DEFAULT_USER_RULES};

/// What the ACL pass should make true on every data node and sentinel.
#[derive(Clone, Debug)]
pub struct AclDesired {
    /// Every user but `default`, in ACL file order.
    pub users: Vec<AclUser>,
    /// The replication user's current password (`masterauth` on every node).
    pub masterauth: String,
    /// The sentinel user's current password, while it rotates (`SENTINEL SET auth-pass`).
    pub sentinel_auth_pass: Option<String>,
}

/// What the pass did on one server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NodeAcl {
    pub endpoint: Option<Endpoint>,
    /// Users whose rules or passwords were not what the store says (now they are).
    pub changed: Vec<String>,
    /// Users that were not the store's and were deleted.
    pub removed: Vec<String>,
    /// Why this server could not be healed (it is tried again next pass).
    pub error: Option<String>,
}

/// The outcome over every data node and sentinel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AclReport {
    pub nodes: Vec<NodeAcl>,
    pub sentinels: Vec<NodeAcl>,
}

impl AclReport {
    /// Nodes whose ACL changed: `(endpoint, changed users, removed users)`.
    pub fn changes(&self) -> impl Iterator<Item = &NodeAcl> {
        self.nodes
            .iter()
            .filter(|node| !node.changed.is_empty() || !node.removed.is_empty())
    }

    /// Servers that could not be healed.
    pub fn failures(&self) -> impl Iterator<Item = &NodeAcl> {
        self.nodes
            .iter()
            .chain(&self.sentinels)
            .filter(|node| node.error.is_some())
    }

    /// One sentence for an Event, or `None` when nothing changed. Names users, never
    /// passwords or hashes.
    pub fn change_note(&self) -> Option<String> {
        let parts: Vec<String> = self
            .changes()
            .map(|node| {
                let endpoint = node
                    .endpoint
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                let mut what = Vec::new();
                if !node.changed.is_empty() {
                    what.push(format!("set {}", node.changed.join(", ")));
                }
                if !node.removed.is_empty() {
                    what.push(format!("deleted {}", node.removed.join(", ")));
                }
                format!("{endpoint}: {}", what.join("; "))
            })
            .collect();
        (!parts.is_empty()).then(|| format!("ACL users healed live: {}", parts.join(" | ")))
    }
}

/// One ACL pass over every data node (and every sentinel while the sentinel user rotates).
/// Servers are done concurrently; one that fails does not stop the others.
pub async fn heal_acls(target: &HealTarget, desired: &AclDesired) -> AclReport {
    let nodes = futures::future::join_all(target.nodes.iter().map(|endpoint| async move {
        let mut outcome = match heal_node(target, endpoint, desired).await {
            Ok(outcome) => outcome,
            Err(error) => NodeAcl {
                error: Some(error),
                ..NodeAcl::default()
            },
        };
        outcome.endpoint = Some(endpoint.clone());
        outcome
    }));
    let sentinels = futures::future::join_all(target.sentinels.iter().map(|endpoint| async move {
        let error = match &desired.sentinel_auth_pass {
            Some(password) => set_auth_pass(target, endpoint, password).await.err(),
            None => None,
        };
        NodeAcl {
            endpoint: Some(endpoint.clone()),
            error,
            ..NodeAcl::default()
        }
    }));
    let (nodes, sentinels) = futures::join!(nodes, sentinels);
    AclReport { nodes, sentinels }
}

async fn heal_node(
    target: &HealTarget,
    endpoint: &Endpoint,
    desired: &AclDesired,
) -> Result<NodeAcl, String> {
    let mut conn = connect(target, endpoint, target.operator_auth.as_ref()).await?;
    let before = acl_list(&mut conn).await?;
    let setuser = |args: Vec<String>| {
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER").arg(&args);
        let mut conn = conn.clone();
        async move {
            cmd.query_async::<()>(&mut conn).await.map_err(|e| {
                format!(
                    "ACL SETUSER {}: {e}",
                    args.first().cloned().unwrap_or_default()
                )
            })
        }
    };
    setuser(DEFAULT_USER_RULES.iter().map(|r| (*r).to_owned()).collect()).await?;
    for user in &desired.users {
        setuser(user.setuser_args()).await?;
    }
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("masterauth")
        .arg(&desired.masterauth)
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| format!("CONFIG SET masterauth: {e}"))?;

    let mut removed = Vec::new();
    for (name, _) in &before {
        if name != "default" && !desired.users.iter().any(|user| &user.name == name) {
            redis::cmd("ACL")
                .arg("DELUSER")
                .arg(name)
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| format!("ACL DELUSER {name}: {e}"))?;
            removed.push(name.clone());
        }
    }
    let after = acl_list(&mut conn).await?;
    let changed = after
        .iter()
        .filter(|(name, line)| before.iter().find(|(n, _)| n == name).map(|(_, l)| l) != Some(line))
        .map(|(name, _)| name.clone())
        .collect();
    Ok(NodeAcl {
        endpoint: None,
        changed,
        removed,
        error: None,
    })
}

/// `ACL LIST` as `(user, line)` pairs.
async fn acl_list(conn: &mut MultiplexedConnection) -> Result<Vec<(String, String)>, String> {
    let lines: Vec<String> = redis::cmd("ACL")
        .arg("LIST")
        .query_async(conn)
        .await
        .map_err(|e| format!("ACL LIST: {e}"))?;
    Ok(lines
        .into_iter()
        .map(|line| {
            let name = line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            (name, line)
        })
        .collect())
}

async fn set_auth_pass(
    target: &HealTarget,
    sentinel: &Endpoint,
    password: &str,
) -> Result<(), String> {
    let mut conn = connect(target, sentinel, None).await?;
    redis::cmd("SENTINEL")
        .arg("SET")
        .arg(&target.master_name)
        .arg("auth-pass")
        .arg(password)
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| format!("SENTINEL SET auth-pass: {e}"))
}
