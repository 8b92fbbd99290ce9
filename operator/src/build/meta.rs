//! Metadata every child shares: name, namespace, labels and the owner reference that lets
//! Kubernetes garbage-collect the child with its ABStore.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};

use crate::model::Model;

/// `metadata` of a child named `name` of the given component.
pub(crate) fn object_meta(model: &Model, name: String, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(model.namespace.clone()),
        labels: Some(model.labels(component)),
        owner_references: owner_references(model),
        ..ObjectMeta::default()
    }
}

/// The ABStore as the controlling owner. `blockOwnerDeletion` makes a foreground delete of the
/// store wait for its children, so a re-created store never meets the old one's pods.
pub(crate) fn owner_references(model: &Model) -> Option<Vec<OwnerReference>> {
    model.owner.clone().map(|owner| {
        vec![OwnerReference {
            controller: Some(true),
            block_owner_deletion: Some(true),
            ..owner
        }]
    })
}

/// A label selector matching exactly `labels`.
pub(crate) fn selector(labels: BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels),
        match_expressions: None,
    }
}
