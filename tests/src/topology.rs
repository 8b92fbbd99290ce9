//! `Topology`: one primary, its replicas and the sentinels that watch them, started and checked
//! until a `kill -9` of the primary would really be failed over.

use std::collections::HashMap;
use std::time::Duration;

use crate::error::HarnessError;
use crate::process::LOOPBACK;
use crate::sentinel::SentinelServer;
use crate::server::RedisServer;
use crate::wait::{wait_for_sentinels_to_know, wait_for_sync};

/// Default name under which the sentinels monitor the primary.
pub const DEFAULT_MASTER_NAME: &str = "abstore";
/// How long replicas get to finish their initial sync.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(10);
/// How long sentinels get to discover each other (hello messages every 2 s) and the replicas.
pub const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(15);

/// What `Topology::start` builds. Use struct update syntax on `default()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyOptions {
    /// Replicas of the initial primary.
    pub replicas: usize,
    /// Sentinels monitoring the primary.
    pub sentinels: usize,
    /// Sentinels that must agree the primary is down.
    pub quorum: u32,
    /// `sentinel down-after-milliseconds`.
    pub down_after_ms: u64,
    /// `sentinel failover-timeout`.
    pub failover_timeout_ms: u64,
    /// The name the sentinels monitor the primary under.
    pub master_name: String,
    /// Extra config text for every data node (e.g. an operator-rendered redis.conf).
    pub redis_config: String,
    /// Extra config text for every sentinel, after the harness's `sentinel monitor` lines.
    pub sentinel_config: String,
    /// Password of the default user when `redis_config` requires one (`requirepass`; set
    /// `masterauth` there too). The harness authenticates its own checks with it and gives it to
    /// the sentinels as `sentinel auth-pass`.
    pub password: Option<String>,
}

impl Default for TopologyOptions {
    fn default() -> Self {
        TopologyOptions {
            replicas: 2,
            sentinels: 3,
            quorum: 2,
            down_after_ms: 1000,
            failover_timeout_ms: 3000,
            master_name: DEFAULT_MASTER_NAME.to_owned(),
            redis_config: String::new(),
            sentinel_config: String::new(),
            password: None,
        }
    }
}

/// A running primary/replicas/sentinels set. Dropping it kills every process.
#[derive(Debug)]
pub struct Topology {
    /// Data nodes; index 0 started as the primary (it may not be the primary any more).
    pub nodes: Vec<RedisServer>,
    pub sentinels: Vec<SentinelServer>,
    pub master_name: String,
    /// The default user's password, if the nodes require one.
    pub password: Option<String>,
}

impl Topology {
    /// Starts the primary, the replicas, waits for them to sync, starts the sentinels, and waits
    /// until every sentinel sees all replicas and all other sentinels.
    pub async fn start(opts: TopologyOptions) -> Result<Topology, HarnessError> {
        if opts.sentinels == 0 {
            return Err(HarnessError::Invalid(
                "a topology needs at least one sentinel".to_owned(),
            ));
        }
        let primary = RedisServer::start(&opts.redis_config)?;
        let mut nodes = Vec::with_capacity(opts.replicas + 1);
        for _ in 0..opts.replicas {
            nodes.push(RedisServer::start_replica_of(&opts.redis_config, &primary)?);
        }
        nodes.insert(0, primary);
        let topology_password = opts.password.clone();
        let target = |node: &RedisServer| node_target(node.port(), topology_password.as_deref());
        for replica in &nodes[1..] {
            wait_for_sync(&target(replica), SYNC_TIMEOUT).await?;
        }

        let sentinel_config = sentinel_config(&opts, nodes[0].port());
        let mut sentinels = Vec::with_capacity(opts.sentinels);
        for _ in 0..opts.sentinels {
            sentinels.push(SentinelServer::start(&sentinel_config)?);
        }
        for sentinel in &sentinels {
            wait_for_sentinels_to_know(
                sentinel,
                &opts.master_name,
                opts.replicas,
                opts.sentinels - 1,
                DISCOVERY_TIMEOUT,
            )
            .await?;
        }
        Ok(Topology {
            nodes,
            sentinels,
            master_name: opts.master_name,
            password: opts.password,
        })
    }

    /// `redis+sentinel://127.0.0.1:p1,127.0.0.1:p2,…/<master_name>`
    pub fn sentinel_url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(|s| s.addr()).collect();
        format!("redis+sentinel://{}/{}", hosts.join(","), self.master_name)
    }

    /// The primary as most sentinels currently report it.
    pub async fn current_primary(&self) -> Result<(String, u16), HarnessError> {
        let mut votes: HashMap<(String, u16), usize> = HashMap::new();
        let mut last_error = None;
        for sentinel in &self.sentinels {
            match sentinel.primary_addr(&self.master_name).await {
                Ok(Some(addr)) => *votes.entry(addr).or_default() += 1,
                Ok(None) => {}
                Err(error) => last_error = Some(error),
            }
        }
        match votes.into_iter().max_by_key(|(_, count)| *count) {
            Some((addr, _)) => Ok(addr),
            None => Err(last_error.unwrap_or_else(|| {
                HarnessError::Invalid(format!(
                    "no sentinel knows a primary for '{}'",
                    self.master_name
                ))
            })),
        }
    }

    pub fn node_by_port(&mut self, port: u16) -> Option<&mut RedisServer> {
        self.nodes.iter_mut().find(|node| node.port() == port)
    }

    /// The node the sentinels currently report as primary.
    pub async fn primary_node(&mut self) -> Result<&mut RedisServer, HarnessError> {
        let (host, port) = self.current_primary().await?;
        self.node_by_port(port).ok_or_else(|| {
            HarnessError::Invalid(format!(
                "sentinels report primary {host}:{port}, which is not a node of this topology"
            ))
        })
    }

    /// `host:port` of a node, or a `redis://` URL with the topology's password, for the
    /// `wait_*` functions.
    pub fn target(&self, node: &RedisServer) -> String {
        node_target(node.port(), self.password.as_deref())
    }
}

fn node_target(port: u16, password: Option<&str>) -> String {
    match password {
        Some(password) => format!("redis://:{password}@{LOOPBACK}:{port}"),
        None => format!("{LOOPBACK}:{port}"),
    }
}

fn sentinel_config(opts: &TopologyOptions, primary_port: u16) -> String {
    let name = &opts.master_name;
    let mut config = format!(
        "sentinel monitor {name} {LOOPBACK} {primary_port} {quorum}\n\
         sentinel down-after-milliseconds {name} {down_after}\n\
         sentinel failover-timeout {name} {failover_timeout}\n\
         sentinel parallel-syncs {name} 1\n",
        quorum = opts.quorum,
        down_after = opts.down_after_ms,
        failover_timeout = opts.failover_timeout_ms,
    );
    if let Some(password) = &opts.password {
        config.push_str(&format!("sentinel auth-pass {name} {password}\n"));
    }
    config.push_str(&opts.sentinel_config);
    config.push('\n');
    config
}
