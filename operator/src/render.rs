//! `render`: ABStore YAML in, every object the controller would apply out, as multi-document
//! YAML in apply order, for review and GitOps. The same validate → credentials → build steps as
//! the controller, with fresh passwords (there are no existing Secrets to read them from).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::Serialize;

use crate::build::{BuildError, Children, build};
use crate::crd::ABStore;
use crate::credentials::{Credentials, generate_password};
use crate::model::Platform;
use crate::validate::{ValidationError, validate_on};

/// Why rendering failed. Documents are numbered from 1, as they appear in the input.
/// `unknown field a (did you mean b?); unknown field c`.
pub fn join_fields(fields: &[crate::strict::UnknownField]) -> String {
    fields
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("document {document}: not valid YAML: {error}")]
    Yaml {
        document: usize,
        error: serde_yaml::Error,
    },
    #[error("document {document}: {}", join_fields(fields))]
    UnknownFields {
        document: usize,
        fields: Vec<crate::strict::UnknownField>,
    },
    #[error("document {document}: not an ABStore (abstore.dev/v1alpha1): {error}")]
    NotAnABStore {
        document: usize,
        error: serde_yaml::Error,
    },
    #[error(
        "document {document}: ABStore {name} is in namespace {found:?} but -n asks for {requested:?}"
    )]
    NamespaceMismatch {
        document: usize,
        name: String,
        found: String,
        requested: String,
    },
    #[error("document {document}: ABStore {name}: {error}")]
    Invalid {
        document: usize,
        name: String,
        error: ValidationError,
    },
    #[error("document {document}: ABStore {name}: {error}")]
    Build {
        document: usize,
        name: String,
        error: BuildError,
    },
    #[error("serialising {what}: {error}")]
    Serialize {
        what: String,
        error: serde_yaml::Error,
    },
    #[error("no ABStore documents in the input")]
    Empty,
}

/// Whether rendered Secrets carry their values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SecretValues {
    /// For review (the default): Secrets keep their names, labels and keys but lose `data`,
    /// marked by the [`REDACTED_ANNOTATION`]. Applying such output never overwrites a password:
    /// existing Secrets keep theirs, new ones get theirs from the operator.
    #[default]
    Redacted,
    /// The generated passwords and ACL files themselves (`render --show-secrets`), for
    /// GitOps repositories that manage Secrets (sealed or external).
    Shown,
}

/// Annotation on a redacted Secret: which keys it would hold.
pub const REDACTED_ANNOTATION: &str = "abstore.dev/redacted-keys";

/// Renders every ABStore in `input` with Secrets redacted (see [`render_with`]).
pub fn render(input: &str, namespace: Option<&str>) -> Result<String, RenderError> {
    render_with(input, namespace, SecretValues::Redacted)
}

/// Renders every ABStore in `input` (one or more YAML documents; empty ones are skipped).
/// `namespace` fills in stores that name none and must agree with those that do.
pub fn render_with(
    input: &str,
    namespace: Option<&str>,
    secrets: SecretValues,
) -> Result<String, RenderError> {
    render_on(input, namespace, secrets, &Platform::default())
}

/// [`render_with`] for stores on `platform` (the cluster domain, the operator's namespace).
pub fn render_on(
    input: &str,
    namespace: Option<&str>,
    secrets: SecretValues,
    platform: &Platform,
) -> Result<String, RenderError> {
    let mut out = String::new();
    let mut stores = 0;
    for (index, document) in serde_yaml::Deserializer::from_str(input).enumerate() {
        let number = index + 1;
        let value =
            serde_yaml::Value::deserialize(document).map_err(|error| RenderError::Yaml {
                document: number,
                error,
            })?;
        if value.is_null() {
            continue;
        }
        // As `kubectl apply` does (strict field validation): a typo is an error, not a default.
        let fields =
            crate::strict::unknown_fields(&serde_json::to_value(&value).unwrap_or_default());
        if !fields.is_empty() {
            return Err(RenderError::UnknownFields {
                document: number,
                fields,
            });
        }
        let mut store: ABStore =
            serde_yaml::from_value(value).map_err(|error| RenderError::NotAnABStore {
                document: number,
                error,
            })?;
        let name = store.metadata.name.clone().unwrap_or_default();
        match (&store.metadata.namespace, namespace) {
            (Some(found), Some(requested)) if found != requested => {
                return Err(RenderError::NamespaceMismatch {
                    document: number,
                    name,
                    found: found.clone(),
                    requested: requested.to_owned(),
                });
            }
            (None, Some(requested)) => store.metadata.namespace = Some(requested.to_owned()),
            // Neither: validate refuses the store and says to pass -n. No silent `default`:
            // rendered output is applied as is, to whatever namespace it names.
            _ => {}
        }
        let model = validate_on(&store, platform).map_err(|error| RenderError::Invalid {
            document: number,
            name: name.clone(),
            error,
        })?;
        let credentials = Credentials::resolve(&model, &BTreeMap::new(), &mut generate_password);
        let mut children = build(&model, &credentials).map_err(|error| RenderError::Build {
            document: number,
            name,
            error,
        })?;
        if secrets == SecretValues::Redacted {
            for secret in &mut children.secrets {
                let keys: Vec<String> = secret
                    .data
                    .take()
                    .map(|data| data.into_keys().collect())
                    .unwrap_or_default();
                secret
                    .metadata
                    .annotations
                    .get_or_insert_with(BTreeMap::new)
                    .insert(REDACTED_ANNOTATION.to_owned(), keys.join(","));
            }
        }
        write_children(&mut out, children)?;
        stores += 1;
    }
    if stores == 0 {
        return Err(RenderError::Empty);
    }
    Ok(out)
}

/// Appends every object in apply order, each its own YAML document. Destructured without `..`
/// so a new kind of child cannot be left out of the output.
fn write_children(out: &mut String, children: Children) -> Result<(), RenderError> {
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
    write_all(out, "Secret", &secrets)?;
    write_all(out, "ConfigMap", &config_maps)?;
    write_all(out, "Service", &services)?;
    write_all(out, "PodDisruptionBudget", &pod_disruption_budgets)?;
    write_all(out, "NetworkPolicy", &network_policies)?;
    write_all(out, "StatefulSet", &stateful_sets)?;
    write_all(out, "Deployment", &deployments)?;
    write_all(out, "HorizontalPodAutoscaler", &horizontal_pod_autoscalers)?;
    write_all(out, "CronJob", &cron_jobs)?;
    write_all(out, "monitoring object", &monitoring)?;
    Ok(())
}

fn write_all<T: Serialize>(out: &mut String, what: &str, objects: &[T]) -> Result<(), RenderError> {
    for object in objects {
        let yaml = crate::yaml::to_yaml(object).map_err(|error| RenderError::Serialize {
            what: what.to_owned(),
            error,
        })?;
        out.push_str("---\n");
        out.push_str(&yaml);
    }
    Ok(())
}
