//! The ConfigMap (redis.conf, sentinel.conf, scripts), the ACL Secret, one credentials Secret
//! per user, and the config hash that ties pod templates to their content.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use sha2::{Digest, Sha256};

use super::meta::object_meta;
use super::{
    CONFIG_COMPONENT, CONFIG_SUFFIX, CREDENTIALS_COMPONENT, PRIMARY_URL_KEY, SENTINEL_URL_KEY,
    primary_url, sentinel_url,
};
use crate::model::Model;

/// The `<n>-config` ConfigMap with the given files.
pub(crate) fn config_map(model: &Model, files: &BTreeMap<String, String>) -> ConfigMap {
    ConfigMap {
        metadata: object_meta(model, model.child_name(CONFIG_SUFFIX), CONFIG_COMPONENT),
        data: Some(files.clone()),
        ..ConfigMap::default()
    }
}

/// The Secret `name` holding the ACL file under `key`.
pub(crate) fn acl_secret(model: &Model, name: String, key: &str, acl_file: &str) -> Secret {
    Secret {
        metadata: object_meta(model, name, CONFIG_COMPONENT),
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            key.to_owned(),
            ByteString(acl_file.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

/// The credentials Secret of one user: its name and password, and the URLs to connect with
/// (no password in them: clients add it from the `password` key). `data`, not `stringData`,
/// so what the controller reads back is exactly what it applied.
pub(crate) fn credentials_secret(
    model: &Model,
    name: String,
    username_key: &str,
    password_key: &str,
    username: &str,
    password: &str,
) -> Secret {
    let data = [
        (username_key, username.to_owned()),
        (password_key, password.to_owned()),
        (SENTINEL_URL_KEY, sentinel_url(model, username)),
        (PRIMARY_URL_KEY, primary_url(model, username)),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), ByteString(value.into_bytes())))
    .collect();
    Secret {
        metadata: object_meta(model, name, CREDENTIALS_COMPONENT),
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

/// sha256 (hex) over every config file and the ACL file. Goes on the pod templates, so a
/// change of either (a new user, a new password, a new directive) rolls the pods, and nothing
/// else does. Lengths are hashed with the content so two layouts cannot collide.
pub(crate) fn config_hash(files: &BTreeMap<String, String>, acl_file: &str) -> String {
    let mut hasher = Sha256::new();
    for (name, content) in files {
        for part in [name.as_bytes(), content.as_bytes()] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
    }
    hasher.update((acl_file.len() as u64).to_le_bytes());
    hasher.update(acl_file.as_bytes());
    hex::encode(hasher.finalize())
}
