//! The `<n>-sentinel` StatefulSet: redis-sentinel started by the config's start script, its
//! config written into a scratch volume (Sentinel rewrites its own config file at run time).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, ContainerPort};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::pod::{container_security_context, empty_dir, field_env, resources};
use super::redis::exec_probe;
use super::statefulset::{self, ComponentPods};
use super::volumes::{DATA_VOLUME, pod_mounts, pod_volumes, script};
use super::{POD_NAME_ENV, SENTINEL_HEADLESS_SUFFIX, SENTINEL_PORT_NAME};
use crate::config::{
    LIVENESS_SENTINEL, READINESS_SENTINEL, SENTINEL_ACL_FILE_NAME, SENTINEL_POD_CREDENTIALS,
    START_SENTINEL,
};
use crate::model::{Model, SENTINEL, SENTINEL_PORT};

/// Name of the redis-sentinel container.
pub const SENTINEL_CONTAINER: &str = "sentinel";
/// Seconds a sentinel gets to stop: it holds no data, only its vote.
pub const SENTINEL_GRACE_SECONDS: i64 = 30;

/// The Sentinel StatefulSet.
pub(crate) fn stateful_set(model: &Model, config_hash: &str) -> StatefulSet {
    let spec = &model.spec;
    let container = Container {
        name: SENTINEL_CONTAINER.to_owned(),
        image: Some(
            spec.sentinel
                .image
                .clone()
                .unwrap_or_else(|| spec.redis.image.clone()),
        ),
        command: Some(script(START_SENTINEL)),
        env: Some(vec![field_env(POD_NAME_ENV, "metadata.name")]),
        ports: Some(vec![ContainerPort {
            name: Some(SENTINEL_PORT_NAME.to_owned()),
            container_port: i32::from(SENTINEL_PORT),
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        resources: Some(resources(
            spec.sentinel.resources.as_ref(),
            "50m",
            Quantity("64Mi".to_owned()),
        )),
        liveness_probe: Some(exec_probe(script(LIVENESS_SENTINEL), 10, 10, 3)),
        readiness_probe: Some(exec_probe(script(READINESS_SENTINEL), 5, 5, 2)),
        security_context: Some(container_security_context()),
        volume_mounts: Some(pod_mounts(model, true)),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    };
    let mut volumes = pod_volumes(
        model,
        &SENTINEL_POD_CREDENTIALS,
        Some(SENTINEL_ACL_FILE_NAME),
    );
    // Sentinel state (its id, the current primary, known peers) is rebuilt by the start script
    // and the operator after a restart, so scratch space is enough; no claim to re-attach.
    volumes.push(empty_dir(DATA_VOLUME, false));
    statefulset::stateful_set(
        model,
        config_hash,
        ComponentPods {
            component: SENTINEL,
            replicas: spec.sentinel.replicas,
            headless_suffix: SENTINEL_HEADLESS_SUFFIX,
            containers: vec![container],
            volumes,
            termination_grace_period_seconds: SENTINEL_GRACE_SECONDS,
            volume_claim_templates: None,
        },
    )
}
