//! The ConfigMap (redis.conf, sentinel.conf, scripts), the ACL Secret, one credentials Secret
//! per user, and the config hash that ties pod templates to their content.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use sha2::{Digest, Sha256};

use super::meta::object_meta;
use super::{
    CLUSTER_URL_KEY, CONFIG_COMPONENT, CONFIG_SUFFIX, CREDENTIALS_COMPONENT, PRIMARY_URL_KEY,
    SENTINEL_URL_KEY, cluster_url, primary_url, sentinel_url,
};
use crate::config::{
    LIVENESS_REDIS, LIVENESS_SENTINEL, PRESTOP_REDIS, READINESS_REDIS, READINESS_SENTINEL,
    REDIS_CONF, SCRIPT_LIB, SENTINEL_CONF, SENTINEL_MONITOR_CONF, START_REDIS, START_REDIS_CLUSTER,
    START_SENTINEL,
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

/// The ACL Secret `name`: the ACL files the Redis pods and the sentinels mount (each only its
/// own), and what the operator records between reconciles (rotations; never mounted).
pub(crate) fn acl_secret(model: &Model, name: String, entries: &[(&str, String)]) -> Secret {
    Secret {
        metadata: object_meta(model, name, CONFIG_COMPONENT),
        type_: Some("Opaque".to_owned()),
        data: Some(
            entries
                .iter()
                .map(|(key, value)| ((*key).to_owned(), ByteString(value.as_bytes().to_vec())))
                .collect(),
        ),
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
    let mut data = vec![
        (username_key, username.to_owned()),
        (password_key, password.to_owned()),
    ];
    if model.cluster().is_some() {
        data.push((CLUSTER_URL_KEY, cluster_url(model, username)));
    } else {
        data.push((SENTINEL_URL_KEY, sentinel_url(model, username)));
        data.push((PRIMARY_URL_KEY, primary_url(model, username)));
    }
    let data = data
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

/// The files a Redis pod runs from (besides the ACL file).
const REDIS_FILES: [&str; 6] = [
    REDIS_CONF,
    SCRIPT_LIB,
    START_REDIS,
    PRESTOP_REDIS,
    LIVENESS_REDIS,
    READINESS_REDIS,
];
/// The files a Redis pod of a cluster-mode store runs from (no Sentinel, no preStop hand-over).
const REDIS_CLUSTER_FILES: [&str; 5] = [
    REDIS_CONF,
    SCRIPT_LIB,
    START_REDIS_CLUSTER,
    LIVENESS_REDIS,
    READINESS_REDIS,
];
/// The files a sentinel pod runs from.
const SENTINEL_FILES: [&str; 6] = [
    SENTINEL_CONF,
    SENTINEL_MONITOR_CONF,
    SCRIPT_LIB,
    START_SENTINEL,
    LIVENESS_SENTINEL,
    READINESS_SENTINEL,
];

/// Lines that change with the number of Redis pods and need no restart: `min-replicas-to-write`
/// (heal sets it live) and the start scripts' default peer list (read only when a pod starts, from
/// the ConfigMap as it is then).
fn follows_the_replica_count(file: &str, line: &str) -> bool {
    (file == REDIS_CONF && line.starts_with("min-replicas-to-write "))
        || ((file == START_REDIS || file == START_SENTINEL) && line.contains("ABSTORE_PEERS:="))
}

/// The pod-template hashes of the Redis and the sentinel pods: sha256 (hex) over what each
/// component runs from, so a change rolls exactly the pods it concerns. `redis_extra` is
/// hashed into the Redis pods' (what a container reads only when it starts: the exporter's
/// password). ACL users and passwords are not in either: heal changes them live. What follows
/// the replica count is left out ([`follows_the_replica_count`]): a scale change must not
/// restart every pod (a lone primary in place). Lengths are hashed with the content so two
/// layouts cannot collide.
pub(crate) fn config_hashes(
    files: &BTreeMap<String, String>,
    redis_extra: &str,
    cluster: bool,
) -> (String, String) {
    let hash = |names: &[&str], extras: &[&str]| {
        let mut hasher = Sha256::new();
        let mut part = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        for name in names {
            let content = files.get(*name).map(String::as_str).unwrap_or_default();
            let content: String = content
                .lines()
                .filter(|line| !follows_the_replica_count(name, line))
                .flat_map(|line| [line, "\n"])
                .collect();
            part(name.as_bytes());
            part(content.as_bytes());
        }
        for extra in extras {
            part(extra.as_bytes());
        }
        hex::encode(hasher.finalize())
    };
    (
        if cluster {
            hash(&REDIS_CLUSTER_FILES, &[redis_extra])
        } else {
            hash(&REDIS_FILES, &[redis_extra])
        },
        hash(&SENTINEL_FILES, &[]),
    )
}
