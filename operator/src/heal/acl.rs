//! ACLs live: every pass makes each data node's users exactly the store's (`ACL SETUSER … reset`
//! per user, `ACL DELUSER` for users nobody declared, `default` off), sets `masterauth` to the
//! replication user's current password; the sentinels' users likewise and, while the sentinel
//! user's password rotates, their `auth-pass` and `sentinel-pass`. No restart: a changed user, a rotated password or a hand-made user
//! is healed within one reconcile. ACLs are not replicated, so every node is told.
//!
//! A node's ACL is compared before and after (`ACL LIST`): only a real change is reported, so a
//! settled store produces no Events. `ACL SETUSER` with the same rules leaves existing
//! connections alone (Redis disconnects clients only for a deleted user or revoked channels).

use redis::aio::MultiplexedConnection;
use serde::Serialize;

use super::observe::connect;
use super::{Endpoint, HealTarget};
use crate::config::{AclUser, DATA_DEFAULT_USER_RULES};

/// What the ACL pass should make true on every data node and sentinel.
#[derive(Clone, Debug)]
pub struct AclDesired {
    /// Every user but `default` on the data nodes, in ACL file order.
    pub users: Vec<AclUser>,
    /// Every user but `default` on the sentinels.
    pub sentinel_users: Vec<AclUser>,
    /// The replication user's current password (`masterauth` on every node).
    pub masterauth: String,
    /// The sentinel user's current password, while it rotates: the sentinels' `auth-pass`
    /// (to the data nodes) and `sentinel-pass` (to each other).
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
    /// Servers whose ACL changed.
    pub fn changes(&self) -> impl Iterator<Item = &NodeAcl> {
        self.nodes
            .iter()
            .chain(&self.sentinels)
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

/// One ACL pass over every data node and every sentinel. Servers are done concurrently; one
/// that fails does not stop the others.
pub async fn heal_acls(target: &HealTarget, desired: &AclDesired) -> AclReport {
    let nodes = futures::future::join_all(target.nodes.iter().map(|endpoint| async move {
        outcome(endpoint, heal_node(target, endpoint, desired).await)
    }));
    let sentinels = futures::future::join_all(target.sentinels.iter().map(|endpoint| async move {
        outcome(endpoint, heal_sentinel(target, endpoint, desired).await)
    }));
    let (nodes, sentinels) = futures::join!(nodes, sentinels);
    AclReport { nodes, sentinels }
}

/// One server's result, named by its endpoint.
fn outcome(endpoint: &Endpoint, result: Result<NodeAcl, String>) -> NodeAcl {
    let mut outcome = result.unwrap_or_else(|error| NodeAcl {
        error: Some(error),
        ..NodeAcl::default()
    });
    outcome.endpoint = Some(endpoint.clone());
    outcome
}

async fn heal_node(
    target: &HealTarget,
    endpoint: &Endpoint,
    desired: &AclDesired,
) -> Result<NodeAcl, String> {
    let mut conn = connect(target, endpoint, target.operator_auth.as_ref()).await?;
    let outcome = set_users(&mut conn, &desired.users).await?;
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("masterauth")
        .arg(&desired.masterauth)
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| format!("CONFIG SET masterauth: {e}"))?;
    Ok(outcome)
}

async fn heal_sentinel(
    target: &HealTarget,
    endpoint: &Endpoint,
    desired: &AclDesired,
) -> Result<NodeAcl, String> {
    let mut conn = connect(target, endpoint, target.operator_sentinel_auth.as_ref()).await?;
    let outcome = set_users(&mut conn, &desired.sentinel_users).await?;
    if let Some(password) = &desired.sentinel_auth_pass {
        // Both are rewritten into the sentinel's own config file, so they survive a restart.
        redis::cmd("SENTINEL")
            .arg("CONFIG")
            .arg("SET")
            .arg("sentinel-pass")
            .arg(password)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| format!("SENTINEL CONFIG SET sentinel-pass: {e}"))?;
        // Not monitoring yet (a sentinel heal has still to set up): nothing to update.
        let monitored: Vec<Vec<String>> = redis::cmd("SENTINEL")
            .arg("MASTERS")
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        let monitoring = monitored.iter().any(|fields| {
            fields
                .chunks(2)
                .any(|kv| kv[0] == "name" && kv.get(1) == Some(&target.master_name))
        });
        if monitoring {
            redis::cmd("SENTINEL")
                .arg("SET")
                .arg(&target.master_name)
                .arg("auth-pass")
                .arg(password)
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| format!("SENTINEL SET auth-pass: {e}"))?;
        }
    }
    Ok(outcome)
}

/// Makes a server's users exactly `users` (and `default` off); says what changed.
async fn set_users(conn: &mut MultiplexedConnection, users: &[AclUser]) -> Result<NodeAcl, String> {
    let before = acl_list(conn).await?;
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
    setuser(
        DATA_DEFAULT_USER_RULES
            .iter()
            .map(|r| (*r).to_owned())
            .collect(),
    )
    .await?;
    for user in users {
        setuser(user.setuser_args()).await?;
    }
    let mut removed = Vec::new();
    for (name, _) in &before {
        if name != "default" && !users.iter().any(|user| &user.name == name) {
            redis::cmd("ACL")
                .arg("DELUSER")
                .arg(name)
                .query_async::<()>(&mut *conn)
                .await
                .map_err(|e| format!("ACL DELUSER {name}: {e}"))?;
            removed.push(name.clone());
        }
    }
    let after = acl_list(conn).await?;
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
