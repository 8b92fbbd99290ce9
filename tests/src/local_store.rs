//! Helpers for tests that drive `abstore-operator local up`'s [`Supervisor`] in-process: the
//! ABStore file they edit, cleanup of every process it started (also on panic), a writer that
//! records through the `abstore` crate's Sentinel-following connection, and a plain writer on
//! one address (an application behind the `-primary` Service).
//!
//! [`Supervisor`]: abstore_operator::local::Supervisor

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use abstore::connection::{Connection, Retry};
use abstore_operator::local::{self, Layout, LocalState};
use tokio::sync::Mutex;

/// An `ABStore` for local tests: Sentinel timings short enough for failovers within seconds.
#[derive(Clone, Debug)]
pub struct LocalSpec {
    pub name: String,
    pub redis_replicas: u32,
    pub sentinels: u32,
    /// `spec.redis.maxmemory` (a config change that restarts every data node).
    pub maxmemory: Option<String>,
    /// `spec.sentinel.parallelSyncs` (a config change that restarts every sentinel).
    pub parallel_syncs: u32,
}

impl LocalSpec {
    pub fn new(name: &str) -> LocalSpec {
        LocalSpec {
            name: name.to_owned(),
            redis_replicas: 3,
            sentinels: 3,
            maxmemory: None,
            parallel_syncs: 1,
        }
    }

    pub fn yaml(&self) -> String {
        let maxmemory = self
            .maxmemory
            .as_ref()
            .map(|m| format!("    maxmemory: {m}\n"))
            .unwrap_or_default();
        format!(
            "apiVersion: abstore.dev/v1alpha1\nkind: ABStore\nmetadata:\n  name: {}\nspec:\n  redis:\n    replicas: {}\n{maxmemory}  sentinel:\n    replicas: {}\n    downAfterMilliseconds: 1000\n    failoverTimeoutMilliseconds: 3000\n    parallelSyncs: {}\n",
            self.name, self.redis_replicas, self.sentinels, self.parallel_syncs
        )
    }

    /// Writes the file (atomically, as an editor saving it would).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("yaml.tmp");
        std::fs::write(&tmp, self.yaml())?;
        std::fs::rename(&tmp, path)
    }
}

/// SIGKILLs every process the state file in a directory names when dropped, passed or not: a
/// failing assertion must not leave servers behind (`local up`'s servers outlive a dropped
/// supervisor by design). Only a pid that still listens on its member's port: a stale pid in
/// the file (a process killed by the test) may belong to anything now, another test's server
/// included, on a busy machine whose pids wrap within minutes.
#[derive(Debug)]
pub struct KillOnDrop(pub PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let Ok(state) = LocalState::read(&self.0.join(local::STATE_FILE)) else {
            return;
        };
        for pid in state
            .nodes
            .iter()
            .chain(&state.sentinels)
            .filter_map(|p| p.pid.filter(|pid| local::listens_on(*pid, p.port)))
        {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
    }
}

/// One write that failed, with when it was sent and when it failed.
#[derive(Clone, Debug)]
pub struct FailedWrite {
    pub sent: Instant,
    pub failed: Instant,
    pub error: String,
}

/// What the writer saw.
#[derive(Clone, Debug, Default)]
pub struct WriterLog {
    /// Increments acknowledged by the primary.
    pub acked: u64,
    /// Increments whose outcome is unknown (the link broke with them in flight).
    pub unknown: u64,
    pub errors: Vec<FailedWrite>,
    /// The slowest acknowledged write and when it was sent.
    pub slowest: Option<(Duration, Instant)>,
}

impl WriterLog {
    fn acknowledged(&mut self, sent: Instant) {
        self.acked += 1;
        let took = sent.elapsed();
        if self.slowest.is_none_or(|(slowest, _)| took > slowest) {
            self.slowest = Some((took, sent));
        }
    }

    fn failed(&mut self, sent: Instant, error: String, outcome_unknown: bool) {
        if outcome_unknown {
            self.unknown += 1;
        }
        self.errors.push(FailedWrite {
            sent,
            failed: Instant::now(),
            error,
        });
    }
}

/// Increments one counter through Sentinel as the `app` user, one round trip at a time (paced
/// at `interval`), until stopped.
#[derive(Debug)]
pub struct Writer {
    pub connection: Connection,
    pub key: String,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<WriterLog>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Writer {
    /// Connects with the store's `app` URL (sentinels, password file) and starts writing.
    pub async fn start(
        layout: &Layout,
        state: &LocalState,
        key: &str,
        interval: Duration,
    ) -> abstore::Result<Writer> {
        let connection = Connection::open(&local::app_url(layout, state)).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(WriterLog::default()));
        let task = {
            let (connection, stop, log, key) = (
                connection.clone(),
                stop.clone(),
                log.clone(),
                key.to_owned(),
            );
            tokio::spawn(async move {
                let mut pipe = redis::pipe();
                pipe.cmd("INCRBY").arg(&key).arg(1);
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let result = connection
                        .exec::<(i64,)>(&pipe, Retry::NotIdempotent, "rollout test write")
                        .await;
                    let mut log = log.lock().await;
                    match result {
                        Ok(_) => log.acknowledged(sent),
                        Err(e) => {
                            let unknown = matches!(e, abstore::Error::OutcomeUnknown { .. });
                            log.failed(sent, e.to_string(), unknown);
                        }
                    }
                    drop(log);
                    tokio::time::sleep(interval).await;
                }
            })
        };
        Ok(Writer {
            connection,
            key: key.to_owned(),
            stop,
            log,
            task: Some(task),
        })
    }

    /// What it saw so far.
    pub async fn log(&self) -> WriterLog {
        self.log.lock().await.clone()
    }

    /// Stops writing (waiting for the write in flight) and returns the log.
    pub async fn stop(&mut self) -> WriterLog {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.log.lock().await.clone()
    }

    /// The counter's value now, read through Sentinel.
    pub async fn value(&self) -> abstore::Result<i64> {
        // MGET, as the library reads counters: the app role has no GET.
        let mut pipe = redis::pipe();
        pipe.cmd("MGET").arg(&self.key);
        let (values,): (Vec<Option<i64>>,) = self
            .connection
            .exec(&pipe, Retry::Idempotent, "rollout test read")
            .await?;
        Ok(values.first().copied().flatten().unwrap_or(0))
    }
}

/// `redis://<user>:<password>@<addr>` for a user of the store `local up` runs with `layout`, the
/// password read from its file: its sentinels' default user is off, like its data nodes'.
pub fn user_url(layout: &Layout, user: &str, addr: impl std::fmt::Display) -> String {
    let password = std::fs::read_to_string(layout.credential_file(user)).unwrap_or_default();
    format!("redis://{user}:{}@{addr}", password.trim())
}

/// The highest `config-epoch` of the master any of `sentinels` reports: it grows by one with
/// every completed failover (a restarted sentinel learns it back from the others' hellos).
/// Asked as the operator (SENTINEL MASTER is not a client's command).
pub async fn config_epoch(layout: &Layout, sentinels: &[u16], master: &str) -> Option<u64> {
    let mut best = None;
    for port in sentinels {
        let url = user_url(layout, "operator", format!("{}:{port}", crate::LOOPBACK));
        let Ok(client) = redis::Client::open(url) else {
            continue;
        };
        let Ok(Ok(mut conn)) = tokio::time::timeout(
            crate::COMMAND_TIMEOUT,
            client.get_multiplexed_async_connection(),
        )
        .await
        else {
            continue;
        };
        let Ok(fields) = redis::cmd("SENTINEL")
            .arg("MASTER")
            .arg(master)
            .query_async::<Vec<String>>(&mut conn)
            .await
        else {
            continue;
        };
        let epoch = fields
            .chunks(2)
            .find(|kv| kv[0] == "config-epoch")
            .and_then(|kv| kv.get(1)?.parse::<u64>().ok());
        best = best.max(epoch);
    }
    best
}

/// Increments one counter with plain `INCRBY` on one connection to `url` (a Service address, as
/// an application without a Sentinel client would), one round trip at a time. On any error it
/// reconnects to the same address: wherever the Service routes now. An INCRBY whose connection
/// broke before the reply counts as `unknown` (it may or may not have been applied).
#[derive(Debug)]
pub struct PlainWriter {
    url: String,
    key: String,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<WriterLog>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl PlainWriter {
    /// Starts writing at once; connection failures are logged as errors and retried.
    pub fn start(url: &str, key: &str) -> PlainWriter {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(WriterLog::default()));
        let task = {
            let (url, key, stop, log) = (url.to_owned(), key.to_owned(), stop.clone(), log.clone());
            tokio::spawn(async move {
                let mut connection = None;
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    if connection.is_none() {
                        match plain_connection(&url).await {
                            Ok(opened) => connection = Some(opened),
                            Err(error) => {
                                let error = format!("connect: {error}");
                                log.lock().await.failed(sent, error, false);
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                continue;
                            }
                        }
                    }
                    let Some(conn) = connection.as_mut() else {
                        continue;
                    };
                    let result: redis::RedisResult<i64> = redis::cmd("INCRBY")
                        .arg(&key)
                        .arg(1)
                        .query_async(conn)
                        .await;
                    let mut log = log.lock().await;
                    match result {
                        Ok(_) => log.acknowledged(sent),
                        Err(error) => {
                            // A reply that is an error (READONLY, NOREPLICAS) was not applied;
                            // a broken link or a timeout leaves the outcome unknown.
                            let unknown = error.code().is_none();
                            log.failed(sent, error.to_string(), unknown);
                            drop(log);
                            connection = None;
                            // An application retries soon, not in a tight loop.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            })
        };
        PlainWriter {
            url: url.to_owned(),
            key: key.to_owned(),
            stop,
            log,
            task: Some(task),
        }
    }

    /// What it saw so far.
    pub async fn log(&self) -> WriterLog {
        self.log.lock().await.clone()
    }

    /// Stops writing (waiting for the write in flight) and returns the log.
    pub async fn stop(&mut self) -> WriterLog {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.log.lock().await.clone()
    }

    /// The counter's value, read with MGET (the app role has no GET) on a new connection.
    pub async fn value(&self) -> redis::RedisResult<i64> {
        let mut conn = plain_connection(&self.url).await?;
        let values: Vec<Option<i64>> = redis::cmd("MGET")
            .arg(&self.key)
            .query_async(&mut conn)
            .await?;
        Ok(values.first().copied().flatten().unwrap_or(0))
    }
}

impl Drop for PlainWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn plain_connection(url: &str) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(2)));
    redis::Client::open(url)?
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// `abstore-operator local up` (the binary) as a child process on an ABStore file; killed on
/// drop if still running (tests stop it with SIGINT, as Ctrl-C, to check the clean stop).
#[derive(Debug)]
pub struct LocalUp {
    pub child: std::process::Child,
    pub dir: PathBuf,
}

impl LocalUp {
    /// Starts it with its output in `<dir>.log`.
    pub fn start(spec: &Path, dir: &Path) -> LocalUp {
        let log =
            std::fs::File::create(dir.with_extension("log")).unwrap_or_else(|e| panic!("{e}"));
        let child = std::process::Command::new(crate::k8s::operator_binary())
            .args(["local", "up", "-f"])
            .arg(spec)
            .arg("--dir")
            .arg(dir)
            .stdout(log.try_clone().unwrap_or_else(|e| panic!("{e}")))
            .stderr(log)
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting local up: {e}"));
        LocalUp {
            child,
            dir: dir.to_owned(),
        }
    }

    /// What it printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
    }

    /// Ctrl-C (SIGINT) and its exit status, which must come within `within`.
    pub fn interrupt(&mut self, within: Duration) -> std::process::ExitStatus {
        let sent = std::process::Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("kill -INT: {e}"));
        assert!(sent.success(), "kill -INT {}: {sent}", self.child.id());
        let deadline = Instant::now() + within;
        loop {
            if let Some(exit) = self.child.try_wait().unwrap_or_else(|e| panic!("{e}")) {
                return exit;
            }
            assert!(
                Instant::now() < deadline,
                "local up did not stop on SIGINT within {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `local status -o json` from the binary.
    pub fn status(&self) -> serde_json::Value {
        let out = std::process::Command::new(crate::k8s::operator_binary())
            .args(["local", "status", "-o", "json", "--dir"])
            .arg(&self.dir)
            .output()
            .unwrap_or_else(|e| panic!("local status: {e}"));
        assert!(
            out.status.success(),
            "local status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("local status JSON: {e}"))
    }
}

impl Drop for LocalUp {
    /// A test that failed half-way leaves `local up` running: kill it, then `local down` stops
    /// the servers it started (they run in their own process groups and outlive it).
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            if self.dir.join("state.json").exists() {
                let _ = std::process::Command::new(crate::k8s::operator_binary())
                    .args(["local", "down", "--dir"])
                    .arg(&self.dir)
                    .output();
            }
        }
    }
}
