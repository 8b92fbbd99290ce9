//! The `<n>-redis` StatefulSet: redis-server started by the config's start script, with its
//! volume, probes, the preStop failover, and the redis_exporter sidecar.

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, ExecAction, Lifecycle, LifecycleHandler,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, Probe, SecretKeySelector,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::pod::{bytes_quantity, container_security_context, env, field_env, resources};
use super::statefulset::{self, ComponentPods};
use super::volumes::{DATA_VOLUME, pod_mounts, pod_volumes, script, tls_mounts};
use super::{METRICS_PORT_NAME, POD_NAME_ENV, REDIS_HEADLESS_SUFFIX, REDIS_PORT_NAME};
use crate::config::{
    ACL_FILE_NAME, LIVENESS_REDIS, PRESTOP_REDIS, PRESTOP_TIMEOUT_SECONDS, READINESS_REDIS,
    REDIS_POD_CREDENTIALS, START_REDIS, START_REDIS_CLUSTER, TLS_CA_FILE, TLS_CERT_FILE, TLS_DIR,
    TLS_KEY_FILE,
};
use crate::credentials::{PASSWORD_KEY, Role, credentials_secret_name};
use crate::model::{CLUSTER_BUS_PORT, EXPORTER_PORT, Model, REDIS, REDIS_PORT};

/// Name of the cluster bus port (cluster mode).
pub const CLUSTER_BUS_PORT_NAME: &str = "cluster-bus";

/// Name of the redis-server container.
pub const REDIS_CONTAINER: &str = "redis";
/// Name of the exporter sidecar.
pub const EXPORTER_CONTAINER: &str = "exporter";
/// Seconds a Redis pod gets to stop after its preStop hook's own limit: the hook hands the
/// primary role over (writes paused, replicas caught up, Sentinel failover, demotion) within
/// `PRESTOP_TIMEOUT_SECONDS` plus its last two commands' timeouts (seconds); then redis-server
/// gets SIGTERM and writes its final snapshot. The grace period counts from the hook's start.
pub const SHUTDOWN_GRACE_SECONDS: i64 = 60;

/// The Redis StatefulSet.
pub(crate) fn stateful_set(model: &Model, config_hash: &str) -> StatefulSet {
    let mut containers = vec![redis_container(model)];
    if model.spec.monitoring.exporter.enabled {
        containers.push(exporter_container(model));
    }
    let mut set = statefulset::stateful_set(
        model,
        config_hash,
        ComponentPods {
            component: REDIS,
            replicas: model.redis_pods(),
            headless_suffix: REDIS_HEADLESS_SUFFIX,
            containers,
            volumes: pod_volumes(model, &REDIS_POD_CREDENTIALS, Some(ACL_FILE_NAME)),
            termination_grace_period_seconds: PRESTOP_TIMEOUT_SECONDS + SHUTDOWN_GRACE_SECONDS,
            volume_claim_templates: Some(vec![data_claim(model)]),
        },
    );
    if model.cluster().is_some()
        && let Some(spec) = set.spec.as_mut()
    {
        // A shard's pods go only after resharding emptied it (the operator holds the replicas
        // until then): their claims go with them, so a shard added later starts empty instead
        // of with a stale cluster identity. Deleting the store keeps every claim.
        spec.persistent_volume_claim_retention_policy =
            Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_scaled: Some("Delete".to_owned()),
                when_deleted: Some("Retain".to_owned()),
            });
    }
    set
}

/// The data volume of every pod: always a claim, never an emptyDir (a primary that restarts
/// empty would wipe its replicas).
fn data_claim(model: &Model) -> PersistentVolumeClaim {
    let storage = &model.spec.redis.storage;
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.to_owned()),
            // No labels: the StatefulSet controller gives each claim the set's selector labels
            // (never `managed-by`: the claims outlive the StatefulSet on purpose and must never
            // look like a child that cleanup may delete). Labels here crash the
            // kube-controller-manager of Kubernetes 1.28.0–1.28.2 (also 1.27.4–1.27.6,
            // 1.26.7–1.26.9, 1.25.12–1.25.14) when a Parallel StatefulSet creates several pods
            // at once: it writes the selector into the template's shared label map from
            // concurrent goroutines ("fatal error: concurrent map writes",
            // kubernetes/kubernetes#121053). Seen in this project's e2e suite on v1.28.0.
            labels: None,
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_owned(), storage.size.clone())].into()),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

fn redis_container(model: &Model) -> Container {
    let cluster = model.cluster().is_some();
    let mut ports = vec![ContainerPort {
        name: Some(REDIS_PORT_NAME.to_owned()),
        container_port: i32::from(REDIS_PORT),
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }];
    if cluster {
        ports.push(ContainerPort {
            name: Some(CLUSTER_BUS_PORT_NAME.to_owned()),
            container_port: i32::from(CLUSTER_BUS_PORT),
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        });
    }
    // Sized for maxmemory by the one formula (crate::memory): fragmentation, a fork copying
    // every page, the backlog and the replicas' sync buffers. Independent of the pod count:
    // scaling must not change the pod template.
    let memory = crate::memory::limit_for(
        model
            .maxmemory_bytes
            .unwrap_or(crate::memory::DEFAULT_MAXMEMORY),
    );
    Container {
        name: REDIS_CONTAINER.to_owned(),
        image: Some(model.spec.redis.image.clone()),
        command: Some(script(if cluster {
            START_REDIS_CLUSTER
        } else {
            START_REDIS
        })),
        // The scripts have everything else baked in by config; the pod's own name is the
        // one thing only the pod knows.
        env: Some(vec![field_env(POD_NAME_ENV, "metadata.name")]),
        ports: Some(ports),
        resources: Some(resources(
            model.spec.redis.resources.as_ref(),
            "100m",
            bytes_quantity(memory),
        )),
        // Startup waits (up to 5 minutes) for redis-server to answer at all: the start script
        // first asks the sentinels and peers who the primary is. Liveness accepts LOADING, so
        // a long dataset load is not killed in a loop; readiness waits for the sync.
        startup_probe: Some(exec_probe(script(LIVENESS_REDIS), 5, 5, 60)),
        liveness_probe: Some(exec_probe(script(LIVENESS_REDIS), 0, 10, 3)),
        readiness_probe: Some(exec_probe(script(READINESS_REDIS), 0, 5, 2)),
        // Cluster mode: no hook; the operator moves a primary away (CLUSTER FAILOVER) before
        // it deletes its pod, and the cluster fails over on its own otherwise.
        lifecycle: (!cluster).then(|| Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(script(PRESTOP_REDIS)),
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        security_context: Some(container_security_context()),
        volume_mounts: Some(pod_mounts(model, true)),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    }
}

/// redis_exporter, logging in as the `exporter` user. With TLS it connects to the pod's own
/// DNS name, which the certificate covers (`localhost` would not verify).
fn exporter_container(model: &Model) -> Container {
    let exporter = &model.spec.monitoring.exporter;
    let tls = model.spec.tls.enabled;
    let mut env_vars = vec![
        field_env(POD_NAME_ENV, "metadata.name"),
        env(
            "REDIS_ADDR",
            if tls {
                format!(
                    "rediss://$({}).{}:{REDIS_PORT}",
                    POD_NAME_ENV,
                    model.service_fqdn(REDIS_HEADLESS_SUFFIX)
                )
            } else {
                format!("redis://localhost:{REDIS_PORT}")
            },
        ),
        env("REDIS_USER", Role::Exporter.username()),
        EnvVar {
            name: "REDIS_PASSWORD".to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: credentials_secret_name(model, Role::Exporter.username()),
                    key: PASSWORD_KEY.to_owned(),
                    optional: None,
                }),
                ..EnvVarSource::default()
            }),
        },
    ];
    if tls {
        env_vars.extend([
            env(
                "REDIS_EXPORTER_TLS_CA_CERT_FILE",
                format!("{TLS_DIR}/{TLS_CA_FILE}"),
            ),
            env(
                "REDIS_EXPORTER_TLS_CLIENT_CERT_FILE",
                format!("{TLS_DIR}/{TLS_CERT_FILE}"),
            ),
            env(
                "REDIS_EXPORTER_TLS_CLIENT_KEY_FILE",
                format!("{TLS_DIR}/{TLS_KEY_FILE}"),
            ),
        ]);
    }
    Container {
        name: EXPORTER_CONTAINER.to_owned(),
        image: Some(exporter.image.clone()),
        env: Some(env_vars),
        ports: Some(vec![ContainerPort {
            name: Some(METRICS_PORT_NAME.to_owned()),
            container_port: i32::from(EXPORTER_PORT),
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        resources: Some(resources(
            exporter.resources.as_ref(),
            "10m",
            Quantity("32Mi".to_owned()),
        )),
        security_context: Some(container_security_context()),
        volume_mounts: Some(tls_mounts(model)).filter(|mounts| !mounts.is_empty()),
        ..Container::default()
    }
}

/// A probe running `command` in the container.
pub(crate) fn exec_probe(
    command: Vec<String>,
    initial_delay: i32,
    period: i32,
    failures: i32,
) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(command),
        }),
        initial_delay_seconds: (initial_delay > 0).then_some(initial_delay),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}
