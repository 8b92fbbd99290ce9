//! The volumes of the Redis and Sentinel pods and where they are mounted: the layout the
//! config's scripts expect (`config::ConfigPaths::default()`), defined by config's constants.

use k8s_openapi::api::core::v1::{
    KeyToPath, ProjectedVolumeSource, SecretProjection, Volume, VolumeMount, VolumeProjection,
};

use super::CONFIG_SUFFIX;
use super::pod::{
    SECRET_FILE_MODE, config_map_volume, empty_dir, mount, secret_volume, writable_mount,
};
use crate::config::{ACL_DIR, CONFIG_DIR, CREDENTIALS_DIR, DATA_DIR, TLS_DIR};
use crate::credentials::{PASSWORD_KEY, Role, acl_secret_name, credentials_secret_name};
use crate::model::Model;

/// Volume names.
pub const CONFIG_VOLUME: &str = "config";
pub const ACL_VOLUME: &str = "acl";
pub const CREDENTIALS_VOLUME: &str = "credentials";
pub const TLS_VOLUME: &str = "tls";
/// The Redis data claim, and the sentinels' scratch volume in the same place.
pub const DATA_VOLUME: &str = "data";
pub const TMP_VOLUME: &str = "tmp";
/// Scratch space for tools run in the pods (`kubectl exec`); the root filesystem is read-only.
pub const TMP_DIR: &str = "/tmp";

/// The container command running a script of the ConfigMap. Through `sh` because ConfigMap
/// files may be mounted without the executable bit on some platforms, and the scripts find
/// their library next to `$0`.
pub(crate) fn script(name: &str) -> Vec<String> {
    vec!["sh".to_owned(), format!("{CONFIG_DIR}/{name}")]
}

/// Volumes of a pod that runs `roles`' password files and the ACL Secret's `acl_key` (each kind
/// of pod only its own ACL file). The data volume is added by the caller (a claim template for
/// Redis, scratch for Sentinel).
pub(crate) fn pod_volumes(model: &Model, roles: &[Role], acl_key: Option<&str>) -> Vec<Volume> {
    let mut volumes = vec![
        config_map_volume(CONFIG_VOLUME, model.child_name(CONFIG_SUFFIX)),
        credentials_volume(model, roles),
        empty_dir(TMP_VOLUME, true),
    ];
    if let Some(key) = acl_key {
        volumes.push(secret_volume(
            ACL_VOLUME,
            acl_secret_name(model),
            &[(key, key)],
        ));
    }
    if let Some(secret) = tls_secret(model) {
        volumes.push(secret_volume(TLS_VOLUME, secret, &[]));
    }
    volumes
}

/// Mounts matching `pod_volumes`, plus the data volume at the data directory.
pub(crate) fn pod_mounts(model: &Model, with_acl: bool) -> Vec<VolumeMount> {
    let mut mounts = vec![
        mount(CONFIG_VOLUME, CONFIG_DIR),
        mount(CREDENTIALS_VOLUME, CREDENTIALS_DIR),
        writable_mount(DATA_VOLUME, DATA_DIR),
        writable_mount(TMP_VOLUME, TMP_DIR),
    ];
    if with_acl {
        mounts.push(mount(ACL_VOLUME, ACL_DIR));
    }
    if tls_secret(model).is_some() {
        mounts.push(mount(TLS_VOLUME, TLS_DIR));
    }
    mounts
}

/// Only the TLS mount (for the exporter sidecar).
pub(crate) fn tls_mounts(model: &Model) -> Vec<VolumeMount> {
    tls_secret(model)
        .map(|_| mount(TLS_VOLUME, TLS_DIR))
        .into_iter()
        .collect()
}

/// The TLS Secret, when TLS is on (validate makes sure it is named).
pub(crate) fn tls_secret(model: &Model) -> Option<String> {
    let tls = &model.spec.tls;
    tls.secret_name.clone().filter(|_| tls.enabled)
}

/// One file per role under the credentials directory, named after the user (what the scripts
/// read), each the `password` key of that user's credentials Secret. Only the roles the pod
/// needs: a Redis pod never holds the operator's or the app's password.
fn credentials_volume(model: &Model, roles: &[Role]) -> Volume {
    let sources = roles
        .iter()
        .map(|role| VolumeProjection {
            secret: Some(SecretProjection {
                name: credentials_secret_name(model, role.username()),
                items: Some(vec![KeyToPath {
                    key: PASSWORD_KEY.to_owned(),
                    path: role.username().to_owned(),
                    mode: None,
                }]),
                optional: None,
            }),
            ..VolumeProjection::default()
        })
        .collect();
    Volume {
        name: CREDENTIALS_VOLUME.to_owned(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(sources),
            default_mode: Some(SECRET_FILE_MODE),
        }),
        ..Volume::default()
    }
}
