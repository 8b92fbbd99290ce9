//! `SentinelServer`: a real redis-sentinel started from config text. Sentinel rewrites its config
//! file (its id, discovered replicas and sentinels, the current primary), so the file lives in the
//! process's own writable directory and `restart` reuses it as rewritten.

use crate::error::HarnessError;
use crate::process::{Kind, LOOPBACK, ServerProcess};
use crate::server::quote;
use crate::wait;

const CONFIG_FILE: &str = "sentinel.conf";
const LOG_FILE: &str = "sentinel.log";
const HARNESS_MARKER: &str = "# --- appended by the abstore-tests harness ---";

/// A redis-sentinel process with its own temporary directory. Dropping it SIGKILLs the process.
#[derive(Debug)]
pub struct SentinelServer {
    process: ServerProcess,
}

impl SentinelServer {
    /// Starts redis-sentinel from `config` (typically `sentinel monitor …` lines) plus port, bind,
    /// dir, logfile and `daemonize no`, and waits until it answers PING.
    pub fn start(config: &str) -> Result<SentinelServer, HarnessError> {
        let process = ServerProcess::launch(Kind::Sentinel, CONFIG_FILE, LOG_FILE, |dir, port| {
            Ok(format!(
                "{config}\n{HARNESS_MARKER}\nport {port}\nbind {LOOPBACK}\ndir {}\nlogfile {}\ndaemonize no\n",
                quote(dir),
                quote(&dir.join(LOG_FILE)),
            ))
        })?;
        Ok(SentinelServer { process })
    }

    /// `SENTINEL GET-MASTER-ADDR-BY-NAME master`: `None` when this sentinel does not know it.
    pub async fn primary_addr(&self, master: &str) -> Result<Option<(String, u16)>, HarnessError> {
        wait::sentinel_primary_addr(&self.url(), master).await
    }
}

impl std::ops::Deref for SentinelServer {
    type Target = ServerProcess;

    fn deref(&self) -> &ServerProcess {
        &self.process
    }
}

impl std::ops::DerefMut for SentinelServer {
    fn deref_mut(&mut self) -> &mut ServerProcess {
        &mut self.process
    }
}
