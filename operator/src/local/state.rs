//! `state.json`: what `local up` started, so `status`, `down` and the next `up` find it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{LocalError, Result, io_error};

/// One process: its loopback port (kept across restarts) and pid while it runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessState {
    pub port: u16,
    pub pid: Option<u32>,
    /// Cluster mode: the cluster bus port (`cluster-port`; the default, port + 10000, does
    /// not exist for high loopback ports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bus_port: Option<u16>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalState {
    /// The ABStore's name.
    pub name: String,
    /// The name the sentinels monitor.
    pub master_name: String,
    /// The ABStore file `up` was given (absolute).
    pub spec_file: String,
    /// The `local up` process healing this store, while it runs.
    pub supervisor_pid: Option<u32>,
    /// The primary at the last heal pass (`host:port`).
    pub primary: Option<String>,
    pub nodes: Vec<ProcessState>,
    pub sentinels: Vec<ProcessState>,
    /// The last finished run of each scheduled job (`backup`, `prune`).
    #[serde(default)]
    pub jobs: std::collections::BTreeMap<String, JobRun>,
    /// The rollout step of the last pass (`done`, `wait: …`, `restart data node 1`, …).
    #[serde(default)]
    pub rollout: Option<String>,
    /// Whether the processes serve TLS only (certificates in `<dir>/tls`): the URLs are
    /// `rediss+sentinel://` with the CA file.
    #[serde(default)]
    pub tls: bool,
    /// Cluster mode: the number of shards; `nodes` are shard by shard, the shard's first
    /// member first. `None`: Sentinel mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<u16>,
    /// The tracking API (`spec.api.enabled`): its port and pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ProcessState>,
}

/// One finished job run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRun {
    pub finished_at: String,
    pub ok: bool,
    /// The job's JSON summary line.
    pub summary: Option<String>,
}

impl LocalState {
    pub fn read(path: &Path) -> Result<LocalState> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                LocalError::State {
                    path: path.to_owned(),
                    reason: "no local store here (run `abstore-operator local up` first)"
                        .to_owned(),
                }
            } else {
                LocalError::Io {
                    path: path.to_owned(),
                    source,
                }
            }
        })?;
        serde_json::from_str(&text).map_err(|e| LocalError::State {
            path: path.to_owned(),
            reason: format!("not a local state file: {e}"),
        })
    }

    /// Writes atomically (temporary file, then rename).
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(|e| LocalError::State {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, json).map_err(io_error(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io_error(path))
    }
}
