//! The tracking API under `local up` (`spec.api.enabled`): `abstore-api` as a local process on
//! a loopback port, logging in as the `api` user with the same settings the operator gives its
//! Deployment, restarted when it exits, stopped with the store. Its key is `<dir>/api-key`
//! (generated on the first `up`; replace the file and restart `up` to change it).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::process::Child;

use super::process::{exited, free_port, last_lines, listens_on, spawn_program, stop};
use super::state::{LocalState, ProcessState};
use super::{LOOPBACK, Layout, LocalError, Result, io_error, role_url, write_private};
use crate::credentials::{Role, generate_password};
use crate::model::Model;

/// Log of the API process in the store's directory.
pub const API_LOG: &str = "api.log";
/// How long the API has to listen after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The API process of a local store.
#[derive(Debug)]
pub struct LocalApi {
    binary: PathBuf,
    child: Option<Child>,
    /// Set once the store has a primary: started earlier, the API would only wait for one.
    armed: bool,
}

impl Default for LocalApi {
    fn default() -> Self {
        LocalApi {
            binary: api_binary(),
            child: None,
            armed: false,
        }
    }
}

/// `http://127.0.0.1:<port>` of a local store's API, when it has one.
pub fn api_url(state: &LocalState) -> Option<String> {
    state
        .api
        .as_ref()
        .map(|api| format!("http://{LOOPBACK}:{}", api.port))
}

/// The local store's API key file.
pub fn api_key_file(layout: &Layout) -> PathBuf {
    layout.dir.join("api-key")
}

impl LocalApi {
    /// Uses `binary` instead of the `abstore-api` found next to this program or on PATH.
    pub fn set_binary(&mut self, binary: &Path) {
        binary.clone_into(&mut self.binary);
    }

    /// Lets [`LocalApi::ensure`] start the API (after the store's bootstrap).
    pub fn arm(&mut self) {
        self.armed = true;
    }

    /// Starts the API when the spec enables it and it is not running (first start, or it
    /// exited); stops it when the spec no longer does. Waits until it listens.
    pub async fn ensure(
        &mut self,
        model: &Model,
        layout: &Layout,
        state: &mut LocalState,
    ) -> Result<()> {
        if let Some(status) = exited(&mut self.child) {
            tracing::warn!(%status, last_log_lines = %last_lines(&layout.dir.join(API_LOG)), "abstore-api exited; starting it again");
            if let Some(api) = state.api.as_mut() {
                api.pid = None;
            }
        }
        if !model.spec.api.enabled {
            self.stop(state).await;
            state.api = None;
            return Ok(());
        }
        if self.child.is_some() || !self.armed {
            return Ok(());
        }
        let taken: Vec<ProcessState> = state
            .nodes
            .iter()
            .chain(&state.sentinels)
            .cloned()
            .collect();
        let port = match &state.api {
            Some(api) => api.port,
            None => free_port(&taken, &[])?,
        };
        let key_file = api_key_file(layout);
        if !key_file.exists() {
            write_private(&key_file, &format!("{}\n", generate_password()))?;
        }
        let args = args(model, layout, state, port, &key_file);
        let log = layout.dir.join(API_LOG);
        let mut child = spawn_program(&self.binary, &args, &log).map_err(|e| match e {
            LocalError::Start { what, reason } if reason.contains("No such file") => {
                LocalError::Start {
                    what,
                    reason: format!(
                        "{} was not found next to abstore-operator or on PATH (cargo build -p abstore-api)",
                        self.binary.display()
                    ),
                }
            }
            other => other,
        })?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(LocalError::Start {
                    what: "abstore-api".to_owned(),
                    reason: format!(
                        "exited ({status}) before it listened; its log ({}): {}",
                        log.display(),
                        last_lines(&log)
                    ),
                });
            }
            if child.id().is_some_and(|pid| listens_on(pid, port)) {
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill().await;
                return Err(LocalError::Start {
                    what: "abstore-api".to_owned(),
                    reason: format!(
                        "not listening on port {port} after {} s; its log ({}): {}",
                        START_TIMEOUT.as_secs(),
                        log.display(),
                        last_lines(&log)
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        state.api = Some(ProcessState {
            port,
            pid: child.id(),
            bus_port: None,
        });
        tracing::info!(url = %format!("http://{LOOPBACK}:{port}"), "abstore-api started");
        self.child = Some(child);
        Ok(())
    }

    /// Stops the API (SIGTERM: it drains the requests in flight).
    pub async fn stop(&mut self, state: &mut LocalState) {
        if let Some(child) = self.child.take()
            && let Some(pid) = child.id()
        {
            stop(pid, "abstore-api", Duration::from_secs(10)).await;
        }
        if let Some(api) = state.api.as_mut() {
            api.pid = None;
        }
    }
}

/// The flags the operator's Deployment sets through the environment.
fn args(model: &Model, layout: &Layout, state: &LocalState, port: u16, key: &Path) -> Vec<String> {
    let api = &model.spec.api;
    let mut args = vec![
        "--redis-url".to_owned(),
        role_url(layout, state, Role::Api),
        "--listen".to_owned(),
        format!("{LOOPBACK}:{port}"),
        "--api-key-file".to_owned(),
        key.display().to_string(),
        "--rate-limit".to_owned(),
        api.rate_limit.to_string(),
        "--wait-replicas".to_owned(),
        crate::build::api_wait_replicas(model).to_string(),
    ];
    if !api.allowed_origins.is_empty() {
        args.push("--allowed-origins".to_owned());
        args.push(api.allowed_origins.join(","));
    }
    args
}

/// `abstore-api` next to this binary (a cargo build puts both in the same directory), else
/// from PATH.
fn api_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("abstore-api")))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from("abstore-api"))
}

/// Reads the key of a local store's API (for `local status` and tests).
pub fn read_api_key(layout: &Layout) -> Result<String> {
    let path = api_key_file(layout);
    std::fs::read_to_string(&path)
        .map(|key| key.trim().to_owned())
        .map_err(io_error(&path))
}
