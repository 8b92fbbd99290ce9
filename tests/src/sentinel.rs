//! `SentinelServer`: a real redis-sentinel started from config text. Sentinel rewrites its config
//! file (its id, discovered replicas and sentinels, the current primary), so the file lives in the
//! process's own writable directory and `restart` reuses it as rewritten.

use std::path::Path;

use crate::error::HarnessError;
use crate::process::{Kind, LOOPBACK, ManagedProcess};
use crate::server::quote;
use crate::wait;

const CONFIG_FILE: &str = "sentinel.conf";
const LOG_FILE: &str = "sentinel.log";
const HARNESS_MARKER: &str = "# --- appended by the abstore-tests harness ---";

/// A redis-sentinel process with its own temporary directory. Dropping it SIGKILLs the process.
#[derive(Debug)]
pub struct SentinelServer {
    process: ManagedProcess,
}

impl SentinelServer {
    /// Starts redis-sentinel from `config` (typically `sentinel monitor …` lines) plus port, bind,
    /// dir, logfile and `daemonize no`, and waits until it answers PING.
    pub fn start(config: &str) -> Result<SentinelServer, HarnessError> {
        let process = ManagedProcess::launch(
            Kind::Sentinel,
            CONFIG_FILE,
            LOG_FILE,
            |dir, port| {
                Ok(format!(
                    "{config}\n{HARNESS_MARKER}\nport {port}\nbind {LOOPBACK}\ndir {}\nlogfile {}\ndaemonize no\n",
                    quote(dir),
                    quote(&dir.join(LOG_FILE)),
                ))
            },
        )?;
        Ok(SentinelServer { process })
    }

    pub fn host(&self) -> &str {
        LOOPBACK
    }

    pub fn port(&self) -> u16 {
        self.process.port()
    }

    /// `127.0.0.1:<port>`
    pub fn addr(&self) -> String {
        format!("{LOOPBACK}:{}", self.port())
    }

    /// `redis://127.0.0.1:<port>`: Sentinel speaks the Redis protocol.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr())
    }

    /// The process id while it runs; `None` after `kill9`.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    pub fn client(&self) -> Result<redis::Client, HarnessError> {
        redis::Client::open(self.url()).map_err(|source| HarnessError::Redis {
            command: "opening client".to_owned(),
            addr: self.addr(),
            source,
        })
    }

    pub async fn connection(&self) -> Result<redis::aio::MultiplexedConnection, HarnessError> {
        wait::connect(&self.url()).await
    }

    /// SIGKILL and wait for the exit; the config file (with Sentinel's state) and port are kept.
    pub fn kill9(&mut self) -> Result<(), HarnessError> {
        self.process.kill9()
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Starts again from the config file as Sentinel last rewrote it, on the same port.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.process.restart()
    }

    pub fn config_path(&self) -> &Path {
        self.process.config_path()
    }

    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// `SENTINEL GET-MASTER-ADDR-BY-NAME master`: `None` when this sentinel does not know it.
    pub async fn primary_addr(&self, master: &str) -> Result<Option<(String, u16)>, HarnessError> {
        wait::sentinel_primary_addr(&self.url(), master).await
    }
}
