//! build tests: inline ABStore YAML through the real validate, credentials and build steps,
//! asserting on the typed objects the controller would apply.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{Container, PodSpec, Secret, Service};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer};
use kube::Resource;

use abstore_operator::build::{
    BACKUP_COMPONENT, Children, OPERATOR_POD_NAME, PRIMARY_URL_KEY, PRUNE_COMPONENT,
    SENTINEL_URL_KEY, build,
};
use abstore_operator::config::{
    ACL_DIR, ACL_FILE_NAME, REDIS_CONF, SENTINEL_ACL_FILE_NAME, TLS_DIR,
};
use abstore_operator::crd::ABStore;
use abstore_operator::credentials::{Credentials, PASSWORD_KEY};
use abstore_operator::model::{
    CLIENT_LABEL, CONFIG_HASH_ANNOTATION, INSTANCE_LABEL, MANAGED_BY_LABEL, Model, NAME_LABEL,
    REDIS, ROLE_LABEL, ROLE_PRIMARY, ROLE_REPLICA, SENTINEL,
};
use abstore_operator::rotation::STATE_KEY;
use abstore_operator::validate::validate;

const UID: &str = "0d9a0f4e-2d3c-4b8a-9a67-6f1e2c3b4a5d";

/// An ABStore `shop` in namespace `ab` (with a uid, as the API server would give it) whose
/// spec is `spec` (YAML, indented by the caller or not at all).
fn store(spec: &str) -> ABStore {
    let indented: String = spec.lines().map(|line| format!("  {line}\n")).collect();
    let yaml = format!(
        "apiVersion: abstore.dev/v1alpha1\nkind: ABStore\nmetadata:\n  name: shop\n  namespace: ab\n  uid: {UID}\nspec:\n{}",
        if spec.trim().is_empty() {
            "  {}\n".to_owned()
        } else {
            indented
        }
    );
    serde_yaml::from_str(&yaml).unwrap()
}

fn model(spec: &str) -> Model {
    validate(&store(spec)).unwrap()
}

/// Deterministic passwords, so two builds of the same spec are comparable.
fn credentials(model: &Model, existing: &BTreeMap<String, String>) -> Credentials {
    let mut n = 0;
    Credentials::resolve(model, existing, &mut || {
        n += 1;
        format!("test-password-number-{n:04}")
    })
}

fn built(spec: &str) -> Children {
    let model = model(spec);
    build(&model, &credentials(&model, &BTreeMap::new())).unwrap()
}

fn stateful_set<'a>(children: &'a Children, name: &str) -> &'a StatefulSet {
    children
        .stateful_sets
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no StatefulSet {name}"))
}

fn pod_spec(set: &StatefulSet) -> &PodSpec {
    set.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

fn container<'a>(set: &'a StatefulSet, name: &str) -> &'a Container {
    pod_spec(set)
        .containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn service<'a>(children: &'a Children, name: &str) -> &'a Service {
    children
        .services
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no Service {name}"))
}

fn secret<'a>(children: &'a Children, name: &str) -> &'a Secret {
    children
        .secrets
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no Secret {name}"))
}

fn secret_text(secret: &Secret, key: &str) -> String {
    let bytes = &secret.data.as_ref().unwrap()[key].0;
    String::from_utf8(bytes.clone()).unwrap()
}

fn cron_job<'a>(children: &'a Children, name: &str) -> Option<&'a CronJob> {
    children
        .cron_jobs
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(name))
}

fn config_hash(children: &Children, name: &str) -> String {
    stateful_set(children, name)
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap()[CONFIG_HASH_ANNOTATION]
        .clone()
}

fn redis_conf(children: &Children) -> String {
    children.config_maps[0].data.as_ref().unwrap()[REDIS_CONF].clone()
}

/// Every object's metadata, whatever its kind.
fn all_metadata(
    children: &Children,
) -> Vec<(
    &'static str,
    &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
)> {
    let mut all = Vec::new();
    all.extend(children.secrets.iter().map(|o| ("Secret", o.meta())));
    all.extend(children.config_maps.iter().map(|o| ("ConfigMap", o.meta())));
    all.extend(children.services.iter().map(|o| ("Service", o.meta())));
    all.extend(
        children
            .pod_disruption_budgets
            .iter()
            .map(|o| ("PodDisruptionBudget", o.meta())),
    );
    all.extend(
        children
            .network_policies
            .iter()
            .map(|o| ("NetworkPolicy", o.meta())),
    );
    all.extend(
        children
            .stateful_sets
            .iter()
            .map(|o| ("StatefulSet", o.meta())),
    );
    all.extend(children.cron_jobs.iter().map(|o| ("CronJob", o.meta())));
    all.extend(
        children
            .monitoring
            .iter()
            .map(|o| ("monitoring", &o.metadata)),
    );
    all
}

fn names<T: Resource>(objects: &[T]) -> Vec<String> {
    objects
        .iter()
        .map(|o| o.meta().name.clone().unwrap())
        .collect()
}

#[test]
fn a_default_store_builds_every_object_with_the_documented_names() {
    // Applications and runbooks refer to these names; they are part of the contract.
    let children = built("");
    assert_eq!(
        names(&children.secrets),
        [
            "shop-acl",
            "shop-user-app",
            "shop-user-api",
            "shop-user-backup",
            "shop-user-prune",
            "shop-user-exporter",
            "shop-user-replication",
            "shop-user-sentinel",
            "shop-user-operator",
        ]
    );
    assert_eq!(names(&children.config_maps), ["shop-config"]);
    assert_eq!(
        names(&children.services),
        [
            "shop-redis-headless",
            "shop-sentinel-headless",
            "shop-primary",
            "shop-replicas",
            "shop-sentinel",
            "shop-metrics",
        ]
    );
    assert_eq!(
        names(&children.pod_disruption_budgets),
        ["shop-redis", "shop-sentinel"]
    );
    assert_eq!(
        names(&children.network_policies),
        ["shop-redis", "shop-sentinel"]
    );
    assert_eq!(
        names(&children.stateful_sets),
        ["shop-redis", "shop-sentinel"]
    );
    // No destination, so no backup; retention is on by default.
    assert_eq!(names(&children.cron_jobs), ["shop-prune"]);
    assert!(children.monitoring.is_empty());
}

#[test]
fn every_object_is_namespaced_labelled_and_owned_by_the_store() {
    // Labels drive orphan cleanup; the owner reference drives garbage collection.
    let children = built("");
    for (kind, meta) in all_metadata(&children) {
        let what = format!("{kind} {:?}", meta.name);
        assert_eq!(meta.namespace.as_deref(), Some("ab"), "{what}");
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels[INSTANCE_LABEL], "shop", "{what}");
        assert_eq!(labels[NAME_LABEL], "abstore", "{what}");
        assert_eq!(labels[MANAGED_BY_LABEL], "abstore-operator", "{what}");
        let owners = meta.owner_references.as_ref().unwrap();
        assert_eq!(owners.len(), 1, "{what}");
        assert_eq!(owners[0].kind, "ABStore", "{what}");
        assert_eq!(owners[0].uid, UID, "{what}");
        assert_eq!(owners[0].controller, Some(true), "{what}");
        assert_eq!(owners[0].block_owner_deletion, Some(true), "{what}");
    }
}

#[test]
fn a_store_that_was_never_applied_has_no_owner_references() {
    // `render` of a file without a uid must not invent an owner the API server would reject.
    let mut store = store("");
    store.metadata.uid = None;
    let model = validate(&store).unwrap();
    let children = build(&model, &credentials(&model, &BTreeMap::new())).unwrap();
    for (kind, meta) in all_metadata(&children) {
        assert!(meta.owner_references.is_none(), "{kind} {:?}", meta.name);
    }
}

#[test]
fn every_redis_pod_has_a_persistent_volume_even_with_one_replica() {
    // An ephemeral primary that restarts empty wipes its replicas.
    for replicas in [1, 3] {
        let children = built(&format!(
            "redis:\n  replicas: {replicas}\n  storage:\n    size: 20Gi\n    storageClassName: fast"
        ));
        let spec = stateful_set(&children, "shop-redis").spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(replicas));
        let claims = spec.volume_claim_templates.as_ref().unwrap();
        assert_eq!(claims.len(), 1);
        // Labelled claim templates crash kube-controller-manager 1.28.0–1.28.2 when a Parallel
        // StatefulSet creates pods (kubernetes/kubernetes#121053); the set's selector labels
        // reach the claims anyway.
        assert!(
            claims[0].metadata.labels.is_none(),
            "{:?}",
            claims[0].metadata
        );
        let claim = claims[0].spec.as_ref().unwrap();
        assert_eq!(claim.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            claim.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0,
            "20Gi"
        );
        let mounts = container(stateful_set(&children, "shop-redis"), "redis")
            .volume_mounts
            .as_ref()
            .unwrap();
        assert!(
            mounts
                .iter()
                .any(|m| m.name == claims[0].metadata.name.clone().unwrap()
                    && m.mount_path == "/data")
        );
    }
}

#[test]
fn a_single_redis_pod_lowers_min_replicas_to_write_to_zero() {
    // With no replica to acknowledge, `min-replicas-to-write 1` would refuse every write.
    assert!(redis_conf(&built("redis:\n  replicas: 1")).contains("min-replicas-to-write 0\n"));
    assert!(redis_conf(&built("")).contains("min-replicas-to-write 1\n"));
}

#[test]
fn tls_mounts_the_certificate_and_switches_every_url_to_rediss() {
    // Clients, jobs and the exporter must all speak TLS once the server only listens on TLS.
    let children = built(
        "tls:\n  enabled: true\n  secretName: shop-tls\nbackup:\n  destination: s3://bucket/shop",
    );
    for name in ["shop-redis", "shop-sentinel"] {
        let set = stateful_set(&children, name);
        let tls_volume = pod_spec(set)
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some("shop-tls"))
            .unwrap_or_else(|| panic!("{name} mounts no TLS Secret"));
        let main = &pod_spec(set).containers[0];
        assert!(
            main.volume_mounts
                .as_ref()
                .unwrap()
                .iter()
                .any(|m| m.name == tls_volume.name && m.mount_path == TLS_DIR),
            "{name}"
        );
    }
    let exporter = container(stateful_set(&children, "shop-redis"), "exporter");
    let addr = exporter
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "REDIS_ADDR")
        .unwrap();
    assert!(addr.value.as_deref().unwrap().starts_with("rediss://"));

    let app = secret(&children, "shop-user-app");
    assert!(secret_text(app, SENTINEL_URL_KEY).starts_with("rediss+sentinel://app@"));
    assert!(secret_text(app, PRIMARY_URL_KEY).starts_with("rediss://app@"));

    let backup = cron_job(&children, "shop-backup").unwrap();
    let args = job_args(backup);
    let url = &args[args.iter().position(|a| a == "--redis").unwrap() + 1];
    assert!(url.starts_with("rediss+sentinel://backup@"), "{url}");
    assert!(url.contains("ca_file="), "{url}");

    // Without TLS: plain schemes.
    let plain = built("");
    assert!(
        secret_text(secret(&plain, "shop-user-app"), SENTINEL_URL_KEY)
            .starts_with("redis+sentinel://app@shop-sentinel.ab.svc.cluster.local:26379/shop")
    );
}

#[test]
fn with_tls_the_exporter_verifies_its_pods_certificate_by_the_headless_dns_name() {
    // redis_exporter reads these variables; the name it dials must be one the certificate covers
    // (the pod's headless name, not localhost) and it must verify it (no skip-verification).
    let children = built("tls:\n  enabled: true\n  secretName: shop-tls");
    let set = stateful_set(&children, "shop-redis");
    let exporter = container(set, "exporter");
    let env: Vec<(&str, Option<&str>)> = exporter
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| (e.name.as_str(), e.value.as_deref()))
        .collect();
    let value = |name: &str| {
        env.iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {name} in {env:?}"))
    };
    let headless = set.spec.as_ref().unwrap().service_name.clone().unwrap();
    assert_eq!(
        value("REDIS_ADDR"),
        format!("rediss://$(POD_NAME).{headless}.ab.svc.cluster.local:6379")
    );
    // `$(POD_NAME)` expands only if POD_NAME is defined earlier in the list.
    let position = |name: &str| env.iter().position(|(n, _)| *n == name).unwrap();
    assert!(position("POD_NAME") < position("REDIS_ADDR"));
    assert_eq!(
        value("REDIS_EXPORTER_TLS_CA_CERT_FILE"),
        format!("{TLS_DIR}/ca.crt")
    );
    assert_eq!(
        value("REDIS_EXPORTER_TLS_CLIENT_CERT_FILE"),
        format!("{TLS_DIR}/tls.crt")
    );
    assert_eq!(
        value("REDIS_EXPORTER_TLS_CLIENT_KEY_FILE"),
        format!("{TLS_DIR}/tls.key")
    );
    assert!(!env.iter().any(|(n, _)| n.contains("SKIP_TLS")), "{env:?}");
    assert!(
        exporter
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.mount_path == TLS_DIR),
        "the exporter mounts the certificate files it names"
    );

    // Without TLS: plaintext on localhost, no TLS variables.
    let plain = built("");
    let exporter = container(stateful_set(&plain, "shop-redis"), "exporter");
    let names: Vec<&str> = exporter
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert!(!names.iter().any(|n| n.contains("TLS")), "{names:?}");
}

fn job_args(job: &CronJob) -> Vec<String> {
    job_pod(job).containers[0].args.clone().unwrap()
}

fn job_pod(job: &CronJob) -> &PodSpec {
    job.spec
        .as_ref()
        .unwrap()
        .job_template
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
}

#[test]
fn the_backup_cron_job_needs_a_destination_and_is_suspended_when_disabled() {
    // Nowhere to write means no job; disabled keeps the job and its history but stops runs.
    assert!(cron_job(&built(""), "shop-backup").is_none());

    let enabled =
        built("backup:\n  destination: s3://bucket/shop\n  keyPatterns: ['ec:*', 'uc:*']");
    let job = cron_job(&enabled, "shop-backup").unwrap();
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.suspend, Some(false));
    assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
    assert_eq!(spec.schedule, "0 */12 * * *");
    assert_eq!(spec.time_zone.as_deref(), Some("Etc/UTC"));
    assert!(
        spec.successful_jobs_history_limit.is_some() && spec.failed_jobs_history_limit.is_some()
    );
    let args = job_args(job);
    assert_eq!(args[0], "backup");
    assert!(args.windows(2).any(|w| w == ["--to", "s3://bucket/shop"]));
    assert!(args.windows(2).any(|w| w == ["--match", "ec:*"]));
    assert!(args.windows(2).any(|w| w == ["--match", "uc:*"]));
    assert!(args.contains(&"--from-replica".to_owned()));
    assert_eq!(
        job.spec
            .as_ref()
            .unwrap()
            .job_template
            .spec
            .as_ref()
            .unwrap()
            .active_deadline_seconds,
        Some(3 * 3600)
    );

    let disabled = built("backup:\n  enabled: false\n  destination: s3://bucket/shop");
    let spec = cron_job(&disabled, "shop-backup")
        .unwrap()
        .spec
        .as_ref()
        .unwrap();
    assert_eq!(spec.suspend, Some(true));
}

#[test]
fn jobs_run_as_their_own_role_with_only_that_password_mounted() {
    // A compromised backup pod must not hold the app's or the operator's password.
    let children = built(
        "backup:\n  destination: gs://bucket/shop\n  serviceAccountName: backup-sa\n  credentialsSecretName: gcs-creds\n  env: [{name: GOOGLE_CLOUD_PROJECT, value: p}]\nretention:\n  days: 7",
    );
    let backup = cron_job(&children, "shop-backup").unwrap();
    let pod = job_pod(backup);
    assert_eq!(pod.service_account_name.as_deref(), Some("backup-sa"));
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    let secrets: Vec<_> = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .filter_map(|v| v.secret.as_ref()?.secret_name.clone())
        .collect();
    assert_eq!(secrets, ["shop-user-backup"]);
    let container = &pod.containers[0];
    assert_eq!(
        container.env_from.as_ref().unwrap()[0]
            .secret_ref
            .as_ref()
            .unwrap()
            .name,
        "gcs-creds"
    );
    assert_eq!(
        container.env.as_ref().unwrap()[0].name,
        "GOOGLE_CLOUD_PROJECT"
    );
    assert_eq!(
        container.termination_message_policy.as_deref(),
        Some("FallbackToLogsOnError")
    );
    let args = job_args(backup);
    assert!(args[2].contains("password_file="), "{}", args[2]);

    let prune = cron_job(&children, "shop-prune").unwrap();
    let args = job_args(prune);
    assert_eq!(args[0], "prune");
    assert_eq!(
        args[2],
        "redis+sentinel://prune@shop-sentinel.ab.svc.cluster.local:26379/shop\
         ?sentinel_username=prune&password_file=/var/run/abstore/credentials/password"
    );
    assert!(args.windows(2).any(|w| w == ["--retention-days", "7"]));
    let pod = job_pod(prune);
    assert_eq!(pod.service_account_name, None);
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert!(pod.containers[0].env_from.is_none());
}

#[test]
fn prune_is_absent_when_retention_is_disabled() {
    // Stores that keep everything (or rely on key expiry alone) get no prune job.
    assert!(cron_job(&built("retention:\n  enabled: false"), "shop-prune").is_none());
}

fn peers_of(policy: &NetworkPolicy, port: i32) -> Option<Vec<NetworkPolicyPeer>> {
    let rules = policy.spec.as_ref().unwrap().ingress.as_ref().unwrap();
    let rule = rules
        .iter()
        .find(|r| {
            r.ports.as_ref().unwrap().iter().any(|p| {
                p.port == Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(port))
            })
        })
        .unwrap_or_else(|| panic!("no rule for port {port}"));
    rule.from.clone()
}

fn pod_peer(peers: &[NetworkPolicyPeer], key: &str, value: &str) -> bool {
    peers.iter().any(|peer| {
        peer.namespace_selector.is_none()
            && peer
                .pod_selector
                .as_ref()
                .and_then(|s| s.match_labels.as_ref())
                .is_some_and(|labels| labels.get(key).map(String::as_str) == Some(value))
    })
}

#[test]
fn the_network_policy_admits_clients_sentinels_peers_jobs_and_the_operator_only() {
    // Redis holds every experiment's data: only the named parties may open a connection.
    let children = built(
        "networkPolicy:\n  allowedClients:\n  - namespaceSelector: {matchLabels: {team: growth}}\n  metricsScrapers:\n  - namespaceSelector: {matchLabels: {name: monitoring}}",
    );
    let redis = &children.network_policies[0];
    assert_eq!(
        redis
            .spec
            .as_ref()
            .unwrap()
            .pod_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["app.kubernetes.io/component"],
        REDIS
    );
    let from = peers_of(redis, 6379).unwrap();
    assert!(pod_peer(&from, CLIENT_LABEL, "shop"));
    for component in [REDIS, SENTINEL, BACKUP_COMPONENT, PRUNE_COMPONENT] {
        assert!(
            pod_peer(&from, "app.kubernetes.io/component", component),
            "{component} not admitted"
        );
    }
    assert!(from.iter().any(|p| {
        p.namespace_selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref())
            == Some(&BTreeMap::from([("team".to_owned(), "growth".to_owned())]))
    }));
    assert!(from.iter().any(|p| {
        p.namespace_selector.is_some()
            && p.pod_selector
                .as_ref()
                .and_then(|s| s.match_labels.as_ref())
                .and_then(|labels| labels.get(NAME_LABEL))
                .is_some_and(|name| name == OPERATOR_POD_NAME)
    }));
    let scrapers = peers_of(redis, 9121).unwrap();
    assert_eq!(scrapers.len(), 1);

    let sentinel = &children.network_policies[1];
    let from = peers_of(sentinel, 26379).unwrap();
    assert!(pod_peer(&from, CLIENT_LABEL, "shop"));
    assert!(pod_peer(&from, "app.kubernetes.io/component", REDIS));

    // No scrapers listed: the metrics port is open to any source.
    let open = built("");
    assert_eq!(peers_of(&open.network_policies[0], 9121), None);
    // Disabled: no policies at all.
    assert!(
        built("networkPolicy:\n  enabled: false")
            .network_policies
            .is_empty()
    );
}

#[test]
fn the_config_hash_changes_with_the_configuration_and_nothing_else() {
    // A config change must roll the pods; an unrelated change must not restart Redis.
    let base = built("");
    let again = built("");
    assert_eq!(
        config_hash(&base, "shop-redis"),
        config_hash(&again, "shop-redis")
    );
    assert_eq!(config_hash(&base, "shop-redis").len(), 64);

    let unrelated = built("backup:\n  destination: s3://bucket/shop\nretention:\n  days: 90");
    assert_eq!(
        config_hash(&base, "shop-redis"),
        config_hash(&unrelated, "shop-redis")
    );

    let config = built("redis:\n  maxmemory: 1Gi");
    assert_ne!(
        config_hash(&base, "shop-redis"),
        config_hash(&config, "shop-redis")
    );

    // Each StatefulSet rolls only for what its pods run from: a Redis setting leaves the
    // sentinels alone, a Sentinel setting the Redis pods.
    assert_eq!(
        config_hash(&base, "shop-sentinel"),
        config_hash(&config, "shop-sentinel")
    );
    let sentinel = built("sentinel:\n  downAfterMilliseconds: 7000");
    assert_ne!(
        config_hash(&base, "shop-sentinel"),
        config_hash(&sentinel, "shop-sentinel")
    );
    assert_eq!(
        config_hash(&base, "shop-redis"),
        config_hash(&sentinel, "shop-redis")
    );

    // Scaling changes min-replicas-to-write (heal sets it live): no pod restarts for it.
    let scaled = built("redis:\n  replicas: 1");
    assert_ne!(redis_conf(&base), redis_conf(&scaled));
    assert_eq!(
        config_hash(&base, "shop-redis"),
        config_hash(&scaled, "shop-redis")
    );

    // A new user changes only the ACL file, which heal applies live (ACL SETUSER): no pod
    // restarts for it.
    let user =
        built("auth:\n  users:\n  - name: reporting\n    keys: ['ec:*']\n    commands: '+@read'");
    assert_eq!(
        config_hash(&base, "shop-redis"),
        config_hash(&user, "shop-redis")
    );
    assert_eq!(
        base.config_maps[0].data, user.config_maps[0].data,
        "a user is not in the ConfigMap"
    );
    assert_ne!(
        secret_text(secret(&base, "shop-acl"), ACL_FILE_NAME),
        secret_text(secret(&user, "shop-acl"), ACL_FILE_NAME)
    );
    // The sentinels know every user too (their own ACL file), also healed live.
    assert_eq!(
        config_hash(&base, "shop-sentinel"),
        config_hash(&user, "shop-sentinel")
    );
    assert_ne!(
        secret_text(secret(&base, "shop-acl"), SENTINEL_ACL_FILE_NAME),
        secret_text(secret(&user, "shop-acl"), SENTINEL_ACL_FILE_NAME)
    );
}

#[test]
fn the_acl_secret_holds_both_acl_files_and_each_pod_mounts_only_its_own() {
    // A sentinel pod has no use for the data nodes' rules, nor a Redis pod for the sentinels'.
    let children = built("");
    let acl = secret(&children, "shop-acl");
    let keys: Vec<&String> = acl.data.as_ref().unwrap().keys().collect();
    assert_eq!(keys, [STATE_KEY, SENTINEL_ACL_FILE_NAME, ACL_FILE_NAME]);
    assert!(secret_text(acl, SENTINEL_ACL_FILE_NAME).starts_with("user default off "));
    let acl_items = |name: &str| -> Vec<String> {
        let pod = pod_spec(stateful_set(&children, name));
        let volume = pod
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| {
                v.secret
                    .as_ref()
                    .is_some_and(|s| s.secret_name.as_deref() == Some("shop-acl"))
            })
            .unwrap_or_else(|| panic!("{name} does not mount the ACL Secret"));
        let mounted = pod.containers[0]
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.name == volume.name && m.mount_path == ACL_DIR);
        assert!(mounted, "{name} mounts the ACL Secret at {ACL_DIR}");
        volume
            .secret
            .as_ref()
            .unwrap()
            .items
            .as_ref()
            .unwrap()
            .iter()
            .map(|i| i.key.clone())
            .collect()
    };
    assert_eq!(acl_items("shop-redis"), [ACL_FILE_NAME]);
    assert_eq!(acl_items("shop-sentinel"), [SENTINEL_ACL_FILE_NAME]);
}

#[test]
fn rotated_passwords_change_live_except_the_exporters_which_rolls_the_redis_pods() {
    // Heal sets ACL users, masterauth and the sentinels' auth-pass live; only redis_exporter
    // reads its password from the environment once, so its rotation must restart it.
    let store = model("");
    let first = credentials(&store, &BTreeMap::new());
    let base = build(&store, &first).unwrap();
    let rotated_in = |model: &Model, user: &str| {
        let mut existing: BTreeMap<String, String> = first
            .users()
            .map(|(name, password)| (name.to_owned(), password.to_owned()))
            .collect();
        existing.insert(user.to_owned(), "a-rotated-password-0001".to_owned());
        build(model, &credentials(model, &existing)).unwrap()
    };
    let rotated = |user: &str| rotated_in(&store, user);
    for user in ["app", "replication", "sentinel", "operator", "backup"] {
        let after = rotated(user);
        for set in ["shop-redis", "shop-sentinel"] {
            assert_eq!(
                config_hash(&base, set),
                config_hash(&after, set),
                "rotating {user} restarts {set}"
            );
        }
        for file in [ACL_FILE_NAME, SENTINEL_ACL_FILE_NAME] {
            assert_ne!(
                secret_text(secret(&base, "shop-acl"), file),
                secret_text(secret(&after, "shop-acl"), file),
                "{file} follows {user}'s password"
            );
        }
    }
    let exporter = rotated("exporter");
    assert_ne!(
        config_hash(&base, "shop-redis"),
        config_hash(&exporter, "shop-redis")
    );
    assert_eq!(
        config_hash(&base, "shop-sentinel"),
        config_hash(&exporter, "shop-sentinel")
    );
    // Without the exporter sidecar nothing restarts for it either.
    let quiet = model("monitoring:\n  exporter:\n    enabled: false");
    let a = build(&quiet, &first).unwrap();
    let b = rotated_in(&quiet, "exporter");
    assert_eq!(config_hash(&a, "shop-redis"), config_hash(&b, "shop-redis"));
}

#[test]
fn credentials_secrets_keep_existing_passwords_and_add_connection_urls() {
    // Rotating a password on reconcile would cut off every client using it.
    let model =
        model("auth:\n  users:\n  - name: reporting\n    keys: ['ec:*']\n    commands: '+@read'");
    let existing = BTreeMap::from([
        ("app".to_owned(), "an-existing-app-password-1".to_owned()),
        (
            "reporting".to_owned(),
            "an-existing-reporting-pw-2".to_owned(),
        ),
    ]);
    let children = build(&model, &credentials(&model, &existing)).unwrap();
    let app = secret(&children, "shop-user-app");
    assert_eq!(secret_text(app, PASSWORD_KEY), "an-existing-app-password-1");
    assert_eq!(secret_text(app, "username"), "app");
    assert_eq!(app.type_.as_deref(), Some("Opaque"));
    assert_eq!(
        app.metadata.labels.as_ref().unwrap()["app.kubernetes.io/component"],
        "credentials"
    );
    let reporting = secret(&children, "shop-user-reporting");
    assert_eq!(
        secret_text(reporting, PASSWORD_KEY),
        "an-existing-reporting-pw-2"
    );
    // URLs carry the user but never the password.
    for key in [SENTINEL_URL_KEY, PRIMARY_URL_KEY] {
        let url = secret_text(reporting, key);
        assert!(url.contains("reporting@"), "{url}");
        assert!(!url.contains("an-existing"), "{url}");
    }
    assert_eq!(
        secret_text(reporting, PRIMARY_URL_KEY),
        "redis://reporting@shop-primary.ab.svc.cluster.local:6379"
    );
    // The sentinels require authentication as the same user.
    assert_eq!(
        secret_text(reporting, SENTINEL_URL_KEY),
        "redis+sentinel://reporting@shop-sentinel.ab.svc.cluster.local:26379/shop?sentinel_username=reporting"
    );
    // The ACL Secret is not a credentials Secret: the controller reads those back by label.
    assert_eq!(
        secret(&children, "shop-acl")
            .metadata
            .labels
            .as_ref()
            .unwrap()["app.kubernetes.io/component"],
        "config"
    );
}

#[test]
fn service_selectors_match_the_pod_labels() {
    // A selector that matches no pod is a Service with no endpoints: an outage.
    let children = built("");
    let pod_labels = |name: &str| {
        stateful_set(&children, name)
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .clone()
            .unwrap()
    };
    let matches = |selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>| {
        selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    };
    let redis = pod_labels("shop-redis");
    let sentinel = pod_labels("shop-sentinel");
    let selector = |name: &str| {
        service(&children, name)
            .spec
            .as_ref()
            .unwrap()
            .selector
            .clone()
            .unwrap()
    };
    for name in ["shop-redis-headless", "shop-metrics"] {
        assert!(matches(&selector(name), &redis), "{name}");
    }
    for name in ["shop-sentinel-headless", "shop-sentinel"] {
        assert!(matches(&selector(name), &sentinel), "{name}");
    }
    // The role label is added by the operator at run time, so these select one role only.
    for (name, role) in [
        ("shop-primary", ROLE_PRIMARY),
        ("shop-replicas", ROLE_REPLICA),
    ] {
        let mut labelled = redis.clone();
        labelled.insert(ROLE_LABEL.to_owned(), role.to_owned());
        assert!(matches(&selector(name), &labelled), "{name}");
        assert!(
            !matches(&selector(name), &redis),
            "{name} must need the role label"
        );
    }
    // Each StatefulSet selects its own template.
    for name in ["shop-redis", "shop-sentinel"] {
        let set = stateful_set(&children, name).spec.as_ref().unwrap();
        assert!(matches(
            set.selector.match_labels.as_ref().unwrap(),
            &pod_labels(name)
        ));
    }
    // PDBs select the same pods.
    for pdb in &children.pod_disruption_budgets {
        let spec = pdb.spec.as_ref().unwrap();
        let component = &pdb.metadata.labels.as_ref().unwrap()["app.kubernetes.io/component"];
        let labels = if component == REDIS {
            &redis
        } else {
            &sentinel
        };
        assert!(matches(
            spec.selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap(),
            labels
        ));
    }
}

#[test]
fn pod_dns_names_match_the_headless_services() {
    // Redis and Sentinel announce these names; a mismatch means nothing resolves.
    let model = model("");
    let children = built("");
    for (set_name, fqdn) in [
        ("shop-redis", model.redis_pod_fqdn(1)),
        ("shop-sentinel", model.sentinel_pod_fqdn(1)),
    ] {
        let spec = stateful_set(&children, set_name).spec.as_ref().unwrap();
        let headless = spec.service_name.clone().unwrap();
        assert_eq!(
            fqdn,
            format!("{set_name}-1.{headless}.ab.svc.cluster.local")
        );
        let service = service(&children, &headless).spec.as_ref().unwrap();
        assert_eq!(service.cluster_ip.as_deref(), Some("None"));
        assert_eq!(service.publish_not_ready_addresses, Some(true));
    }
}

#[test]
fn pods_run_locked_down_with_only_the_passwords_they_need() {
    // The restricted Pod Security Standard, and least privilege for mounted secrets.
    let children = built("");
    for name in ["shop-redis", "shop-sentinel"] {
        let pod = pod_spec(stateful_set(&children, name));
        let security = pod.security_context.as_ref().unwrap();
        assert_eq!(security.run_as_non_root, Some(true));
        assert_eq!(security.run_as_user, Some(999));
        assert_eq!(
            security.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        for container in &pod.containers {
            let security = container.security_context.as_ref().unwrap();
            assert_eq!(security.read_only_root_filesystem, Some(true));
            assert_eq!(security.allow_privilege_escalation, Some(false));
            assert_eq!(
                security.capabilities.as_ref().unwrap().drop,
                Some(vec!["ALL".to_owned()])
            );
        }
    }
    let projected_secrets = |name: &str| -> Vec<String> {
        pod_spec(stateful_set(&children, name))
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .filter_map(|v| v.projected.as_ref())
            .flat_map(|p| p.sources.clone().unwrap())
            .map(|s| s.secret.unwrap().name)
            .collect()
    };
    assert_eq!(
        projected_secrets("shop-redis"),
        ["shop-user-replication", "shop-user-exporter"]
    );
    assert_eq!(projected_secrets("shop-sentinel"), ["shop-user-sentinel"]);

    let redis = container(stateful_set(&children, "shop-redis"), "redis");
    let command = redis.command.as_ref().unwrap();
    assert!(command.last().unwrap().ends_with("/start-redis.sh"));
    assert!(redis.readiness_probe.is_some() && redis.liveness_probe.is_some());
    assert!(redis.lifecycle.as_ref().unwrap().pre_stop.is_some());
    // Long enough for the preStop failover plus the final snapshot.
    assert!(
        pod_spec(stateful_set(&children, "shop-redis"))
            .termination_grace_period_seconds
            .unwrap()
            > abstore_operator::config::PRESTOP_TIMEOUT_SECONDS
    );
}

#[test]
fn scheduling_defaults_spread_pods_and_the_spec_overrides_them() {
    // One node or zone failure must not take the primary and its replicas together.
    let children = built("");
    let pod = pod_spec(stateful_set(&children, "shop-redis"));
    let anti = pod
        .affinity
        .as_ref()
        .unwrap()
        .pod_anti_affinity
        .as_ref()
        .unwrap();
    assert_eq!(
        anti.preferred_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()[0]
            .pod_affinity_term
            .topology_key,
        "kubernetes.io/hostname"
    );
    assert_eq!(
        pod.topology_spread_constraints.as_ref().unwrap()[0].topology_key,
        "topology.kubernetes.io/zone"
    );

    let custom = built(
        "affinity:\n  nodeAffinity:\n    requiredDuringSchedulingIgnoredDuringExecution:\n      nodeSelectorTerms:\n      - matchExpressions: [{key: pool, operator: In, values: [redis]}]\ntopologySpreadConstraints: []\nnodeSelector: {pool: redis}\ntolerations: [{key: dedicated, operator: Exists}]\npriorityClassName: critical",
    );
    for name in ["shop-redis", "shop-sentinel"] {
        let pod = pod_spec(stateful_set(&custom, name));
        let affinity = pod.affinity.as_ref().unwrap();
        assert!(affinity.pod_anti_affinity.is_none() && affinity.node_affinity.is_some());
        assert!(pod.topology_spread_constraints.is_none());
        assert_eq!(pod.node_selector.as_ref().unwrap()["pool"], "redis");
        assert_eq!(pod.tolerations.as_ref().unwrap().len(), 1);
        assert_eq!(pod.priority_class_name.as_deref(), Some("critical"));
    }
}

#[test]
fn resources_default_to_maxmemory_plus_headroom_unless_given() {
    // A memory limit below maxmemory gets Redis OOM-killed before it refuses writes.
    let children = built("redis:\n  maxmemory: 1Gi");
    let redis = container(stateful_set(&children, "shop-redis"), "redis");
    let resources = redis.resources.as_ref().unwrap();
    // 1Gi × 2.4 (fragmentation, a fork copying every page) + 128Mi + 2 replicas × 64Mi.
    assert_eq!(resources.requests.as_ref().unwrap()["memory"].0, "2714Mi");
    assert_eq!(resources.limits.as_ref().unwrap()["memory"].0, "2714Mi");
    // Without maxmemory: the default 256Mi and the limit it needs.
    let default = built("{}");
    let redis = container(stateful_set(&default, "shop-redis"), "redis");
    let resources = redis.resources.as_ref().unwrap();
    assert_eq!(resources.limits.as_ref().unwrap()["memory"].0, "871Mi");
    // The pod count does not enter the formula: scaling must not change the pod template
    // (that would restart every pod).
    let five = built("redis:\n  replicas: 5");
    let redis = container(stateful_set(&five, "shop-redis"), "redis");
    assert_eq!(
        redis.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"].0,
        "871Mi"
    );

    let given = built("redis:\n  resources:\n    requests: {cpu: '2', memory: 4Gi}");
    let redis = container(stateful_set(&given, "shop-redis"), "redis");
    assert_eq!(
        redis.resources.as_ref().unwrap().requests.as_ref().unwrap()["cpu"].0,
        "2"
    );
}

#[test]
fn the_exporter_and_monitoring_objects_follow_the_spec() {
    // Metrics are on by default; Prometheus Operator objects only when asked for.
    let off = built("monitoring:\n  exporter:\n    enabled: false");
    let redis = stateful_set(&off, "shop-redis");
    assert_eq!(pod_spec(redis).containers.len(), 1);
    assert!(!names(&off.services).contains(&"shop-metrics".to_owned()));

    let on = built(
        "monitoring:\n  serviceMonitor:\n    enabled: true\n    labels: {release: prom}\n  prometheusRule:\n    enabled: true",
    );
    let kinds: Vec<_> = on
        .monitoring
        .iter()
        .map(|o| o.types.as_ref().unwrap().kind.clone())
        .collect();
    assert_eq!(kinds, ["ServiceMonitor", "PrometheusRule"]);
    let monitor = &on.monitoring[0];
    assert_eq!(
        monitor.types.as_ref().unwrap().api_version,
        "monitoring.coreos.com/v1"
    );
    assert_eq!(monitor.metadata.labels.as_ref().unwrap()["release"], "prom");
    // The ServiceMonitor selects the metrics Service by its labels.
    let selector = &monitor.data["spec"]["selector"]["matchLabels"];
    let metrics = service(&on, "shop-metrics");
    for (key, value) in selector.as_object().unwrap() {
        assert_eq!(
            metrics
                .metadata
                .labels
                .as_ref()
                .unwrap()
                .get(key)
                .map(String::as_str),
            value.as_str()
        );
    }
    assert_eq!(monitor.data["spec"]["endpoints"][0]["port"], "metrics");
    let rules = &on.monitoring[1].data["spec"]["groups"][0]["rules"];
    assert!(rules.as_array().unwrap().len() >= 2);
}

#[test]
fn pod_disruption_budgets_use_max_unavailable_and_can_be_disabled() {
    // maxUnavailable keeps drains possible at any scale, one pod at a time by default.
    let children = built("podDisruptionBudget:\n  maxUnavailable: 2");
    for pdb in &children.pod_disruption_budgets {
        assert_eq!(
            pdb.spec.as_ref().unwrap().max_unavailable,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(2))
        );
    }
    assert!(
        built("podDisruptionBudget:\n  enabled: false")
            .pod_disruption_budgets
            .is_empty()
    );
}

#[test]
fn building_twice_gives_identical_objects() {
    // build is pure: the controller's no-op reconcile must not produce a diff.
    let spec = "backup:\n  destination: s3://bucket/prefix";
    let a = format!("{:?}", built(spec));
    let b = format!("{:?}", built(spec));
    assert_eq!(a, b);
}

#[test]
fn the_tracking_api_is_a_locked_down_deployment_with_its_service_budget_autoscaler_and_policy() {
    use abstore_operator::build::{
        API_COMPONENT, API_CONTAINER_PORT, API_CREDENTIALS_ANNOTATION, API_KEY_DIR, API_KEY_FILE,
    };
    // Off by default: nothing of it.
    let off = built("");
    assert!(off.deployments.is_empty() && off.horizontal_pod_autoscalers.is_empty());
    assert!(
        !off.services
            .iter()
            .any(|s| s.metadata.name.as_deref() == Some("shop-api"))
    );

    let spec = "redis: {replicas: 3}\napi:\n  enabled: true\n  apiKeySecret: {name: shop-key, key: token}\n  allowedOrigins: ['https://shop.example', 'http://localhost:3000']\n  rateLimit: 700\n  allowedClients: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress}}}]\n  autoscaling: {enabled: true, maxReplicas: 5}";
    let model = model(spec);
    let creds = credentials(&model, &BTreeMap::new());
    let children = build(&model, &creds).unwrap();
    let deployment = &children.deployments[0];
    assert_eq!(deployment.metadata.name.as_deref(), Some("shop-api"));
    let dspec = deployment.spec.as_ref().unwrap();
    // The autoscaler owns the replica count.
    assert_eq!(dspec.replicas, None);
    let pod = dspec.template.spec.as_ref().unwrap();
    let container = &pod.containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some(abstore_operator::crd::DEFAULT_API_IMAGE)
    );
    let env: BTreeMap<&str, &str> = container
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| (e.name.as_str(), e.value.as_deref().unwrap()))
        .collect();
    assert_eq!(
        env["ABSTORE_API_REDIS_URL"],
        "redis+sentinel://api@shop-sentinel.ab.svc.cluster.local:26379/shop?sentinel_username=api&password_file=/var/run/abstore/credentials/password"
    );
    assert_eq!(
        env["ABSTORE_API_LISTEN"],
        format!("0.0.0.0:{API_CONTAINER_PORT}")
    );
    assert_eq!(
        env["ABSTORE_API_KEY_FILE"],
        format!("{API_KEY_DIR}/{API_KEY_FILE}")
    );
    assert_eq!(
        env["ABSTORE_API_ALLOWED_ORIGINS"],
        "https://shop.example,http://localhost:3000"
    );
    assert_eq!(env["ABSTORE_API_RATE_LIMIT"], "700");
    // Two replicas per primary: every event waits for one of them by default.
    assert_eq!(env["ABSTORE_API_WAIT_REPLICAS"], "1");
    // The default 100m request and no CPU limit: one thread, not one per node CPU.
    assert_eq!(env["ABSTORE_API_WORKER_THREADS"], "1");
    // Only the api user's password and the key, read-only root, no service account token.
    let secrets: Vec<String> = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .filter_map(|v| v.secret.as_ref())
        .map(|s| {
            format!(
                "{}:{}",
                s.secret_name.as_deref().unwrap(),
                s.items.as_ref().unwrap()[0].key
            )
        })
        .collect();
    assert_eq!(secrets, ["shop-user-api:password", "shop-key:token"]);
    assert_eq!(pod.automount_service_account_token, Some(false));
    let security = container.security_context.as_ref().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert!(container.readiness_probe.is_some() && container.liveness_probe.is_some());
    // A rotated api password rolls the pods (the key they follow themselves).
    let annotations = dspec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap();
    assert!(annotations.contains_key(API_CREDENTIALS_ANNOTATION));

    // The Service selects the Deployment's pods.
    let service = children
        .services
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some("shop-api"))
        .unwrap();
    let pod_labels = dspec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    for (key, value) in service.spec.as_ref().unwrap().selector.as_ref().unwrap() {
        assert_eq!(pod_labels.get(key), Some(value), "{key}");
    }
    assert!(
        children
            .pod_disruption_budgets
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some("shop-api"))
    );
    let hpa = children.horizontal_pod_autoscalers[0]
        .spec
        .as_ref()
        .unwrap();
    assert_eq!((hpa.min_replicas, hpa.max_replicas), (Some(2), 5));
    assert_eq!(hpa.scale_target_ref.name, "shop-api");

    // Its policy: its port from the namespace and the declared clients; and Redis and Sentinel
    // admit the API's pods.
    let policy = children
        .network_policies
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some("shop-api"))
        .unwrap();
    let from = peers_of(policy, i32::from(API_CONTAINER_PORT)).unwrap();
    assert_eq!(from.len(), 2, "{from:?}");
    for policy in &children.network_policies[..2] {
        let port = if policy.metadata.name.as_deref() == Some("shop-redis") {
            6379
        } else {
            26379
        };
        assert!(
            pod_peer(
                &peers_of(policy, port).unwrap(),
                "app.kubernetes.io/component",
                API_COMPONENT
            ),
            "{:?} does not admit the API",
            policy.metadata.name
        );
    }

    // Without autoscaling the Deployment says how many; one Redis pod: no WAIT.
    let fixed =
        built("redis: {replicas: 1}\napi: {enabled: true, replicas: 3, apiKeySecret: {name: k}}");
    let dspec = fixed.deployments[0].spec.as_ref().unwrap();
    assert_eq!(dspec.replicas, Some(3));
    let wait = dspec.template.spec.as_ref().unwrap().containers[0]
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "ABSTORE_API_WAIT_REPLICAS")
        .and_then(|e| e.value.clone());
    assert_eq!(wait.as_deref(), Some("0"));
    assert!(fixed.horizontal_pod_autoscalers.is_empty());
}

#[test]
fn a_bad_api_spec_is_refused_naming_each_field() {
    let error = validate(&store(
        "redis: {replicas: 2}\napi:\n  enabled: true\n  allowedOrigins: ['https://shop.example/path', 'shop.example']\n  waitReplicas: 2\n  autoscaling: {enabled: true, maxReplicas: 1}",
    ))
    .unwrap_err();
    let fields: Vec<&str> = error.errors().iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.api.apiKeySecret",
            "spec.api.allowedOrigins[0]",
            "spec.api.allowedOrigins[1]",
            "spec.api.waitReplicas",
            "spec.api.autoscaling.maxReplicas"
        ],
        "{error}"
    );
    // Disabled, its fields are not looked at.
    validate(&store("api: {enabled: false, waitReplicas: 5}")).unwrap();
}
