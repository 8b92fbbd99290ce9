//! Strict field checking of ABStore files, as `kubectl apply` does it (strict field validation,
//! the default since Kubernetes 1.27): a field the CRD's schema does not know is an error naming
//! its path and the nearest known field, not something silently dropped. `render -f` and
//! `local up -f` read files people write by hand; a typo there (`spec.sentinal.replicas: 5`) would
//! otherwise render the defaults. The schema walked is the CRD's own (`ABStore::crd()`), so these
//! commands and the API server refuse the same fields.

use std::fmt;
use std::sync::OnceLock;

use serde_json::Value;

/// The `metadata` fields of an object (ObjectMeta), which the CRD schema leaves open.
const OBJECT_META_FIELDS: [&str; 16] = [
    "annotations",
    "creationTimestamp",
    "deletionGracePeriodSeconds",
    "deletionTimestamp",
    "finalizers",
    "generateName",
    "generation",
    "labels",
    "managedFields",
    "name",
    "namespace",
    "ownerReferences",
    "resourceVersion",
    "selfLink",
    "uid",
    "clusterName",
];

/// A field the schema does not know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownField {
    /// Its path, like `spec.redis.replica` or `spec.auth.users[0].nmae`.
    pub path: String,
    /// The known field at the same place whose name is nearest, like `spec.redis.replicas`.
    pub nearest: Option<String>,
}

impl fmt::Display for UnknownField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown field {}", self.path)?;
        if let Some(nearest) = &self.nearest {
            write!(f, " (did you mean {nearest}?)")?;
        }
        Ok(())
    }
}

/// The unknown fields of an ABStore document (YAML read into JSON values), keys in name order.
pub fn unknown_fields(document: &Value) -> Vec<UnknownField> {
    let mut found = Vec::new();
    let Some(object) = document.as_object() else {
        return found;
    };
    let top = ["apiVersion", "kind", "metadata", "spec", "status"];
    for (key, value) in object {
        match key.as_str() {
            "metadata" => {
                if let Some(meta) = value.as_object() {
                    for field in meta.keys() {
                        if !OBJECT_META_FIELDS.contains(&field.as_str()) {
                            found.push(unknown(
                                &format!("metadata.{field}"),
                                field,
                                OBJECT_META_FIELDS.iter().copied(),
                                "metadata",
                            ));
                        }
                    }
                }
            }
            "spec" | "status" => {
                if let Some(schema) = schema()["properties"].get(key) {
                    walk(value, schema, key, &mut found);
                }
            }
            "apiVersion" | "kind" => {}
            other => found.push(unknown(other, other, top.into_iter(), "")),
        }
    }
    found
}

/// The CRD's openAPIV3Schema, as JSON.
fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let crd = serde_json::to_value(crate::rules::crd()).unwrap_or_default();
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
    })
}

fn walk(value: &Value, schema: &Value, path: &str, found: &mut Vec<UnknownField>) {
    if schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true) {
        return;
    }
    match value {
        Value::Object(object) => {
            let properties = schema["properties"].as_object();
            let additional = &schema["additionalProperties"];
            for (key, child) in object {
                let child_path = format!("{path}.{key}");
                if let Some(child_schema) = properties.and_then(|p| p.get(key)) {
                    walk(child, child_schema, &child_path, found);
                } else if additional.is_object() {
                    walk(child, additional, &child_path, found);
                } else if additional == &Value::Bool(true) || properties.is_none() {
                    // A free-form map (labels, selectors' matchLabels, redis.config).
                } else if let Some(properties) = properties {
                    found.push(unknown(
                        &child_path,
                        key,
                        properties.keys().map(String::as_str),
                        path,
                    ));
                }
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for (index, item) in items.iter().enumerate() {
                walk(item, &schema["items"], &format!("{path}[{index}]"), found);
            }
        }
        _ => {}
    }
}

fn unknown<'a>(
    path: &str,
    key: &str,
    known: impl Iterator<Item = &'a str>,
    parent: &str,
) -> UnknownField {
    let nearest = nearest(key, known).map(|name| {
        if parent.is_empty() {
            name.to_owned()
        } else {
            format!("{parent}.{name}")
        }
    });
    UnknownField {
        path: path.to_owned(),
        nearest,
    }
}

/// The known name nearest to `key`: the same ignoring case, else the smallest edit distance
/// within a third of the name (at least 2), so unrelated names suggest nothing.
fn nearest<'a>(key: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let lower = key.to_ascii_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for name in known {
        let distance = if name.to_ascii_lowercase() == lower {
            0
        } else {
            edit_distance(&lower, &name.to_ascii_lowercase())
        };
        if best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, name));
        }
    }
    let limit = (key.chars().count() / 3).max(2);
    best.filter(|(distance, _)| *distance <= limit)
        .map(|(_, name)| name)
}

/// Levenshtein distance (insertions, deletions, substitutions), by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check(yaml: &str) -> Vec<String> {
        let value: Value = serde_yaml::from_str(yaml).unwrap();
        unknown_fields(&value)
            .into_iter()
            .map(|f| f.to_string())
            .collect()
    }

    #[test]
    fn typos_are_named_with_the_nearest_known_field() {
        let found = check(
            "apiVersion: abstore.dev/v1alpha1\nkind: ABStore\nmetadata: {name: shop, nmae: x}\nspec:\n  sentinal: {replicas: 5}\n  redis: {replica: 7, config: {maxmemory-policy: noeviction}}\n  auth: {users: [{name: r, keyz: ['ec:*']}]}\n  backup: {schedule: '@daily', destination: 's3://b/p', Env: []}\n",
        );
        assert_eq!(
            found,
            [
                "unknown field metadata.nmae (did you mean metadata.name?)",
                "unknown field spec.auth.users[0].keyz (did you mean spec.auth.users[0].keys?)",
                "unknown field spec.backup.Env (did you mean spec.backup.env?)",
                "unknown field spec.redis.replica (did you mean spec.redis.replicas?)",
                "unknown field spec.sentinal (did you mean spec.sentinel?)",
            ],
        );
    }

    #[test]
    fn known_fields_free_form_maps_and_kubernetes_types_pass() {
        let found = check(
            "apiVersion: abstore.dev/v1alpha1\nkind: ABStore\nmetadata: {name: shop, labels: {team: growth}}\nspec:\n  redis: {replicas: 3, config: {hz: '20'}}\n  tolerations: [{key: dedicated, operator: Exists}]\n  networkPolicy:\n    allowedClients: [{namespaceSelector: {matchLabels: {team: growth}}}]\n",
        );
        assert!(found.is_empty(), "{found:?}");
        // An unknown field inside a Kubernetes type is caught too.
        let found = check(
            "apiVersion: abstore.dev/v1alpha1\nkind: ABStore\nmetadata: {name: shop}\nspec:\n  tolerations: [{key: dedicated, operater: Exists}]\n",
        );
        assert_eq!(
            found,
            [
                "unknown field spec.tolerations[0].operater (did you mean spec.tolerations[0].operator?)"
            ]
        );
    }

    #[test]
    fn an_unrelated_name_suggests_nothing() {
        let found =
            check("apiVersion: abstore.dev/v1alpha1\nkind: ABStore\nspec: {frobnicate: 1}\n");
        assert_eq!(found, ["unknown field spec.frobnicate"]);
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("sentinal", "sentinel"), 1);
        assert_eq!(edit_distance("replica", "replicas"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
