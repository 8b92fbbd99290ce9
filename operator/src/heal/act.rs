//! Applying one planned action to the node or sentinel it names.

use redis::aio::MultiplexedConnection;

use super::observe::{connect, connect_sentinel};
use super::plan::Action;
use super::{Endpoint, HealError, HealTarget};

pub(super) async fn apply(target: &HealTarget, action: &Action) -> Result<(), HealError> {
    let fail = |endpoint: &Endpoint, reason: String| HealError::Action {
        action: action.to_string(),
        endpoint: endpoint.clone(),
        reason,
    };
    match action {
        Action::Promote { node } => {
            let mut conn = node_conn(target, node).await.map_err(|e| fail(node, e))?;
            run(&mut conn, redis::cmd("REPLICAOF").arg("NO").arg("ONE"))
                .await
                .map_err(|e| fail(node, e))
        }
        Action::ReplicaOf { node, primary, .. } => {
            let mut conn = node_conn(target, node).await.map_err(|e| fail(node, e))?;
            run(
                &mut conn,
                redis::cmd("REPLICAOF").arg(&primary.host).arg(primary.port),
            )
            .await
            .map_err(|e| fail(node, e))
        }
        Action::SetMinReplicasToWrite { node, value } => {
            let mut conn = node_conn(target, node).await.map_err(|e| fail(node, e))?;
            run(
                &mut conn,
                redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("min-replicas-to-write")
                    .arg(*value),
            )
            .await
            .map_err(|e| fail(node, e))
        }
        Action::Monitor { sentinel, primary } => monitor(target, sentinel, primary)
            .await
            .map_err(|e| fail(sentinel, e)),
        Action::ResetSentinel { sentinel, .. } => {
            let mut conn = connect_sentinel(target, sentinel)
                .await
                .map_err(|e| fail(sentinel, e))?;
            redis::cmd("SENTINEL")
                .arg("RESET")
                .arg(&target.master_name)
                .query_async::<i64>(&mut conn)
                .await
                .map(|_| ())
                .map_err(|e| fail(sentinel, e.to_string()))
        }
    }
}

async fn node_conn(target: &HealTarget, node: &Endpoint) -> Result<MultiplexedConnection, String> {
    connect(target, node, target.operator_auth.as_ref()).await
}

async fn run(conn: &mut MultiplexedConnection, cmd: &redis::Cmd) -> Result<(), String> {
    cmd.query_async::<()>(conn).await.map_err(|e| e.to_string())
}

/// `SENTINEL MONITOR`, then the settings and the auth in one `SENTINEL SET`. A sentinel that
/// already monitors the name (it learnt it between observe and now) only gets the settings.
async fn monitor(
    target: &HealTarget,
    sentinel: &Endpoint,
    primary: &Endpoint,
) -> Result<(), String> {
    let mut conn = connect_sentinel(target, sentinel).await?;
    let name = &target.master_name;
    let monitored = redis::cmd("SENTINEL")
        .arg("MONITOR")
        .arg(name)
        .arg(&primary.host)
        .arg(primary.port)
        .arg(target.sentinel.quorum)
        .query_async::<()>(&mut conn)
        .await;
    if let Err(e) = monitored
        && !e.to_string().contains("Duplicate")
    {
        return Err(e.to_string());
    }
    let settings = &target.sentinel;
    let mut set = redis::cmd("SENTINEL");
    set.arg("SET")
        .arg(name)
        .arg("down-after-milliseconds")
        .arg(settings.down_after_ms)
        .arg("failover-timeout")
        .arg(settings.failover_timeout_ms)
        .arg("parallel-syncs")
        .arg(settings.parallel_syncs)
        .arg("quorum")
        .arg(settings.quorum);
    if let Some(auth) = &target.sentinel_auth {
        set.arg("auth-user")
            .arg(&auth.username)
            .arg("auth-pass")
            .arg(&auth.password);
    }
    run(&mut conn, &set).await
}
