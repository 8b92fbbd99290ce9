//! `RedisServer`: a real redis-server started from config text, with the harness's own port,
//! directories and log file appended, so that operator-rendered configs can be run unchanged.

use std::path::{Path, PathBuf};

use crate::error::HarnessError;
use crate::process::{self, Kind, LOOPBACK, ServerProcess};

const CONFIG_FILE: &str = "redis.conf";
const LOG_FILE: &str = "redis.log";
const DATA_DIR: &str = "data";
const HARNESS_MARKER: &str =
    "# --- appended by the abstore-tests harness (later directives win) ---";

/// Defaults the harness adds only when the given config does not choose: tests should not
/// write snapshots they do not ask for, and replicas should sync without the default 5 s delay.
const DEFAULTS_UNLESS_SET: [(&str, &str); 3] = [
    ("save", "\"\""),
    ("appendonly", "no"),
    ("repl-diskless-sync-delay", "0"),
];

/// A redis-server process with its own temporary directory (config file, data dir, log file).
/// Dropping it SIGKILLs the process and removes the directory.
#[derive(Debug)]
pub struct RedisServer {
    process: ServerProcess,
}

impl RedisServer {
    /// Starts redis-server from `config` plus the harness overrides (port, bind, dir, logfile,
    /// daemonize, pidfile; `save ""`, `appendonly no` and `repl-diskless-sync-delay 0` unless the
    /// config sets them), and waits until it answers PING (or -NOAUTH / -LOADING).
    pub fn start(config: &str) -> Result<RedisServer, HarnessError> {
        RedisServer::launch(Kind::Server, config)
    }

    /// Like `start`, but runs valkey-server (Debian's `valkey-server` package, or
    /// `$VALKEY_SERVER_BIN`), which reads the same config and speaks the same protocol.
    pub fn start_valkey(config: &str) -> Result<RedisServer, HarnessError> {
        RedisServer::launch(Kind::Valkey, config)
    }

    fn launch(kind: Kind, config: &str) -> Result<RedisServer, HarnessError> {
        let process = ServerProcess::launch(kind, CONFIG_FILE, LOG_FILE, |dir, port| {
            let data_dir = dir.join(DATA_DIR);
            std::fs::create_dir_all(&data_dir).map_err(|source| HarnessError::Io {
                action: "creating",
                path: data_dir.clone(),
                source,
            })?;
            Ok(render_config(config, &data_dir, &dir.join(LOG_FILE), port))
        })?;
        Ok(RedisServer { process })
    }

    /// A server with nothing but the harness defaults.
    pub fn start_default() -> Result<RedisServer, HarnessError> {
        RedisServer::start("")
    }

    /// Starts a server from `config` that replicates `primary` (`replicaof` appended).
    pub fn start_replica_of(
        config: &str,
        primary: &RedisServer,
    ) -> Result<RedisServer, HarnessError> {
        RedisServer::start(&format!(
            "{config}\n{}\n",
            replicaof_line(primary.host(), primary.port())
        ))
    }

    /// Restarts on the same port and data dir with `replicaof host port` replacing any
    /// `replicaof`/`slaveof` line, so that it never serves its stale data as a primary.
    pub fn restart_as_replica_of(&mut self, host: &str, port: u16) -> Result<(), HarnessError> {
        self.process.kill9()?;
        let path = self.process.config_path().to_owned();
        let config = process::read_file(&path)?;
        let mut kept: Vec<&str> = config
            .lines()
            .filter(|line| !(sets_directive(line, "replicaof") || sets_directive(line, "slaveof")))
            .collect();
        let replicaof = replicaof_line(host, port);
        kept.push(&replicaof);
        process::write_file(&path, &(kept.join("\n") + "\n"))?;
        self.process.restart()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.process.dir().join(DATA_DIR)
    }
}

fn replicaof_line(host: &str, port: u16) -> String {
    format!("replicaof {host} {port}")
}

fn render_config(config: &str, data_dir: &Path, log_file: &Path, port: u16) -> String {
    let mut out = String::with_capacity(config.len() + 512);
    out.push_str(config);
    out.push('\n');
    out.push_str(HARNESS_MARKER);
    out.push('\n');
    out.push_str(&format!(
        "port {port}\nbind {LOOPBACK}\ndir {}\nlogfile {}\ndaemonize no\npidfile \"\"\n",
        quote(data_dir),
        quote(log_file)
    ));
    for (name, value) in DEFAULTS_UNLESS_SET {
        if !config.lines().any(|line| sets_directive(line, name)) {
            out.push_str(&format!("{name} {value}\n"));
        }
    }
    out
}

/// Whether a redis.conf line sets `name` (directive names are case-insensitive).
pub(crate) fn sets_directive(line: &str, name: &str) -> bool {
    line.split_whitespace()
        .next()
        .is_some_and(|first| first.eq_ignore_ascii_case(name))
}

/// A path as a redis.conf string argument.
pub(crate) fn quote(path: &Path) -> String {
    let text = path.display().to_string();
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

impl std::ops::Deref for RedisServer {
    type Target = ServerProcess;

    fn deref(&self) -> &ServerProcess {
        &self.process
    }
}

impl std::ops::DerefMut for RedisServer {
    fn deref_mut(&mut self) -> &mut ServerProcess {
        &mut self.process
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_added_only_when_the_config_does_not_choose() {
        // A config asking for persistence must get it, or restart tests lose data silently.
        let rendered = render_config(
            "appendonly yes\nSAVE 60 1",
            Path::new("/d"),
            Path::new("/l"),
            7000,
        );
        assert!(!rendered.contains("appendonly no"));
        assert!(!rendered.contains("save \"\""));
        assert!(rendered.contains("repl-diskless-sync-delay 0"));
        assert!(rendered.ends_with("repl-diskless-sync-delay 0\n"));
        assert!(rendered.contains("port 7000\n"));
    }
}
