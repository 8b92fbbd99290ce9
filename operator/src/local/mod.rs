//! `local up | status | down`: the topology an `ABStore` becomes in Kubernetes, as local
//! `redis-server` and `redis-sentinel` processes on loopback, from the same validated model and
//! rendered config files, healed by the same [`heal`](crate::heal) code. The way to try ABStore
//! without a cluster.
//!
//! Everything lives in one directory: `state.json` (ports, pids, primary), `credentials/<user>`
//! (one password file per ACL user, mode 0600), `acl/users.acl`, `redis-<i>/` and `sentinel-<i>/`
//! (config, data, log), `backups/`, and with `spec.tls.enabled` `tls/` (see [`tls`]). `up` on an
//! existing directory restarts the same store with its data, ports, passwords and certificates.

pub mod api;
pub mod cluster;
mod process;
mod state;
pub mod tls;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::config::{self, ConfigPaths};
use crate::crd::ABStore;
use crate::credentials::{Credentials, Role, generate_password};
use crate::heal::{self, Endpoint, HealTarget, NodeRole};
use crate::model::{Model, Platform};
use crate::rotation::{self, PasswordState, STATE_KEY};
use crate::validate::validate_on;

pub use cluster::{ClusterSupervisor, cluster_role_url};
pub use process::{Supervisor, SwitchoverRecord, listens_on};
pub use state::{JobRun, LocalState, ProcessState};

/// Namespace given to a local store whose YAML names none (it only appears in config comments).
pub const LOCAL_NAMESPACE: &str = "local";
/// Loopback address every process binds and announces.
pub const LOOPBACK: &str = "127.0.0.1";
/// State file name inside the directory.
pub const STATE_FILE: &str = "state.json";
/// File name of a rolling-restart request inside the directory.
pub const RESTART_REQUEST_FILE: &str = "restart.request";
/// Directory of the certificates inside the store's directory.
pub const TLS_DIR_NAME: &str = "tls";
/// How long `up` waits for the first primary to be elected.
pub const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between heal passes.
pub const HEAL_INTERVAL: Duration = Duration::from_secs(1);

/// Errors of the local commands, naming the file or process at fault.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not an ABStore: {reason}")]
    Spec { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    State { path: PathBuf, reason: String },
    #[error("starting {what}: {reason}")]
    Start { what: String, reason: String },
    #[error(
        "starting {what}: port {port} is taken by another program (Address already in use); the store's processes keep their ports across restarts: free the port, or run the store from a new directory"
    )]
    PortTaken { what: String, port: u16 },
    #[error("no primary within {seconds} s: {reason}")]
    NoPrimary { seconds: u64, reason: String },
    #[error("heal: {0}")]
    Heal(#[from] heal::HealError),
    #[error("{path}: TLS: {reason}")]
    Tls { path: PathBuf, reason: String },
}

pub type Result<T> = std::result::Result<T, LocalError>;

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> LocalError + '_ {
    move |source| LocalError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Stands in for `spec.tls.secretName` in a spec for `local up` that names none.
const LOCAL_TLS_SECRET: &str = "local-tls";

/// Reads and validates the ABStore in `path` (the first document; a missing namespace becomes
/// `local`; with TLS on, a missing `secretName` is fine).
pub fn load_model(path: &Path) -> Result<Model> {
    let text = std::fs::read_to_string(path).map_err(io_error(path))?;
    let value: serde_json::Value = serde_yaml::from_str(&text).map_err(|e| LocalError::Spec {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    // As `kubectl apply` does (strict field validation): a typo is an error, not a default.
    let fields = crate::strict::unknown_fields(&value);
    if !fields.is_empty() {
        return Err(LocalError::Spec {
            path: path.to_owned(),
            reason: crate::render::join_fields(&fields),
        });
    }
    let mut store: ABStore = serde_json::from_value(value).map_err(|e| LocalError::Spec {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    if store.metadata.namespace.is_none() {
        store.metadata.namespace = Some(LOCAL_NAMESPACE.to_owned());
    }
    // Local TLS uses the files in `<dir>/tls/`, never a Secret: a spec written for `local up`
    // need not name one (the name is only used to build Kubernetes objects).
    if store.spec.tls.enabled && store.spec.tls.secret_name.is_none() {
        store.spec.tls.secret_name = Some(LOCAL_TLS_SECRET.to_owned());
    }
    validate_on(&store, &Platform::local()).map_err(|e| LocalError::Spec {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// The directory layout.
#[derive(Clone, Debug)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: impl Into<PathBuf>) -> Layout {
        Layout { dir: dir.into() }
    }
    pub fn state_file(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }
    pub fn credentials_dir(&self) -> PathBuf {
        self.dir.join("credentials")
    }
    pub fn credential_file(&self, user: &str) -> PathBuf {
        self.credentials_dir().join(user)
    }
    pub fn acl_file(&self) -> PathBuf {
        self.dir.join("acl").join(config::ACL_FILE_NAME)
    }
    /// What the ACL Secret's `passwords.json` is in Kubernetes: rotations in progress.
    pub fn password_state_file(&self) -> PathBuf {
        self.dir.join("acl").join(STATE_KEY)
    }
    /// The sentinels' ACL file (next to `acl_file`, as `ConfigPaths::sentinel_acl_file` says).
    pub fn sentinel_acl_file(&self) -> PathBuf {
        self.dir.join("acl").join(config::SENTINEL_ACL_FILE_NAME)
    }
    pub fn node_dir(&self, index: usize) -> PathBuf {
        self.dir.join(format!("redis-{index}"))
    }
    pub fn sentinel_dir(&self, index: usize) -> PathBuf {
        self.dir.join(format!("sentinel-{index}"))
    }
    pub fn backups_dir(&self) -> PathBuf {
        self.dir.join("backups")
    }
    /// The certificates of a TLS store, named as in a cert-manager Secret.
    pub fn tls_dir(&self) -> PathBuf {
        self.dir.join(TLS_DIR_NAME)
    }
    /// The CA clients trust (`?ca_file=` of the URLs).
    pub fn tls_ca_file(&self) -> PathBuf {
        self.tls_dir().join(config::TLS_CA_FILE)
    }
    pub fn tls_cert_file(&self) -> PathBuf {
        self.tls_dir().join(config::TLS_CERT_FILE)
    }
    pub fn tls_key_file(&self) -> PathBuf {
        self.tls_dir().join(config::TLS_KEY_FILE)
    }
    /// Written by `local restart`; the running `up` removes it and rolls every process.
    pub fn restart_request_file(&self) -> PathBuf {
        self.dir.join(RESTART_REQUEST_FILE)
    }
    fn config_paths(&self) -> ConfigPaths {
        let text = |p: PathBuf| p.display().to_string();
        ConfigPaths {
            data_dir: text(self.dir.clone()),
            acl_file: text(self.acl_file()),
            tls_dir: text(self.tls_dir()),
            credentials_dir: text(self.credentials_dir()),
            config_dir: text(self.dir.join("config")),
        }
    }
}

/// Passwords of every user: the files already in `credentials/` are kept, missing ones are
/// generated and written (0600).
pub fn credentials(model: &Model, layout: &Layout) -> Result<Credentials> {
    let dir = layout.credentials_dir();
    std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let mut existing = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).map_err(io_error(&dir))? {
        let entry = entry.map_err(io_error(&dir))?;
        let path = entry.path();
        let password = std::fs::read_to_string(&path).map_err(io_error(&path))?;
        existing.insert(
            entry.file_name().to_string_lossy().into_owned(),
            password.trim().to_owned(),
        );
    }
    let credentials = Credentials::resolve(model, &existing, &mut generate_password);
    for (user, password) in credentials.users() {
        if existing.get(user).map(String::as_str) != Some(password) {
            write_private(&layout.credential_file(user), password)?;
        }
    }
    // Rotations, as in Kubernetes: a password file edited by hand (or deleted, so a new one is
    // generated) keeps the previous password working for spec.auth.rotationGraceSeconds.
    let state_file = layout.password_state_file();
    let prior = match std::fs::read(&state_file) {
        Ok(bytes) => match PasswordState::parse(&bytes) {
            Ok(state) => Some(state),
            Err(error) => {
                tracing::warn!(file = %state_file.display(), %error, "unreadable password rotation state; taking the password files as they are");
                None
            }
        },
        Err(_) => None,
    };
    let (credentials, events, _) = rotation::roll(
        credentials,
        prior.as_ref(),
        chrono::Utc::now(),
        chrono::Duration::seconds(model.spec.auth.rotation_grace_seconds),
    );
    for event in &events {
        tracing::info!(reason = event.reason(), "{}", event.note());
    }
    let state = PasswordState::of(&credentials);
    if prior.as_ref() != Some(&state) {
        write_private(&state_file, &state.to_json())?;
    }
    Ok(credentials)
}

/// The data nodes' and the sentinels' ACL files, from the store's credentials.
pub(crate) fn write_acl_files(
    model: &Model,
    layout: &Layout,
    credentials: &Credentials,
) -> Result<()> {
    write_private(&layout.acl_file(), &config::acl_file(model, credentials))?;
    write_private(
        &layout.sentinel_acl_file(),
        &config::sentinel_acl_file(model, credentials),
    )
}

/// Writes a file only its owner can read.
pub(crate) fn write_private(path: &Path, content: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_error(&tmp))?;
    file.write_all(content.as_bytes()).map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error(path))
}

/// redis.conf of node `index`: the operator's rendered redis.conf, then this node's lines
/// (loopback port, its directory, masterauth, and `replicaof` when a primary is known and it is
/// not this node: a restarted node never comes up as a second, possibly empty, primary). With
/// TLS the port is the TLS port and the plaintext one stays closed (`port 0`).
pub fn node_config(
    model: &Model,
    layout: &Layout,
    credentials: &Credentials,
    index: usize,
    port: u16,
    primary: Option<&Endpoint>,
) -> String {
    let mut conf = config::redis_conf(model, &layout.config_paths());
    let dir = layout.node_dir(index);
    conf.push_str(&format!(
        "\n# --- this node, written by abstore-operator local up ---\n\
         {}bind {LOOPBACK}\ndir \"{}\"\naclfile \"{}\"\n\
         masterauth \"{}\"\nreplica-announce-ip {LOOPBACK}\nreplica-announce-port {port}\n\
         repl-diskless-sync-delay 0\n",
        port_lines(model, port),
        dir.display(),
        layout.acl_file().display(),
        credentials.role_password(Role::Replication),
    ));
    if let Some(primary) = primary
        && primary.port != port
    {
        conf.push_str(&format!("replicaof {} {}\n", primary.host, primary.port));
    }
    conf
}

/// sentinel.conf of sentinel `index`: the rendered sentinel.conf plus its port, directory and
/// `sentinel-pass` (what it authenticates to the other sentinels with). No `sentinel monitor`:
/// heal makes it monitor the primary it chose or the sentinels elected, with the auth-pass.
/// With TLS (`tls-replication yes` in the rendered file) it talks TLS to the data nodes and to
/// the other sentinels, and serves only TLS.
pub fn sentinel_config(
    model: &Model,
    layout: &Layout,
    credentials: &Credentials,
    index: usize,
    port: u16,
) -> String {
    let mut conf = config::sentinel_conf(model, &layout.config_paths());
    conf.push_str(&format!(
        "\n# --- this sentinel, written by abstore-operator local up ---\n\
         {}bind {LOOPBACK}\ndir \"{}\"\nsentinel sentinel-pass \"{}\"\n",
        port_lines(model, port),
        layout.sentinel_dir(index).display(),
        credentials.role_password(Role::Sentinel),
    ));
    conf
}

/// The listening port of a local process: plaintext, or TLS only.
fn port_lines(model: &Model, port: u16) -> String {
    if model.spec.tls.enabled {
        format!("port 0\ntls-port {port}\n")
    } else {
        format!("port {port}\n")
    }
}

/// What heal needs for this local store (with TLS, the CA in `<dir>/tls/ca.crt`).
pub fn heal_target(
    model: &Model,
    layout: &Layout,
    credentials: &Credentials,
    state: &LocalState,
) -> Result<HealTarget> {
    let nodes = state
        .nodes
        .iter()
        .map(|n| Endpoint::new(LOOPBACK, n.port))
        .collect();
    let sentinels = state
        .sentinels
        .iter()
        .map(|s| Endpoint::new(LOOPBACK, s.port))
        .collect();
    let tls_ca = if model.spec.tls.enabled {
        Some(tls::read_ca(layout)?)
    } else {
        None
    };
    Ok(HealTarget::for_model(
        model,
        credentials,
        nodes,
        sentinels,
        tls_ca,
    ))
}

/// The `redis+sentinel://` URL applications use (the password comes from the file;
/// `rediss+sentinel://` with the CA file for a TLS store).
pub fn app_url(layout: &Layout, state: &LocalState) -> String {
    role_url(layout, state, Role::App)
}

/// The `redis+sentinel://` URL of a role's user, with its password file (`rediss+sentinel://`
/// and the CA file when the store serves TLS); the same user and password authenticate to the
/// sentinels (`sentinel_username`).
pub fn role_url(layout: &Layout, state: &LocalState, role: Role) -> String {
    if state.shards.is_some() {
        return cluster_role_url(layout, state, role);
    }
    let hosts: Vec<String> = state
        .sentinels
        .iter()
        .map(|s| format!("{LOOPBACK}:{}", s.port))
        .collect();
    let (scheme, ca) = if state.tls {
        (
            "rediss+sentinel",
            format!("ca_file={}&", layout.tls_ca_file().display()),
        )
    } else {
        ("redis+sentinel", String::new())
    };
    format!(
        "{scheme}://{user}@{}/{}?{ca}sentinel_username={user}&password_file={}",
        hosts.join(","),
        state.master_name,
        layout.credential_file(role.username()).display(),
        user = role.username(),
    )
}

/// `local status`: the state file plus what every process says now.
#[derive(Debug, Serialize)]
pub struct Status {
    pub name: String,
    pub dir: String,
    pub url: String,
    pub credentials_dir: String,
    pub supervisor_pid: Option<u32>,
    pub primary: Option<String>,
    pub nodes: Vec<NodeStatus>,
    pub sentinels: Vec<SentinelStatus>,
    /// The last finished run of each scheduled job.
    pub jobs: BTreeMap<String, state::JobRun>,
    /// The rollout step of the healer's last pass.
    pub rollout: Option<String>,
    /// The certificates of a TLS store.
    pub tls: Option<TlsStatus>,
    /// Cluster mode: hash slots some reachable primary serves (of 16384).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slots_covered: Option<u32>,
    /// The tracking API's URL, when the store runs it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
}

/// The certificates `status` reports for a TLS store.
#[derive(Debug, Serialize)]
pub struct TlsStatus {
    /// The CA clients trust.
    pub ca_file: String,
    /// When the server certificate ends (RFC 3339).
    pub server_certificate_expires: Option<String>,
    /// Why the server certificate could not be read.
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct NodeStatus {
    pub address: String,
    pub pid: Option<u32>,
    /// The process the state names runs and listens on its port (a pid alone may have been
    /// reused by another process).
    pub running: bool,
    pub role: Option<String>,
    pub offset: Option<u64>,
    pub keys: Option<u64>,
    pub error: Option<String>,
    /// Cluster mode: the member's shard.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<u16>,
    /// Cluster mode: the slots this node serves as a primary (`0-5460,…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slots: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SentinelStatus {
    pub address: String,
    pub pid: Option<u32>,
    /// The process the state names runs and listens on its port (a pid alone may have been
    /// reused by another process).
    pub running: bool,
    pub primary: Option<String>,
    pub error: Option<String>,
}

/// Reads the state and asks every process.
pub async fn status(layout: &Layout) -> Result<Status> {
    let state = LocalState::read(&layout.state_file())?;
    if state.shards.is_some() {
        return cluster::status(layout, state).await;
    }
    let mut model = load_model(Path::new(&state.spec_file))?;
    // The processes speak what `up` started them with; a TLS switch edited into the file since
    // is refused by a running `up` and only takes effect at the next one.
    model.spec.tls.enabled = state.tls;
    let credentials = credentials(&model, layout)?;
    if state.tls {
        abstore::crypto::install_default_provider();
    }
    let target = heal_target(&model, layout, &credentials, &state)?;
    let observation = heal::observe(&target).await;
    let nodes = state
        .nodes
        .iter()
        .zip(&observation.nodes)
        .map(|(p, o)| {
            let (role, offset, keys, error) = match &o.state {
                Ok(info) => (
                    Some(match &info.role {
                        NodeRole::Primary => "primary".to_owned(),
                        NodeRole::Replica { primary, link_up } => format!(
                            "replica of {primary} (link {})",
                            if *link_up { "up" } else { "down" }
                        ),
                    }),
                    Some(info.offset),
                    Some(info.keys),
                    None,
                ),
                Err(e) => (None, None, None, Some(e.clone())),
            };
            NodeStatus {
                address: o.endpoint.to_string(),
                pid: p.pid,
                running: p.pid.is_some_and(|pid| process::listens_on(pid, p.port)),
                role,
                offset,
                keys,
                error,
                shard: None,
                slots: None,
            }
        })
        .collect();
    let sentinels = state
        .sentinels
        .iter()
        .zip(&observation.sentinels)
        .map(|(p, o)| {
            let (primary, error) = match &o.state {
                Ok(Some(view)) => (Some(view.primary.to_string()), None),
                Ok(None) => (None, Some("does not monitor the store".to_owned())),
                Err(e) => (None, Some(e.clone())),
            };
            SentinelStatus {
                address: o.endpoint.to_string(),
                pid: p.pid,
                running: p.pid.is_some_and(|pid| process::listens_on(pid, p.port)),
                primary,
                error,
            }
        })
        .collect();
    Ok(Status {
        name: state.name.clone(),
        dir: layout.dir.display().to_string(),
        url: app_url(layout, &state),
        credentials_dir: layout.credentials_dir().display().to_string(),
        supervisor_pid: state.supervisor_pid,
        primary: state.primary.clone(),
        nodes,
        sentinels,
        jobs: state.jobs.clone(),
        rollout: state.rollout.clone(),
        tls: state.tls.then(|| {
            let expires = tls::server_not_after(layout);
            TlsStatus {
                ca_file: layout.tls_ca_file().display().to_string(),
                server_certificate_expires: expires.as_ref().ok().map(|at| at.to_rfc3339()),
                error: expires.err().map(|e| e.to_string()),
            }
        }),
        slots_covered: None,
        api: api::api_url(&state),
    })
}

/// `local restart`: asks the running `local up` to roll every process (replicas one at a time,
/// the primary by switchover, sentinels last), as for a configuration change.
pub fn request_restart(layout: &Layout) -> Result<u32> {
    let state = LocalState::read(&layout.state_file())?;
    let Some(pid) = state.supervisor_pid.filter(|pid| process::is_running(*pid)) else {
        return Err(LocalError::State {
            path: layout.state_file(),
            reason: "no `local up` is running for this directory; a restart request needs one"
                .to_owned(),
        });
    };
    let request = layout.restart_request_file();
    std::fs::write(&request, chrono::Utc::now().to_rfc3339()).map_err(io_error(&request))?;
    Ok(pid)
}

/// `local down`: stops the supervisor (so it does not restart anything), then every process the
/// state names that still listens on its port (pids are reused), SIGTERM first and SIGKILL
/// after `grace`.
pub async fn down(layout: &Layout, grace: Duration) -> Result<Vec<u32>> {
    let mut state = LocalState::read(&layout.state_file())?;
    let mut stopped = Vec::new();
    if let Some(pid) = state.supervisor_pid.take()
        && process::stop(pid, "abstore-operator", grace).await
    {
        stopped.push(pid);
    }
    for proc in state
        .api
        .iter_mut()
        .chain(state.nodes.iter_mut())
        .chain(state.sentinels.iter_mut())
    {
        if let Some(pid) = proc.pid.take()
            && process::stop_listener(pid, proc.port, grace).await
        {
            stopped.push(pid);
        }
    }
    state.write(&layout.state_file())?;
    Ok(stopped)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn model(tls: bool) -> Model {
        let yaml = format!(
            "apiVersion: abstore.dev/v1alpha1\nkind: ABStore\nmetadata:\n  name: shop\n  namespace: local\nspec:\n  tls:\n    enabled: {tls}\n    secretName: shop-tls\n"
        );
        crate::validate::validate_on(
            &serde_yaml::from_str::<ABStore>(&yaml).unwrap(),
            &Platform::local(),
        )
        .unwrap()
    }

    #[test]
    fn a_local_tls_spec_needs_no_secret_name_but_bad_input_still_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shop.yaml");
        std::fs::write(
            &path,
            "apiVersion: abstore.dev/v1alpha1\nkind: ABStore\nmetadata:\n  name: shop\nspec:\n  tls: {enabled: true}\n",
        )
        .unwrap();
        let model = load_model(&path).unwrap();
        assert!(model.spec.tls.enabled);
        assert_eq!(model.namespace, LOCAL_NAMESPACE);
        std::fs::write(
            &path,
            "apiVersion: abstore.dev/v1alpha1\nkind: ABStore\nmetadata:\n  name: shop\nspec:\n  tls: {enabled: true, secretName: Not_A_Name}\n",
        )
        .unwrap();
        let error = load_model(&path).unwrap_err().to_string();
        assert!(
            error.contains("spec.tls.secretName") && error.contains("shop.yaml"),
            "{error}"
        );
    }

    /// The value of the last `directive` line (the one Redis keeps).
    fn last(conf: &str, directive: &str) -> Option<String> {
        conf.lines()
            .rev()
            .find_map(|l| l.strip_prefix(directive)?.strip_prefix(' '))
            .map(str::to_owned)
    }

    fn state(tls: bool) -> LocalState {
        LocalState {
            master_name: "shop".to_owned(),
            sentinels: vec![ProcessState {
                port: 26001,
                ..ProcessState::default()
            }],
            tls,
            ..LocalState::default()
        }
    }

    #[test]
    fn with_tls_every_process_serves_only_tls_on_its_port_with_the_local_certificates() {
        // A trailing `port <n>` would reopen plaintext after the rendered `port 0`.
        let tls = model(true);
        let layout = Layout::new("/var/store");
        let credentials = Credentials::resolve(&tls, &BTreeMap::new(), &mut || "pw".to_owned());
        let node = node_config(&tls, &layout, &credentials, 0, 7001, None);
        let sentinel = sentinel_config(&tls, &layout, &credentials, 0, 26001);
        for conf in [&node, &sentinel] {
            assert_eq!(last(conf, "port").as_deref(), Some("0"), "{conf}");
            assert_eq!(last(conf, "tls-replication").as_deref(), Some("yes"));
            assert_eq!(
                last(conf, "tls-ca-cert-file").as_deref(),
                Some("\"/var/store/tls/ca.crt\"")
            );
            assert_eq!(
                last(conf, "tls-key-file").as_deref(),
                Some("\"/var/store/tls/tls.key\"")
            );
        }
        assert_eq!(last(&node, "tls-port").as_deref(), Some("7001"));
        assert_eq!(last(&sentinel, "tls-port").as_deref(), Some("26001"));

        let plain = model(false);
        let node = node_config(&plain, &layout, &credentials, 0, 7001, None);
        assert_eq!(last(&node, "port").as_deref(), Some("7001"));
        assert_eq!(last(&node, "tls-port"), None);
    }

    #[test]
    fn urls_of_a_tls_store_are_rediss_with_the_ca_file() {
        // What `up` prints, `status` shows and the scheduled jobs are given.
        let layout = Layout::new("/var/store");
        assert_eq!(
            role_url(&layout, &state(true), Role::Backup),
            "rediss+sentinel://backup@127.0.0.1:26001/shop?ca_file=/var/store/tls/ca.crt&sentinel_username=backup&password_file=/var/store/credentials/backup"
        );
        assert_eq!(
            app_url(&layout, &state(false)),
            "redis+sentinel://app@127.0.0.1:26001/shop?sentinel_username=app&password_file=/var/store/credentials/app"
        );
    }
}
