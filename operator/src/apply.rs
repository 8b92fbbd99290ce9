//! apply: puts one store's built children into the cluster with server-side apply under one
//! field manager, in dependency order, then deletes the children we labelled that were not
//! built this time. One refused object (a webhook, an immutable field) does not stop the others:
//! failures are collected for the status and Events. The Prometheus Operator's kinds are applied
//! only when the API server serves them (discovery), so clusters without those CRDs reconcile.
//! Also reads the existing credentials Secrets, so passwords survive reconciles.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::build::{
    CREDENTIALS_COMPONENT, Children, MONITORING_GROUP, MONITORING_VERSION, PROMETHEUS_RULE_KIND,
    SERVICE_MONITOR_KIND,
};
use crate::credentials::{PASSWORD_KEY, USERNAME_KEY};
use crate::model::{COMPONENT_LABEL, INSTANCE_LABEL, MANAGED_BY_LABEL, MANAGER};
use crate::rotation::{PasswordState, STATE_KEY};

/// Errors of the apply step.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("reading the credentials Secrets of {store}: {source}")]
    ReadCredentials {
        store: String,
        #[source]
        source: kube::Error,
    },
    #[error("a built {kind} has no name")]
    Unnamed { kind: String },
    #[error("applying {kind} {name}: {source}")]
    Apply {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("a built monitoring object has no apiVersion/kind: {name}")]
    UntypedMonitoring { name: String },
    #[error("asking the API server whether it serves {group_version}: {source}")]
    Discovery {
        group_version: String,
        #[source]
        source: kube::Error,
    },
    #[error("listing {kind} to find orphans: {source}")]
    ListOrphans {
        kind: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting orphaned {kind} {name}: {source}")]
    DeleteOrphan {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl ApplyError {
    /// Short category: metric label and (as PascalCase) Event reason.
    pub fn category(&self) -> &'static str {
        match self {
            ApplyError::ReadCredentials { .. } => "read-credentials",
            ApplyError::Unnamed { .. } | ApplyError::UntypedMonitoring { .. } => "build-output",
            ApplyError::Apply { .. } | ApplyError::Discovery { .. } => "apply",
            ApplyError::ListOrphans { .. } | ApplyError::DeleteOrphan { .. } => "delete-orphans",
        }
    }
}

/// What one apply did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Names applied, by kind.
    pub names: BTreeMap<String, BTreeSet<String>>,
    /// Names built, by kind, whether or not their apply succeeded: what orphan deletion keeps
    /// (an object whose update was refused is still wanted, not an orphan).
    pub built: BTreeMap<String, BTreeSet<String>>,
    /// The StatefulSets as the API server returned them (with their observed status).
    pub stateful_sets: Vec<StatefulSet>,
    /// The tracking API's Deployment as the API server returned it.
    pub deployments: Vec<Deployment>,
    /// Objects the API server refused, in apply order.
    pub failures: Vec<ApplyError>,
    /// What became of the Prometheus Operator objects.
    pub monitoring: Monitoring,
}

impl Applied {
    /// Number of objects applied.
    pub fn count(&self) -> usize {
        self.names.values().map(BTreeSet::len).sum()
    }

    fn built(&mut self, kind: &str, name: &str) {
        self.built
            .entry(kind.to_owned())
            .or_default()
            .insert(name.to_owned());
    }
}

/// The Prometheus Operator objects of a store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Monitoring {
    /// The spec asks for none.
    #[default]
    NotRequested,
    /// Every requested kind was applied.
    Applied { kinds: Vec<String> },
    /// Some requested kinds could not be applied, and why (the store is fine otherwise).
    Skipped {
        kinds: Vec<String>,
        reason: MonitoringSkipped,
    },
}

/// Why monitoring objects were skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MonitoringSkipped {
    /// The API server does not serve the kind: the Prometheus Operator's CRDs are not installed.
    NotServed,
    /// The operator may not manage the kind (the chart's `rbac.prometheusOperator` is off).
    Forbidden,
}

impl MonitoringSkipped {
    /// Condition and Event reason.
    pub fn reason(self) -> &'static str {
        match self {
            MonitoringSkipped::NotServed => "CRDsMissing",
            MonitoringSkipped::Forbidden => "Forbidden",
        }
    }

    /// What a person should do about it.
    pub fn explanation(self) -> &'static str {
        match self {
            MonitoringSkipped::NotServed => {
                "the API server does not serve monitoring.coreos.com/v1 (the Prometheus Operator's CRDs are not installed); they are applied once it does"
            }
            MonitoringSkipped::Forbidden => {
                "the operator may not manage monitoring.coreos.com objects (chart value rbac.prometheusOperator)"
            }
        }
    }
}

/// Kinds of the Prometheus Operator's API group the API server serves. Asked once per
/// reconcile of a store that wants monitoring objects: a CRD installed later is picked up.
pub async fn served_monitoring_kinds(client: &Client) -> Result<BTreeSet<String>, ApplyError> {
    let group_version = format!("{MONITORING_GROUP}/{MONITORING_VERSION}");
    match client.list_api_group_resources(&group_version).await {
        Ok(list) => Ok(list
            .resources
            .into_iter()
            .filter(|resource| !resource.name.contains('/'))
            .map(|resource| resource.kind)
            .collect()),
        Err(kube::Error::Api(status)) if not_served(&status) => Ok(BTreeSet::new()),
        Err(source) => Err(ApplyError::Discovery {
            group_version,
            source,
        }),
    }
}

/// A 404 for a path the API server does not serve comes back as plain text ("404 page not
/// found"), which kube reports with reason "Failed to parse error data" and code 404: its
/// `is_not_found()` only matches the NotFound reason, so the code is checked here.
fn not_served(status: &kube::core::Status) -> bool {
    status.is_not_found() || status.code == 404
}

/// Label selector of every child of store `name` that this operator manages.
pub fn children_selector(name: &str) -> String {
    format!("{INSTANCE_LABEL}={name},{MANAGED_BY_LABEL}={MANAGER}")
}

/// Label selector of the credentials Secrets of store `name`.
pub fn credentials_selector(name: &str) -> String {
    format!("{INSTANCE_LABEL}={name},{COMPONENT_LABEL}={CREDENTIALS_COMPONENT}")
}

/// Passwords in the store's existing credentials Secrets (username → password), so that
/// `Credentials::resolve` keeps them instead of generating new ones on every reconcile.
/// Secrets without both keys, or with non-UTF-8 values, are ignored (a new password is made).
pub async fn existing_passwords(
    client: &Client,
    namespace: &str,
    store: &str,
) -> Result<BTreeMap<String, String>, ApplyError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secrets = api
        .list(&ListParams::default().labels(&credentials_selector(store)))
        .await
        .map_err(|source| ApplyError::ReadCredentials {
            store: store.to_owned(),
            source,
        })?;
    let mut passwords = BTreeMap::new();
    for secret in secrets {
        let Some(data) = secret.data.as_ref() else {
            continue;
        };
        let text = |key: &str| {
            data.get(key)
                .and_then(|bytes| String::from_utf8(bytes.0.clone()).ok())
        };
        if let (Some(username), Some(password)) = (text(USERNAME_KEY), text(PASSWORD_KEY)) {
            passwords.insert(username, password);
        }
    }
    Ok(passwords)
}

/// What the ACL Secret `acl_secret` recorded about password rotations, if it exists and says
/// something readable (a store from before rotations, or a hand-edited Secret, has none: then
/// nothing is rotating and the passwords in the credentials Secrets are taken as they are).
pub async fn password_state(
    client: &Client,
    namespace: &str,
    acl_secret: &str,
) -> Result<Option<PasswordState>, ApplyError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api
        .get_opt(acl_secret)
        .await
        .map_err(|source| ApplyError::ReadCredentials {
            store: acl_secret.to_owned(),
            source,
        })?;
    let Some(bytes) = secret
        .as_ref()
        .and_then(|secret| secret.data.as_ref())
        .and_then(|data| data.get(STATE_KEY))
    else {
        return Ok(None);
    };
    match PasswordState::parse(&bytes.0) {
        Ok(state) => Ok(Some(state)),
        Err(error) => {
            tracing::warn!(secret = acl_secret, key = STATE_KEY, %error, "unreadable password rotation state; taking the current passwords as they are");
            Ok(None)
        }
    }
}

/// Applies every child in dependency order: Secrets and ConfigMaps before the pods that mount
/// them, Services and policies before pods start, StatefulSets, then CronJobs, then the
/// Prometheus Operator objects (only the kinds in `served_monitoring`; the others are skipped,
/// not failed). An object the API server refuses is recorded in `failures` and the rest is still
/// applied: one rejected object must not stop the others from being kept up to date.
pub async fn apply_children(
    client: &Client,
    namespace: &str,
    children: Children,
    served_monitoring: &BTreeSet<String>,
) -> Applied {
    // No `..`: a kind added to `Children` must be applied here, or this does not compile.
    let Children {
        secrets,
        config_maps,
        services,
        pod_disruption_budgets,
        network_policies,
        stateful_sets,
        deployments,
        horizontal_pod_autoscalers,
        cron_jobs,
        monitoring,
    } = children;
    let mut applied = Applied::default();
    apply_kind(client, namespace, secrets, &mut applied).await;
    apply_kind(client, namespace, config_maps, &mut applied).await;
    apply_kind(client, namespace, services, &mut applied).await;
    apply_kind(client, namespace, pod_disruption_budgets, &mut applied).await;
    apply_kind(client, namespace, network_policies, &mut applied).await;
    let stateful_sets = keep_claim_template_labels(client, namespace, stateful_sets).await;
    applied.stateful_sets = apply_kind(client, namespace, stateful_sets, &mut applied).await;
    applied.deployments = apply_kind(client, namespace, deployments, &mut applied).await;
    apply_kind(client, namespace, horizontal_pod_autoscalers, &mut applied).await;
    apply_kind(client, namespace, cron_jobs, &mut applied).await;
    apply_monitoring(
        client,
        namespace,
        monitoring,
        served_monitoring,
        &mut applied,
    )
    .await;
    applied
}

/// A StatefulSet's `volumeClaimTemplates` cannot change once it exists. Stores created before
/// the claim templates lost their labels (see `build::redis::data_claim`) keep the labels they
/// were created with, so that their StatefulSet still applies; any other change to a template
/// (size, class) is still sent, and refused by the API server with its reason.
async fn keep_claim_template_labels(
    client: &Client,
    namespace: &str,
    mut stateful_sets: Vec<StatefulSet>,
) -> Vec<StatefulSet> {
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    for set in &mut stateful_sets {
        let Some(name) = set.metadata.name.clone() else {
            continue;
        };
        let existing = match api.get_opt(&name).await {
            Ok(Some(existing)) => existing,
            Ok(None) => continue,
            Err(error) => {
                // The apply itself will say what is wrong, if anything is.
                tracing::debug!(%error, %name, "reading a StatefulSet before applying it");
                continue;
            }
        };
        let existing_templates = existing
            .spec
            .and_then(|spec| spec.volume_claim_templates)
            .unwrap_or_default();
        let Some(templates) = set
            .spec
            .as_mut()
            .and_then(|spec| spec.volume_claim_templates.as_mut())
        else {
            continue;
        };
        for template in templates {
            if let Some(old) = existing_templates
                .iter()
                .find(|old| old.metadata.name == template.metadata.name)
            {
                template.metadata.labels.clone_from(&old.metadata.labels);
            }
        }
    }
    stateful_sets
}

async fn apply_kind<K>(
    client: &Client,
    namespace: &str,
    objects: Vec<K>,
    applied: &mut Applied,
) -> Vec<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let kind = K::kind(&()).into_owned();
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams::apply(MANAGER).force();
    let mut results = Vec::with_capacity(objects.len());
    for object in objects {
        let Some(name) = object.meta().name.clone() else {
            applied
                .failures
                .push(ApplyError::Unnamed { kind: kind.clone() });
            continue;
        };
        applied.built(&kind, &name);
        match api.patch(&name, &params, &Patch::Apply(&object)).await {
            Ok(result) => {
                tracing::debug!(%kind, %name, "applied");
                applied.names.entry(kind.clone()).or_default().insert(name);
                results.push(result);
            }
            Err(source) => {
                tracing::warn!(%kind, %name, error = %source, "apply refused");
                applied.failures.push(ApplyError::Apply {
                    kind: kind.clone(),
                    name,
                    source,
                });
            }
        }
    }
    results
}

/// The `ApiResource` of a Prometheus Operator kind.
fn monitoring_resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        MONITORING_GROUP,
        MONITORING_VERSION,
        kind,
    ))
}

async fn apply_monitoring(
    client: &Client,
    namespace: &str,
    objects: Vec<DynamicObject>,
    served: &BTreeSet<String>,
    applied: &mut Applied,
) {
    if objects.is_empty() {
        return;
    }
    let mut done = Vec::new();
    let mut skipped: Option<(Vec<String>, MonitoringSkipped)> = None;
    let mut skip = |kind: String, why: MonitoringSkipped| {
        let (kinds, reason) = skipped.get_or_insert_with(|| (Vec::new(), why));
        // Not served outranks forbidden: installing the CRDs is the first thing to do.
        if why == MonitoringSkipped::NotServed {
            *reason = why;
        }
        kinds.push(kind);
    };
    let params = PatchParams::apply(MANAGER).force();
    for object in objects {
        let Some(name) = object.metadata.name.clone() else {
            applied.failures.push(ApplyError::Unnamed {
                kind: "monitoring object".to_owned(),
            });
            continue;
        };
        let Some(gvk) = object
            .types
            .as_ref()
            .and_then(|types| GroupVersionKind::try_from(types).ok())
        else {
            applied
                .failures
                .push(ApplyError::UntypedMonitoring { name });
            continue;
        };
        applied.built(&gvk.kind, &name);
        if !served.contains(&gvk.kind) {
            skip(gvk.kind, MonitoringSkipped::NotServed);
            continue;
        }
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), namespace, &ApiResource::from_gvk(&gvk));
        match api.patch(&name, &params, &Patch::Apply(&object)).await {
            Ok(_) => {
                applied
                    .names
                    .entry(gvk.kind.clone())
                    .or_default()
                    .insert(name);
                done.push(gvk.kind);
            }
            // A CRD removed since discovery, or no permission: not the store's failure.
            Err(kube::Error::Api(status)) if not_served(&status) => {
                skip(gvk.kind, MonitoringSkipped::NotServed);
            }
            Err(kube::Error::Api(status)) if status.is_forbidden() => {
                skip(gvk.kind, MonitoringSkipped::Forbidden);
            }
            Err(source) => applied.failures.push(ApplyError::Apply {
                kind: gvk.kind,
                name,
                source,
            }),
        }
    }
    applied.monitoring = match skipped {
        Some((kinds, reason)) => Monitoring::Skipped { kinds, reason },
        None => Monitoring::Applied { kinds: done },
    };
}

/// Deletes the children of `store` that carry our labels but were not built this time
/// (the backup CronJob after its destination is removed, the NetworkPolicy when disabled, a
/// removed user's Secret). Kinds go in reverse apply order, so nothing still running loses a
/// Secret it mounts first. Monitoring kinds are looked at only when `served_monitoring` has them
/// (an absent CRD holds nothing of ours). PersistentVolumeClaims are never listed, so never
/// deleted: data outlives a spec edit. A kind that cannot be listed or cleaned is reported and
/// the others are still cleaned. Returns `Kind/name` of what was deleted, and the failures.
pub async fn delete_orphans(
    client: &Client,
    namespace: &str,
    store: &str,
    applied: &Applied,
    served_monitoring: &BTreeSet<String>,
) -> (Vec<String>, Vec<ApplyError>) {
    let selector = children_selector(store);
    let mut deleted = Vec::new();
    let mut failures = Vec::new();
    let mut record = |result: Result<(), ApplyError>| {
        if let Err(error) = result {
            failures.push(error);
        }
    };
    for kind in [PROMETHEUS_RULE_KIND, SERVICE_MONITOR_KIND] {
        if !served_monitoring.contains(kind) {
            continue;
        }
        let resource = monitoring_resource(kind);
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
        record(delete_unapplied(&api, kind, &selector, applied, &mut deleted, Optional::Yes).await);
    }
    record(delete_kind::<CronJob>(client, namespace, &selector, applied, &mut deleted).await);
    record(
        delete_kind::<HorizontalPodAutoscaler>(client, namespace, &selector, applied, &mut deleted)
            .await,
    );
    record(delete_kind::<Deployment>(client, namespace, &selector, applied, &mut deleted).await);
    record(delete_kind::<StatefulSet>(client, namespace, &selector, applied, &mut deleted).await);
    record(delete_kind::<NetworkPolicy>(client, namespace, &selector, applied, &mut deleted).await);
    record(
        delete_kind::<PodDisruptionBudget>(client, namespace, &selector, applied, &mut deleted)
            .await,
    );
    record(delete_kind::<Service>(client, namespace, &selector, applied, &mut deleted).await);
    record(delete_kind::<ConfigMap>(client, namespace, &selector, applied, &mut deleted).await);
    record(delete_kind::<Secret>(client, namespace, &selector, applied, &mut deleted).await);
    (deleted, failures)
}

/// Whether a kind may be missing from the cluster (a CRD of another project).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Optional {
    Yes,
    No,
}

async fn delete_kind<K>(
    client: &Client,
    namespace: &str,
    selector: &str,
    applied: &Applied,
    deleted: &mut Vec<String>,
) -> Result<(), ApplyError>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    delete_unapplied(
        &api,
        &K::kind(&()),
        selector,
        applied,
        deleted,
        Optional::No,
    )
    .await
}

async fn delete_unapplied<K>(
    api: &Api<K>,
    kind: &str,
    selector: &str,
    applied: &Applied,
    deleted: &mut Vec<String>,
    optional: Optional,
) -> Result<(), ApplyError>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let existing = match api.list(&ListParams::default().labels(selector)).await {
        Ok(list) => list,
        // An optional kind whose CRD is absent (404) or that we may not read (403, chart
        // without Prometheus Operator permissions): we cannot have made any, nothing to delete.
        Err(kube::Error::Api(status))
            if optional == Optional::Yes && (not_served(&status) || status.is_forbidden()) =>
        {
            return Ok(());
        }
        Err(source) => {
            return Err(ApplyError::ListOrphans {
                kind: kind.to_owned(),
                source,
            });
        }
    };
    let keep = applied.built.get(kind);
    for object in existing {
        let name = object.name_any();
        if keep.is_some_and(|names| names.contains(&name)) {
            continue;
        }
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {}
            // Gone meanwhile (garbage collector, a person): the goal is reached.
            Err(kube::Error::Api(status)) if status.is_not_found() => {}
            Err(source) => {
                return Err(ApplyError::DeleteOrphan {
                    kind: kind.to_owned(),
                    name,
                    source,
                });
            }
        }
        tracing::info!(%kind, %name, "deleted orphaned child");
        deleted.push(format!("{kind}/{name}"));
    }
    Ok(())
}
