//! build: from the validated model (and the store's credentials) to the typed Kubernetes
//! objects the controller applies. Pure: no client, no clock, no randomness.

mod api;
mod cronjobs;
mod meta;
mod monitoring;
mod pod;
mod policy;
mod redis;
mod secrets;
mod sentinel;
mod services;
mod statefulset;
mod volumes;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::DynamicObject;

use crate::config::{
    ACL_FILE_NAME, ConfigPaths, SENTINEL_ACL_FILE_NAME, acl_file, config_files, sentinel_acl_file,
};
use crate::credentials::{
    Credentials, PASSWORD_KEY, Role, USERNAME_KEY, acl_secret_name, credentials_secret_name,
};
use crate::model::{Model, REDIS_PORT, SENTINEL, SENTINEL_PORT};
use crate::rotation::{PasswordState, STATE_KEY};

pub use api::{
    API_BINARY, API_COMPONENT, API_CONTAINER_PORT, API_CREDENTIALS_ANNOTATION, API_KEY_DIR,
    API_KEY_FILE, API_PORT_NAME, API_SERVICE_PORT, api_redis_url,
    wait_replicas as api_wait_replicas,
};
pub use cronjobs::{
    BACKOFF_LIMIT, JOBS_BINARY, JOBS_CREDENTIALS_DIR, JOBS_HISTORY_LIMIT, JOBS_TLS_DIR,
    SCHEDULE_TIME_ZONE, STARTING_DEADLINE_SECONDS,
};
pub use monitoring::{
    MONITORING_GROUP, MONITORING_VERSION, PROMETHEUS_RULE_KIND, SERVICE_MONITOR_KIND,
};
pub use pod::{HOSTNAME_TOPOLOGY_KEY, JOBS_UID, REDIS_UID, ZONE_TOPOLOGY_KEY};
pub use redis::{EXPORTER_CONTAINER, REDIS_CONTAINER, SHUTDOWN_GRACE_SECONDS};
pub use sentinel::{SENTINEL_CONTAINER, SENTINEL_GRACE_SECONDS};
pub use volumes::{
    ACL_VOLUME, CONFIG_VOLUME, CREDENTIALS_VOLUME, DATA_VOLUME, TLS_VOLUME, TMP_DIR, TMP_VOLUME,
};

/// Suffix of the headless Service of the Redis pods (must match `Model::redis_pod_fqdn`).
pub const REDIS_HEADLESS_SUFFIX: &str = "redis-headless";
/// Suffix of the headless Service of the sentinels (must match `Model::sentinel_pod_fqdn`).
pub const SENTINEL_HEADLESS_SUFFIX: &str = "sentinel-headless";
/// Suffix of the Service that follows the primary.
pub const PRIMARY_SUFFIX: &str = "primary";
/// Suffix of the Service over the replicas (read scaling).
pub const REPLICAS_SUFFIX: &str = "replicas";
/// Suffix of the exporter's Service.
pub const METRICS_SUFFIX: &str = "metrics";
/// Suffix of the cluster-mode client Service over every Redis pod: a cluster client's seed
/// (it learns every node from the slot map).
pub const CLUSTER_SUFFIX: &str = "cluster";
/// Suffix of the ConfigMap.
pub const CONFIG_SUFFIX: &str = "config";

/// Component label values beyond `redis` and `sentinel`.
pub const BACKUP_COMPONENT: &str = "backup";
pub const PRUNE_COMPONENT: &str = "prune";
pub const CONFIG_COMPONENT: &str = "config";
pub const CREDENTIALS_COMPONENT: &str = "credentials";
pub const METRICS_COMPONENT: &str = "metrics";

/// Port names (Services target ports by name, so a port number lives in one place).
pub const REDIS_PORT_NAME: &str = "redis";
pub const SENTINEL_PORT_NAME: &str = "sentinel";
pub const METRICS_PORT_NAME: &str = "metrics";

/// `app.kubernetes.io/name` of the operator's own pods (the chart sets it); the
/// NetworkPolicies let pods with it in from any namespace.
pub const OPERATOR_POD_NAME: &str = "abstore-operator";

/// Environment variable with the pod's own name (the scripts derive its DNS name from it).
pub const POD_NAME_ENV: &str = "POD_NAME";
/// Query parameter of a Sentinel URL naming the user to authenticate to the sentinels as.
pub const SENTINEL_USERNAME_PARAM: &str = "sentinel_username";
/// Key of the Sentinel URL in a credentials Secret (what failover-aware clients use).
pub const SENTINEL_URL_KEY: &str = "sentinel-url";
/// Key of the `<n>-primary` Service URL in a credentials Secret (for clients without
/// Sentinel support; the operator moves the Service to the new primary after a failover).
pub const PRIMARY_URL_KEY: &str = "primary-url";
/// Key of the cluster URL in a credentials Secret of a cluster-mode store (instead of the
/// Sentinel and primary URLs).
pub const CLUSTER_URL_KEY: &str = "cluster-url";

/// Every object of one store, by kind, in the order they are applied. `apply` destructures
/// this without `..`, so a kind that is built but never applied fails to compile.
#[derive(Clone, Debug, Default)]
pub struct Children {
    /// The ACL file Secret and one credentials Secret per user.
    pub secrets: Vec<Secret>,
    /// redis.conf, sentinel.conf and the start scripts.
    pub config_maps: Vec<ConfigMap>,
    /// Headless and client Services.
    pub services: Vec<Service>,
    /// PodDisruptionBudgets for Redis and Sentinel (empty when disabled).
    pub pod_disruption_budgets: Vec<PodDisruptionBudget>,
    /// NetworkPolicies for the Redis and the Sentinel pods (empty when disabled).
    pub network_policies: Vec<NetworkPolicy>,
    /// `<n>-redis` and `<n>-sentinel`.
    pub stateful_sets: Vec<StatefulSet>,
    /// The tracking API's `<n>-api` (when `spec.api` is enabled).
    pub deployments: Vec<Deployment>,
    /// The tracking API's autoscaler (when enabled).
    pub horizontal_pod_autoscalers: Vec<HorizontalPodAutoscaler>,
    /// Backup and prune CronJobs (those enabled).
    pub cron_jobs: Vec<CronJob>,
    /// ServiceMonitor and PrometheusRule (Prometheus Operator kinds), when enabled.
    pub monitoring: Vec<DynamicObject>,
}

/// Why a store could not be built. `validate` refuses the specs that would cause these, so
/// they mean a model or credentials that bypassed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("spec.tls.enabled is true but spec.tls.secretName is not set")]
    TlsSecretMissing,
    #[error("no password for user {user:?} (credentials were not resolved for this store)")]
    MissingPassword { user: String },
}

impl BuildError {
    /// Short reason for metrics labels and Events.
    pub fn category(&self) -> &'static str {
        match self {
            BuildError::TlsSecretMissing => "TlsSecretMissing",
            BuildError::MissingPassword { .. } => "MissingPassword",
        }
    }
}

/// Every child of the store. Pure: the same model and credentials give the same objects.
pub fn build(model: &Model, credentials: &Credentials) -> Result<Children, BuildError> {
    if model.spec.tls.enabled && model.spec.tls.secret_name.is_none() {
        return Err(BuildError::TlsSecretMissing);
    }
    let users: Vec<(&str, &str)> = credentials.users().collect();
    let wanted = Role::ALL
        .iter()
        .map(|role| role.username())
        .chain(model.spec.auth.users.iter().map(|user| user.name.as_str()));
    for user in wanted {
        if !users.iter().any(|(name, _)| *name == user) {
            return Err(BuildError::MissingPassword {
                user: user.to_owned(),
            });
        }
    }

    let files = config_files(model, &ConfigPaths::default());
    let acl = acl_file(model, credentials);
    let sentinel_acl = sentinel_acl_file(model, credentials);
    // ACL users and passwords change live (heal's ACL SETUSER on data nodes and sentinels,
    // CONFIG SET masterauth, SENTINEL SET auth-pass, SENTINEL CONFIG SET sentinel-pass), so
    // they are not in the hashes; redis_exporter reads its password from the environment only
    // when it starts, so the exporter's is.
    let exporter_password = if model.spec.monitoring.exporter.enabled {
        crate::rotation::password_hash(credentials.role_password(Role::Exporter))
    } else {
        String::new()
    };
    let cluster = model.cluster().is_some();
    let (redis_hash, sentinel_hash) =
        secrets::config_hashes(&files.files, &exporter_password, cluster);

    let mut all_secrets = vec![secrets::acl_secret(
        model,
        acl_secret_name(model),
        &[
            (ACL_FILE_NAME, acl),
            (SENTINEL_ACL_FILE_NAME, sentinel_acl),
            (STATE_KEY, PasswordState::of(credentials).to_json()),
        ],
    )];
    all_secrets.extend(users.iter().map(|(username, password)| {
        secrets::credentials_secret(
            model,
            credentials_secret_name(model, username),
            USERNAME_KEY,
            PASSWORD_KEY,
            username,
            password,
        )
    }));

    let api = api::api_objects(model, credentials);
    let mut services = services::services(model);
    services.extend(api.service);
    let mut pod_disruption_budgets = policy::pod_disruption_budgets(model);
    pod_disruption_budgets.extend(api.pod_disruption_budget);
    let mut network_policies = policy::network_policies(model);
    network_policies.extend(api.network_policy);

    Ok(Children {
        secrets: all_secrets,
        config_maps: vec![secrets::config_map(model, &files.files)],
        services,
        pod_disruption_budgets,
        network_policies,
        // Cluster mode has no sentinels: failover is the cluster's own.
        stateful_sets: if cluster {
            vec![redis::stateful_set(model, &redis_hash)]
        } else {
            vec![
                redis::stateful_set(model, &redis_hash),
                sentinel::stateful_set(model, &sentinel_hash),
            ]
        },
        deployments: api.deployment.into_iter().collect(),
        horizontal_pod_autoscalers: api.horizontal_pod_autoscaler.into_iter().collect(),
        cron_jobs: cronjobs::cron_jobs(model),
        monitoring: monitoring::monitoring(model),
    })
}

/// Pod-template annotation with the TLS Secret's fingerprint ([`crate::topology::TlsMaterial`]).
pub const TLS_FINGERPRINT_ANNOTATION: &str = "abstore.dev/tls-fingerprint";

/// Stamps the TLS certificate's fingerprint on both StatefulSets' pod templates (and the API's):
/// a renewed certificate (cert-manager rewrites the Secret) changes the template, and the
/// rollout planner restarts the pods in its failover-aware order (Redis and Sentinel read their
/// certificate files only when they start). The controller reads the Secret; build stays pure.
pub fn stamp_tls_fingerprint(children: &mut Children, fingerprint: &str) {
    let templates = children
        .stateful_sets
        .iter_mut()
        .filter_map(|s| s.spec.as_mut().map(|spec| &mut spec.template))
        .chain(
            children
                .deployments
                .iter_mut()
                .filter_map(|d| d.spec.as_mut().map(|spec| &mut spec.template)),
        );
    for template in templates {
        annotate(template, TLS_FINGERPRINT_ANNOTATION, fingerprint);
    }
}

fn annotate(template: &mut k8s_openapi::api::core::v1::PodTemplateSpec, key: &str, value: &str) {
    template
        .metadata
        .get_or_insert_with(Default::default)
        .annotations
        .get_or_insert_with(Default::default)
        .insert(key.to_owned(), value.to_owned());
}

/// The Sentinel URL of `user` through the `<n>-sentinel` Service, without a password: what
/// clients (and the jobs) connect with to follow failover. The sentinels require
/// authentication too, as the same user with the same password: `sentinel_username` says so, and
/// the abstore library then gives the sentinels the URL's password (clients append
/// `&password_file=…`).
pub fn sentinel_url(model: &Model, user: &str) -> String {
    let scheme = if model.spec.tls.enabled {
        "rediss+sentinel"
    } else {
        "redis+sentinel"
    };
    format!(
        "{scheme}://{user}@{}:{SENTINEL_PORT}/{}?{SENTINEL_USERNAME_PARAM}={user}",
        model.service_fqdn(SENTINEL),
        model.master_name()
    )
}

/// The cluster URL of `user` through the `<n>-cluster` Service, without a password: what
/// clients and the jobs of a cluster-mode store connect with (the Service is only the seed; the
/// slot map names every node by its pod DNS name).
pub fn cluster_url(model: &Model, user: &str) -> String {
    let scheme = if model.spec.tls.enabled {
        "rediss+cluster"
    } else {
        "redis+cluster"
    };
    format!(
        "{scheme}://{user}@{}:{REDIS_PORT}",
        model.service_fqdn(CLUSTER_SUFFIX)
    )
}

/// The URL of `user` on the `<n>-primary` Service, without a password.
pub fn primary_url(model: &Model, user: &str) -> String {
    let scheme = if model.spec.tls.enabled {
        "rediss"
    } else {
        "redis"
    };
    format!(
        "{scheme}://{user}@{}:{REDIS_PORT}",
        model.service_fqdn(PRIMARY_SUFFIX)
    )
}
