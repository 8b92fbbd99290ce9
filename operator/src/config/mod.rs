//! config: the files the pods run from — redis.conf, sentinel.conf and the shell scripts that
//! start, probe and stop Redis and Sentinel (all for the ConfigMap, no secrets inside), and the
//! ACL file (for the ACL Secret, passwords only as SHA-256). Pure; `build` mounts the results.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use abstore::keys::{CounterKind, KeyKind};
use sha2::{Digest, Sha256};

use crate::credentials::{Credentials, Role};
use crate::model::{Model, REDIS, REDIS_PORT, SENTINEL, SENTINEL_PORT};

/// Where the ConfigMap is mounted in Redis and Sentinel pods.
pub const CONFIG_DIR: &str = "/etc/abstore/config";
/// The data volume (PVC) of Redis pods and the writable directory of sentinels; the runtime
/// configs the start scripts write live here too (Sentinel rewrites its file).
pub const DATA_DIR: &str = "/data";
/// Where the ACL Secret is mounted in Redis pods.
pub const ACL_DIR: &str = "/etc/abstore/acl";
/// Key of the ACL file in the ACL Secret, and its file name under `ACL_DIR`.
pub const ACL_FILE_NAME: &str = "users.acl";
/// Key of the sentinels' ACL file in the ACL Secret, and its file name under `ACL_DIR` in
/// sentinel pods (their `aclfile`): the same users, with what each may ask a sentinel.
pub const SENTINEL_ACL_FILE_NAME: &str = "sentinel-users.acl";
/// Where the TLS Secret is mounted.
pub const TLS_DIR: &str = "/etc/abstore/tls";
/// Where passwords are mounted: one file per user, named after the user (items of the
/// credentials Secrets' `password` key).
pub const CREDENTIALS_DIR: &str = "/etc/abstore/credentials";
/// File names inside the TLS Secret (cert-manager's layout).
pub const TLS_CERT_FILE: &str = "tls.crt";
pub const TLS_KEY_FILE: &str = "tls.key";
pub const TLS_CA_FILE: &str = "ca.crt";

/// ConfigMap keys (and file names under `CONFIG_DIR`).
pub const REDIS_CONF: &str = "redis.conf";
pub const SENTINEL_CONF: &str = "sentinel.conf";
/// Per-master Sentinel settings; start-sentinel.sh appends them after `sentinel monitor`.
pub const SENTINEL_MONITOR_CONF: &str = "sentinel-monitor.conf";
/// Functions the other scripts source.
pub const SCRIPT_LIB: &str = "abstore-lib.sh";
/// Container command of the redis container: `sh <CONFIG_DIR>/start-redis.sh`.
pub const START_REDIS: &str = "start-redis.sh";
/// Container command of the sentinel container.
pub const START_SENTINEL: &str = "start-sentinel.sh";
/// The start script of a cluster-mode Redis pod (only in a cluster-mode store's ConfigMap).
pub const START_REDIS_CLUSTER: &str = "start-redis-cluster.sh";
/// preStop hook of the redis container.
pub const PRESTOP_REDIS: &str = "prestop-redis.sh";
/// Liveness probe (exec) of the redis container.
pub const LIVENESS_REDIS: &str = "liveness-redis.sh";
/// Readiness and startup probe (exec) of the redis container.
pub const READINESS_REDIS: &str = "readiness-redis.sh";
/// Liveness probe of the sentinel container.
pub const LIVENESS_SENTINEL: &str = "liveness-sentinel.sh";
/// Readiness probe of the sentinel container.
pub const READINESS_SENTINEL: &str = "readiness-sentinel.sh";

/// Users whose passwords Redis pods mount under `CREDENTIALS_DIR`: masterauth (which the start
/// script and preStop hook also use to ask the sentinels, see [`REDIS_POD_SENTINEL_ROLE`], and
/// the preStop hook to pause and demote its node, see [`PRESTOP_ROLE`]), and the probes, preStop
/// hook and start script reading the data nodes' state (the exporter role).
pub const REDIS_POD_CREDENTIALS: [Role; 2] = [Role::Replication, Role::Exporter];
/// Users whose passwords sentinel pods mount under `CREDENTIALS_DIR`: `auth-pass` to the data
/// nodes, `sentinel-pass` to the other sentinels, and the sentinel probes.
pub const SENTINEL_POD_CREDENTIALS: [Role; 1] = [Role::Sentinel];
/// The role a Redis pod's scripts authenticate to the sentinels with: start-redis.sh asks for
/// the primary, the preStop hook for a failover. Replication, because its password is mounted
/// there anyway and its holder can already PSYNC the whole dataset (and, for the preStop hook,
/// pause and demote a node, see [`PRESTOP_ROLE`]): a forced switchover adds little. The sentinel
/// password would give each Redis pod what Sentinel may do to every node (SLAVEOF, CONFIG
/// REWRITE, CLIENT KILL) and a say among the sentinels (their hello channel and votes).
pub const REDIS_POD_SENTINEL_ROLE: Role = Role::Replication;
/// The role the preStop hook pauses writes on its own node with (`CLIENT PAUSE … WRITE`,
/// `CLIENT UNPAUSE`) and demotes it with (`REPLICAOF <new primary>`). Replication, not exporter:
/// the exporter's password is also in the redis_exporter sidecar, which must stay read-only,
/// while this one is only in the redis container, whose volume holds the whole dataset anyway.
/// The grant is the same on every node (one ACL file), so a Redis pod may pause or re-point any
/// node: the price of demoting its own node at once.
pub const PRESTOP_ROLE: Role = Role::Replication;
/// Seconds the preStop hook may take to hand the primary role over (its waits and the write
/// pause end by then; its last two commands may add `2 × ABSTORE_CLI_TIMEOUT`). The pod's
/// `terminationGracePeriodSeconds` must be longer.
pub const PRESTOP_TIMEOUT_SECONDS: i64 = 60;
/// `repl-backlog-size`: room for a replica that was away briefly (a restart, a rollout) to
/// catch up with a partial resync instead of a full one.
const REPL_BACKLOG_SIZE: &str = "64mb";
/// `client-output-buffer-limit replica`: a replica whose full sync falls more than this behind
/// is disconnected (and syncs again) rather than growing the primary past its memory limit
/// (crate::memory::REPLICA_BUFFER; Redis's default hard limit is 256mb).
const REPLICA_OUTPUT_BUFFER_LIMIT: &str = "replica 64mb 16mb 60";
/// Channel Sentinel uses to discover other sentinels through the data nodes.
const SENTINEL_HELLO_CHANNEL: &str = "__sentinel__:hello";

const TEMPLATES: [(&str, &str); 8] = [
    (SCRIPT_LIB, include_str!("abstore-lib.sh")),
    (START_REDIS, include_str!("start-redis.sh")),
    (START_SENTINEL, include_str!("start-sentinel.sh")),
    (PRESTOP_REDIS, include_str!("prestop-redis.sh")),
    (LIVENESS_REDIS, include_str!("liveness-redis.sh")),
    (READINESS_REDIS, include_str!("readiness-redis.sh")),
    (LIVENESS_SENTINEL, include_str!("liveness-sentinel.sh")),
    (READINESS_SENTINEL, include_str!("readiness-sentinel.sh")),
];

/// Paths the configs and scripts refer to. `Default` is the in-pod layout; tests point them into
/// temporary directories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigPaths {
    /// Redis `dir` and Sentinel's working directory; runtime configs are written here.
    pub data_dir: String,
    /// Redis `aclfile`; the sentinels' `aclfile` is [`ConfigPaths::sentinel_acl_file`], next to it.
    pub acl_file: String,
    /// Directory with `tls.crt`, `tls.key`, `ca.crt`.
    pub tls_dir: String,
    /// Directory with one password file per user.
    pub credentials_dir: String,
    /// Directory with the ConfigMap's files.
    pub config_dir: String,
}

impl Default for ConfigPaths {
    fn default() -> Self {
        ConfigPaths {
            data_dir: DATA_DIR.to_owned(),
            acl_file: format!("{ACL_DIR}/{ACL_FILE_NAME}"),
            tls_dir: TLS_DIR.to_owned(),
            credentials_dir: CREDENTIALS_DIR.to_owned(),
            config_dir: CONFIG_DIR.to_owned(),
        }
    }
}

impl ConfigPaths {
    /// The password file of `username` as the pods see it.
    pub fn credential_file(&self, username: &str) -> String {
        format!("{}/{username}", self.credentials_dir)
    }

    /// The sentinels' `aclfile`: `SENTINEL_ACL_FILE_NAME` in the directory of `acl_file` (both
    /// are keys of the ACL Secret; each kind of pod mounts only its own).
    pub fn sentinel_acl_file(&self) -> String {
        match self.acl_file.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/{SENTINEL_ACL_FILE_NAME}"),
            None => SENTINEL_ACL_FILE_NAME.to_owned(),
        }
    }

    fn tls_file(&self, name: &str) -> String {
        format!("{}/{name}", self.tls_dir)
    }
}

/// The ConfigMap's content: file name → content.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigFiles {
    pub files: BTreeMap<String, String>,
}

impl ConfigFiles {
    /// SHA-256 (hex) over every file name and content: the pod-template annotation that rolls
    /// the pods when the configuration changes.
    pub fn hash(&self) -> String {
        let mut hasher = Sha256::new();
        for (name, content) in &self.files {
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update(content.as_bytes());
            hasher.update([0]);
        }
        hex::encode(hasher.finalize())
    }

    /// The content of one file.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.files.get(name).map(String::as_str)
    }
}

/// Every file of the ConfigMap. No secrets inside: passwords are appended at pod start from the
/// mounted credentials.
pub fn config_files(model: &Model, paths: &ConfigPaths) -> ConfigFiles {
    let mut files = BTreeMap::new();
    files.insert(REDIS_CONF.to_owned(), redis_conf(model, paths));
    files.insert(SENTINEL_CONF.to_owned(), sentinel_conf(model, paths));
    files.insert(
        SENTINEL_MONITOR_CONF.to_owned(),
        sentinel_monitor_conf(model),
    );
    let values = template_values(model, paths);
    for (name, template) in TEMPLATES {
        files.insert(name.to_owned(), fill(template, &values));
    }
    if model.cluster().is_some() {
        files.insert(
            START_REDIS_CLUSTER.to_owned(),
            fill(include_str!("start-redis-cluster.sh"), &values),
        );
    }
    ConfigFiles { files }
}

/// The `<n>-sentinel` client Service's DNS name: the start scripts and preStop hook ask it.
pub fn sentinel_service_host(model: &Model) -> String {
    model.service_fqdn(SENTINEL)
}

fn template_values(model: &Model, paths: &ConfigPaths) -> Vec<(&'static str, String)> {
    let pod_domain = |component: &str, fqdn: String| {
        let pod = format!("{}-0.", model.child_name(component));
        fqdn.strip_prefix(&pod).map(str::to_owned).unwrap_or(fqdn)
    };
    let peers: Vec<String> = (0..model.spec.redis.replicas)
        .map(|ordinal| format!("{}:{REDIS_PORT}", model.redis_pod_fqdn(ordinal)))
        .collect();
    vec![
        ("TLS", yes_no(model.spec.tls.enabled).to_owned()),
        ("TLS_CA_FILE", paths.tls_file(TLS_CA_FILE)),
        ("CREDENTIALS_DIR", paths.credentials_dir.clone()),
        ("CONFIG_DIR", paths.config_dir.clone()),
        ("DATA_DIR", paths.data_dir.clone()),
        ("REDIS_CONF", REDIS_CONF.to_owned()),
        ("SENTINEL_CONF", SENTINEL_CONF.to_owned()),
        ("SENTINEL_MONITOR_CONF", SENTINEL_MONITOR_CONF.to_owned()),
        ("REDIS_PORT", REDIS_PORT.to_string()),
        ("SENTINEL_PORT", SENTINEL_PORT.to_string()),
        ("MASTER_NAME", model.master_name().to_owned()),
        ("QUORUM", model.spec.sentinel.quorum.to_string()),
        ("SENTINEL_SERVICE", sentinel_service_host(model)),
        (
            "REDIS_POD_DOMAIN",
            pod_domain(REDIS, model.redis_pod_fqdn(0)),
        ),
        (
            "SENTINEL_POD_DOMAIN",
            pod_domain(SENTINEL, model.sentinel_pod_fqdn(0)),
        ),
        ("BOOTSTRAP_HOST", model.redis_pod_fqdn(0)),
        ("REDIS_PEERS", peers.join(" ")),
        ("EXPORTER_USER", Role::Exporter.username().to_owned()),
        ("SENTINEL_USER", Role::Sentinel.username().to_owned()),
        (
            "REDIS_POD_SENTINEL_USER",
            REDIS_POD_SENTINEL_ROLE.username().to_owned(),
        ),
        ("REPLICATION_USER", Role::Replication.username().to_owned()),
        ("PRESTOP_USER", PRESTOP_ROLE.username().to_owned()),
        ("PRESTOP_TIMEOUT", PRESTOP_TIMEOUT_SECONDS.to_string()),
        ("CLUSTER_CONFIG_FILE", CLUSTER_CONFIG_FILE.to_owned()),
    ]
}

/// Replaces every `@@NAME@@` in `template`.
fn fill(template: &str, values: &[(&str, String)]) -> String {
    values
        .iter()
        .fold(template.to_owned(), |text, (name, value)| {
            text.replace(&format!("@@{name}@@"), value)
        })
}

fn yes_no(flag: bool) -> &'static str {
    if flag { "yes" } else { "no" }
}

/// A path as a redis.conf string argument (paths may contain spaces in tests).
fn quoted(path: &str) -> String {
    format!("\"{}\"", path.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Writes a line to a `String` (infallible).
macro_rules! line {
    ($out:expr, $($arg:tt)*) => {{
        let _ = writeln!($out, $($arg)*);
    }};
}

fn listeners(out: &mut String, model: &Model, paths: &ConfigPaths, port: u16) {
    // Every interface, IPv4 and (where present) IPv6; the NetworkPolicy and ACLs guard access.
    line!(out, "bind * -::*");
    line!(out, "protected-mode no");
    if model.spec.tls.enabled {
        line!(out, "port 0");
        line!(out, "tls-port {port}");
        line!(
            out,
            "tls-cert-file {}",
            quoted(&paths.tls_file(TLS_CERT_FILE))
        );
        line!(
            out,
            "tls-key-file {}",
            quoted(&paths.tls_file(TLS_KEY_FILE))
        );
        line!(
            out,
            "tls-ca-cert-file {}",
            quoted(&paths.tls_file(TLS_CA_FILE))
        );
        line!(out, "tls-replication yes");
        // Clients authenticate with ACL passwords; client certificates are not required.
        line!(out, "tls-auth-clients no");
    } else {
        line!(out, "port {port}");
    }
}

/// redis.conf shared by every Redis pod (Redis 7.0 compatible).
pub fn redis_conf(model: &Model, paths: &ConfigPaths) -> String {
    let spec = &model.spec;
    let mut out = String::new();
    line!(
        out,
        "# redis.conf of ABStore {}/{}, rendered by abstore-operator. start-redis.sh appends this pod's",
        model.namespace,
        model.name
    );
    line!(
        out,
        "# lines (masterauth, replica-announce-ip, replicaof). Do not edit: the operator overwrites it."
    );
    line!(out, "daemonize no");
    line!(out, "logfile \"\"");
    line!(out, "loglevel notice");
    listeners(&mut out, model, paths, REDIS_PORT);
    line!(out, "tcp-keepalive 60");
    line!(out, "timeout 0");
    line!(out, "dir {}", quoted(&paths.data_dir));
    line!(out, "aclfile {}", quoted(&paths.acl_file));

    line!(out, "# persistence");
    let aof = &spec.persistence.aof;
    line!(out, "appendonly {}", yes_no(aof.enabled));
    line!(out, "appendfsync {}", aof.fsync.as_str());
    line!(out, "aof-use-rdb-preamble yes");
    let rdb = &spec.persistence.rdb;
    if rdb.enabled && !rdb.save.is_empty() {
        let points: Vec<String> = rdb
            .save
            .iter()
            .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        line!(out, "save {}", points.join(" "));
    } else {
        line!(out, "save \"\"");
    }
    line!(out, "stop-writes-on-bgsave-error yes");
    line!(out, "rdbcompression yes");
    line!(out, "rdbchecksum yes");

    line!(out, "# memory");
    if let Some(bytes) = model.maxmemory_bytes {
        line!(out, "maxmemory {bytes}");
    }
    line!(
        out,
        "maxmemory-policy {}",
        spec.redis.maxmemory_policy.as_str()
    );

    line!(out, "# replication and durability");
    line!(out, "masteruser {}", Role::Replication.username());
    line!(out, "replica-read-only yes");
    line!(out, "replica-serve-stale-data yes");
    line!(out, "repl-diskless-sync yes");
    line!(out, "repl-backlog-size {REPL_BACKLOG_SIZE}");
    line!(
        out,
        "client-output-buffer-limit {REPLICA_OUTPUT_BUFFER_LIMIT}"
    );
    line!(
        out,
        "min-replicas-to-write {}",
        model.min_replicas_to_write()
    );
    line!(
        out,
        "min-replicas-max-lag {}",
        spec.durability.min_replicas_max_lag_seconds
    );

    if let Some(cluster) = model.cluster() {
        // docs/cluster.md: the operator places replicas (no migration behind its back), and a
        // lost shard stops only its own slots, not every write of the store.
        line!(out, "# cluster mode");
        line!(out, "cluster-enabled yes");
        line!(out, "cluster-config-file {CLUSTER_CONFIG_FILE}");
        line!(
            out,
            "cluster-node-timeout {}",
            cluster.node_timeout_milliseconds
        );
        line!(out, "cluster-require-full-coverage no");
        line!(out, "cluster-allow-replica-migration no");
        if spec.tls.enabled {
            line!(out, "tls-cluster yes");
        }
    }

    if !spec.redis.config.is_empty() {
        line!(out, "# spec.redis.config");
        for (name, value) in &spec.redis.config {
            line!(out, "{name} {value}");
        }
    }
    out
}

/// The cluster state file of a cluster-mode node (node id, epochs, peers), in its data
/// directory: losing it is losing the node's identity, as losing its data is.
pub const CLUSTER_CONFIG_FILE: &str = "nodes.conf";

/// sentinel.conf shared by every sentinel; start-sentinel.sh adds `sentinel monitor`, then
/// `SENTINEL_MONITOR_CONF`, then the auth-pass and sentinel-pass. Clients authenticate with the
/// users of the sentinels' ACL file ([`sentinel_acl_file`]); the default user is off.
pub fn sentinel_conf(model: &Model, paths: &ConfigPaths) -> String {
    let mut out = String::new();
    line!(
        out,
        "# sentinel.conf of ABStore {}/{}, rendered by abstore-operator. start-sentinel.sh appends",
        model.namespace,
        model.name
    );
    line!(
        out,
        "# announce-ip, `sentinel monitor`, the per-master settings, auth-pass and sentinel-pass."
    );
    line!(out, "daemonize no");
    line!(out, "logfile \"\"");
    listeners(&mut out, model, paths, SENTINEL_PORT);
    line!(out, "dir {}", quoted(&paths.data_dir));
    // Pods are addressed by their stable DNS names; IPs change at every restart. Must precede
    // `sentinel monitor <hostname>`.
    line!(out, "sentinel resolve-hostnames yes");
    line!(out, "sentinel announce-hostnames yes");
    // Users from a file, like the data nodes: no password in the ConfigMap, and Sentinel's own
    // CONFIG REWRITE leaves the users alone (it keeps the `aclfile` line).
    line!(out, "aclfile {}", quoted(&paths.sentinel_acl_file()));
    // What this sentinel authenticates to the others with; the password (`sentinel-pass`) is
    // appended at start from the mounted credentials.
    line!(out, "sentinel sentinel-user {}", Role::Sentinel.username());
    out
}

/// Per-master Sentinel settings (after the `sentinel monitor` line).
pub fn sentinel_monitor_conf(model: &Model) -> String {
    let master = model.master_name();
    let sentinel = &model.spec.sentinel;
    let mut out = String::new();
    line!(
        out,
        "sentinel down-after-milliseconds {master} {}",
        sentinel.down_after_milliseconds
    );
    line!(
        out,
        "sentinel failover-timeout {master} {}",
        sentinel.failover_timeout_milliseconds
    );
    line!(
        out,
        "sentinel parallel-syncs {master} {}",
        sentinel.parallel_syncs
    );
    line!(
        out,
        "sentinel auth-user {master} {}",
        Role::Sentinel.username()
    );
    out
}

/// The app role: exactly what the abstore library sends (measured by tests/tests/least_privilege.rs
/// over its whole surface): the record script (EVALSHA, SCRIPT LOAD, EVAL) and the commands it
/// runs (SET NX EX for dedup, INCRBY, PFADD, EXPIREAT), the reads (MGET, PFCOUNT, and the union
/// script's PFMERGE, PEXPIRE, UNLINK), sticky assignments (SET … GET), the WAIT durability option,
/// and ROLE, with which every new connection checks it reached the primary. AUTH and HELLO need
/// no rule.
const APP_COMMANDS: &[&str] = &[
    "+role",
    "+eval",
    "+evalsha",
    "+script|load",
    "+set",
    "+mget",
    "+incrby",
    "+pfadd",
    "+pfcount",
    "+pfmerge",
    "+expireat",
    "+pexpire",
    "+unlink",
    "+wait",
];
/// Exactly what the tracking API (`abstore-api`) sends (measured by
/// tests/tests/least_privilege.rs through the binary's every route): the recorder's script
/// (SCRIPT LOAD, EVALSHA, and inside it SET NX EX, INCRBY, PFADD, EXPIREAT), ROLE on connect,
/// WAIT with `--wait-replicas`, the reads (MGET, PFCOUNT; its unique counts need no union
/// script), PING for `/readyz`, its experiment registry (SADD and SMEMBERS of the namespace's
/// `exps` set, HSETNX and HGETALL of each `exp:<experiment>` hash, SISMEMBER when reading one)
/// and delete (UNLINK, SREM). Less than the app role: no sticky assignments, no union script.
const API_COMMANDS: &[&str] = &[
    "+role",
    "+evalsha",
    "+script|load",
    "+set",
    "+incrby",
    "+pfadd",
    "+expireat",
    "+wait",
    "+mget",
    "+pfcount",
    "+unlink",
    "+ping",
    "+sadd",
    "+smembers",
    "+sismember",
    "+srem",
    "+hsetnx",
    "+hgetall",
];
/// What a role loses and gains in cluster mode (measured by tests/tests/least_privilege.rs):
/// the abstore library's cluster connection reads the slot map (`CLUSTER SLOTS`; backup and
/// prune then visit each shard's node directly) and never asks a node its `ROLE` (the slot map
/// says who is primary); the app sends `ASKING` before a command an `ASK` redirect named, and
/// its range reads count unions with one multi-key `PFCOUNT` per partition instead of the
/// union script (no `EVAL`, `PFMERGE`, `PEXPIRE`); backup reads a replica of each shard with
/// `--from-replica` after `READONLY`. redis_exporter sends `CLUSTER INFO` after an `INFO ALL`
/// that says `cluster_enabled:1` (v1.62.0 exporter/exporter.go:622-623, `scrapeRedisHost`;
/// nothing else changes without `--is-cluster`, which is not set); nothing asks a node its
/// `ROLE` as the exporter in cluster mode, where neither start-redis.sh's discovery nor the
/// preStop hook (Sentinel's hand-over) runs: the probes there send PING and INFO.
fn cluster_commands(role: Role) -> (&'static [&'static str], &'static [&'static str]) {
    match role {
        Role::App | Role::Api => (
            &["+role", "+eval", "+pfmerge", "+pexpire"],
            &["+cluster|slots", "+asking"],
        ),
        Role::Backup => (&["+role"], &["+cluster|slots", "+readonly"]),
        Role::Prune => (&["+role"], &["+cluster|slots"]),
        Role::Exporter => (&["+role"], &["+cluster|info"]),
        _ => (&[], &[]),
    }
}
/// The backup role: SCAN and typed reads; keys are read-only (`%R~*`), so even a write command
/// slipped in later could not change data.
/// Exactly what `abstore-jobs backup` sends (jobs/src/redis.rs, backup.rs): SCAN, TYPE, the typed
/// read of each kind (GET + PEXPIRETIME for strings and HyperLogLogs, HGETALL, SMEMBERS,
/// ZRANGE … WITHSCORES, LRANGE), INFO for the manifest's server version, DBSIZE for progress.
const BACKUP_COMMANDS: &[&str] = &[
    "+role",
    "+scan",
    "+type",
    "+get",
    "+pexpiretime",
    "+hgetall",
    "+smembers",
    "+zrange",
    "+lrange",
    "+info",
    "+dbsize",
];
/// Exactly what `abstore-jobs prune` sends: SCAN everything, UNLINK (only day-keyed counters,
/// by the role's key patterns), DBSIZE for progress.
const PRUNE_COMMANDS: &[&str] = &["+role", "+scan", "+unlink", "+dbsize"];
/// What logs in as the exporter, measured by tests/tests/least_privilege.rs: the pods' probes and
/// scripts (liveness PING, readiness INFO, ROLE and INFO in preStop, ROLE in start-redis.sh) and redis_exporter's
/// default scrape (CLIENT SETNAME, CONFIG GET *, INFO ALL, LATENCY LATEST and HISTOGRAM, SLOWLOG GET
/// and LEN; read from its source, as it cannot run here). No key access: `--check-keys` is not
/// used. In cluster mode, CLUSTER INFO instead of ROLE ([`cluster_commands`]).
const EXPORTER_COMMANDS: &[&str] = &[
    "+ping",
    "+role",
    "+info",
    "+client|setname",
    "+config|get",
    "+slowlog|get",
    "+slowlog|len",
    "+latency|latest",
    "+latency|histogram",
];
/// What a replica sends its primary as `masteruser` (its handshake's PING comes before AUTH and
/// is answered NOAUTH by design: no rule), and what the preStop hook does to its own node as
/// [`PRESTOP_ROLE`]: pause writes, demote it to the new primary (REPLICAOF, never SLAVEOF),
/// unpause. Measured by tests/tests/least_privilege.rs.
const REPLICATION_COMMANDS: &[&str] = &[
    "+psync",
    "+replconf",
    "+client|pause",
    "+client|unpause",
    "+replicaof",
];
/// Sentinel's needs on data nodes, measured by tests/tests/least_privilege.rs through discovery and
/// a failover: PING, INFO, the hello channel (SUBSCRIBE, PUBLISH), CLIENT SETNAME, and for the
/// failover MULTI, SLAVEOF (Sentinel sends SLAVEOF, never REPLICAOF), CONFIG REWRITE, CLIENT KILL,
/// EXEC; ROLE from start-sentinel.sh asking the Redis pods. SCRIPT KILL is granted unobserved: a
/// primary busy in a script (-BUSY) gets it before a failover.
const SENTINEL_COMMANDS: &[&str] = &[
    "+ping",
    "+info",
    "+role",
    "+multi",
    "+exec",
    "+slaveof",
    "+config|rewrite",
    "+client|setname",
    "+client|kill",
    "+script|kill",
    "+subscribe",
    "+publish",
];

/// Sentinel's event channel for a completed failover: Sentinel-aware clients may follow it.
const SWITCH_MASTER_CHANNEL: &str = "+switch-master";

// What each user may ask a sentinel (Redis 7.0 Sentinel mode has no keys and knows only PING,
// INFO, ROLE, CLIENT, ACL, COMMAND, HELLO, AUTH, SHUTDOWN, (P)SUBSCRIBE, PUBLISH and SENTINEL).
// AUTH and HELLO need no rule: Redis lets every connection authenticate.

/// Clients (app, backup, prune, exporter, declared users): find the primary and the replicas
/// the way Sentinel-aware libraries do (abstore: GET-MASTER-ADDR-BY-NAME and REPLICAS; others
/// also MASTER(S), SLAVES, SENTINELS and a `+switch-master` subscription). Nothing that changes
/// what a sentinel monitors, how, or who it votes for.
const SENTINEL_CLIENT_COMMANDS: &[&str] = &[
    "+ping",
    "+client|setname",
    "+client|getname",
    "+sentinel|get-master-addr-by-name",
    "+sentinel|master",
    "+sentinel|masters",
    "+sentinel|replicas",
    "+sentinel|slaves",
    "+sentinel|sentinels",
    "+subscribe",
    "+unsubscribe",
];
/// The sentinel role on the other sentinels (`sentinel-user`), per Sentinel's source: its
/// command link sends AUTH, CLIENT SETNAME, PING, PUBLISH of hello messages and, during a
/// failover, SENTINEL IS-MASTER-DOWN-BY-ADDR (the vote). Plus the sentinel pods' scripts: the
/// probes' PING and the start script's question for the primary.
const SENTINEL_PEER_COMMANDS: &[&str] = &[
    "+ping",
    "+client|setname",
    "+publish",
    "+sentinel|is-master-down-by-addr",
    "+sentinel|get-master-addr-by-name",
];
/// The Redis pods' scripts ([`REDIS_POD_SENTINEL_ROLE`]): start-redis.sh asks for the primary,
/// the preStop hook asks for a failover away from the primary that is stopping.
const SENTINEL_REDIS_POD_COMMANDS: &[&str] = &[
    "+ping",
    "+sentinel|get-master-addr-by-name",
    "+sentinel|failover",
];

/// Every user of the store as the sentinels want it (their `aclfile`, and heal's live `ACL
/// SETUSER` on sentinels): the same users and passwords as [`acl_users`], the operator admin
/// (it heals the sentinels: MONITOR, REMOVE, RESET, SET, FAILOVER, and follows
/// `+switch-master`), every other user only what its job needs of a sentinel.
pub fn sentinel_acl_users(model: &Model, credentials: &Credentials) -> Vec<AclUser> {
    let rules = |channel: Option<&str>, commands: &[&str]| -> Vec<String> {
        channel
            .map(|c| format!("&{c}"))
            .into_iter()
            .chain(std::iter::once("-@all".to_owned()))
            .chain(commands.iter().map(|c| (*c).to_owned()))
            .collect()
    };
    let client = rules(Some(SWITCH_MASTER_CHANNEL), SENTINEL_CLIENT_COMMANDS);
    let role_rules = |role: Role| match role {
        Role::App | Role::Api | Role::Backup | Role::Prune | Role::Exporter => client.clone(),
        Role::Replication => rules(None, SENTINEL_REDIS_POD_COMMANDS),
        Role::Sentinel => rules(Some(SENTINEL_HELLO_CHANNEL), SENTINEL_PEER_COMMANDS),
        Role::Operator => vec!["~*".to_owned(), "&*".to_owned(), "+@all".to_owned()],
    };
    Role::ALL
        .into_iter()
        .map(|role| (role.username().to_owned(), role_rules(role)))
        .chain(
            model
                .spec
                .auth
                .users
                .iter()
                .map(|user| (user.name.clone(), client.clone())),
        )
        .map(|(name, rules)| AclUser {
            hashes: credentials.accepted_hashes(&name),
            name,
            rules,
        })
        .collect()
}

/// The sentinels' ACL file for the ACL Secret: `default` off, then [`sentinel_acl_users`].
/// Passwords only as `#<sha256 hex>`.
pub fn sentinel_acl_file(model: &Model, credentials: &Credentials) -> String {
    let mut out = String::new();
    line!(out, "user {}", DEFAULT_USER_RULES.join(" "));
    for user in sentinel_acl_users(model, credentials) {
        line!(out, "{}", user.line());
    }
    out
}

/// One ACL user as the operator wants it on every data node.
#[derive(Clone, PartialEq, Eq)]
pub struct AclUser {
    pub name: String,
    /// SHA-256 of the passwords it may log in with (two during a rotation).
    pub hashes: Vec<String>,
    /// Key patterns, channels and command rules, in order, after `resetkeys resetchannels`.
    pub rules: Vec<String>,
}

impl std::fmt::Debug for AclUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AclUser")
            .field("name", &self.name)
            .field("passwords", &self.hashes.len())
            .field("rules", &self.rules)
            .finish()
    }
}

impl AclUser {
    /// The arguments of `ACL SETUSER` that make the user exactly this, whatever it was before.
    pub fn setuser_args(&self) -> Vec<String> {
        let mut args = vec![self.name.clone(), "reset".to_owned(), "on".to_owned()];
        args.extend(self.hashes.iter().map(|hash| format!("#{hash}")));
        args.extend(["resetkeys".to_owned(), "resetchannels".to_owned()]);
        args.extend(self.rules.iter().cloned());
        args
    }

    /// The ACL file line: the same rules as [`AclUser::setuser_args`], so a node that loaded
    /// the file and one healed live list the user identically (`reset` also sets
    /// `sanitize-payload`; without it in the file, every node would look changed once).
    fn line(&self) -> String {
        format!("user {}", self.setuser_args().join(" "))
    }
}

/// The rules of the sentinels' `default` user: off, no password, nothing allowed.
pub const DEFAULT_USER_RULES: [&str; 6] = [
    "default",
    "off",
    "resetpass",
    "resetkeys",
    "resetchannels",
    "-@all",
];

/// Every user of the store: the built-in roles, then the declared users.
pub fn acl_users(model: &Model, credentials: &Credentials) -> Vec<AclUser> {
    let split =
        |text: &str| -> Vec<String> { text.split_whitespace().map(str::to_owned).collect() };
    let mut users = Vec::new();
    for role in Role::ALL {
        let name = role.username();
        let (keys, channels, mut commands) = role_rules(role);
        if model.cluster().is_some() {
            let (removed, added) = cluster_commands(role);
            commands = commands
                .split_whitespace()
                .filter(|c| !removed.contains(c))
                .chain(added.iter().copied())
                .collect::<Vec<_>>()
                .join(" ");
        }
        let mut rules = split(&keys);
        rules.extend(split(&channels));
        rules.push("-@all".to_owned());
        rules.extend(split(&commands));
        users.push(AclUser {
            name: name.to_owned(),
            hashes: credentials.accepted_hashes(name),
            rules,
        });
    }
    for user in &model.spec.auth.users {
        let mut rules: Vec<String> = user.keys.iter().map(|k| format!("~{k}")).collect();
        rules.extend(user.channels.iter().map(|c| format!("&{c}")));
        rules.push("-@all".to_owned());
        rules.extend(split(&user.commands));
        users.push(AclUser {
            name: user.name.clone(),
            hashes: credentials.accepted_hashes(&user.name),
            rules,
        });
    }
    users
}

/// The rules of the data nodes' `default` user: off and without a password, so no connection
/// can ever be it — but allowed every command, key and channel, because it is whom Redis's AOF
/// loader replays a transaction as. `EXEC` checks the ACL of every queued command even while
/// the AOF loads (redis/redis#14541, Redis 7.0 and 7.2; valkey-io/valkey#3983): with a default
/// user allowed nothing, every `MULTI`/`EXEC` in the AOF — each script's writes (the event
/// dedup and counters), each restore batch — is dropped when a node restarts, silently, and a
/// primary restarted before its replica took over then makes the replica drop them too. Seen in
/// this project's cluster-mode e2e test (tests/tests/e2e_cluster_mode.rs); measured in
/// tests/tests/failures.rs.
pub const DATA_DEFAULT_USER_RULES: [&str; 8] = [
    "default",
    "off",
    "resetpass",
    "resetkeys",
    "resetchannels",
    "~*",
    "&*",
    "+@all",
];

/// The ACL file of the data nodes: `default` off (see [`DATA_DEFAULT_USER_RULES`]), then
/// [`acl_users`] (passwords as SHA-256).
pub fn acl_file(model: &Model, credentials: &Credentials) -> String {
    let mut out = String::new();
    line!(out, "user {}", DATA_DEFAULT_USER_RULES.join(" "));
    for user in acl_users(model, credentials) {
        line!(out, "{}", user.line());
    }
    out
}

/// ACL `~pattern`s for the given key kinds, with and without an environment prefix (the
/// experiment index is one key, `exps`, with nothing after its tag).
fn key_patterns(kinds: impl Iterator<Item = KeyKind>, access: &str) -> Vec<String> {
    kinds
        .flat_map(|kind| {
            let tag = kind.tag();
            if kind == KeyKind::ExperimentIndex {
                [format!("{access}~{tag}"), format!("{access}~*:{tag}")]
            } else {
                [format!("{access}~{tag}:*"), format!("{access}~*:{tag}:*")]
            }
        })
        .collect()
}

/// Key patterns, channel patterns and command rules of a built-in role.
fn role_rules(role: Role) -> (String, String, String) {
    let join = |lists: &[&[&str]]| lists.concat().join(" ");
    match role {
        Role::App => (
            key_patterns(KeyKind::ALL.into_iter(), "").join(" "),
            String::new(),
            join(&[APP_COMMANDS]),
        ),
        Role::Api => (
            key_patterns(KeyKind::ALL.into_iter(), "").join(" "),
            String::new(),
            join(&[API_COMMANDS]),
        ),
        Role::Backup => ("%R~*".to_owned(), String::new(), join(&[BACKUP_COMMANDS])),
        Role::Prune => (
            key_patterns(CounterKind::ALL.into_iter().map(CounterKind::key_kind), "").join(" "),
            String::new(),
            join(&[PRUNE_COMMANDS]),
        ),
        Role::Exporter => (String::new(), String::new(), join(&[EXPORTER_COMMANDS])),
        Role::Replication => (String::new(), String::new(), join(&[REPLICATION_COMMANDS])),
        Role::Sentinel => (
            String::new(),
            format!("&{SENTINEL_HELLO_CHANNEL}"),
            join(&[SENTINEL_COMMANDS]),
        ),
        Role::Operator => ("~*".to_owned(), "&*".to_owned(), "+@all".to_owned()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::crd::ABStore;
    use crate::validate::validate;

    fn model(spec: &str) -> Model {
        let indented: String = spec.lines().map(|l| format!("  {l}\n")).collect();
        let yaml = format!(
            "apiVersion: abstore.dev/v1alpha1\nkind: ABStore\nmetadata:\n  name: shop\n  namespace: ab\nspec:\n{indented}"
        );
        let store: ABStore = serde_yaml::from_str(&yaml).unwrap();
        validate(&store).unwrap()
    }

    fn directives(conf: &str) -> Vec<&str> {
        conf.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .collect()
    }

    #[test]
    fn cluster_mode_renders_the_cluster_directives_and_the_app_users_cluster_commands() {
        let store: ABStore = serde_yaml::from_str(
            "apiVersion: abstore.dev/v1alpha1\nkind: ABStore\nmetadata: {name: shop, namespace: ab}\nspec:\n  mode: cluster\n  cluster: {nodeTimeoutMilliseconds: 3000}\n",
        )
        .unwrap();
        let clustered =
            crate::validate::validate_on(&store, &crate::model::Platform::local()).unwrap();
        let conf = redis_conf(&clustered, &ConfigPaths::default());
        let lines = directives(&conf);
        for expected in [
            "cluster-enabled yes",
            "cluster-config-file nodes.conf",
            "cluster-node-timeout 3000",
            "cluster-require-full-coverage no",
            "cluster-allow-replica-migration no",
            "min-replicas-to-write 1",
        ] {
            assert!(lines.contains(&expected), "missing {expected:?} in\n{conf}");
        }
        let credentials =
            Credentials::resolve(&clustered, &BTreeMap::new(), &mut || "p".repeat(20));
        let app = |model: &Model| {
            acl_users(model, &credentials)
                .into_iter()
                .find(|u| u.name == "app")
                .unwrap()
                .rules
        };
        let rules = app(&clustered);
        assert!(rules.contains(&"+cluster|slots".to_owned()), "{rules:?}");
        assert!(rules.contains(&"+asking".to_owned()), "{rules:?}");
        // Sentinel mode: neither, and no cluster directive.
        let sentinel = model("{}");
        assert!(
            !app(&sentinel)
                .iter()
                .any(|r| r.contains("cluster") || r == "+asking")
        );
        assert!(!redis_conf(&sentinel, &ConfigPaths::default()).contains("cluster-"));
    }

    #[test]
    fn redis_conf_carries_persistence_durability_and_acl_settings() {
        // The defaults the issue promises: AOF everysec + RDB, noeviction, min-replicas 1.
        let conf = redis_conf(&model("{}"), &ConfigPaths::default());
        let lines = directives(&conf);
        for expected in [
            "port 6379",
            "appendonly yes",
            "appendfsync everysec",
            "save 3600 1 300 100 60 10000",
            "maxmemory-policy noeviction",
            "min-replicas-to-write 1",
            "min-replicas-max-lag 10",
            "aclfile \"/etc/abstore/acl/users.acl\"",
            "dir \"/data\"",
            "masteruser replication",
            "replica-read-only yes",
            "protected-mode no",
        ] {
            assert!(lines.contains(&expected), "missing {expected:?} in\n{conf}");
        }
        // The default maxmemory, written always (noeviction needs a bound to refuse writes).
        assert!(
            lines.contains(&format!("maxmemory {}", crate::memory::DEFAULT_MAXMEMORY).as_str()),
            "{conf}"
        );
        assert!(lines.contains(&"client-output-buffer-limit replica 64mb 16mb 60"));
    }

    #[test]
    fn a_single_pod_store_requires_no_replica_acknowledgements() {
        // With min-replicas-to-write 1 and no replica, every write would be refused.
        let conf = redis_conf(&model("redis: {replicas: 1}"), &ConfigPaths::default());
        assert!(directives(&conf).contains(&"min-replicas-to-write 0"));
    }

    #[test]
    fn tls_moves_redis_and_sentinel_to_tls_ports() {
        // A plaintext port left open would bypass TLS.
        let m = model("tls: {enabled: true, secretName: shop-tls}");
        let conf = redis_conf(&m, &ConfigPaths::default());
        let lines = directives(&conf);
        for expected in [
            "port 0",
            "tls-port 6379",
            "tls-replication yes",
            "tls-cert-file \"/etc/abstore/tls/tls.crt\"",
            "tls-ca-cert-file \"/etc/abstore/tls/ca.crt\"",
        ] {
            assert!(lines.contains(&expected), "missing {expected:?}");
        }
        let sentinel = sentinel_conf(&m, &ConfigPaths::default());
        assert!(directives(&sentinel).contains(&"tls-port 26379"));
        let files = config_files(&m, &ConfigPaths::default());
        assert!(files.get(SCRIPT_LIB).unwrap().contains("ABSTORE_TLS:=yes"));
    }

    #[test]
    fn persistence_can_be_switched_off_and_extra_directives_come_last() {
        // Extra directives are appended after the operator's, so what the user tuned is visible.
        let m = model(
            "persistence: {rdb: {enabled: false}, aof: {enabled: false}}\nredis: {maxmemory: 1Gi, config: {HZ: '50'}}",
        );
        let conf = redis_conf(&m, &ConfigPaths::default());
        let lines = directives(&conf);
        assert!(lines.contains(&"appendonly no"));
        assert!(lines.contains(&"save \"\""));
        assert!(lines.contains(&"maxmemory 1073741824"));
        assert_eq!(lines.last(), Some(&"hz 50"));
    }

    #[test]
    fn sentinel_files_use_hostnames_and_the_sentinel_user() {
        // Stable identity: pods are DNS names, never IPs.
        let m = model("sentinel: {downAfterMilliseconds: 3000}");
        let conf = sentinel_conf(&m, &ConfigPaths::default());
        assert!(conf.contains("sentinel resolve-hostnames yes\n"));
        assert!(conf.contains("sentinel announce-hostnames yes\n"));
        let monitor = sentinel_monitor_conf(&m);
        assert!(monitor.contains("sentinel down-after-milliseconds shop 3000\n"));
        assert!(monitor.contains("sentinel auth-user shop sentinel\n"));
        // Clients authenticate to the sentinels too, and the sentinels to each other.
        assert!(conf.contains("aclfile \"/etc/abstore/acl/sentinel-users.acl\"\n"));
        assert!(conf.contains("sentinel sentinel-user sentinel\n"));
    }

    #[test]
    fn the_sentinel_acl_file_gives_clients_lookups_and_only_the_operator_administration() {
        // Anyone who may change what the sentinels monitor may redirect every client.
        let m = model(
            "auth:\n  users:\n  - {name: reporting, keys: ['ec:*'], commands: '+@read +@write'}",
        );
        let creds = Credentials::resolve(&m, &BTreeMap::new(), &mut || "p".repeat(20));
        let acl = sentinel_acl_file(&m, &creds);
        let line = |user: &str| {
            acl.lines()
                .find(|l| l.starts_with(&format!("user {user} ")))
                .unwrap_or_else(|| panic!("no line for {user}"))
                .to_owned()
        };
        assert!(line("default").contains(" off "));
        for client in ["app", "backup", "prune", "exporter", "reporting"] {
            let rules = line(client);
            assert!(
                rules.contains("+sentinel|get-master-addr-by-name"),
                "{rules}"
            );
            assert!(rules.contains("+sentinel|replicas"), "{rules}");
            assert!(rules.contains("&+switch-master"), "{rules}");
            let granted: Vec<&str> = rules.split_whitespace().collect();
            for admin in [
                "+@all",
                "+sentinel",
                "+sentinel|failover",
                "+sentinel|monitor",
                "+sentinel|remove",
                "+sentinel|reset",
                "+sentinel|set",
                "+sentinel|config",
                "+sentinel|debug",
                "+sentinel|is-master-down-by-addr",
                "+publish",
                "+acl",
            ] {
                assert!(!granted.contains(&admin), "{client} may {admin}: {rules}");
            }
        }
        // A declared user's data rules do not apply to the sentinels.
        assert!(!line("reporting").contains("@write"));
        let peer = line("sentinel");
        assert!(peer.contains("+sentinel|is-master-down-by-addr") && peer.contains("+publish"));
        assert!(peer.contains("&__sentinel__:hello") && !peer.contains("failover"));
        let redis_pods = line(REDIS_POD_SENTINEL_ROLE.username());
        assert!(
            redis_pods
                .ends_with("-@all +ping +sentinel|get-master-addr-by-name +sentinel|failover")
        );
        assert!(line("operator").ends_with("~* &* +@all"));
        assert_eq!(acl.lines().count(), 1 + Role::ALL.len() + 1);
    }

    #[test]
    fn scripts_have_every_placeholder_filled_with_the_store_names() {
        // A placeholder left in a script would be a literal `@@NAME@@` host at 3 a.m.
        let files = config_files(&model("{}"), &ConfigPaths::default());
        for name in [
            SCRIPT_LIB,
            START_REDIS,
            START_SENTINEL,
            PRESTOP_REDIS,
            LIVENESS_REDIS,
            READINESS_REDIS,
            LIVENESS_SENTINEL,
            READINESS_SENTINEL,
        ] {
            let script = files.get(name).unwrap();
            assert!(!script.contains("@@"), "{name} has an unfilled placeholder");
        }
        let start = files.get(START_REDIS).unwrap();
        assert!(start.contains("shop-sentinel.ab.svc.cluster.local"));
        assert!(start.contains("ABSTORE_POD_DOMAIN:=shop-redis-headless.ab.svc.cluster.local}"));
        assert!(start.contains(
            "ABSTORE_BOOTSTRAP_HOST:=shop-redis-0.shop-redis-headless.ab.svc.cluster.local}"
        ));
    }

    #[test]
    fn config_files_hold_no_passwords() {
        // The ConfigMap is readable by anyone who can read the namespace's ConfigMaps.
        let m = model("{}");
        let creds = Credentials::resolve(&m, &BTreeMap::new(), &mut || {
            "super-secret-password-xyz".to_owned()
        });
        let files = config_files(&m, &ConfigPaths::default());
        assert!(
            files
                .files
                .values()
                .all(|f| !f.contains("super-secret-password-xyz"))
        );
        let digest = hex::encode(Sha256::digest(b"super-secret-password-xyz"));
        for acl in [acl_file(&m, &creds), sentinel_acl_file(&m, &creds)] {
            assert!(!acl.contains("super-secret-password-xyz"));
            assert!(acl.contains(&format!("#{digest}")));
        }
    }

    #[test]
    fn the_acl_file_turns_the_default_user_off_and_limits_each_role() {
        // Least privilege: a leaked app password must not be able to FLUSHALL or read configs.
        let m = model(
            "auth:\n  users:\n  - {name: reporting, keys: ['ec:*', 'uc:*'], channels: ['news'], commands: '+@read  +@hyperloglog'}",
        );
        let creds = Credentials::resolve(&m, &BTreeMap::new(), &mut || "p".repeat(20));
        let acl = acl_file(&m, &creds);
        let line = |user: &str| {
            acl.lines()
                .find(|l| l.starts_with(&format!("user {user} ")))
                .unwrap_or_else(|| panic!("no line for {user}"))
                .to_owned()
        };
        assert!(line("default").contains(" off "));
        let app = line("app");
        assert!(
            app.contains("~ec:* ~*:ec:*") && app.contains("+evalsha") && !app.contains("+@all")
        );
        assert!(!app.contains("flushall") && !app.contains("config"));
        assert!(line("backup").contains("%R~*"));
        assert!(line("prune").contains("~gu:*") && !line("prune").contains("~as:*"));
        assert!(line("sentinel").contains("&__sentinel__:hello"));
        // The preStop hook's pause and demotion go with the replication user, whose password
        // only the redis container holds; the exporter's is also in redis_exporter's sidecar.
        assert!(
            line(PRESTOP_ROLE.username())
                .ends_with("-@all +psync +replconf +client|pause +client|unpause +replicaof")
        );
        for write in ["client|pause", "replicaof", "slaveof", "config|set"] {
            assert!(!line("exporter").contains(write), "{}", line("exporter"));
        }
        assert!(line("operator").ends_with("~* &* -@all +@all"));
        assert!(line("reporting").ends_with("~ec:* ~uc:* &news -@all +@read +@hyperloglog"));
        assert_eq!(acl.lines().count(), 1 + Role::ALL.len() + 1);
    }

    #[test]
    fn the_config_hash_changes_with_the_config() {
        // Pods roll exactly when what they run changes.
        let a = config_files(&model("{}"), &ConfigPaths::default());
        let b = config_files(
            &model("redis: {config: {hz: '20'}}"),
            &ConfigPaths::default(),
        );
        assert_eq!(a.hash(), a.clone().hash());
        assert_ne!(a.hash(), b.hash());
    }
}
