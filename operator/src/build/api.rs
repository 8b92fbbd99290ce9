//! The tracking API (`spec.api`): a Deployment of `abstore-api` logging in as the built-in `api`
//! user, the `<n>-api` Service, its PodDisruptionBudget, an optional HorizontalPodAutoscaler and
//! a NetworkPolicy admitting the store's namespace and the declared clients.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, HTTPGetAction, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::cronjobs::job_url;
use super::meta::{object_meta, selector};
use super::pod::{
    JOBS_UID, container_security_context, env, mount, pod_security_context, resources, scheduling,
    secret_volume,
};
use super::volumes::tls_secret;
use crate::config::TLS_CA_FILE;
use crate::credentials::{Credentials, PASSWORD_KEY, Role, credentials_secret_name};
use crate::model::Model;

/// Component label (and name suffix) of the API's objects.
pub const API_COMPONENT: &str = "api";
/// The binary in the API image.
pub const API_BINARY: &str = "abstore-api";
/// The port the API listens on in its pods (and the NetworkPolicy opens).
pub const API_CONTAINER_PORT: u16 = 8088;
/// The `<n>-api` Service's port.
pub const API_SERVICE_PORT: u16 = 80;
/// Port name the Service targets.
pub const API_PORT_NAME: &str = "http";
/// Where an API pod finds its key file.
pub const API_KEY_DIR: &str = "/var/run/abstore/api-key";
/// File name of the API key in [`API_KEY_DIR`].
pub const API_KEY_FILE: &str = "api-key";
/// Pod-template annotation with the hash of the `api` user's password: the API reads its
/// password file when it connects, so a rotated password restarts the pods (within the
/// rotation's grace period, while both passwords work).
pub const API_CREDENTIALS_ANNOTATION: &str = "abstore.dev/credentials-hash";
const CREDENTIALS_VOLUME: &str = "credentials";
const API_KEY_VOLUME: &str = "api-key";
const TLS_VOLUME: &str = "tls";
// The same directories as the jobs' pods: `job_url` names the password file there.
const CREDENTIALS_DIR: &str = super::JOBS_CREDENTIALS_DIR;
const TLS_DIR: &str = super::JOBS_TLS_DIR;

/// The API's objects, empty when `spec.api.enabled` is false (the orphan sweep then deletes
/// what an earlier spec made).
#[derive(Clone, Debug, Default)]
pub struct ApiObjects {
    pub deployment: Option<Deployment>,
    pub service: Option<Service>,
    pub pod_disruption_budget: Option<PodDisruptionBudget>,
    pub horizontal_pod_autoscaler: Option<HorizontalPodAutoscaler>,
    pub network_policy: Option<NetworkPolicy>,
}

pub(crate) fn api_objects(model: &Model, credentials: &Credentials) -> ApiObjects {
    let api = &model.spec.api;
    if !api.enabled {
        return ApiObjects::default();
    }
    let scaling = &api.autoscaling;
    ApiObjects {
        deployment: Some(deployment(model, credentials)),
        service: Some(service(model)),
        pod_disruption_budget: model
            .spec
            .pod_disruption_budget
            .enabled
            .then(|| pod_disruption_budget(model)),
        horizontal_pod_autoscaler: scaling.enabled.then(|| horizontal_pod_autoscaler(model)),
        network_policy: model
            .spec
            .network_policy
            .enabled
            .then(|| network_policy(model)),
    }
}

/// Replicas that must have each event before `track` answers 200: the spec's, or one when
/// each primary has a replica (an acknowledged event then survives a failover).
pub fn wait_replicas(model: &Model) -> u32 {
    model.spec.api.wait_replicas.unwrap_or_else(|| {
        let replicas = match model.cluster() {
            Some(cluster) => cluster.replicas_per_shard,
            None => model.spec.redis.replicas - 1,
        };
        u32::from(replicas > 0)
    })
}

/// The Redis URL the API connects with: Sentinel (or cluster) URL of the `api` user, its
/// password file, the CA when TLS is on.
pub fn api_redis_url(model: &Model) -> String {
    job_url(model, Role::Api.username())
}

fn deployment(model: &Model, credentials: &Credentials) -> Deployment {
    let api = &model.spec.api;
    let labels = model.labels(API_COMPONENT);
    let key = api
        .api_key_secret
        .clone()
        .unwrap_or_else(|| crate::crd::SecretKeyRef {
            name: String::new(),
            key: String::new(),
        });
    let mut volumes: Vec<Volume> = vec![
        secret_volume(
            CREDENTIALS_VOLUME,
            credentials_secret_name(model, Role::Api.username()),
            &[(PASSWORD_KEY, PASSWORD_KEY)],
        ),
        secret_volume(API_KEY_VOLUME, key.name, &[(&key.key, API_KEY_FILE)]),
    ];
    let mut mounts: Vec<VolumeMount> = vec![
        mount(CREDENTIALS_VOLUME, CREDENTIALS_DIR),
        mount(API_KEY_VOLUME, API_KEY_DIR),
    ];
    if let Some(secret) = tls_secret(model) {
        volumes.push(secret_volume(
            TLS_VOLUME,
            secret,
            &[(TLS_CA_FILE, TLS_CA_FILE)],
        ));
        mounts.push(mount(TLS_VOLUME, TLS_DIR));
    }
    let mut env_vars = vec![
        env("ABSTORE_API_REDIS_URL", api_redis_url(model)),
        env(
            "ABSTORE_API_LISTEN",
            format!("0.0.0.0:{API_CONTAINER_PORT}"),
        ),
        env(
            "ABSTORE_API_KEY_FILE",
            format!("{API_KEY_DIR}/{API_KEY_FILE}"),
        ),
        env("ABSTORE_API_RATE_LIMIT", api.rate_limit.to_string()),
        env(
            "ABSTORE_API_WAIT_REPLICAS",
            wait_replicas(model).to_string(),
        ),
    ];
    if !api.allowed_origins.is_empty() {
        env_vars.push(env(
            "ABSTORE_API_ALLOWED_ORIGINS",
            api.allowed_origins.join(","),
        ));
    }
    let container_resources = {
        let mut given = resources(api.resources.as_ref(), "100m", Quantity("64Mi".to_owned()));
        if api.resources.is_none()
            && let Some(limits) = given.limits.as_mut()
        {
            limits.insert("memory".to_owned(), Quantity("256Mi".to_owned()));
        }
        given
    };
    env_vars.push(env(
        "ABSTORE_API_WORKER_THREADS",
        worker_threads(&container_resources).to_string(),
    ));
    let probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(API_PORT_NAME.to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    let container = Container {
        name: API_COMPONENT.to_owned(),
        image: Some(api.image.clone()),
        command: Some(vec![API_BINARY.to_owned()]),
        env: Some(env_vars),
        ports: Some(vec![ContainerPort {
            name: Some(API_PORT_NAME.to_owned()),
            container_port: i32::from(API_CONTAINER_PORT),
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        // It listens once it reached the store, which may take a while when the store is
        // created with it: up to 5 minutes before liveness counts. Ready while Redis answers:
        // a pod that lost Redis leaves the Service (its `track` would only answer 503). Alive
        // while the process serves HTTP.
        startup_probe: Some(probe("/healthz", 5, 60)),
        readiness_probe: Some(probe("/readyz", 5, 2)),
        liveness_probe: Some(probe("/healthz", 10, 3)),
        resources: Some(container_resources),
        security_context: Some(container_security_context()),
        volume_mounts: Some(mounts),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    };
    let (affinity, topology_spread_constraints) = scheduling(model, API_COMPONENT);
    let annotations = BTreeMap::from([(
        API_CREDENTIALS_ANNOTATION.to_owned(),
        crate::rotation::password_hash(credentials.role_password(Role::Api)),
    )]);
    Deployment {
        metadata: object_meta(model, model.child_name(API_COMPONENT), API_COMPONENT),
        spec: Some(DeploymentSpec {
            // With the autoscaler on, it owns the count (a replicas field here would fight it
            // on every apply).
            replicas: (!api.autoscaling.enabled).then_some(api.replicas),
            selector: selector(model.selector_labels(API_COMPONENT)),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    containers: vec![container],
                    security_context: Some(pod_security_context(JOBS_UID)),
                    volumes: Some(volumes),
                    affinity,
                    topology_spread_constraints,
                    node_selector: model.spec.node_selector.clone(),
                    tolerations: model.spec.tolerations.clone(),
                    priority_class_name: model.spec.priority_class_name.clone(),
                    // SIGTERM drains the requests in flight; the Service drops the pod first.
                    termination_grace_period_seconds: Some(30),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

fn service(model: &Model) -> Service {
    Service {
        metadata: object_meta(model, model.child_name(API_COMPONENT), API_COMPONENT),
        spec: Some(ServiceSpec {
            selector: Some(model.selector_labels(API_COMPONENT)),
            ports: Some(vec![ServicePort {
                name: Some(API_PORT_NAME.to_owned()),
                port: i32::from(API_SERVICE_PORT),
                target_port: Some(IntOrString::String(API_PORT_NAME.to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn pod_disruption_budget(model: &Model) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: object_meta(model, model.child_name(API_COMPONENT), API_COMPONENT),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(
                model.spec.pod_disruption_budget.max_unavailable,
            )),
            selector: Some(selector(model.selector_labels(API_COMPONENT))),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

fn horizontal_pod_autoscaler(model: &Model) -> HorizontalPodAutoscaler {
    let api = &model.spec.api;
    HorizontalPodAutoscaler {
        metadata: object_meta(model, model.child_name(API_COMPONENT), API_COMPONENT),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_owned()),
                kind: "Deployment".to_owned(),
                name: model.child_name(API_COMPONENT),
            },
            min_replicas: Some(api.replicas),
            max_replicas: api.autoscaling.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".to_owned(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".to_owned(),
                    target: MetricTarget {
                        type_: "Utilization".to_owned(),
                        average_utilization: Some(
                            api.autoscaling.target_cpu_utilization_percentage,
                        ),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            behavior: None,
        }),
        status: None,
    }
}

/// Who may open the API's port: pods of the store's namespace, the declared clients (an
/// Ingress controller's namespace, say) and the metrics scrapers when listed. `/metrics` is on
/// the same port, so scrapers from elsewhere must be listed in
/// `spec.networkPolicy.metricsScrapers`.
fn network_policy(model: &Model) -> NetworkPolicy {
    let mut from = vec![NetworkPolicyPeer {
        pod_selector: Some(LabelSelector::default()),
        ..NetworkPolicyPeer::default()
    }];
    from.extend(model.spec.api.allowed_clients.iter().cloned());
    from.extend(model.spec.network_policy.metrics_scrapers.iter().cloned());
    NetworkPolicy {
        metadata: object_meta(model, model.child_name(API_COMPONENT), API_COMPONENT),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(model.selector_labels(API_COMPONENT))),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(from),
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::Int(i32::from(API_CONTAINER_PORT))),
                    protocol: Some("TCP".to_owned()),
                    end_port: None,
                }]),
            }]),
            egress: None,
        }),
    }
}
/// Threads for the API's runtime: the container's CPU limit, else its request, rounded up to
/// whole CPUs (at least 1, at most 64). Without it the runtime starts one per CPU of the node
/// when no limit is set (the default: a 100m request), each contending for the pod's share.
pub(crate) fn worker_threads(resources: &ResourceRequirements) -> u32 {
    let cpu = |side: &Option<BTreeMap<String, Quantity>>| {
        side.as_ref()?.get("cpu").and_then(|q| cpu_millis(&q.0))
    };
    let millis = cpu(&resources.limits)
        .or_else(|| cpu(&resources.requests))
        .unwrap_or(1_000);
    u32::try_from(millis.div_ceil(1_000)).map_or(64, |threads| threads.clamp(1, 64))
}

/// Millicores of a CPU quantity (`100m`, `1`, `2.5`); `None` for anything else.
fn cpu_millis(text: &str) -> Option<u64> {
    if let Some(millis) = text.strip_suffix('m') {
        return millis.parse().ok();
    }
    let cores: f64 = text.parse().ok()?;
    (0.0..1e9)
        .contains(&cores)
        .then(|| (cores * 1_000.0).ceil() as u64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cpu(limit: Option<&str>, request: Option<&str>) -> ResourceRequirements {
        let side = |v: Option<&str>| {
            v.map(|v| BTreeMap::from([("cpu".to_owned(), Quantity(v.to_owned()))]))
        };
        ResourceRequirements {
            limits: side(limit),
            requests: side(request),
            ..ResourceRequirements::default()
        }
    }

    #[test]
    fn worker_threads_follow_the_cpu_limit_else_the_request_rounded_up() {
        assert_eq!(worker_threads(&cpu(None, Some("100m"))), 1);
        assert_eq!(worker_threads(&cpu(None, Some("2"))), 2);
        assert_eq!(worker_threads(&cpu(Some("2500m"), Some("100m"))), 3);
        assert_eq!(worker_threads(&cpu(Some("1.5"), None)), 2);
        assert_eq!(worker_threads(&cpu(Some("0.25"), None)), 1);
        assert_eq!(worker_threads(&cpu(Some("500"), None)), 64);
        assert_eq!(worker_threads(&cpu(None, None)), 1);
        assert_eq!(worker_threads(&cpu(Some("lots"), Some("3"))), 3);
    }
}
