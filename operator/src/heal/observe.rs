//! What every data node and sentinel says right now. An unreachable or failing server is an
//! observation (its error), not a failure of the pass.

use std::collections::HashMap;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
    RedisConnectionInfo, TlsCertificates, Value,
};
use serde::Serialize;

use super::{Auth, Endpoint, HealTarget, IO_TIMEOUT};

/// A data node's role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "role")]
pub enum NodeRole {
    Primary,
    Replica {
        /// The primary it is configured to replicate.
        primary: Endpoint,
        /// `master_link_status:up`.
        link_up: bool,
    },
}

/// What `INFO` and `CONFIG GET` say about a data node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    #[serde(flatten)]
    pub role: NodeRole,
    /// `master_repl_offset`: how much replication stream this node has seen.
    pub offset: u64,
    /// Keys over every database.
    pub keys: u64,
    /// Still loading its AOF/RDB: its dataset is not known yet.
    pub loading: bool,
    pub min_replicas_to_write: Option<u32>,
}

impl NodeInfo {
    /// Whether the node holds data (keys now, or a replication history).
    pub fn has_data(&self) -> bool {
        self.keys > 0 || self.offset > 0
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct NodeObservation {
    pub endpoint: Endpoint,
    /// The node's state, or why it could not be read.
    pub state: Result<NodeInfo, String>,
}

/// What one sentinel knows about the store's master name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SentinelView {
    /// The primary it reports.
    pub primary: Endpoint,
    /// The master's flags (`master`, `s_down`, `o_down`, `failover_in_progress`, …).
    pub flags: Vec<String>,
    /// Replicas it knows (as announced).
    pub replicas: Vec<Endpoint>,
    /// Other sentinels it knows.
    pub sentinels: Vec<Endpoint>,
}

impl SentinelView {
    pub fn failover_in_progress(&self) -> bool {
        self.flags
            .iter()
            .any(|f| f == "failover_in_progress" || f == "promoted")
    }

    pub fn primary_down(&self) -> bool {
        self.flags.iter().any(|f| f == "s_down" || f == "o_down")
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct SentinelObservation {
    pub endpoint: Endpoint,
    /// `Ok(None)`: reachable, but it does not monitor the master name.
    pub state: Result<Option<SentinelView>, String>,
}

/// Every node and sentinel of a target, in the target's order.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Observation {
    pub nodes: Vec<NodeObservation>,
    pub sentinels: Vec<SentinelObservation>,
}

/// Reads every node and sentinel concurrently.
pub async fn observe(target: &HealTarget) -> Observation {
    let nodes = futures::future::join_all(target.nodes.iter().map(|endpoint| async move {
        NodeObservation {
            endpoint: endpoint.clone(),
            state: observe_node(target, endpoint).await,
        }
    }));
    let sentinels = futures::future::join_all(target.sentinels.iter().map(|endpoint| async move {
        SentinelObservation {
            endpoint: endpoint.clone(),
            state: observe_sentinel(target, endpoint).await,
        }
    }));
    let (nodes, sentinels) = futures::join!(nodes, sentinels);
    Observation { nodes, sentinels }
}

/// A connection to a sentinel of `target`, as the operator.
pub(crate) async fn connect_sentinel(
    target: &HealTarget,
    sentinel: &Endpoint,
) -> Result<MultiplexedConnection, String> {
    connect(target, sentinel, target.operator_sentinel_auth.as_ref()).await
}

/// How the operator reaches a store's servers: its TLS CA and its own user (with the previous
/// password during a rotation). One connection logic for Sentinel and cluster mode.
pub trait NodeAccess {
    fn tls_ca(&self) -> Option<&[u8]>;
    fn operator_auth(&self) -> Option<&Auth>;
    fn operator_auth_previous(&self) -> Option<&Auth>;
}

impl NodeAccess for HealTarget {
    fn tls_ca(&self) -> Option<&[u8]> {
        self.tls_ca.as_deref()
    }

    fn operator_auth(&self) -> Option<&Auth> {
        self.operator_auth.as_ref()
    }

    fn operator_auth_previous(&self) -> Option<&Auth> {
        self.operator_auth_previous.as_ref()
    }
}

/// A connection to a node or a sentinel as `auth` (`None`: no authentication).
pub(crate) async fn connect(
    target: &impl NodeAccess,
    endpoint: &Endpoint,
    auth: Option<&Auth>,
) -> Result<MultiplexedConnection, String> {
    let open = |auth: Option<&Auth>| {
        let client = client_for(target, endpoint, auth).map_err(|e| (false, e));
        async move {
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(IO_TIMEOUT))
                .set_response_timeout(Some(IO_TIMEOUT));
            client?
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map_err(|e| {
                    (
                        e.kind() == redis::ErrorKind::AuthenticationFailed,
                        e.to_string(),
                    )
                })
        }
    };
    match open(auth).await {
        Ok(conn) => Ok(conn),
        // During a rotation of the operator's own password a node may know only the previous
        // one (heal has not reached it yet, or it restarted with a mounted ACL file the kubelet
        // has not updated).
        Err((true, error)) if auth.is_some() && auth == target.operator_auth() => {
            match target.operator_auth_previous() {
                Some(previous) => open(Some(previous)).await.map_err(|(_, e)| e),
                None => Err(error),
            }
        }
        Err((_, error)) => Err(error),
    }
}

/// A client for a node or a sentinel of `target`: TLS with the target's CA when it has one.
pub(crate) fn client_for(
    target: &impl NodeAccess,
    endpoint: &Endpoint,
    auth: Option<&Auth>,
) -> Result<Client, String> {
    let addr = if target.tls_ca().is_some() {
        ConnectionAddr::TcpTls {
            host: endpoint.host.clone(),
            port: endpoint.port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(endpoint.host.clone(), endpoint.port)
    };
    let mut settings = RedisConnectionInfo::default();
    if let Some(auth) = auth {
        settings = settings
            .set_username(&auth.username)
            .set_password(&auth.password);
    }
    let info: ConnectionInfo = addr
        .into_connection_info()
        .map_err(|e| e.to_string())?
        .set_redis_settings(settings);
    match target.tls_ca() {
        Some(ca) => Client::build_with_tls(
            info,
            TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.to_vec()),
            },
        ),
        None => Client::open(info),
    }
    .map_err(|e| e.to_string())
}

async fn observe_node(target: &HealTarget, endpoint: &Endpoint) -> Result<NodeInfo, String> {
    let mut conn = connect(target, endpoint, target.operator_auth.as_ref()).await?;
    let (replication, keyspace, persistence): (String, String, String) = redis::pipe()
        .cmd("INFO")
        .arg("replication")
        .cmd("INFO")
        .arg("keyspace")
        .cmd("INFO")
        .arg("persistence")
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    let fields = info_fields(&replication);
    let role = match fields.get("role").map(String::as_str) {
        Some("master") => NodeRole::Primary,
        Some("slave") => {
            let host = fields.get("master_host").cloned().unwrap_or_default();
            let port = fields
                .get("master_port")
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            NodeRole::Replica {
                primary: Endpoint::new(host, port),
                link_up: fields.get("master_link_status").map(String::as_str) == Some("up"),
            }
        }
        other => return Err(format!("unexpected role {other:?} in INFO replication")),
    };
    let offset = fields
        .get("master_repl_offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let keys = keyspace
        .lines()
        .filter(|line| line.starts_with("db"))
        .filter_map(|line| {
            line.split_once(':')?
                .1
                .split(',')
                .find_map(|kv| kv.strip_prefix("keys="))?
                .parse::<u64>()
                .ok()
        })
        .sum();
    let loading = info_fields(&persistence).get("loading").map(String::as_str) == Some("1");
    // CONFIG GET answers while loading only on newer versions; a failure is "unknown".
    let min_replicas_to_write = redis::cmd("CONFIG")
        .arg("GET")
        .arg("min-replicas-to-write")
        .query_async::<Vec<String>>(&mut conn)
        .await
        .ok()
        .and_then(|pair| pair.get(1).and_then(|v| v.parse().ok()));
    Ok(NodeInfo {
        role,
        offset,
        keys,
        loading,
        min_replicas_to_write,
    })
}

async fn observe_sentinel(
    target: &HealTarget,
    endpoint: &Endpoint,
) -> Result<Option<SentinelView>, String> {
    let mut conn = connect_sentinel(target, endpoint).await?;
    let master: Value = redis::cmd("SENTINEL")
        .arg("MASTER")
        .arg(&target.master_name)
        .query_async(&mut conn)
        .await
        .or_else(|e| {
            if e.to_string().contains("No such master") {
                Ok(Value::Nil)
            } else {
                Err(e.to_string())
            }
        })?;
    if master == Value::Nil {
        return Ok(None);
    }
    let master = fields_of(&master);
    let primary = endpoint_of(&master)
        .ok_or_else(|| format!("SENTINEL MASTER {} has no ip/port", target.master_name))?;
    let flags = master
        .get("flags")
        .map(|f| f.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let (replicas, sentinels): (Value, Value) = redis::pipe()
        .cmd("SENTINEL")
        .arg("REPLICAS")
        .arg(&target.master_name)
        .cmd("SENTINEL")
        .arg("SENTINELS")
        .arg(&target.master_name)
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(SentinelView {
        primary,
        flags,
        replicas: endpoints_of(&replicas),
        sentinels: endpoints_of(&sentinels),
    }))
}

/// `name:value` lines of an INFO section.
pub(crate) fn info_fields(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| line.trim().split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A flat key/value array (RESP2) or map (RESP3) as strings.
pub(crate) fn fields_of(value: &Value) -> HashMap<String, String> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    };
    match value {
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|kv| match kv {
                [k, v] => Some((text(k)?, text(v)?)),
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, text(v)?)))
            .collect(),
        _ => HashMap::new(),
    }
}

pub(crate) fn endpoint_of(fields: &HashMap<String, String>) -> Option<Endpoint> {
    Some(Endpoint::new(
        fields.get("ip")?.clone(),
        fields.get("port")?.parse().ok()?,
    ))
}

/// The endpoints of a SENTINEL REPLICAS / SENTINELS reply (a list of field lists).
fn endpoints_of(value: &Value) -> Vec<Endpoint> {
    match value {
        Value::Array(items) => items
            .iter()
            .filter_map(|item| endpoint_of(&fields_of(item)))
            .collect(),
        _ => Vec::new(),
    }
}
