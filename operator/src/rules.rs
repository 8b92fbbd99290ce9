//! Cross-field rules, written once and enforced twice: as CEL rules in the CRD
//! (`x-kubernetes-validations`, evaluated by the API server, so `kubectl apply` refuses a bad
//! spec naming the field) and by `validate` (for `render`, `local up`, and as a second line in the
//! operator). Each rule carries its CEL expression and the same check in Rust; the tests make
//! every rule refuse in both (`tests/tests/e2e_operator.rs` against a real API server).
//!
//! Transition rules (`self == oldSelf`) compare an update with the stored object, which only the
//! API server has: they are CRD-only ([`TRANSITION_RULES`]).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::{Value, json};

use crate::crd::{ABStore, ABStoreSpec};

/// A rule on the object at `at` (property names under `spec`).
#[derive(Debug)]
pub struct Rule {
    /// Where the rule sits: the path of properties below `spec`, like `["sentinel"]`.
    pub at: &'static [&'static str],
    /// The CEL expression, with `self` the object at `at`.
    pub cel: &'static str,
    /// The field the refusal names, relative to `at` (the CRD's `fieldPath`).
    pub field: &'static str,
    /// Why, and what to do instead: the API server's message and `validate`'s.
    pub message: &'static str,
    /// The same check in Rust: true when the spec satisfies the rule. `None` for a transition
    /// rule (`oldSelf`), which only the API server, holding the stored object, can check.
    pub holds: Option<fn(&ABStoreSpec) -> bool>,
}

impl Rule {
    /// The full path of the field, like `spec.sentinel.quorum`.
    pub fn field_path(&self) -> String {
        let mut path = String::from("spec");
        for part in self.at {
            path.push('.');
            path.push_str(part);
        }
        path.push_str(self.field);
        path
    }
}

/// The cross-field rules: both outputs.
pub const RULES: [Rule; 3] = [
    Rule {
        at: &["sentinel"],
        cel: "self.quorum <= self.replicas",
        field: ".quorum",
        message: "must not be more than spec.sentinel.replicas: a quorum that cannot be reached means no failover ever happens",
        holds: Some(|s| s.sentinel.quorum <= s.sentinel.replicas),
    },
    Rule {
        at: &["persistence", "rdb"],
        cel: "!self.enabled || size(self.save) > 0",
        field: ".save",
        message: "is empty while spec.persistence.rdb.enabled is true; give save points like \"300 100\" or set enabled: false",
        holds: Some(|s| !s.persistence.rdb.enabled || !s.persistence.rdb.save.is_empty()),
    },
    Rule {
        at: &["tls"],
        cel: "!self.enabled || has(self.secretName)",
        field: ".secretName",
        message: "is missing while spec.tls.enabled is true; name a Secret with tls.crt, tls.key and ca.crt",
        holds: Some(|s| !s.tls.enabled || s.tls.secret_name.is_some()),
    },
];

/// Fields that cannot change on an existing store, refused at `kubectl apply` with what to do
/// instead: what a StatefulSet's volume claim template cannot change (instead of an apply error
/// from the StatefulSet), the mode (Sentinel and cluster stores keep their data differently),
/// and a cluster's replicas per shard (pod `i` is in shard `i / (1 + replicasPerShard)`).
pub const TRANSITION_RULES: [Rule; 4] = [
    Rule {
        at: &["redis", "storage"],
        cel: "self.size == oldSelf.size",
        field: ".size",
        message: "cannot be changed on an existing store (a StatefulSet's volume claim template is immutable): expand each PVC (kubectl patch pvc data-<store>-redis-<n>, if the StorageClass allows expansion) and keep this value, or create a new store and restore a backup into it",
        holds: None,
    },
    Rule {
        at: &["redis", "storage"],
        cel: "(has(self.storageClassName) ? self.storageClassName : '') == (has(oldSelf.storageClassName) ? oldSelf.storageClassName : '')",
        field: ".storageClassName",
        message: "cannot be changed on an existing store (a StatefulSet's volume claim template is immutable): create a new store with the new class and restore a backup into it",
        holds: None,
    },
    Rule {
        at: &[],
        cel: "(has(self.mode) ? self.mode : 'sentinel') == (has(oldSelf.mode) ? oldSelf.mode : 'sentinel')",
        field: ".mode",
        message: "cannot be changed on an existing store (Sentinel and cluster stores lay out their pods and keys differently): create a new store in the other mode and restore a backup into it (abstore-jobs restore routes keys by slot)",
        holds: None,
    },
    Rule {
        at: &[],
        cel: "(has(self.cluster) && has(self.cluster.replicasPerShard) ? self.cluster.replicasPerShard : 1) == (has(oldSelf.cluster) && has(oldSelf.cluster.replicasPerShard) ? oldSelf.cluster.replicasPerShard : 1)",
        field: ".cluster.replicasPerShard",
        message: "cannot be changed on an existing store yet (each pod's shard follows from it; docs/cluster.md): create a new store and restore a backup into it",
        holds: None,
    },
];

/// The CRD with every rule in its schema: what `abstore-operator crd` prints and the chart ships.
pub fn crd() -> CustomResourceDefinition {
    let mut value = serde_json::to_value(ABStore::crd()).unwrap_or_default();
    if let Some(versions) = value["spec"]["versions"].as_array_mut() {
        for version in versions {
            let spec = &mut version["schema"]["openAPIV3Schema"]["properties"]["spec"];
            for rule in RULES.iter().chain(&TRANSITION_RULES) {
                add(
                    spec,
                    rule.at,
                    json!({"rule": rule.cel, "message": rule.message, "fieldPath": rule.field}),
                );
            }
        }
    }
    serde_json::from_value(value).unwrap_or_else(|_| ABStore::crd())
}

/// Appends `rule` to the `x-kubernetes-validations` of the schema at `path` below `schema`.
fn add(schema: &mut Value, path: &[&str], rule: Value) {
    let mut at = schema;
    for part in path {
        at = &mut at["properties"][*part];
    }
    if let Some(object) = at.as_object_mut() {
        let rules = object
            .entry("x-kubernetes-validations")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Some(rules) = rules.as_array_mut() {
            rules.push(rule);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn schema_at(path: &[&str]) -> Value {
        let crd = serde_json::to_value(crd()).unwrap();
        let mut at =
            crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone();
        for part in path {
            at = at["properties"][*part].clone();
        }
        at
    }

    #[test]
    fn every_rule_is_in_the_crd_where_it_belongs() {
        for rule in &RULES {
            let rules = schema_at(rule.at)["x-kubernetes-validations"].clone();
            assert!(
                rules
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["rule"] == rule.cel
                        && r["message"] == rule.message
                        && r["fieldPath"] == rule.field),
                "{} not at {:?}: {rules}",
                rule.cel,
                rule.at
            );
        }
        for rule in &TRANSITION_RULES {
            let rules = schema_at(rule.at)["x-kubernetes-validations"].clone();
            assert!(
                rules
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["rule"] == rule.cel),
                "{} not at {:?}: {rules}",
                rule.cel,
                rule.at
            );
        }
    }

    #[test]
    fn the_fields_rules_name_exist_in_the_schema() {
        for (at, field) in RULES
            .iter()
            .map(|r| (r.at, r.field))
            .chain(TRANSITION_RULES.iter().map(|r| (r.at, r.field)))
        {
            let mut schema = schema_at(at);
            for name in field.trim_start_matches('.').split('.') {
                schema = schema["properties"][name].clone();
            }
            assert!(
                !schema.is_null(),
                "{at:?}{field} is not a field of the schema"
            );
        }
    }
}
