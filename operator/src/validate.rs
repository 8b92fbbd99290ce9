//! validate: the first step of reconcile. Pure: an `ABStore` becomes the validated `Model`, or a
//! `ValidationError` listing every problem at once, each naming the field, the bad value and what
//! is allowed. The CRD schema already checks ranges and patterns on the API server; they are
//! checked again here because `render -f` reads files that never went through the API server.

use std::fmt;
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::Resource;
use url::Url;

use crate::crd::{ABStore, ABStoreSpec, ClusterSpec, StoreMode, UserSpec};
use crate::credentials::Role;
use crate::memory;
use crate::model::{Model, Platform, REDIS, Runtime, SENTINEL};

/// `category()` of every validation error: the metric label and the Event reason.
pub const CATEGORY: &str = "InvalidSpec";

/// Longest store name. Every child name and label value derived from it must stay a valid
/// DNS label (≤ 63): the longest are the Service `<name>-sentinel-headless` (name + 18) and the
/// StatefulSet's `controller-revision-hash` label `<name>-sentinel-<hash of up to 10>` (name +
/// 20); 40 leaves room for those and for CronJob names (`<name>-backup`, ≤ 52 for the Job
/// suffix).
pub const MAX_STORE_NAME_LEN: usize = 40;
/// Longest declared user name (the CRD's pattern allows 32).
pub const MAX_USER_NAME_LEN: usize = 32;
/// Kubernetes' macros for CronJob schedules, and what the `cron` crate calls them.
const CRON_MACROS: [(&str, &str); 7] = [
    ("@yearly", "@yearly"),
    ("@annually", "@yearly"),
    ("@monthly", "@monthly"),
    ("@weekly", "@weekly"),
    ("@daily", "@daily"),
    ("@midnight", "@daily"),
    ("@hourly", "@hourly"),
];

/// One problem in the spec.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// JSON path of the field, like `spec.sentinel.quorum`.
    pub field: String,
    /// What is wrong: the bad value and what is allowed.
    pub message: String,
}

/// Every problem found in one `ABStore`; never empty.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    errors: Vec<FieldError>,
}

impl ValidationError {
    /// The first offending field, like `spec.sentinel.quorum`.
    pub fn field(&self) -> &str {
        self.errors.first().map_or("spec", |e| e.field.as_str())
    }

    /// A short static string for the metrics label and the Event reason.
    pub fn category(&self) -> &'static str {
        CATEGORY
    }

    /// Every problem, in the order the fields appear in the spec.
    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errors.as_slice() {
            [only] => write!(f, "invalid ABStore: {only}"),
            errors => {
                write!(f, "invalid ABStore ({} problems): ", errors.len())?;
                for (i, error) in errors.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{error}")?;
                }
                Ok(())
            }
        }
    }
}

/// Checks `store` and returns the model every later step works from.
pub fn validate(store: &ABStore) -> Result<Model, ValidationError> {
    validate_on(store, &Platform::default())
}

/// [`validate`] for a store that runs on `platform`: the operator passes its flags (cluster
/// domain, own namespace), `local up` [`Platform::local`].
pub fn validate_on(store: &ABStore, platform: &Platform) -> Result<Model, ValidationError> {
    let mut v = Problems::default();
    let name = store.metadata.name.clone().unwrap_or_default();
    let namespace = store.metadata.namespace.clone().unwrap_or_default();
    check_store_name(&mut v, &name);
    if namespace.is_empty() {
        v.push(
            "metadata.namespace",
            "is missing; an ABStore is namespaced (pass -n NAMESPACE to render)",
        );
    } else if !is_dns_label(&namespace) {
        v.push(
            "metadata.namespace",
            format!("{namespace:?} is not a valid namespace name (a DNS-1123 label)"),
        );
    }

    let mut spec = store.spec.clone();
    let s = &spec;
    v.range("spec.redis.replicas", s.redis.replicas, 1, 9);
    v.image("spec.redis.image", &s.redis.image);
    v.range("spec.sentinel.replicas", s.sentinel.replicas, 1, 9);
    v.range("spec.sentinel.quorum", s.sentinel.quorum, 1, 9);
    // The cross-field rules the CRD also enforces (crate::rules): the same message from both.
    for rule in &crate::rules::RULES {
        if rule.holds.is_some_and(|holds| !holds(s)) {
            v.push(rule.field_path(), rule.message);
        }
    }
    v.range(
        "spec.sentinel.downAfterMilliseconds",
        s.sentinel.down_after_milliseconds,
        100,
        600_000,
    );
    v.range(
        "spec.sentinel.failoverTimeoutMilliseconds",
        s.sentinel.failover_timeout_milliseconds,
        1000,
        3_600_000,
    );
    v.range(
        "spec.sentinel.parallelSyncs",
        s.sentinel.parallel_syncs,
        1,
        8,
    );
    if let Some(image) = &s.sentinel.image {
        v.image("spec.sentinel.image", image);
    }
    check_mode(&mut v, s);
    v.range(
        "spec.durability.minReplicasToWrite",
        s.durability.min_replicas_to_write,
        0,
        8,
    );
    v.range(
        "spec.durability.minReplicasMaxLagSeconds",
        s.durability.min_replicas_max_lag_seconds,
        1,
        3600,
    );

    let maxmemory_bytes = s.redis.maxmemory.as_deref().and_then(|text| {
        let bytes = v.memory("spec.redis.maxmemory", text);
        if bytes == Some(0) {
            v.push(
                "spec.redis.maxmemory",
                "0 would mean no limit; leave maxmemory unset for that",
            );
        }
        bytes
    });
    let memory_limit = s
        .redis
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|limits| limits.get("memory"))
        .and_then(|q| v.memory("spec.redis.resources.limits.memory", &q.0));
    // One formula (crate::memory) sizes the container for maxmemory, or maxmemory for a
    // given limit; without either, the default maxmemory and the limit it needs.
    let maxmemory_bytes = match (maxmemory_bytes, memory_limit) {
        (Some(max), Some(limit)) => {
            let needed = memory::limit_for(max);
            if limit < needed {
                v.push(
                    "spec.redis.resources.limits.memory",
                    format!(
                        "{limit} bytes is below the {}Mi that spec.redis.maxmemory {} needs (maxmemory × {:.1} for fragmentation and a fork that copies every page under writes, + {}Mi for the server, the replication backlog and two replicas' sync buffers; docs/operator.md, \"Memory\"): the kernel would kill Redis during a save. Raise the limit or lower spec.redis.maxmemory",
                        needed / memory::MIB,
                        s.redis.maxmemory.as_deref().unwrap_or_default(),
                        memory::FRAGMENTATION * (1.0 + memory::FORK_COPY),
                        memory::FIXED / memory::MIB,
                    ),
                );
            }
            Some(max)
        }
        (Some(max), None) => Some(max),
        (None, Some(limit)) => {
            let derived = memory::maxmemory_for(limit);
            if derived.is_none() {
                v.push(
                    "spec.redis.resources.limits.memory",
                    format!(
                        "{limit} bytes leaves no room for data: the server, the replication backlog and the replicas' sync buffers take {}Mi; give at least {}Mi",
                        memory::FIXED / memory::MIB,
                        memory::limit_for(64 * memory::MIB) / memory::MIB,
                    ),
                );
            }
            derived
        }
        (None, None) => Some(memory::DEFAULT_MAXMEMORY),
    };
    if v.memory("spec.redis.storage.size", &s.redis.storage.size.0) == Some(0) {
        v.push("spec.redis.storage.size", "must be more than 0");
    }
    if let Some(class) = &s.redis.storage.storage_class_name {
        v.subdomain("spec.redis.storage.storageClassName", class);
    }
    for (directive, value) in &s.redis.config {
        check_directive(&mut v, directive, value);
    }

    for (i, point) in s.persistence.rdb.save.iter().enumerate() {
        if parse_save_point(point).is_none() {
            v.push(
                format!("spec.persistence.rdb.save[{i}]"),
                format!(
                    "{point:?} is not a save point; write \"<seconds> <changes>\" with two positive whole numbers, like \"300 100\""
                ),
            );
        }
    }

    check_users(&mut v, &s.auth.users);
    v.range(
        "spec.auth.rotationGraceSeconds",
        s.auth.rotation_grace_seconds,
        0,
        604_800,
    );

    if let Some(secret) = &s.tls.secret_name {
        v.subdomain("spec.tls.secretName", secret);
    }

    v.schedule("spec.backup.schedule", &s.backup.schedule);
    if let Some(destination) = &s.backup.destination {
        check_destination(&mut v, "spec.backup.destination", destination);
        if platform.runtime == Runtime::Kubernetes && destination.starts_with("file:") {
            // The Job's pod has a read-only root and an emptyDir /tmp: a file backup would
            // vanish with the pod while status and metrics reported success.
            v.push(
                "spec.backup.destination",
                format!(
                    "{destination:?}: a file:// backup in Kubernetes would be written inside the backup Job's pod and lost with it; use s3://bucket/prefix or gs://bucket/prefix (file:// is for `abstore-operator local up`)"
                ),
            );
        }
    }
    if let Some(account) = &s.backup.service_account_name {
        v.subdomain("spec.backup.serviceAccountName", account);
        if platform.runtime == Runtime::Kubernetes
            && !platform.policy.allows_service_account(account)
        {
            v.push(
                "spec.backup.serviceAccountName",
                format!(
                    "{account:?} is not one of the ServiceAccounts the operator lets backup Jobs run as ({}; the chart's storePolicy.allowedServiceAccounts)",
                    describe_list(&platform.policy.allowed_service_accounts)
                ),
            );
        }
    }
    if platform.runtime == Runtime::Kubernetes {
        // The images the store runs: the exporter's only when the sidecar is on.
        let mut images = vec![
            ("spec.redis.image", s.redis.image.as_str()),
            ("spec.jobs.image", s.jobs.image.as_str()),
        ];
        if s.monitoring.exporter.enabled {
            images.push((
                "spec.monitoring.exporter.image",
                s.monitoring.exporter.image.as_str(),
            ));
        }
        if let Some(image) = &s.sentinel.image {
            images.push(("spec.sentinel.image", image));
        }
        if s.api.enabled {
            images.push(("spec.api.image", s.api.image.as_str()));
        }
        for (field, image) in images {
            if !platform.policy.allows_image(image) {
                v.push(
                    field,
                    format!(
                        "{image:?} is not allowed by the operator's image policy (allowed prefixes: {}; the chart's storePolicy.allowedImages)",
                        describe_list(&platform.policy.allowed_images)
                    ),
                );
            }
        }
    }
    if let Some(secret) = &s.backup.credentials_secret_name {
        v.subdomain("spec.backup.credentialsSecretName", secret);
    }
    for (i, pattern) in s.backup.key_patterns.iter().enumerate() {
        v.glob(&format!("spec.backup.keyPatterns[{i}]"), pattern);
    }
    v.range(
        "spec.backup.activeDeadlineSeconds",
        s.backup.active_deadline_seconds,
        60,
        86_400,
    );
    v.schedule("spec.retention.schedule", &s.retention.schedule);
    v.range("spec.retention.days", s.retention.days, 1, 3650);
    v.range(
        "spec.retention.activeDeadlineSeconds",
        s.retention.active_deadline_seconds,
        60,
        86_400,
    );
    v.image("spec.jobs.image", &s.jobs.image);
    v.image(
        "spec.monitoring.exporter.image",
        &s.monitoring.exporter.image,
    );
    let interval = &s.monitoring.service_monitor.interval;
    if !is_prometheus_duration(interval) {
        v.push(
            "spec.monitoring.serviceMonitor.interval",
            format!("{interval:?} is not a duration; write a whole number with ms, s, m or h, like \"30s\""),
        );
    }
    v.range(
        "spec.podDisruptionBudget.maxUnavailable",
        s.pod_disruption_budget.max_unavailable,
        1,
        8,
    );
    if let Some(class) = &s.priority_class_name {
        v.subdomain("spec.priorityClassName", class);
    }
    check_api(&mut v, s, platform);

    if !v.errors.is_empty() {
        return Err(ValidationError { errors: v.errors });
    }
    // Redis treats directive names case-insensitively; one spelling keeps the rendered config
    // (and its hash) stable.
    spec.redis.config = spec
        .redis
        .config
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect();
    Ok(Model {
        owner: store.controller_owner_ref(&()),
        name,
        namespace,
        spec,
        maxmemory_bytes,
        platform: platform.clone(),
    })
}

/// Problems found so far.
#[derive(Default)]
struct Problems {
    errors: Vec<FieldError>,
}

impl Problems {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    fn range<T: PartialOrd + fmt::Display + Copy>(
        &mut self,
        field: &str,
        value: T,
        min: T,
        max: T,
    ) {
        if value < min || value > max {
            self.push(
                field,
                format!("{value} is out of range; allowed: {min} to {max}"),
            );
        }
    }

    fn image(&mut self, field: &str, image: &str) {
        if let Err(why) = check_image_reference(image) {
            self.push(
                field,
                format!(
                    "{image:?} is not an image reference ({why}); write [registry/]repository[:tag][@sha256:<64 hex digits>], like \"docker.io/library/redis:7.2.16\" or \"registry.example.com/redis@sha256:…\""
                ),
            );
        }
    }

    fn subdomain(&mut self, field: &str, name: &str) {
        if !is_dns_subdomain(name) {
            self.push(
                field,
                format!(
                    "{name:?} is not a valid Kubernetes object name: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters"
                ),
            );
        }
    }

    fn memory(&mut self, field: &str, text: &str) -> Option<u64> {
        let bytes = parse_memory(text);
        if bytes.is_none() {
            self.push(
                field,
                format!(
                    "{text:?} is not a memory quantity; write a number with an optional suffix Ki, Mi, Gi, Ti, Pi, Ei (powers of 1024) or k, M, G, T, P, E (powers of 1000), like \"2Gi\""
                ),
            );
        }
        bytes
    }

    fn schedule(&mut self, field: &str, text: &str) {
        if let Err(message) = parse_schedule(text) {
            self.push(field, message);
        }
    }

    fn glob(&mut self, field: &str, pattern: &str) {
        if pattern.is_empty() || pattern.chars().any(|c| c.is_whitespace() || c.is_control()) {
            self.push(
                field,
                format!("{pattern:?} is not a key pattern; it must be a non-empty glob without spaces or control characters, like \"ec:*\""),
            );
        }
    }
}

/// `spec.api`: only read when enabled (a disabled API's leftovers refuse nothing).
fn check_api(v: &mut Problems, s: &ABStoreSpec, platform: &Platform) {
    let api = &s.api;
    if !api.enabled {
        return;
    }
    v.range("spec.api.replicas", api.replicas, 1, 100);
    v.image("spec.api.image", &api.image);
    v.range("spec.api.rateLimit", api.rate_limit, 1, 1_000_000);
    match &api.api_key_secret {
        // `local up` generates the key into its directory.
        None if platform.runtime == Runtime::Local => {}
        None => v.push(
            "spec.api.apiKeySecret",
            "is required when spec.api.enabled is true: name a Secret with the API key that reports and the results page require, like {name: experiments-api-key, key: api-key}",
        ),
        Some(secret) => {
            v.subdomain("spec.api.apiKeySecret.name", &secret.name);
            if secret.key.is_empty()
                || !secret
                    .key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                v.push(
                    "spec.api.apiKeySecret.key",
                    format!(
                        "{:?} is not a Secret key; use letters, digits, '-', '_' and '.'",
                        secret.key
                    ),
                );
            }
        }
    }
    for (i, origin) in api.allowed_origins.iter().enumerate() {
        if let Err(why) = check_origin(origin) {
            v.push(format!("spec.api.allowedOrigins[{i}]"), why);
        }
    }
    if let Some(wait) = api.wait_replicas {
        // Replicas of each primary: the StatefulSet's others in Sentinel mode, the shard's in
        // cluster mode. More could never answer WAIT: every event would be refused.
        let (replicas, field) = match s.mode {
            StoreMode::Sentinel => (s.redis.replicas - 1, "spec.redis.replicas - 1"),
            StoreMode::Cluster => (
                s.cluster.as_ref().map_or(1, |c| c.replicas_per_shard),
                "spec.cluster.replicasPerShard",
            ),
        };
        if i64::from(wait) > i64::from(replicas.max(0)) {
            v.push(
                "spec.api.waitReplicas",
                format!(
                    "{wait} is more than the replicas each primary has ({field} = {replicas}): every event would wait in vain and be answered 503"
                ),
            );
        }
    }
    let scaling = &api.autoscaling;
    if scaling.enabled {
        v.range(
            "spec.api.autoscaling.targetCPUUtilizationPercentage",
            scaling.target_cpu_utilization_percentage,
            10,
            100,
        );
        if scaling.max_replicas < api.replicas {
            v.push(
                "spec.api.autoscaling.maxReplicas",
                format!(
                    "{} is below spec.api.replicas ({}), the autoscaler's minimum",
                    scaling.max_replicas, api.replicas
                ),
            );
        }
    }
}

/// A browser origin as CORS compares it: `scheme://host[:port]`, nothing after.
fn check_origin(origin: &str) -> Result<(), String> {
    let url = Url::parse(origin)
        .map_err(|e| format!("{origin:?} is not an origin ({e}); write scheme://host[:port], like \"https://shop.example\""))?;
    let bare = url.path() == "/"
        && !origin.ends_with('/')
        && url.query().is_none()
        && url.fragment().is_none();
    if !matches!(url.scheme(), "http" | "https")
        || url.host().is_none()
        || !bare
        || !url.username().is_empty()
    {
        return Err(format!(
            "{origin:?} is not an origin; write scheme://host[:port] with http or https and nothing after, like \"https://shop.example\""
        ));
    }
    Ok(())
}

fn check_store_name(v: &mut Problems, name: &str) {
    if name.is_empty() {
        v.push("metadata.name", "is missing");
    } else if name.len() > MAX_STORE_NAME_LEN {
        v.push(
            "metadata.name",
            format!(
                "{name:?} is {} characters long; at most {MAX_STORE_NAME_LEN} are allowed, because pod, Service and label names derived from it (like \"{name}-{SENTINEL}-headless\" and \"{name}-{REDIS}-0\") must stay within 63",
                name.len()
            ),
        );
    } else if !is_dns_1035_label(name) {
        v.push(
            "metadata.name",
            format!(
                "{name:?} cannot name Services and pods: use lowercase letters, digits and '-', starting with a letter and ending with a letter or digit"
            ),
        );
    }
}

/// `a, b` or `none`.
fn describe_list(values: &[String]) -> String {
    if values.is_empty() {
        "none".to_owned()
    } else {
        values.join(", ")
    }
}

/// `spec.mode` and `spec.cluster`: the shard counts in range, `cluster` given only for
/// cluster mode. (That neither changes on an existing store is a CRD transition rule.)
fn check_mode(v: &mut Problems, s: &ABStoreSpec) {
    match (s.mode, &s.cluster) {
        (StoreMode::Sentinel, Some(_)) => v.push(
            "spec.cluster",
            "is only read with spec.mode: cluster; add `mode: cluster` or remove spec.cluster",
        ),
        (StoreMode::Sentinel, None) => {}
        (StoreMode::Cluster, cluster) => {
            let default = ClusterSpec::default();
            let c = cluster.as_ref().unwrap_or(&default);
            v.range("spec.cluster.shards", c.shards, 1, 64);
            v.range("spec.cluster.replicasPerShard", c.replicas_per_shard, 0, 5);
            v.range(
                "spec.cluster.nodeTimeoutMilliseconds",
                c.node_timeout_milliseconds,
                500,
                120_000,
            );
        }
    }
}

/// Checks an image reference the way the container runtime parses it (the distribution
/// `reference` grammar): `[registry[:port]/]path[:tag][@algorithm:hex]`. A reference the runtime
/// refuses would leave the pods in `InvalidImageName`, so it is refused here, naming the part.
/// Digests are allowed everywhere an image is (`redis@sha256:…` and `redis:7.2.16@sha256:…`).
pub fn check_image_reference(image: &str) -> Result<(), String> {
    if image.is_empty() {
        return Err("empty".into());
    }
    if let Some(c) = image.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("it contains {c:?}"));
    }
    let (rest, digest) = match image.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (image, None),
    };
    if let Some(digest) = digest {
        let (algorithm, hex) = digest
            .split_once(':')
            .ok_or_else(|| format!("digest {digest:?} is not <algorithm>:<hex>"))?;
        let want = match algorithm {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            _ => {
                return Err(format!(
                    "digest algorithm {algorithm:?} is not sha256, sha384 or sha512"
                ));
            }
        };
        if hex.len() != want
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(format!(
                "a {algorithm} digest is {want} lowercase hex digits, not {hex:?}"
            ));
        }
    }
    // A tag is after the last ':' that follows the last '/' (a registry's port is before it).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let valid = !tag.is_empty()
            && tag.len() <= 128
            && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid {
            return Err(format!(
                "tag {tag:?} must be 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
            ));
        }
    }
    if name.len() > 255 {
        return Err(format!(
            "the name is {} characters long; at most 255",
            name.len()
        ));
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    let first = parts[0];
    if parts.len() > 1
        && (first.contains(['.', ':'])
            || first == "localhost"
            || first.chars().any(|c| c.is_ascii_uppercase()))
    {
        let (host, port) = first.split_once(':').unwrap_or((first, ""));
        let host_ok = !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        let port_ok = (port.is_empty() && !first.contains(':'))
            || (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
        if !host_ok || !port_ok {
            return Err(format!(
                "registry {first:?} is not a host name with an optional :port"
            ));
        }
        parts.remove(0);
    }
    for component in parts {
        let valid = !component.is_empty()
            && component.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && component.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && component
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            && !component.contains("..");
        if !valid {
            return Err(format!(
                "repository path part {component:?} must be lowercase letters and digits, separated by '.', '_' or '-'"
            ));
        }
    }
    Ok(())
}

/// A Kubernetes memory quantity in bytes (rounded up, as Kubernetes does). Exponent notation
/// (`1e9`) and sub-byte suffixes (`m`) are not accepted: nobody means them for memory.
pub fn parse_memory(text: &str) -> Option<u64> {
    const SUFFIXES: [(&str, u128); 12] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("Pi", 1 << 50),
        ("Ei", 1 << 60),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
        ("P", 1_000_000_000_000_000),
        ("E", 1_000_000_000_000_000_000),
    ];
    let (number, multiplier) = SUFFIXES
        .iter()
        .find_map(|(suffix, m)| text.strip_suffix(suffix).map(|n| (n, *m)))
        .unwrap_or((text, 1));
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits_only(whole) || !digits_only(fraction) || fraction.len() > 18 {
        return None;
    }
    if number.ends_with('.') {
        return None;
    }
    let scale = 10_u128.pow(u32::try_from(fraction.len()).ok()?);
    let mantissa: u128 = format!("{whole}{fraction}").parse().ok()?;
    let bytes = mantissa.checked_mul(multiplier)?.div_ceil(scale);
    u64::try_from(bytes).ok()
}

/// Parses a Kubernetes CronJob schedule (five fields, or one of the `@daily`-style macros) with
/// the `cron` crate, and returns it in the crate's own syntax (a seconds field first, days of
/// the week counted from 1 = Sunday).
///
/// Kubernetes counts days of the week 0–6 from Sunday, the `cron` crate 1–7; numbers in that
/// field are shifted so that `1-5` still means Monday to Friday. `TZ=` prefixes are refused:
/// Kubernetes has its own `timeZone` field and ABStore runs its jobs in UTC.
pub fn parse_schedule(text: &str) -> Result<cron::Schedule, String> {
    let trimmed = text.trim();
    if trimmed.starts_with("TZ=") || trimmed.starts_with("CRON_TZ=") {
        return Err(format!(
            "{text:?} sets a time zone; schedules are UTC, remove the TZ= prefix"
        ));
    }
    let translated = if trimmed.starts_with('@') {
        match CRON_MACROS.iter().find(|(k8s, _)| *k8s == trimmed) {
            Some((_, crate_macro)) => (*crate_macro).to_owned(),
            None => {
                let known: Vec<&str> = CRON_MACROS.iter().map(|(k8s, _)| *k8s).collect();
                return Err(format!(
                    "{text:?} is not a schedule Kubernetes understands; use five fields (minute hour day-of-month month day-of-week) or one of {}",
                    known.join(", ")
                ));
            }
        }
    } else {
        let fields: Vec<&str> = trimmed.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "{text:?} has {} fields; Kubernetes schedules have exactly five (minute hour day-of-month month day-of-week), without seconds or years, like \"30 3 * * *\"",
                fields.len()
            ));
        }
        let day_of_week = shift_days_of_week(fields[4]).ok_or_else(|| {
            format!(
                "{text:?}: day of week {:?} is out of range; use 0-6 (Sunday is 0) or SUN-SAT",
                fields[4]
            )
        })?;
        format!(
            "0 {} {} {} {} {day_of_week}",
            fields[0], fields[1], fields[2], fields[3]
        )
    };
    cron::Schedule::from_str(&translated).map_err(|error| {
        format!("{text:?} is not a valid cron schedule ({error}); write five fields (minute hour day-of-month month day-of-week), like \"30 3 * * *\"")
    })
}

/// Shifts the numbers of a day-of-week field from Kubernetes' 0–6 to the `cron` crate's 1–7,
/// leaving names, `*`, `?` and step sizes alone. `None` for a number above 6.
fn shift_days_of_week(field: &str) -> Option<String> {
    let shift = |part: &str| -> Option<String> {
        if part.bytes().all(|b| b.is_ascii_digit()) && !part.is_empty() {
            let day: u32 = part.parse().ok()?;
            (day <= 6).then(|| (day + 1).to_string())
        } else {
            Some(part.to_owned())
        }
    };
    let mut items = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        let range = match range.split_once('-') {
            Some((from, to)) => format!("{}-{}", shift(from)?, shift(to)?),
            None => shift(range)?,
        };
        items.push(match step {
            Some(step) => format!("{range}/{step}"),
            None => range,
        });
    }
    Some(items.join(","))
}

/// `"<seconds> <changes>"` as two positive numbers.
pub fn parse_save_point(point: &str) -> Option<(u64, u64)> {
    let mut parts = point.split_whitespace();
    let seconds: u64 = parts.next()?.parse().ok()?;
    let changes: u64 = parts.next()?.parse().ok()?;
    (parts.next().is_none() && seconds > 0 && changes > 0).then_some((seconds, changes))
}

/// Why a redis.conf directive is the operator's and may not be set in `spec.redis.config`.
fn refused_reason(name: &str) -> Option<&'static str> {
    const OWNED: [(&[&str], &str); 15] = [
        (
            &["replicaof", "slaveof"],
            "Sentinel and the start script decide which pod replicates which",
        ),
        (
            &[
                "cluster-enabled",
                "cluster-config-file",
                "cluster-node-timeout",
                "cluster-require-full-coverage",
                "cluster-allow-replica-migration",
            ],
            "use spec.mode and spec.cluster",
        ),
        (
            &[
                "port",
                "bind",
                "bind-source-addr",
                "unixsocket",
                "unixsocketperm",
                "protected-mode",
            ],
            "the operator owns the listeners (Services and probes depend on them); use spec.tls for TLS",
        ),
        (
            &["dir", "dbfilename", "appendfilename", "appenddirname"],
            "the operator owns where data lives on the volume",
        ),
        (
            &[
                "aclfile",
                "requirepass",
                "masteruser",
                "masterauth",
                "user",
                "acl-pubsub-default",
            ],
            "ACL users and passwords come from the operator; declare users in spec.auth.users",
        ),
        (
            &["appendonly", "appendfsync", "aof-use-rdb-preamble", "save"],
            "use spec.persistence",
        ),
        (
            &[
                "min-replicas-to-write",
                "min-replicas-max-lag",
                "min-slaves-to-write",
                "min-slaves-max-lag",
            ],
            "use spec.durability",
        ),
        (&["maxmemory"], "use spec.redis.maxmemory"),
        (&["maxmemory-policy"], "use spec.redis.maxmemoryPolicy"),
        (
            &[
                "include",
                "rename-command",
                "daemonize",
                "logfile",
                "pidfile",
                "supervised",
            ],
            "it changes how the pod runs redis-server, its logs or the commands the operator and Sentinel need",
        ),
        (
            &[
                "replica-announce-ip",
                "replica-announce-port",
                "replica-announced",
                "slave-announce-ip",
                "slave-announce-port",
            ],
            "each pod announces its own stable DNS name",
        ),
        (
            &["replica-read-only", "slave-read-only"],
            "replicas must stay read-only, or writes to them are lost at the next resync",
        ),
        (
            &[
                "loadmodule",
                "enable-debug-command",
                "enable-module-command",
                "enable-protected-configs",
            ],
            "it would let clients load code or change protected settings",
        ),
        (&["sentinel"], "Sentinel settings belong in spec.sentinel"),
        (
            &[
                "slave-priority",
                "slave-serve-stale-data",
                "slave-lazy-flush",
                "slave-ignore-maxmemory",
                "repl-ping-slave-period",
            ],
            "use the replica-* spelling of the directive",
        ),
    ];
    if name.starts_with("tls-") {
        return Some("TLS is configured from spec.tls");
    }
    if name.starts_with("cluster-") {
        return Some("ABStore runs Sentinel, not Redis Cluster");
    }
    OWNED
        .iter()
        .find(|(names, _)| names.contains(&name))
        .map(|(_, reason)| *reason)
}

/// Directives that may be set in `spec.redis.config`: the tunables of Redis 7.0 and 7.2 that do
/// not touch what the operator owns. Anything else is refused, because redis-server refuses
/// unknown directives at start-up and a typo would crash-loop every pod of the store.
pub const TUNABLE_DIRECTIVES: &[&str] = &[
    "acllog-max-len",
    "active-defrag-cycle-max",
    "active-defrag-cycle-min",
    "active-defrag-ignore-bytes",
    "active-defrag-max-scan-fields",
    "active-defrag-threshold-lower",
    "active-defrag-threshold-upper",
    "active-expire-effort",
    "activedefrag",
    "activerehashing",
    "always-show-logo",
    "aof-disable-auto-gc",
    "aof-load-truncated",
    "aof-rewrite-incremental-fsync",
    "aof-timestamp-enabled",
    "aof_rewrite_cpulist",
    "auto-aof-rewrite-min-size",
    "auto-aof-rewrite-percentage",
    "bgsave_cpulist",
    "bio_cpulist",
    "busy-reply-threshold",
    "client-output-buffer-limit",
    "client-query-buffer-limit",
    "crash-log-enabled",
    "crash-memcheck-enabled",
    "databases",
    "disable-thp",
    "dynamic-hz",
    "hash-max-listpack-entries",
    "hash-max-listpack-value",
    "hash-max-ziplist-entries",
    "hash-max-ziplist-value",
    "hll-sparse-max-bytes",
    "hz",
    "ignore-warnings",
    "io-threads",
    "io-threads-do-reads",
    "jemalloc-bg-thread",
    "latency-monitor-threshold",
    "latency-tracking",
    "latency-tracking-info-percentiles",
    "lazyfree-lazy-eviction",
    "lazyfree-lazy-expire",
    "lazyfree-lazy-server-del",
    "lazyfree-lazy-user-del",
    "lazyfree-lazy-user-flush",
    "lfu-decay-time",
    "lfu-log-factor",
    "list-compress-depth",
    "list-max-listpack-size",
    "list-max-ziplist-size",
    "loglevel",
    "lua-time-limit",
    "maxclients",
    "maxmemory-clients",
    "maxmemory-eviction-tenacity",
    "maxmemory-samples",
    "no-appendfsync-on-rewrite",
    "notify-keyspace-events",
    "oom-score-adj",
    "oom-score-adj-values",
    "proc-title-template",
    "propagation-error-behavior",
    "proto-max-bulk-len",
    "rdb-del-sync-files",
    "rdb-save-incremental-fsync",
    "rdbchecksum",
    "rdbcompression",
    "repl-backlog-size",
    "repl-backlog-ttl",
    "repl-disable-tcp-nodelay",
    "repl-diskless-load",
    "repl-diskless-sync",
    "repl-diskless-sync-delay",
    "repl-diskless-sync-max-replicas",
    "repl-ping-replica-period",
    "repl-timeout",
    "replica-ignore-disk-write-errors",
    "replica-ignore-maxmemory",
    "replica-lazy-flush",
    "replica-priority",
    "replica-serve-stale-data",
    "sanitize-dump-payload",
    "server_cpulist",
    "set-max-intset-entries",
    "set-max-listpack-entries",
    "set-max-listpack-value",
    "set-proc-title",
    "shutdown-on-sigint",
    "shutdown-on-sigterm",
    "shutdown-timeout",
    "slowlog-log-slower-than",
    "slowlog-max-len",
    "socket-mark-id",
    "stop-writes-on-bgsave-error",
    "stream-node-max-bytes",
    "stream-node-max-entries",
    "syslog-enabled",
    "syslog-facility",
    "syslog-ident",
    "tcp-backlog",
    "tcp-keepalive",
    "timeout",
    "tracking-table-max-keys",
    "zset-max-listpack-entries",
    "zset-max-listpack-value",
    "zset-max-ziplist-entries",
    "zset-max-ziplist-value",
];

fn check_directive(v: &mut Problems, directive: &str, value: &str) {
    let field = format!("spec.redis.config.{directive}");
    let name = directive.to_ascii_lowercase();
    if let Some(reason) = refused_reason(&name) {
        v.push(
            field,
            format!("{directive:?} is set by the operator and cannot be overridden: {reason}"),
        );
        return;
    }
    if !TUNABLE_DIRECTIVES.contains(&name.as_str()) {
        v.push(
            field.clone(),
            format!(
                "{directive:?} is not a redis.conf directive ABStore can pass on (redis-server would refuse to start on an unknown one); check the spelling against the Redis 7 redis.conf, see TUNABLE_DIRECTIVES in operator/src/validate.rs for the accepted list"
            ),
        );
    }
    if value.chars().any(char::is_control) {
        v.push(
            field,
            format!("value {value:?} contains a newline or control character; a directive's value must be one line"),
        );
    }
}

fn check_users(v: &mut Problems, users: &[UserSpec]) {
    for (i, user) in users.iter().enumerate() {
        let field = format!("spec.auth.users[{i}]");
        let name = &user.name;
        if !is_user_name(name) {
            v.push(
                format!("{field}.name"),
                format!("{name:?} is not a user name: 2 to {MAX_USER_NAME_LEN} lowercase letters, digits and '-', starting with a letter"),
            );
        } else if Role::from_username(name).is_some() || name == "default" {
            let builtin: Vec<&str> = Role::ALL.iter().map(|r| r.username()).collect();
            v.push(
                format!("{field}.name"),
                format!(
                    "{name:?} is a built-in user; choose a name other than default, {}",
                    builtin.join(", ")
                ),
            );
        }
        if users[..i].iter().any(|other| other.name == *name) {
            v.push(
                format!("{field}.name"),
                format!("{name:?} is declared more than once; user names must be unique"),
            );
        }
        for (k, pattern) in user.keys.iter().enumerate() {
            v.glob(&format!("{field}.keys[{k}]"), pattern);
        }
        for (k, pattern) in user.channels.iter().enumerate() {
            v.glob(&format!("{field}.channels[{k}]"), pattern);
        }
        if let Some(bad) = bad_command_rule(&user.commands) {
            v.push(
                format!("{field}.commands"),
                format!(
                    "{bad:?} in {:?} is not a command rule; use +command, -command, +command|subcommand, +@category, -@category, allcommands or nocommands, separated by spaces (keys, channels and passwords have their own fields)",
                    user.commands
                ),
            );
        }
    }
}

/// The first token of an ACL command rule string that is not a command rule (or the whole
/// string when it is empty or has control characters), so that a user's rules can never smuggle
/// in passwords (`>`), key patterns (`~`), `on`/`nopass` or a second ACL line.
fn bad_command_rule(rules: &str) -> Option<String> {
    if rules.chars().any(char::is_control) || rules.trim().is_empty() {
        return Some(rules.to_owned());
    }
    let is_word = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    rules
        .split_whitespace()
        .find(|token| {
            let lower = token.to_ascii_lowercase();
            if matches!(lower.as_str(), "allcommands" | "nocommands") {
                return false;
            }
            let Some(rule) = lower.strip_prefix(['+', '-']) else {
                return true;
            };
            match rule.strip_prefix('@') {
                Some(category) => !is_word(category),
                None => match rule.split_once('|') {
                    Some((command, sub)) => !is_word(command) || !is_word(sub),
                    None => !is_word(rule),
                },
            }
        })
        .map(str::to_owned)
}

fn check_destination(v: &mut Problems, field: &str, destination: &str) {
    let bad = |why: String| FieldError {
        field: field.to_owned(),
        message: format!(
            "{destination:?} {why}; use s3://bucket/prefix, gs://bucket/prefix or file:///absolute/path"
        ),
    };
    let url = match Url::parse(destination) {
        Ok(url) => url,
        Err(error) => {
            v.errors.push(bad(format!("is not a URL ({error})")));
            return;
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        v.errors.push(bad(
            "carries credentials; give them through spec.backup.credentialsSecretName or workload identity".to_owned(),
        ));
        return;
    }
    if url.port().is_some() || url.query().is_some() || url.fragment().is_some() {
        v.errors.push(bad(
            "has a port, query or fragment, which are not used".to_owned()
        ));
        return;
    }
    let bucket = url.host_str().unwrap_or_default();
    match url.scheme() {
        "s3" => {
            if let Err(why) = check_s3_bucket(bucket) {
                v.errors.push(bad(why));
            }
        }
        "gs" => {
            if let Err(why) = check_gcs_bucket(bucket) {
                v.errors.push(bad(why));
            }
        }
        "file" => {
            if !bucket.is_empty() {
                v.errors.push(bad(format!(
                    "names host {bucket:?}; a file destination is a local absolute path with three slashes"
                )));
            } else if url.path() == "/" || url.path().is_empty() {
                v.errors.push(bad(
                    "is the root directory; name a directory for backups".to_owned()
                ));
            }
        }
        other => v.errors.push(bad(format!(
            "has scheme {other:?}, which ABStore cannot write to"
        ))),
    }
}

/// S3 bucket naming rules (general purpose buckets).
fn check_s3_bucket(bucket: &str) -> Result<(), String> {
    let valid_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'));
    let ends_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let looks_like_ip =
        bucket.split('.').count() == 4 && bucket.split('.').all(|p| p.parse::<u8>().is_ok());
    if (3..=63).contains(&bucket.len())
        && valid_chars
        && ends_ok(bucket.bytes().next())
        && ends_ok(bucket.bytes().last())
        && !bucket.contains("..")
        && !looks_like_ip
    {
        Ok(())
    } else {
        Err(format!(
            "has bucket {bucket:?}; S3 bucket names are 3 to 63 lowercase letters, digits, '.' and '-', start and end with a letter or digit, and are not IP addresses"
        ))
    }
}

/// Google Cloud Storage bucket naming rules.
fn check_gcs_bucket(bucket: &str) -> Result<(), String> {
    let valid_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'));
    let ends_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let max = if bucket.contains('.') { 222 } else { 63 };
    if (3..=max).contains(&bucket.len())
        && valid_chars
        && ends_ok(bucket.bytes().next())
        && ends_ok(bucket.bytes().last())
        && bucket
            .split('.')
            .all(|part| !part.is_empty() && part.len() <= 63)
        && !bucket.starts_with("goog")
    {
        Ok(())
    } else {
        Err(format!(
            "has bucket {bucket:?}; GCS bucket names are 3 to 63 lowercase letters, digits, '-', '_' and '.', start and end with a letter or digit, and do not start with \"goog\""
        ))
    }
}

fn is_user_name(name: &str) -> bool {
    (2..=MAX_USER_NAME_LEN).contains(&name.len())
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// DNS-1123 label: what namespaces are.
fn is_dns_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// DNS-1035 label: what Service names must be (starts with a letter).
fn is_dns_1035_label(name: &str) -> bool {
    is_dns_label(name) && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
}

/// DNS-1123 subdomain: most object names.
fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

fn is_prometheus_duration(text: &str) -> bool {
    ["ms", "s", "m", "h"].iter().any(|unit| {
        text.strip_suffix(unit)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// `Quantity` helper for other steps: bytes of a memory quantity the spec already passed.
pub fn quantity_bytes(quantity: &Quantity) -> Option<u64> {
    parse_memory(&quantity.0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// An ABStore from YAML; `spec` is indented under `spec:`.
    fn store(spec: &str) -> ABStore {
        let indented: String = spec.lines().map(|l| format!("  {l}\n")).collect();
        let yaml = format!(
            "apiVersion: abstore.dev/v1alpha1\nkind: ABStore\nmetadata:\n  name: shop\n  namespace: ab\n  uid: 0d9a0f4e-2d3c-4b8a-9a67-6f1e2c3b4a5d\nspec:\n{indented}"
        );
        serde_yaml::from_str(&yaml).unwrap()
    }

    fn errors(spec: &str) -> Vec<FieldError> {
        validate(&store(spec)).unwrap_err().errors().to_vec()
    }

    fn fields(spec: &str) -> Vec<String> {
        errors(spec).into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn image_references_by_tag_by_digest_and_with_a_registry_port_are_accepted() {
        let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
        for image in [
            "redis".to_owned(),
            "redis:7.2.16".to_owned(),
            "docker.io/library/redis:7.2.16".to_owned(),
            format!("docker.io/library/redis@{digest}"),
            format!("docker.io/library/redis:7.2.16@{digest}"),
            "registry.example.com:5000/team/redis_mirror/redis-server:7.2.16-bookworm".to_owned(),
            format!("localhost/abstore-jobs@{digest}"),
            "valkey/valkey:8.1.10".to_owned(),
        ] {
            assert_eq!(check_image_reference(&image), Ok(()), "{image}");
        }
        let spec = format!(
            "redis:\n  image: docker.io/library/redis@{digest}\nsentinel:\n  image: docker.io/library/redis:7.2.16@{digest}\njobs:\n  image: ghcr.io/abstore/abstore-jobs@{digest}\nmonitoring:\n  exporter:\n    image: docker.io/oliver006/redis_exporter@{digest}\n"
        );
        validate(&store(&spec)).unwrap();
    }

    #[test]
    fn bad_image_references_are_refused_naming_the_field_and_the_part() {
        for (image, part) in [
            ("redis:", "tag \"\""),
            ("Redis:7", "repository path part \"Redis\""),
            ("redis@sha256:abc", "64 lowercase hex digits"),
            ("redis@md5:0123", "digest algorithm \"md5\""),
            ("redis:7.2 ", "contains ' '"),
            (
                "registry.example.com:port/redis",
                "registry \"registry.example.com:port\"",
            ),
            ("docker.io//redis", "repository path part \"\""),
            ("redis:-rc1", "tag \"-rc1\""),
        ] {
            let problems = errors(&format!("redis:\n  image: {image:?}\n"));
            let problem = problems
                .iter()
                .find(|e| e.field == "spec.redis.image")
                .unwrap_or_else(|| panic!("{image:?} accepted: {problems:?}"));
            assert!(
                problem.message.contains(part),
                "{image:?}: {}",
                problem.message
            );
        }
        let problems = errors("monitoring:\n  exporter:\n    image: \"exporter@sha256:xyz\"\n");
        assert_eq!(problems[0].field, "spec.monitoring.exporter.image");
    }

    #[test]
    fn an_empty_spec_is_valid_with_the_production_defaults() {
        // `spec: {}` is what the quick start applies.
        let model = validate(&store("{}")).unwrap();
        assert_eq!(model.name, "shop");
        assert_eq!(model.namespace, "ab");
        // A default maxmemory (noeviction refuses writes when full, never a silent OOM kill).
        assert_eq!(model.maxmemory_bytes, Some(memory::DEFAULT_MAXMEMORY));
        assert_eq!(model.owner.unwrap().kind, "ABStore");
    }

    #[test]
    fn a_quorum_above_the_sentinel_count_names_the_field_and_the_limit() {
        // A quorum that can never be reached silently disables failover.
        let error = validate(&store("sentinel: {replicas: 3, quorum: 4}")).unwrap_err();
        assert_eq!(error.field(), "spec.sentinel.quorum");
        assert_eq!(error.category(), "InvalidSpec");
        let text = error.to_string();
        assert!(
            text.contains("spec.sentinel.quorum")
                && text.contains("must not be more than spec.sentinel.replicas"),
            "{text}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        // Platform engineers should not have to fix one field per `kubectl apply`.
        let found = fields(
            "sentinel: {quorum: 5}\nbackup: {schedule: '0 0 */12 * * *'}\nredis: {maxmemory: 2Gi, resources: {limits: {memory: 1Gi}}, config: {replicaof: 'x 1'}}",
        );
        assert_eq!(
            found,
            [
                "spec.sentinel.quorum",
                "spec.redis.resources.limits.memory",
                "spec.redis.config.replicaof",
                "spec.backup.schedule"
            ]
        );
    }

    #[test]
    fn maxmemory_becomes_bytes() {
        // redis.conf takes bytes; the CR takes Kubernetes quantities.
        let model = validate(&store("redis: {maxmemory: 1536Mi}")).unwrap();
        assert_eq!(model.maxmemory_bytes, Some(1536 * 1024 * 1024));
        assert_eq!(parse_memory("1.5Gi"), Some(1536 * 1024 * 1024));
        assert_eq!(parse_memory("2G"), Some(2_000_000_000));
        assert_eq!(parse_memory("100"), Some(100));
        assert_eq!(parse_memory("1.5"), Some(2));
        assert_eq!(parse_memory("2GB"), None);
        assert_eq!(parse_memory("-1Gi"), None);
        assert_eq!(parse_memory("Gi"), None);
        assert_eq!(parse_memory("1."), None);
    }

    #[test]
    fn the_memory_limit_must_hold_maxmemory_a_fork_and_the_buffers() {
        // The OOM killer would stop Redis during a save, before Redis refuses a write.
        // 1Gi with 3 pods needs 1Gi × 2.4 + 128Mi + 2 × 64Mi = 2714Mi.
        let found = errors("redis: {maxmemory: 1Gi, resources: {limits: {memory: 2Gi}}}");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].field, "spec.redis.resources.limits.memory");
        assert!(
            found[0].message.contains("2714Mi")
                && found[0].message.contains("spec.redis.maxmemory"),
            "names both fields and the need: {}",
            found[0].message
        );
        validate(&store(
            "redis: {maxmemory: 1Gi, resources: {limits: {memory: 2714Mi}}}",
        ))
        .unwrap();
        // A limit alone gives the largest maxmemory that fits; one too small is refused.
        let model = validate(&store("redis: {resources: {limits: {memory: 2714Mi}}}")).unwrap();
        assert_eq!(model.maxmemory_bytes, Some(1024 * memory::MIB));
        assert_eq!(
            fields("redis: {resources: {limits: {memory: 200Mi}}}"),
            ["spec.redis.resources.limits.memory"]
        );
    }

    #[test]
    fn a_bad_storage_size_is_refused() {
        // The PVC would be rejected by the API server after everything else was applied.
        assert_eq!(
            fields("redis: {storage: {size: lots}}"),
            ["spec.redis.storage.size"]
        );
    }

    #[test]
    fn kubernetes_cron_schedules_and_macros_are_accepted() {
        // These are what people copy from CronJob examples.
        for schedule in [
            "0 */12 * * *",
            "30 3 * * *",
            "0 0 * * 1-5",
            "0 0 * * 0",
            "15 2 1 * *",
            "0 0 * * SUN",
            "@daily",
            "@midnight",
            "@hourly",
            "*/5 * * * 0,6",
        ] {
            let yaml = format!("backup: {{schedule: '{schedule}'}}");
            validate(&store(&yaml)).unwrap_or_else(|e| panic!("{schedule}: {e}"));
        }
    }

    #[test]
    fn day_of_week_numbers_keep_their_kubernetes_meaning() {
        // The cron crate counts Sunday as 1; Kubernetes as 0. `1-5` must stay Monday–Friday.
        use chrono::{Datelike, TimeZone, Utc};
        let schedule = parse_schedule("0 0 * * 1-5").unwrap();
        let monday = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        assert!(schedule.includes(monday));
        let sunday = Utc.with_ymd_and_hms(2024, 1, 7, 0, 0, 0).unwrap();
        assert_eq!(sunday.weekday(), chrono::Weekday::Sun);
        assert!(!schedule.includes(sunday));
        assert!(parse_schedule("0 0 * * 0").unwrap().includes(sunday));
    }

    #[test]
    fn six_and_seven_field_schedules_are_refused_with_the_expected_form() {
        // The cron crate would accept them, but Kubernetes would not.
        for schedule in ["0 0 */12 * * *", "0 0 0 * * * 2030", "* * * *"] {
            let found = errors(&format!("retention: {{schedule: '{schedule}'}}"));
            assert_eq!(found.len(), 1, "{schedule}");
            assert_eq!(found[0].field, "spec.retention.schedule");
            assert!(
                found[0].message.contains("exactly five"),
                "{}",
                found[0].message
            );
        }
    }

    #[test]
    fn nonsense_schedules_are_refused() {
        // Each would be refused by the API server only when the CronJob is applied.
        for schedule in [
            "61 * * * *",
            "0 0 * * 7",
            "@every 5m",
            "TZ=UTC 0 0 * * *",
            "0 0 32 * *",
            "a b c d e",
        ] {
            assert_eq!(
                fields(&format!("backup: {{schedule: '{schedule}'}}")),
                ["spec.backup.schedule"],
                "{schedule}"
            );
        }
    }

    #[test]
    fn backup_destinations_follow_the_bucket_rules() {
        // A typo in a bucket name would only show up at the first backup, hours later.
        for good in [
            "s3://ab-backups/prod",
            "s3://ab.backups",
            "gs://ab_backups/x/y",
            "file:///var/backups/ab",
        ] {
            validate_on(
                &store(&format!("backup: {{destination: '{good}'}}")),
                &Platform::local(),
            )
            .unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "s3://AB/prod",
            "s3://ab",
            "s3://192.168.1.10/x",
            "s3://key:secret@bucket/x",
            "gs://google-things",
            "gs://goog-x",
            "file://host/path",
            "file:///",
            "ftp://bucket/x",
            "s3://bucket:9000/x",
        ] {
            let found = validate_on(
                &store(&format!("backup: {{destination: '{bad}'}}")),
                &Platform::local(),
            )
            .unwrap_err()
            .errors()
            .to_vec();
            assert_eq!(found.len(), 1, "{bad}: {found:?}");
            assert_eq!(found[0].field, "spec.backup.destination");
            assert!(found[0].message.contains(bad), "{}", found[0].message);
        }
    }

    #[test]
    fn the_store_policy_limits_images_and_backup_service_accounts_in_kubernetes() {
        let platform = Platform {
            policy: crate::model::StorePolicy {
                allowed_images: vec!["registry.example.com/".to_owned()],
                allowed_service_accounts: vec!["backup-s3".to_owned()],
            },
            ..Platform::default()
        };
        let spec = "redis: {image: 'registry.example.com/redis:7.2.16'}\nsentinel: {image: 'docker.io/library/redis:7.2.16'}\njobs: {image: 'registry.example.com/abstore-jobs:0.1.0'}\nmonitoring: {exporter: {enabled: true, image: 'registry.example.com.evil.io/exporter:1'}}\nbackup: {destination: 's3://ab-backups/x', serviceAccountName: admin}\n";
        let problems = validate_on(&store(spec), &platform).unwrap_err();
        let mut fields: Vec<&str> = problems.errors().iter().map(|e| e.field.as_str()).collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "spec.backup.serviceAccountName",
                "spec.monitoring.exporter.image",
                "spec.sentinel.image",
            ],
            "{problems}"
        );
        assert!(
            problems.to_string().contains("registry.example.com/"),
            "{problems}"
        );
        // Allowed ones pass; the default policy allows anything; local up has no policy.
        let good = spec
            .replace("docker.io/library/redis", "registry.example.com/redis")
            .replace("registry.example.com.evil.io/", "registry.example.com/")
            .replace("serviceAccountName: admin", "serviceAccountName: backup-s3");
        validate_on(&store(&good), &platform).unwrap();
        validate(&store(spec)).unwrap();
    }

    #[test]
    fn cluster_mode_is_checked_and_its_pods_follow_the_shards() {
        let local = |spec: &str| -> Vec<String> {
            match validate_on(&store(spec), &Platform::local()) {
                Ok(_) => Vec::new(),
                Err(e) => e.errors().iter().map(|e| e.field.clone()).collect(),
            }
        };
        // Local up: defaults filled in; the replicas per shard decide min-replicas-to-write.
        let model = validate_on(&store("mode: cluster"), &Platform::local()).unwrap();
        let cluster = model.cluster().unwrap();
        assert_eq!((cluster.shards, cluster.replicas_per_shard), (3, 1));
        assert_eq!(model.min_replicas_to_write(), 1);
        let model = validate_on(
            &store("mode: cluster\ncluster: {shards: 2, replicasPerShard: 0}"),
            &Platform::local(),
        )
        .unwrap();
        assert_eq!(model.min_replicas_to_write(), 0);
        assert!(validate(&store("{}")).unwrap().cluster().is_none());
        assert_eq!(
            local(
                "mode: cluster\ncluster: {shards: 0, replicasPerShard: 6, nodeTimeoutMilliseconds: 100}"
            ),
            [
                "spec.cluster.shards",
                "spec.cluster.replicasPerShard",
                "spec.cluster.nodeTimeoutMilliseconds"
            ]
        );
        assert_eq!(local("cluster: {shards: 3}"), ["spec.cluster"]);
        assert!(local("mode: cluster\ntls: {enabled: true, secretName: t}").is_empty());
        assert_eq!(
            local("mode: cluster\nredis: {config: {cluster-node-timeout: '100'}}"),
            ["spec.redis.config.cluster-node-timeout"]
        );
        // Kubernetes builds it too: the pods are every shard's primary and replicas.
        let model = validate(&store(
            "mode: cluster\ncluster: {shards: 4, replicasPerShard: 2}",
        ))
        .unwrap();
        assert_eq!(model.redis_pods(), 12);
        assert!(validate(&store("mode: cluster")).is_ok());
    }

    #[test]
    fn file_backups_are_for_local_up_and_refused_in_kubernetes() {
        // In a pod the directory is the Job's own emptyDir: gone with the pod, reported as done.
        let spec = "backup: {destination: 'file:///var/backups/ab'}";
        let found = errors(spec);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].field, "spec.backup.destination");
        assert!(
            found[0].message.contains("lost with it"),
            "{}",
            found[0].message
        );
        validate_on(&store(spec), &Platform::local()).unwrap();
    }

    #[test]
    fn directives_the_operator_owns_are_refused_whatever_their_case() {
        // Each of these would break replication, persistence, ACLs or the listeners.
        for directive in [
            "replicaof",
            "SLAVEOF",
            "aclfile",
            "dir",
            "port",
            "tls-port",
            "bind",
            "masterauth",
            "requirepass",
            "appendonly",
            "appendfsync",
            "save",
            "min-replicas-to-write",
            "include",
            "rename-command",
            "daemonize",
            "logfile",
            "pidfile",
            "unixsocket",
            "replica-announce-ip",
            "protected-mode",
            "cluster-enabled",
            "maxmemory",
            "loadmodule",
        ] {
            let found = errors(&format!("redis: {{config: {{{directive}: 'x'}}}}"));
            assert_eq!(found.len(), 1, "{directive}: {found:?}");
            assert!(
                found[0].message.contains("set by the operator"),
                "{directive}: {}",
                found[0].message
            );
        }
    }

    #[test]
    fn tunables_pass_and_typos_or_multiline_values_do_not() {
        // redis-server refuses unknown directives, which would crash-loop every pod.
        let model = validate(&store(
            "redis: {config: {HZ: '50', tcp-keepalive: '60', notify-keyspace-events: ''}}",
        ))
        .unwrap();
        assert_eq!(
            model.spec.redis.config.get("hz").map(String::as_str),
            Some("50")
        );
        assert_eq!(
            fields("redis: {config: {maxmemroy-samples: '5'}}"),
            ["spec.redis.config.maxmemroy-samples"]
        );
        let found = errors("redis: {config: {hz: \"10\\nreplicaof evil 6379\"}}");
        assert_eq!(found.len(), 1);
        assert!(found[0].message.contains("newline"));
    }

    #[test]
    fn long_or_malformed_store_names_are_refused_with_the_limit() {
        // Pod and Service names derived from the store name must stay within 63 characters.
        let mut s = store("{}");
        s.metadata.name = Some("a".repeat(MAX_STORE_NAME_LEN + 1));
        let error = validate(&s).unwrap_err();
        assert_eq!(error.field(), "metadata.name");
        assert!(error.to_string().contains("at most 40"), "{error}");
        s.metadata.name = Some("a".repeat(MAX_STORE_NAME_LEN));
        validate(&s).unwrap();
        s.metadata.name = Some("1shop".to_owned());
        assert_eq!(validate(&s).unwrap_err().field(), "metadata.name");
    }

    #[test]
    fn a_store_without_namespace_is_refused() {
        // Every child is namespaced; render needs -n when the file has no namespace.
        let mut s = store("{}");
        s.metadata.namespace = None;
        assert_eq!(validate(&s).unwrap_err().field(), "metadata.namespace");
    }

    #[test]
    fn declared_users_must_be_unique_and_not_built_in() {
        // A user called `replication` would replace the replicas' credentials.
        let found = fields(
            "auth:\n  users:\n  - {name: reporting, keys: ['ec:*'], commands: '+@read'}\n  - {name: reporting, keys: ['ec:*'], commands: '+@read'}\n  - {name: replication, keys: [], commands: '+ping'}\n  - {name: default, keys: [], commands: '+ping'}",
        );
        assert_eq!(
            found,
            [
                "spec.auth.users[1].name",
                "spec.auth.users[2].name",
                "spec.auth.users[3].name"
            ]
        );
    }

    #[test]
    fn user_rules_cannot_smuggle_passwords_keys_or_lines() {
        // The rules are copied into the ACL file; `>pw`, `nopass` or a newline would grant access.
        for commands in [
            "+@read >secret",
            "+@read nopass",
            "+get ~*",
            "+get\nuser evil on nopass",
            "on +@all",
            "",
            "+@read &*",
        ] {
            let yaml = format!(
                "auth:\n  users:\n  - name: reporting\n    keys: ['ec:*']\n    commands: {}",
                serde_json::to_string(commands).unwrap()
            );
            assert_eq!(
                fields(&yaml),
                ["spec.auth.users[0].commands"],
                "{commands:?}"
            );
        }
        validate(&store(
            "auth:\n  users:\n  - {name: reporting, keys: ['ec:*', 'prod:uc:*'], commands: '+@read +@hyperloglog -keys +client|setname allcommands -@dangerous'}",
        ))
        .unwrap();
    }

    #[test]
    fn key_patterns_with_spaces_are_refused() {
        // A space would end the pattern and start a new ACL rule.
        assert_eq!(
            fields(
                "auth:\n  users:\n  - {name: reporting, keys: ['ec:* +@all'], commands: '+get'}"
            ),
            ["spec.auth.users[0].keys[0]"]
        );
        assert_eq!(
            fields("backup: {keyPatterns: ['a b']}"),
            ["spec.backup.keyPatterns[0]"]
        );
    }

    #[test]
    fn save_points_need_two_positive_numbers() {
        // `save` lines are copied into redis.conf; redis-server refuses malformed ones.
        assert_eq!(
            fields("persistence: {rdb: {save: ['300 100', '300', 'x 1', '0 1', '60 10 5']}}"),
            [
                "spec.persistence.rdb.save[1]",
                "spec.persistence.rdb.save[2]",
                "spec.persistence.rdb.save[3]",
                "spec.persistence.rdb.save[4]"
            ]
        );
        assert_eq!(
            fields("persistence: {rdb: {save: []}}"),
            ["spec.persistence.rdb.save"]
        );
        validate(&store("persistence: {rdb: {enabled: false, save: []}}")).unwrap();
    }

    #[test]
    fn tls_needs_a_secret() {
        // Without the Secret the pods would wait forever for their volume.
        assert_eq!(fields("tls: {enabled: true}"), ["spec.tls.secretName"]);
        validate(&store("tls: {enabled: true, secretName: shop-tls}")).unwrap();
    }

    #[test]
    fn object_names_and_ranges_are_checked_even_without_the_api_server() {
        // `render -f` reads files that never passed the CRD schema.
        let found = fields(
            "priorityClassName: Not_Valid\nredis: {replicas: 0}\nretention: {days: 0}\nmonitoring: {serviceMonitor: {interval: '30'}}",
        );
        assert_eq!(
            found,
            [
                "spec.redis.replicas",
                "spec.retention.days",
                "spec.monitoring.serviceMonitor.interval",
                "spec.priorityClassName"
            ]
        );
    }
}
