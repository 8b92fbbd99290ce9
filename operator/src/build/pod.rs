//! Pieces shared by the Redis, Sentinel and job pods: scheduling defaults, the locked-down
//! security context, resource defaults and small builders for env vars and volumes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    KeyToPath, ObjectFieldSelector, PodAffinityTerm, PodAntiAffinity, PodSecurityContext,
    ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext,
    TopologySpreadConstraint, Volume, VolumeMount, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::meta::selector;
use crate::model::Model;

/// uid and gid of the `redis` user in the official Redis image; running as it keeps files on
/// the volume owned by the same user the image's own tooling expects.
pub const REDIS_UID: i64 = 999;
/// uid of the job pods (the distroless `nonroot` user the jobs image runs as).
pub const JOBS_UID: i64 = 65532;
/// Node label pods of one store avoid sharing.
pub const HOSTNAME_TOPOLOGY_KEY: &str = "kubernetes.io/hostname";
/// Node label pods of one store spread over.
pub const ZONE_TOPOLOGY_KEY: &str = "topology.kubernetes.io/zone";

/// Mode of mounted secret files: readable by the pod's user (and fsGroup) only.
pub(crate) const SECRET_FILE_MODE: i32 = 0o440;

/// Affinity and topology spread of a component's pods: the spec's when given, otherwise
/// prefer one pod per node and an even spread over zones. Both defaults are soft, so a small
/// cluster (or kind) still schedules every pod.
pub(crate) fn scheduling(
    model: &Model,
    component: &str,
) -> (Option<Affinity>, Option<Vec<TopologySpreadConstraint>>) {
    let pods = selector(model.selector_labels(component));
    let affinity = model.spec.affinity.clone().unwrap_or_else(|| Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(pods.clone()),
                        topology_key: HOSTNAME_TOPOLOGY_KEY.to_owned(),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            required_during_scheduling_ignored_during_execution: None,
        }),
        ..Affinity::default()
    });
    let spread = model
        .spec
        .topology_spread_constraints
        .clone()
        .unwrap_or_else(|| {
            vec![TopologySpreadConstraint {
                label_selector: Some(pods),
                max_skew: 1,
                topology_key: ZONE_TOPOLOGY_KEY.to_owned(),
                when_unsatisfiable: "ScheduleAnyway".to_owned(),
                ..TopologySpreadConstraint::default()
            }]
        });
    (Some(affinity), (!spread.is_empty()).then_some(spread))
}

/// Pod security: non-root, the given uid/gid, volumes group-owned by it, the runtime's default
/// seccomp profile (what the `restricted` Pod Security Standard asks for).
pub(crate) fn pod_security_context(uid: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        fs_group: Some(uid),
        // Re-chowning a large data volume on every start delays failover recovery.
        fs_group_change_policy: Some("OnRootMismatch".to_owned()),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}

/// Container security: read-only root, no privilege escalation, no capabilities.
pub(crate) fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        ..SecurityContext::default()
    }
}

/// The spec's resources, or requests of `cpu` and `memory` with a memory limit equal to the
/// request. No CPU limit by default: throttling a primary stalls replication and Sentinel
/// pings, which looks like an outage.
pub(crate) fn resources(
    given: Option<&ResourceRequirements>,
    cpu: &str,
    memory: Quantity,
) -> ResourceRequirements {
    given.cloned().unwrap_or_else(|| ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), memory.clone()),
        ])),
        limits: Some(BTreeMap::from([("memory".to_owned(), memory)])),
        claims: None,
    })
}

/// A byte count as a quantity, in Mi when it divides evenly (readable in `kubectl get`).
pub(crate) fn bytes_quantity(bytes: u64) -> Quantity {
    const MIB: u64 = 1024 * 1024;
    if bytes.is_multiple_of(MIB) {
        Quantity(format!("{}Mi", bytes / MIB))
    } else {
        Quantity(bytes.to_string())
    }
}

/// An environment variable with a fixed value.
pub(crate) fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// An environment variable from the pod's own metadata (downward API).
pub(crate) fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.to_owned(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// A read-only mount of volume `name` at `path`.
pub(crate) fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

/// A writable mount of volume `name` at `path`.
pub(crate) fn writable_mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        read_only: None,
        ..mount(name, path)
    }
}

/// A volume with the ConfigMap `config_map`; scripts in it are executable.
pub(crate) fn config_map_volume(name: &str, config_map: String) -> Volume {
    Volume {
        name: name.to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map,
            default_mode: Some(0o555),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// A volume with Secret `secret`: every key, or only `items` (key → file name) when given.
pub(crate) fn secret_volume(name: &str, secret: String, items: &[(&str, &str)]) -> Volume {
    let items = (!items.is_empty()).then(|| {
        items
            .iter()
            .map(|(key, path)| KeyToPath {
                key: (*key).to_owned(),
                path: (*path).to_owned(),
                mode: None,
            })
            .collect()
    });
    Volume {
        name: name.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret),
            items,
            default_mode: Some(SECRET_FILE_MODE),
            optional: None,
        }),
        ..Volume::default()
    }
}

/// An empty scratch volume; in memory when `memory` (nothing on it must survive the pod).
pub(crate) fn empty_dir(name: &str, memory: bool) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: memory.then(|| "Memory".to_owned()),
            size_limit: None,
        }),
        ..Volume::default()
    }
}
