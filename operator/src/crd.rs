//! The `ABStore` custom resource (`abstore.dev/v1alpha1`): what a platform team writes. Every
//! field's doc comment becomes its OpenAPI description, which is what `kubectl explain` shows.
//! Checks a structural schema can express (ranges, enums, patterns) live here; the rest is in
//! `validate`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of the custom resource.
pub const GROUP: &str = "abstore.dev";
/// API version of the custom resource.
pub const VERSION: &str = "v1alpha1";
/// Kind of the custom resource.
pub const KIND: &str = "ABStore";

/// Default Redis image for data pods and sentinels: the newest patch release of Redis 7.2, the
/// last BSD-licensed line, with the fixes for the Lua-engine CVEs that 7.2.5 lacked
/// (CVE-2024-31449, CVE-2024-46981, CVE-2025-49844, -46817, -46818, -46819). Pinned: a floating tag would
/// roll every store on the next pull. Supported versions: docs/operator.md, "Redis and Valkey
/// versions".
pub const DEFAULT_REDIS_IMAGE: &str = "docker.io/library/redis:7.2.16";
/// Default redis_exporter image for the metrics sidecar.
pub const DEFAULT_EXPORTER_IMAGE: &str = "docker.io/oliver006/redis_exporter:v1.62.0";
/// Default image of `abstore-jobs` for the backup and prune CronJobs: the same release as the
/// operator.
pub const DEFAULT_JOBS_IMAGE: &str =
    concat!("ghcr.io/abstore/abstore-jobs:", env!("CARGO_PKG_VERSION"));

/// Default image of `abstore-api` for the tracking API: the same release as the operator.
pub const DEFAULT_API_IMAGE: &str =
    concat!("ghcr.io/abstore/abstore-api:", env!("CARGO_PKG_VERSION"));

/// A Redis primary with replicas, watched by Sentinel, persisted to volumes, with ACL users,
/// optional TLS, metrics, and backup and prune CronJobs for A/B-testing data.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "abstore.dev",
    version = "v1alpha1",
    kind = "ABStore",
    doc = "An ABStore: Redis for A/B-testing data, with Sentinel, persistence, ACL users, backups and prune.",
    plural = "abstores",
    singular = "abstore",
    shortname = "abs",
    namespaced,
    status = "ABStoreStatus",
    printcolumn = r#"{"name":"Primary","type":"string","jsonPath":".status.primary","description":"Pod that Sentinel reports as the primary"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.ready","description":"Ready Redis pods / desired"}"#,
    printcolumn = r#"{"name":"Sentinels","type":"string","jsonPath":".status.sentinels","description":"Ready sentinels / desired"}"#,
    printcolumn = r#"{"name":"Shards","type":"string","jsonPath":".status.shards","description":"Cluster mode: shards whose primary answers / desired"}"#,
    printcolumn = r#"{"name":"Slots","type":"integer","jsonPath":".status.slotsCovered","description":"Cluster mode: hash slots (of 16384) a reachable primary serves"}"#,
    printcolumn = r#"{"name":"API","type":"string","jsonPath":".status.api","description":"Tracking API pods available / wanted"}"#,
    printcolumn = r#"{"name":"Last Backup","type":"date","jsonPath":".status.lastBackup","description":"When the last backup finished"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ABStoreSpec {
    /// `sentinel` (default): one primary with replicas, failed over by Sentinel. `cluster`: a
    /// Redis Cluster of `cluster.shards` primaries, each with `cluster.replicasPerShard`
    /// replicas, failed over by the cluster itself (applications connect with a
    /// `redis+cluster://` URL; docs/cluster.md). Neither can be changed on an existing store.
    #[serde(default, skip_serializing_if = "StoreMode::is_sentinel")]
    pub mode: StoreMode,
    /// The shards of a `mode: cluster` store. Only read in cluster mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterSpec>,
    /// The Redis data pods: a primary and its replicas in one StatefulSet.
    #[serde(default)]
    pub redis: RedisSpec,
    /// How Redis persists data to its volume: RDB snapshots and the append-only file.
    #[serde(default)]
    pub persistence: PersistenceSpec,
    /// How many replicas must acknowledge writes before the primary accepts more.
    #[serde(default)]
    pub durability: DurabilitySpec,
    /// The Sentinel processes that watch the primary and fail over when it is down.
    #[serde(default)]
    pub sentinel: SentinelSpec,
    /// ACL users. The built-in roles (app, api, backup, prune, exporter, replication, sentinel,
    /// operator) are always generated; `users` adds your own.
    #[serde(default)]
    pub auth: AuthSpec,
    /// TLS for clients, replication and Sentinel, from a cert-manager style Secret.
    #[serde(default)]
    pub tls: TlsSpec,
    /// Key-level backups (SCAN export) to S3, GCS or a volume, on a schedule.
    #[serde(default)]
    pub backup: BackupSpec,
    /// Deletion of day-keyed data older than the retention, on a schedule (a safety net for
    /// keys written without an expiry).
    #[serde(default)]
    pub retention: RetentionSpec,
    /// Image and resources of the backup and prune jobs.
    #[serde(default)]
    pub jobs: JobsSpec,
    /// The tracking API (`abstore-api`): a Lamed/Gimel-compatible HTTP endpoint that browser
    /// A/B clients call to track events, with reports and a results page behind an API key.
    #[serde(default)]
    pub api: ApiSpec,
    /// Metrics: the redis_exporter sidecar, and optional Prometheus Operator objects.
    #[serde(default)]
    pub monitoring: MonitoringSpec,
    /// A NetworkPolicy that lets only the listed clients, the sentinels, the exporter's
    /// scrapers and the jobs reach Redis.
    #[serde(default)]
    pub network_policy: NetworkPolicySpec,
    /// PodDisruptionBudgets for the Redis and Sentinel pods.
    #[serde(default)]
    pub pod_disruption_budget: PodDisruptionBudgetSpec,
    /// Affinity for Redis and Sentinel pods. When unset, pods of one store prefer different
    /// nodes (soft anti-affinity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Topology spread constraints for Redis and Sentinel pods. When unset, pods spread over
    /// zones where possible (`whenUnsatisfiable: ScheduleAnyway`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    /// Node labels the Redis and Sentinel pods must be scheduled on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Tolerations for the Redis and Sentinel pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// PriorityClass of the Redis and Sentinel pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,
}

/// How a store is laid out.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum StoreMode {
    /// One primary with replicas, watched by Sentinel.
    #[default]
    Sentinel,
    /// A Redis Cluster: the keyspace split over shards.
    Cluster,
}

impl StoreMode {
    pub fn is_sentinel(&self) -> bool {
        *self == StoreMode::Sentinel
    }
}

/// The shards of a cluster-mode store.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// Primaries the 16384 hash slots are split over. The cluster fails a primary over only
    /// when a majority of primaries agree: with fewer than 3 shards a lost primary is not
    /// replaced automatically.
    #[serde(default = "default_shards")]
    #[schemars(range(min = 1, max = 64))]
    pub shards: i32,
    /// Replicas of each shard's primary.
    #[serde(default = "default_replicas_per_shard")]
    #[schemars(range(min = 0, max = 5))]
    pub replicas_per_shard: i32,
    /// `cluster-node-timeout`: how long a node must be unreachable before its peers count it
    /// as failing (and a replica takes over its slots).
    #[serde(default = "default_node_timeout")]
    #[schemars(range(min = 500, max = 120000))]
    pub node_timeout_milliseconds: i32,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            shards: default_shards(),
            replicas_per_shard: default_replicas_per_shard(),
            node_timeout_milliseconds: default_node_timeout(),
        }
    }
}

fn default_shards() -> i32 {
    3
}
fn default_replicas_per_shard() -> i32 {
    1
}
fn default_node_timeout() -> i32 {
    5000
}

/// The Redis data pods.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RedisSpec {
    /// Container image of redis-server (Redis 7.0 or newer).
    #[serde(default = "default_redis_image")]
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// Number of Redis pods: one primary plus `replicas - 1` replicas. 3 survives one pod
    /// failure without losing acknowledged writes when `minReplicasToWrite` is 1.
    #[serde(default = "default_redis_replicas")]
    #[schemars(range(min = 1, max = 9))]
    pub replicas: i32,
    /// CPU and memory requests and limits of the redis container. When unset: 100m CPU and the
    /// memory `maxmemory` needs (maxmemory × 2.4 for fragmentation and a fork that copies every
    /// page, + 256Mi), limit equal to the request. A memory limit below that
    /// is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The PersistentVolumeClaim of every Redis pod. Always created: a primary that restarts
    /// empty would wipe its replicas.
    #[serde(default)]
    pub storage: StorageSpec,
    /// `maxmemory` as a Kubernetes quantity (for example `2Gi`). Unset: the largest that fits
    /// the given memory limit, or 256Mi without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"))]
    pub maxmemory: Option<String>,
    /// What Redis does when `maxmemory` is reached. `noeviction` (the default) refuses writes
    /// instead of silently dropping counters.
    #[serde(default)]
    pub maxmemory_policy: MaxmemoryPolicy,
    /// Extra redis.conf directives (name to value). Directives the operator owns (`port`,
    /// `dir`, `replicaof`, `aclfile`, `tls-*`, persistence and durability settings, …) are
    /// refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
}

impl Default for RedisSpec {
    fn default() -> Self {
        RedisSpec {
            image: default_redis_image(),
            replicas: default_redis_replicas(),
            resources: None,
            storage: StorageSpec::default(),
            maxmemory: None,
            maxmemory_policy: MaxmemoryPolicy::default(),
            config: BTreeMap::new(),
        }
    }
}

/// A PersistentVolumeClaim template.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Requested size of each Redis pod's volume. Leave room for the RDB snapshot and AOF
    /// rewrite: about 2.5× the dataset.
    #[serde(default = "default_storage_size")]
    pub size: Quantity,
    /// StorageClass of the volumes; unset uses the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

/// Redis `maxmemory-policy`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum MaxmemoryPolicy {
    /// Refuse writes when memory is full (counters are never evicted).
    #[default]
    #[serde(rename = "noeviction")]
    Noeviction,
    #[serde(rename = "allkeys-lru")]
    AllkeysLru,
    #[serde(rename = "allkeys-lfu")]
    AllkeysLfu,
    #[serde(rename = "allkeys-random")]
    AllkeysRandom,
    #[serde(rename = "volatile-lru")]
    VolatileLru,
    #[serde(rename = "volatile-lfu")]
    VolatileLfu,
    #[serde(rename = "volatile-random")]
    VolatileRandom,
    #[serde(rename = "volatile-ttl")]
    VolatileTtl,
}

impl MaxmemoryPolicy {
    /// The value as redis.conf spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            MaxmemoryPolicy::Noeviction => "noeviction",
            MaxmemoryPolicy::AllkeysLru => "allkeys-lru",
            MaxmemoryPolicy::AllkeysLfu => "allkeys-lfu",
            MaxmemoryPolicy::AllkeysRandom => "allkeys-random",
            MaxmemoryPolicy::VolatileLru => "volatile-lru",
            MaxmemoryPolicy::VolatileLfu => "volatile-lfu",
            MaxmemoryPolicy::VolatileRandom => "volatile-random",
            MaxmemoryPolicy::VolatileTtl => "volatile-ttl",
        }
    }
}

/// Persistence to each Redis pod's volume.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PersistenceSpec {
    /// RDB snapshots.
    #[serde(default)]
    pub rdb: RdbSpec,
    /// The append-only file.
    #[serde(default)]
    pub aof: AofSpec,
}

/// RDB snapshots (`save` points).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RdbSpec {
    /// Write RDB snapshots.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Save points, each `"<seconds> <changes>"`: snapshot when at least `changes` writes
    /// happened within `seconds`.
    #[serde(default = "default_save_points")]
    pub save: Vec<SavePoint>,
}

/// A save point: `"<seconds> <changes>"`, for example `"300 100"`.
pub type SavePoint = String;

impl Default for RdbSpec {
    fn default() -> Self {
        RdbSpec {
            enabled: true,
            save: default_save_points(),
        }
    }
}

/// The append-only file.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AofSpec {
    /// Write the append-only file.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// `appendfsync`: `everysec` loses at most about a second of writes on a crash.
    #[serde(default)]
    pub fsync: AofFsync,
}

impl Default for AofSpec {
    fn default() -> Self {
        AofSpec {
            enabled: true,
            fsync: AofFsync::default(),
        }
    }
}

/// Redis `appendfsync`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AofFsync {
    /// fsync after every write: safest, slowest.
    Always,
    /// fsync once a second.
    #[default]
    Everysec,
    /// Let the kernel decide when to flush.
    No,
}

impl AofFsync {
    /// The value as redis.conf spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            AofFsync::Always => "always",
            AofFsync::Everysec => "everysec",
            AofFsync::No => "no",
        }
    }
}

/// Write durability across replicas.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DurabilitySpec {
    /// `min-replicas-to-write`: the primary refuses writes unless this many replicas are
    /// connected and lag at most `minReplicasMaxLagSeconds`. Lowered automatically to the
    /// number of replicas that exist (0 for a single pod).
    #[serde(default = "default_min_replicas_to_write")]
    #[schemars(range(min = 0, max = 8))]
    pub min_replicas_to_write: i32,
    /// `min-replicas-max-lag` in seconds.
    #[serde(default = "default_min_replicas_max_lag")]
    #[schemars(range(min = 1, max = 3600))]
    pub min_replicas_max_lag_seconds: i32,
}

impl Default for DurabilitySpec {
    fn default() -> Self {
        DurabilitySpec {
            min_replicas_to_write: default_min_replicas_to_write(),
            min_replicas_max_lag_seconds: default_min_replicas_max_lag(),
        }
    }
}

/// The Sentinel StatefulSet.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SentinelSpec {
    /// Number of sentinels. Use an odd number, on different nodes.
    #[serde(default = "default_sentinel_replicas")]
    #[schemars(range(min = 1, max = 9))]
    pub replicas: i32,
    /// Sentinels that must agree the primary is down before a failover; at most `replicas`.
    #[serde(default = "default_quorum")]
    #[schemars(range(min = 1, max = 9))]
    pub quorum: i32,
    /// `down-after-milliseconds`: how long the primary must be unreachable to count as down.
    #[serde(default = "default_down_after")]
    #[schemars(range(min = 100, max = 600000))]
    pub down_after_milliseconds: i32,
    /// `failover-timeout` in milliseconds.
    #[serde(default = "default_failover_timeout")]
    #[schemars(range(min = 1000, max = 3600000))]
    pub failover_timeout_milliseconds: i32,
    /// `parallel-syncs`: replicas that resynchronise with a new primary at the same time.
    #[serde(default = "default_parallel_syncs")]
    #[schemars(range(min = 1, max = 8))]
    pub parallel_syncs: i32,
    /// Container image of redis-sentinel; defaults to `redis.image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// CPU and memory of the sentinel container. When unset: 50m CPU and 64Mi memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl Default for SentinelSpec {
    fn default() -> Self {
        SentinelSpec {
            replicas: default_sentinel_replicas(),
            quorum: default_quorum(),
            down_after_milliseconds: default_down_after(),
            failover_timeout_milliseconds: default_failover_timeout(),
            parallel_syncs: default_parallel_syncs(),
            image: None,
            resources: None,
        }
    }
}

/// ACL users beyond the built-in roles, and how password rotations roll over.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Extra users. Each gets a generated password in the Secret `<name>-user-<user>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<UserSpec>,
    /// Seconds the previous password of a user keeps working after its Secret's `password`
    /// changes (a rotation): long enough for the kubelet to update mounted Secrets (about a
    /// minute) and for clients to reconnect with the new one. 0 stops the old one at once.
    #[serde(default = "default_rotation_grace_seconds")]
    #[schemars(range(min = 0, max = 604800))]
    pub rotation_grace_seconds: i64,
}

impl Default for AuthSpec {
    fn default() -> Self {
        AuthSpec {
            users: Vec::new(),
            rotation_grace_seconds: default_rotation_grace_seconds(),
        }
    }
}

fn default_rotation_grace_seconds() -> i64 {
    900
}

/// An ACL user.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UserSpec {
    /// User name: lowercase letters, digits and `-`, not one of the built-in role names.
    #[schemars(regex(pattern = r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$"))]
    pub name: String,
    /// Key patterns the user may access, ACL glob style (`ec:*`, `prod:uc:*`).
    #[serde(default)]
    pub keys: Vec<String>,
    /// Pub/Sub channel patterns the user may use; none by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// Command rules, ACL style, for example `+@read +@hyperloglog -keys`.
    #[schemars(length(min = 1, max = 4096))]
    pub commands: String,
}

/// TLS settings.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// Serve TLS only (clients, replication, Sentinel). Needs `secretName`.
    #[serde(default)]
    pub enabled: bool,
    /// Secret with `tls.crt`, `tls.key` and `ca.crt` (cert-manager's layout) whose certificate
    /// covers the pod and service DNS names of this store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,
}

/// Backup CronJob settings.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// Run backups on `schedule`. Backups need a `destination`; `enabled: false` keeps the
    /// CronJob but suspends it.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Cron schedule (5 fields, UTC) or a macro (`@hourly`, `@daily`, …). Twice a day by default.
    #[serde(default = "default_backup_schedule")]
    #[schemars(
        length(min = 1, max = 128),
        regex(
            pattern = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|\S+( +\S+){4})$"
        )
    )]
    pub schedule: String,
    /// Where backups go: `s3://bucket/prefix`, `gs://bucket/prefix` or `file:///path`.
    /// Without it no backup CronJob is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(s3|gs|file)://.+"))]
    pub destination: Option<String>,
    /// ServiceAccount of the backup pods, for IRSA / EKS Pod Identity / GKE Workload Identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: Option<String>,
    /// Secret whose keys become environment variables of the backup pods (for example
    /// `AWS_ACCESS_KEY_ID`), when workload identity is not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret_name: Option<String>,
    /// Extra environment of the backup pods (for example `AWS_REGION`, `AWS_ENDPOINT_URL`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Key patterns to back up (glob); all keys when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_patterns: Vec<String>,
    /// Read from a replica rather than the primary.
    #[serde(default = "default_true")]
    pub from_replica: bool,
    /// Seconds a backup may run before Kubernetes stops it.
    #[serde(default = "default_backup_deadline")]
    #[schemars(range(min = 60, max = 86400))]
    pub active_deadline_seconds: i64,
}

impl Default for BackupSpec {
    fn default() -> Self {
        BackupSpec {
            enabled: true,
            schedule: default_backup_schedule(),
            destination: None,
            service_account_name: None,
            credentials_secret_name: None,
            env: Vec::new(),
            key_patterns: Vec::new(),
            from_replica: true,
            active_deadline_seconds: default_backup_deadline(),
        }
    }
}

/// Prune CronJob settings.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RetentionSpec {
    /// Delete day-keyed data older than `days` on `schedule`.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Cron schedule (5 fields, UTC) or a macro (`@hourly`, `@daily`, …).
    #[serde(default = "default_prune_schedule")]
    #[schemars(
        length(min = 1, max = 128),
        regex(
            pattern = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|\S+( +\S+){4})$"
        )
    )]
    pub schedule: String,
    /// Days of data to keep.
    #[serde(default = "default_retention_days")]
    #[schemars(range(min = 1, max = 3650))]
    pub days: i32,
    /// Seconds a prune may run before Kubernetes stops it.
    #[serde(default = "default_prune_deadline")]
    #[schemars(range(min = 60, max = 86400))]
    pub active_deadline_seconds: i64,
}

impl Default for RetentionSpec {
    fn default() -> Self {
        RetentionSpec {
            enabled: true,
            schedule: default_prune_schedule(),
            days: default_retention_days(),
            active_deadline_seconds: default_prune_deadline(),
        }
    }
}

/// The `abstore-jobs` container used by the backup and prune CronJobs.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobsSpec {
    /// Container image of `abstore-jobs`.
    #[serde(default = "default_jobs_image")]
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// CPU and memory of job pods. When unset: 100m CPU, 128Mi memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl Default for JobsSpec {
    fn default() -> Self {
        JobsSpec {
            image: default_jobs_image(),
            resources: None,
        }
    }
}

/// The tracking API: a Deployment of `abstore-api` behind the `<name>-api` Service, logging in
/// to Redis as the built-in `api` user.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiSpec {
    /// Run the API.
    #[serde(default)]
    pub enabled: bool,
    /// Pods of the Deployment (the HorizontalPodAutoscaler's minimum when `autoscaling` is on).
    #[serde(default = "default_api_replicas")]
    #[schemars(range(min = 1, max = 100))]
    pub replicas: i32,
    /// Container image of `abstore-api`.
    #[serde(default = "default_api_image")]
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// CPU and memory of each API pod. When unset: 100m CPU, 64Mi memory requested, 256Mi
    /// memory limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The Secret (in the store's namespace) holding the API key that reports, delete and the
    /// results page require (`x-api-key`). Required when the API is enabled; a change of the
    /// key restarts the API pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret: Option<SecretKeyRef>,
    /// Browser origins allowed to call `track` cross-origin (CORS), like
    /// `https://shop.example`. None: no cross-origin calls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    /// `track` requests per second per client address (bursts of twice that). Behind an
    /// Ingress every browser has the Ingress controller's address: size it for all of them.
    #[serde(default = "default_api_rate_limit")]
    #[schemars(range(min = 1, max = 1000000))]
    pub rate_limit: u32,
    /// Replicas that must have each event before `track` answers 200 (`WAIT`); otherwise it
    /// answers 503 and the client resends. When unset: 1 if the store has replicas, else 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 16))]
    pub wait_replicas: Option<u32>,
    /// Who may connect to the API (NetworkPolicy), besides pods in the store's namespace: the
    /// namespaces of your Ingress controller or Gateway and of the services that call it.
    /// Empty: only the store's namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_clients: Vec<NetworkPolicyPeer>,
    /// A HorizontalPodAutoscaler on CPU.
    #[serde(default)]
    pub autoscaling: ApiAutoscalingSpec,
}

impl Default for ApiSpec {
    fn default() -> Self {
        ApiSpec {
            enabled: false,
            replicas: default_api_replicas(),
            image: default_api_image(),
            resources: None,
            api_key_secret: None,
            allowed_origins: Vec::new(),
            rate_limit: default_api_rate_limit(),
            wait_replicas: None,
            allowed_clients: Vec::new(),
            autoscaling: ApiAutoscalingSpec::default(),
        }
    }
}

/// A key of a Secret in the store's namespace.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key in it.
    #[serde(default = "default_api_key_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// The API's HorizontalPodAutoscaler.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiAutoscalingSpec {
    /// Create it (between `api.replicas` and `maxReplicas` pods).
    #[serde(default)]
    pub enabled: bool,
    /// The most pods.
    #[serde(default = "default_api_max_replicas")]
    #[schemars(range(min = 1, max = 100))]
    pub max_replicas: i32,
    /// Average CPU use, as a percentage of the pods' CPU request, that the autoscaler keeps.
    #[serde(
        default = "default_api_target_cpu",
        rename = "targetCPUUtilizationPercentage"
    )]
    #[schemars(range(min = 10, max = 100))]
    pub target_cpu_utilization_percentage: i32,
}

impl Default for ApiAutoscalingSpec {
    fn default() -> Self {
        ApiAutoscalingSpec {
            enabled: false,
            max_replicas: default_api_max_replicas(),
            target_cpu_utilization_percentage: default_api_target_cpu(),
        }
    }
}

/// Metrics.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// The redis_exporter sidecar in every Redis pod.
    #[serde(default)]
    pub exporter: ExporterSpec,
    /// A Prometheus Operator ServiceMonitor for the exporter.
    #[serde(default)]
    pub service_monitor: ServiceMonitorSpec,
    /// A Prometheus Operator PrometheusRule with ABStore's alerts.
    #[serde(default)]
    pub prometheus_rule: PrometheusRuleSpec,
}

/// The redis_exporter sidecar.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExporterSpec {
    /// Run the sidecar.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Container image of redis_exporter.
    #[serde(default = "default_exporter_image")]
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// CPU and memory of the sidecar. When unset: 10m CPU, 32Mi memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl Default for ExporterSpec {
    fn default() -> Self {
        ExporterSpec {
            enabled: true,
            image: default_exporter_image(),
            resources: None,
        }
    }
}

/// ServiceMonitor settings.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    /// Create a ServiceMonitor (needs the Prometheus Operator's CRDs).
    #[serde(default)]
    pub enabled: bool,
    /// Scrape interval.
    #[serde(default = "default_scrape_interval")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub interval: String,
    /// Extra labels, so that your Prometheus selects the object.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Default for ServiceMonitorSpec {
    fn default() -> Self {
        ServiceMonitorSpec {
            enabled: false,
            interval: default_scrape_interval(),
            labels: BTreeMap::new(),
        }
    }
}

/// PrometheusRule settings.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusRuleSpec {
    /// Create a PrometheusRule (needs the Prometheus Operator's CRDs).
    #[serde(default)]
    pub enabled: bool,
    /// Extra labels, so that your Prometheus selects the object.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Where the alerts' thresholds lie.
    #[serde(default)]
    pub thresholds: AlertThresholds,
    /// Base of each alert's `runbook_url` (the alert's name, lowercased, is appended as the
    /// anchor). Point it at your own copy of docs/operations.md if you keep one.
    #[serde(default = "default_runbook_base_url")]
    #[schemars(length(min = 1, max = 512))]
    pub runbook_base_url: String,
}

impl Default for PrometheusRuleSpec {
    fn default() -> Self {
        PrometheusRuleSpec {
            enabled: false,
            labels: BTreeMap::new(),
            thresholds: AlertThresholds::default(),
            runbook_base_url: default_runbook_base_url(),
        }
    }
}

/// Thresholds of the alerts that have one.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlertThresholds {
    /// ABStoreMemoryNearLimit: used memory above this percentage of `maxmemory` (with
    /// `noeviction` a full store refuses writes).
    #[serde(default = "default_memory_used_percent")]
    #[schemars(range(min = 1, max = 100))]
    pub memory_used_percent: u32,
    /// ABStoreCommandLatencyHigh: a command's average latency over 5 minutes above this.
    #[serde(default = "default_command_latency_milliseconds")]
    #[schemars(range(min = 1, max = 60000))]
    pub command_latency_milliseconds: u32,
    /// ABStoreReplicationLag: a replica's last acknowledgement older than this.
    #[serde(default = "default_replication_lag_seconds")]
    #[schemars(range(min = 1, max = 86400))]
    pub replication_lag_seconds: u32,
    /// ABStoreBackupTooOld: no successful backup for this long (backups run twice a day).
    #[serde(default = "default_backup_max_age_hours")]
    #[schemars(range(min = 1, max = 8760))]
    pub backup_max_age_hours: u32,
    /// ABStorePruneTooOld: no successful prune for this long (prune runs daily).
    #[serde(default = "default_prune_max_age_hours")]
    #[schemars(range(min = 1, max = 8760))]
    pub prune_max_age_hours: u32,
    /// ABStoreVolumeFilling: a Redis data volume more than this percentage full (kubelet's
    /// volume metrics). The AOF rewrite needs room for a second copy of the data.
    #[serde(default = "default_volume_used_percent")]
    #[schemars(range(min = 1, max = 100))]
    pub volume_used_percent: u32,
}

impl Default for AlertThresholds {
    fn default() -> Self {
        AlertThresholds {
            memory_used_percent: default_memory_used_percent(),
            command_latency_milliseconds: default_command_latency_milliseconds(),
            replication_lag_seconds: default_replication_lag_seconds(),
            backup_max_age_hours: default_backup_max_age_hours(),
            prune_max_age_hours: default_prune_max_age_hours(),
            volume_used_percent: default_volume_used_percent(),
        }
    }
}

/// NetworkPolicy settings.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Create the NetworkPolicy.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Who may connect to Redis and Sentinel as a client, besides pods in this namespace
    /// labelled `abstore.dev/client: <store name>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_clients: Vec<NetworkPolicyPeer>,
    /// Who may scrape the exporter's metrics port; anyone in the cluster when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics_scrapers: Vec<NetworkPolicyPeer>,
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        NetworkPolicySpec {
            enabled: true,
            allowed_clients: Vec::new(),
            metrics_scrapers: Vec::new(),
        }
    }
}

/// PodDisruptionBudget settings.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodDisruptionBudgetSpec {
    /// Create PodDisruptionBudgets for Redis and Sentinel pods.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Pods of each StatefulSet that a voluntary disruption (a node drain) may take at once.
    #[serde(default = "default_max_unavailable")]
    #[schemars(range(min = 1, max = 8))]
    pub max_unavailable: i32,
}

impl Default for PodDisruptionBudgetSpec {
    fn default() -> Self {
        PodDisruptionBudgetSpec {
            enabled: true,
            max_unavailable: default_max_unavailable(),
        }
    }
}

/// What the operator observed; written by the operator only.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ABStoreStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// A one-word summary: Pending, Ready, Degraded or Invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Ready, Progressing, Degraded and InvalidSpec conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The pod Sentinel reports as the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// Ready Redis pods.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Desired Redis pods.
    #[serde(default)]
    pub replicas: i32,
    /// Ready sentinels.
    #[serde(default)]
    pub ready_sentinels: i32,
    /// `ready/desired` Redis pods, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// `ready/desired` sentinels, for `kubectl get` (Sentinel mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinels: Option<String>,
    /// Cluster mode: `serving/desired` shards, a shard serving when its primary answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<String>,
    /// Cluster mode: hash slots (of 16384) owned by a primary that answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots_covered: Option<i32>,
    /// The tracking API (`spec.api`): available pods / wanted, like `2/2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// The last time the primary changed: when the operator saw it, from which pod to which,
    /// and whether Sentinel failed over (`Failover`) or the operator switched over for a
    /// rollout or scale-down (`Switchover`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<LastFailover>,
    /// Each Redis pod's role and replication lag, as the operator's last heal pass saw them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<RedisPodStatus>,
    /// When the last successful backup finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<String>,
    /// When the last successful prune finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_prune: Option<String>,
}

/// A change of primary.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LastFailover {
    /// When the operator saw the new primary (RFC 3339).
    pub time: String,
    /// The pod that was primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The pod that is primary now.
    pub to: String,
    /// `Failover` (Sentinel replaced a primary it saw down) or `Switchover` (the operator
    /// moved the primary for a rollout or scale-down).
    pub reason: String,
}

/// One Redis pod as the operator's last heal pass saw it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RedisPodStatus {
    /// Pod name.
    pub name: String,
    /// `primary`, `replica`, `loading` or `unreachable`.
    pub role: String,
    /// Replicas: whether the replication link to the primary is up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_up: Option<bool>,
    /// Replicas: bytes of replication stream behind the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<u64>,
    /// The node's replication offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Why the pod could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Cluster mode: the shard the pod belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<i32>,
    /// Cluster mode, primaries: the hash slots it owns, as ranges (`0-5460`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<String>,
}

/// Summary of a store's state.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum Phase {
    /// Objects applied, pods not ready yet.
    Pending,
    /// Every Redis pod and sentinel is ready.
    Ready,
    /// Running with fewer ready pods than desired.
    Degraded,
    /// The spec was refused; see the InvalidSpec condition.
    Invalid,
}

fn default_true() -> bool {
    true
}
fn default_redis_image() -> String {
    DEFAULT_REDIS_IMAGE.to_owned()
}
fn default_redis_replicas() -> i32 {
    3
}
fn default_storage_size() -> Quantity {
    Quantity("8Gi".to_owned())
}
fn default_save_points() -> Vec<SavePoint> {
    ["3600 1", "300 100", "60 10000"]
        .into_iter()
        .map(str::to_owned)
        .collect()
}
fn default_min_replicas_to_write() -> i32 {
    1
}
fn default_min_replicas_max_lag() -> i32 {
    10
}
fn default_sentinel_replicas() -> i32 {
    3
}
fn default_quorum() -> i32 {
    2
}
fn default_down_after() -> i32 {
    5000
}
fn default_failover_timeout() -> i32 {
    10000
}
fn default_parallel_syncs() -> i32 {
    1
}
fn default_backup_schedule() -> String {
    "0 */12 * * *".to_owned()
}
fn default_backup_deadline() -> i64 {
    3 * 3600
}
fn default_prune_schedule() -> String {
    "30 3 * * *".to_owned()
}
fn default_retention_days() -> i32 {
    31
}
fn default_prune_deadline() -> i64 {
    3600
}
fn default_api_image() -> String {
    DEFAULT_API_IMAGE.to_owned()
}
fn default_api_replicas() -> i32 {
    2
}
fn default_api_rate_limit() -> u32 {
    200
}
fn default_api_key_key() -> String {
    "api-key".to_owned()
}
fn default_api_max_replicas() -> i32 {
    10
}
fn default_api_target_cpu() -> i32 {
    70
}
fn default_jobs_image() -> String {
    DEFAULT_JOBS_IMAGE.to_owned()
}
fn default_exporter_image() -> String {
    DEFAULT_EXPORTER_IMAGE.to_owned()
}
fn default_scrape_interval() -> String {
    "30s".to_owned()
}
fn default_runbook_base_url() -> String {
    "https://github.com/abstore/abstore/blob/main/docs/operations.md".to_owned()
}
fn default_memory_used_percent() -> u32 {
    90
}
fn default_command_latency_milliseconds() -> u32 {
    10
}
fn default_replication_lag_seconds() -> u32 {
    30
}
fn default_backup_max_age_hours() -> u32 {
    13
}
fn default_prune_max_age_hours() -> u32 {
    26
}
fn default_volume_used_percent() -> u32 {
    80
}
fn default_max_unavailable() -> i32 {
    1
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn an_empty_spec_gets_the_production_defaults() {
        // Every default the issue names, from a CR with `spec: {}`.
        let spec: ABStoreSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(spec.redis.replicas, 3);
        assert!(spec.persistence.rdb.enabled && spec.persistence.aof.enabled);
        assert_eq!(spec.persistence.aof.fsync, AofFsync::Everysec);
        assert_eq!(spec.redis.maxmemory_policy, MaxmemoryPolicy::Noeviction);
        assert_eq!((spec.sentinel.replicas, spec.sentinel.quorum), (3, 2));
        assert_eq!(spec.durability.min_replicas_to_write, 1);
        assert_eq!(spec.backup.schedule, "0 */12 * * *");
        assert_eq!(spec.retention.days, 31);
        assert_eq!(spec, ABStoreSpec::default());
    }

    #[test]
    fn the_crd_has_names_columns_and_status_subresource() {
        let crd = ABStore::crd();
        assert_eq!(crd.spec.group, GROUP);
        assert_eq!(crd.spec.names.short_names, Some(vec!["abs".to_owned()]));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, VERSION);
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            columns,
            [
                "Primary",
                "Ready",
                "Sentinels",
                "Shards",
                "Slots",
                "API",
                "Last Backup",
                "Age"
            ]
        );
    }
}
