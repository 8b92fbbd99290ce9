//! The validated model: an `ABStore` that passed `validate`, with the names, labels and derived
//! values every later step uses. `build` and `config` take this, never the raw resource.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::crd::{ABStoreSpec, ClusterSpec, StoreMode};

/// Label every object the operator makes carries: the store's name. Together with
/// `MANAGED_BY_LABEL` it selects the children to keep or delete.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/name` of every child.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/component`: `redis`, `sentinel`, `backup`, `prune`, `config`, `credentials`.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// `app.kubernetes.io/managed-by`.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of `NAME_LABEL`.
pub const APP_NAME: &str = "abstore";
/// Value of `MANAGED_BY_LABEL`, and the server-side apply field manager.
pub const MANAGER: &str = "abstore-operator";
/// Label the operator sets to `true` on the pod Sentinel reports as primary (and `false` on
/// the others); the `<n>-primary` Service selects it.
pub const ROLE_LABEL: &str = "abstore.dev/role";
/// Value of `ROLE_LABEL` on the primary.
pub const ROLE_PRIMARY: &str = "primary";
/// Value of `ROLE_LABEL` on replicas.
pub const ROLE_REPLICA: &str = "replica";
/// Label clients carry to be let through the NetworkPolicy (value: the store's name).
pub const CLIENT_LABEL: &str = "abstore.dev/client";
/// Pod-template annotation with the hash of the rendered configuration: a change rolls pods.
pub const CONFIG_HASH_ANNOTATION: &str = "abstore.dev/config-hash";

/// Redis port (plaintext, or TLS when TLS is enabled).
pub const REDIS_PORT: u16 = 6379;
/// The cluster bus port of a cluster-mode pod (Redis's default: the data port + 10 000).
pub const CLUSTER_BUS_PORT: u16 = REDIS_PORT + 10_000;
/// Sentinel port.
pub const SENTINEL_PORT: u16 = 26379;
/// redis_exporter's metrics port.
pub const EXPORTER_PORT: u16 = 9121;

/// Component names (values of `COMPONENT_LABEL`, and suffixes of object names).
pub const REDIS: &str = "redis";
pub const SENTINEL: &str = "sentinel";

/// The cluster's DNS domain unless told otherwise (kubelet's `--cluster-domain`).
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
/// The namespace the README and the chart install the operator in; what `render` assumes
/// unless told otherwise.
pub const DEFAULT_OPERATOR_NAMESPACE: &str = "abstore-system";

/// Where the stores run: what the operator knows of its cluster (its flags), not of a store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    /// Kubernetes (the operator, `render`) or processes on this machine (`local up`).
    pub runtime: Runtime,
    /// The cluster's DNS domain: pod and Service names are `….svc.<cluster_domain>`.
    pub cluster_domain: String,
    /// The operator's namespace: the stores' NetworkPolicies admit the operator's pods from
    /// this namespace only (a pod label alone can be set by anyone who can create a pod).
    pub operator_namespace: String,
    /// What stores may make the operator run (editing an ABStore is as powerful as creating
    /// pods in its namespace).
    pub policy: StorePolicy,
}

/// Image prefixes and backup ServiceAccounts a store may name; [`ANY`] allows every one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorePolicy {
    pub allowed_images: Vec<String>,
    pub allowed_service_accounts: Vec<String>,
}

/// The entry of a [`StorePolicy`] list that allows anything.
pub const ANY: &str = "*";

impl Default for StorePolicy {
    fn default() -> Self {
        StorePolicy {
            allowed_images: vec![ANY.to_owned()],
            allowed_service_accounts: vec![ANY.to_owned()],
        }
    }
}

impl StorePolicy {
    /// Whether `image` starts with an allowed prefix.
    pub fn allows_image(&self, image: &str) -> bool {
        self.allowed_images
            .iter()
            .any(|prefix| prefix == ANY || image.starts_with(prefix.as_str()))
    }

    /// Whether backup Jobs may run as `account`.
    pub fn allows_service_account(&self, account: &str) -> bool {
        self.allowed_service_accounts
            .iter()
            .any(|allowed| allowed == ANY || allowed == account)
    }
}

/// See [`Platform::runtime`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    Kubernetes,
    Local,
}

impl Default for Platform {
    fn default() -> Self {
        Platform {
            runtime: Runtime::Kubernetes,
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_owned(),
            operator_namespace: DEFAULT_OPERATOR_NAMESPACE.to_owned(),
            policy: StorePolicy::default(),
        }
    }
}

/// A cluster domain or operator namespace that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlatformError {
    #[error(
        "--cluster-domain {0:?} is not a DNS domain (lowercase labels of letters, digits and '-', separated by dots, like cluster.local)"
    )]
    ClusterDomain(String),
    #[error("--operator-namespace {0:?} is not a namespace name (a DNS-1123 label)")]
    OperatorNamespace(String),
}

fn is_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

impl Platform {
    /// Stores in a Kubernetes cluster with this DNS domain (a trailing dot is dropped), run by an
    /// operator in `operator_namespace`.
    pub fn kubernetes(
        cluster_domain: &str,
        operator_namespace: &str,
        policy: StorePolicy,
    ) -> Result<Self, PlatformError> {
        let domain = cluster_domain.trim_end_matches('.');
        if domain.is_empty() || domain.len() > 200 || !domain.split('.').all(is_dns_label) {
            return Err(PlatformError::ClusterDomain(cluster_domain.to_owned()));
        }
        if !is_dns_label(operator_namespace) {
            return Err(PlatformError::OperatorNamespace(
                operator_namespace.to_owned(),
            ));
        }
        Ok(Platform {
            runtime: Runtime::Kubernetes,
            cluster_domain: domain.to_owned(),
            operator_namespace: operator_namespace.to_owned(),
            policy,
        })
    }

    /// `local up`: processes on this machine (no DNS, no NetworkPolicy).
    pub fn local() -> Self {
        Platform {
            runtime: Runtime::Local,
            ..Platform::default()
        }
    }
}

/// A store that passed validation.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// `metadata.name` of the ABStore.
    pub name: String,
    /// `metadata.namespace` of the ABStore.
    pub namespace: String,
    /// Owner reference to the ABStore (absent when rendering a CR that was never applied).
    pub owner: Option<OwnerReference>,
    /// The spec, defaults filled in and checked.
    pub spec: ABStoreSpec,
    /// `redis.maxmemory` in bytes, when set.
    pub maxmemory_bytes: Option<u64>,
    /// Where it runs.
    pub platform: Platform,
}

impl Model {
    /// `<store>-<suffix>`: the name of a child object.
    pub fn child_name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.name)
    }

    /// Labels of every child of this store.
    pub fn labels(&self, component: &str) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels(component);
        labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGER.to_owned());
        labels
    }

    /// The labels that select a component's pods (stable: never add to these, a StatefulSet's
    /// selector is immutable).
    pub fn selector_labels(&self, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (NAME_LABEL.to_owned(), APP_NAME.to_owned()),
            (INSTANCE_LABEL.to_owned(), self.name.clone()),
            (COMPONENT_LABEL.to_owned(), component.to_owned()),
        ])
    }

    /// Replicas of the primary (Redis pods minus one); in cluster mode, of each shard's primary.
    pub fn redis_replica_count(&self) -> i32 {
        match self.cluster() {
            Some(cluster) => cluster.replicas_per_shard.max(0),
            None => (self.spec.redis.replicas - 1).max(0),
        }
    }

    /// Redis pods the store runs: `spec.redis.replicas`, or in cluster mode every shard's
    /// primary and replicas (`shards × (1 + replicasPerShard)`, pod `i` in shard
    /// `i / (1 + replicasPerShard)`).
    pub fn redis_pods(&self) -> i32 {
        match self.cluster() {
            Some(cluster) => cluster.shards.max(1) * (1 + cluster.replicas_per_shard.max(0)),
            None => self.spec.redis.replicas,
        }
    }

    /// The shape of a `mode: cluster` store, defaults filled in; `None` in Sentinel mode.
    pub fn cluster(&self) -> Option<ClusterSpec> {
        (self.spec.mode == StoreMode::Cluster)
            .then(|| self.spec.cluster.clone().unwrap_or_default())
    }

    /// `min-replicas-to-write`, never more than the replicas that exist, so a scale-down
    /// cannot leave the primary refusing every write.
    pub fn min_replicas_to_write(&self) -> i32 {
        self.spec
            .durability
            .min_replicas_to_write
            .min(self.redis_replica_count())
    }

    /// Name Sentinel monitors the primary under (the store's name).
    pub fn master_name(&self) -> &str {
        &self.name
    }

    /// DNS name of the store's Service `<store>-<suffix>`: `<store>-<suffix>.<ns>.svc.<domain>`.
    /// Every DNS name of a store is built here (and by the two pod names below, from it).
    pub fn service_fqdn(&self, suffix: &str) -> String {
        format!(
            "{}.{}.svc.{}",
            self.child_name(suffix),
            self.namespace,
            self.platform.cluster_domain
        )
    }

    /// DNS name of Redis pod `ordinal` through the headless Service.
    pub fn redis_pod_fqdn(&self, ordinal: i32) -> String {
        format!(
            "{}-{ordinal}.{}",
            self.child_name(REDIS),
            self.service_fqdn("redis-headless")
        )
    }

    /// DNS name of sentinel pod `ordinal` through its headless Service.
    pub fn sentinel_pod_fqdn(&self, ordinal: i32) -> String {
        format!(
            "{}-{ordinal}.{}",
            self.child_name(SENTINEL),
            self.service_fqdn("sentinel-headless")
        )
    }
}
