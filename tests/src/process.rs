//! One child process (redis-server or redis-sentinel) with its own temporary directory: picking a
//! free loopback port, spawning, polling until it answers on that port, SIGKILL, restart, and
//! reading its log. Shared by `RedisServer` and `SentinelServer`, which only differ in config.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::error::HarnessError;

/// Every harness process listens here only.
pub const LOOPBACK: &str = "127.0.0.1";
/// How long a process gets to answer PING after being spawned.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How many fresh ports are tried when the chosen one turns out to be taken.
pub const START_ATTEMPTS: u32 = 5;
/// Interval between two readiness probes.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(25);
/// Lines of log included in errors.
pub(crate) const ERROR_LOG_LINES: usize = 30;

const REDIS_SERVER_BIN_ENV: &str = "REDIS_SERVER_BIN";
const REDIS_SENTINEL_BIN_ENV: &str = "REDIS_SENTINEL_BIN";
const VALKEY_SERVER_BIN_ENV: &str = "VALKEY_SERVER_BIN";
const STDIO_FILE: &str = "stdio.log";
const ADDR_IN_USE: &str = "Address already in use";
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Which binary a `ServerProcess` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Server,
    Sentinel,
    /// valkey-server: the Redis fork, same protocol and config, to test portability.
    Valkey,
}

impl Kind {
    fn binary(self) -> String {
        let (env, default) = match self {
            Kind::Server => (REDIS_SERVER_BIN_ENV, "redis-server"),
            Kind::Sentinel => (REDIS_SENTINEL_BIN_ENV, "redis-sentinel"),
            Kind::Valkey => (VALKEY_SERVER_BIN_ENV, "valkey-server"),
        };
        std::env::var(env).unwrap_or_else(|_| default.to_owned())
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Server => "redis-server",
            Kind::Sentinel => "redis-sentinel",
            Kind::Valkey => "valkey-server",
        }
    }
}

/// Log files of live harness processes by port, so that the address-based `wait_*` functions can
/// attach the right log to a timeout. Diagnostics only: nothing reads it to decide behaviour, and
/// a port identifies at most one live process on the machine.
static LOGS_BY_PORT: Mutex<BTreeMap<u16, PathBuf>> = Mutex::new(BTreeMap::new());

/// The log tail of the harness process listening on `port`, or a note that there is none.
pub(crate) fn log_tail_for_port(port: u16, lines: usize) -> String {
    let path = LOGS_BY_PORT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&port)
        .cloned();
    match path {
        Some(path) => {
            let stdio = path.with_file_name(STDIO_FILE);
            combined_tail(&path, &stdio, lines)
        }
        None => format!("(no harness process known on port {port})"),
    }
}

/// A spawned redis-server or redis-sentinel and the files that belong to it: what both server
/// kinds share (address, client, kill and restart). `RedisServer` and `SentinelServer` deref to it.
#[derive(Debug)]
pub struct ServerProcess {
    kind: Kind,
    dir: TempDir,
    config_path: PathBuf,
    log_path: PathBuf,
    port: u16,
    child: Option<Child>,
    /// User and password `url()` and the connections authenticate with.
    auth: Option<(String, String)>,
}

impl ServerProcess {
    /// Creates the temporary directory, lets `render` write the config for a candidate port, and
    /// starts the process; a port that turns out to be taken is replaced by a fresh one.
    pub(crate) fn launch(
        kind: Kind,
        config_file: &str,
        log_file: &str,
        render: impl Fn(&Path, u16) -> Result<String, HarnessError>,
    ) -> Result<ServerProcess, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("abstore-{}-", kind.label()))
            .tempdir()
            .map_err(|source| HarnessError::Io {
                action: "creating temporary directory for",
                path: PathBuf::from(kind.label()),
                source,
            })?;
        let config_path = dir.path().join(config_file);
        let log_path = dir.path().join(log_file);
        let mut process = ServerProcess {
            kind,
            dir,
            config_path,
            log_path,
            port: 0,
            child: None,
            auth: None,
        };
        for attempt in 1..=START_ATTEMPTS {
            process.port = free_port()?;
            let config = render(process.dir.path(), process.port)?;
            write_file(&process.config_path, &config)?;
            match process.spawn_and_wait(attempt) {
                Ok(()) => {
                    LOGS_BY_PORT
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(process.port, process.log_path.clone());
                    return Ok(process);
                }
                Err(SpawnOutcome::PortTaken) if attempt < START_ATTEMPTS => {
                    tracing::debug!(port = process.port, "port taken, retrying with another");
                }
                Err(SpawnOutcome::PortTaken) => {
                    return Err(HarnessError::StartFailed {
                        process: process.name(),
                        attempts: attempt,
                        reason: format!("every chosen port was taken ({ADDR_IN_USE})"),
                        log_tail: process.log_tail(ERROR_LOG_LINES),
                    });
                }
                Err(SpawnOutcome::Failed(error)) => return Err(error),
            }
        }
        Err(HarnessError::Invalid(format!(
            "START_ATTEMPTS must be positive, is {START_ATTEMPTS}"
        )))
    }

    /// Starts the process again from the config file as it is on disk, on the same port (and
    /// data dir). A still-running process is killed first. Sentinel may have rewritten a
    /// server's file (`CONFIG REWRITE` after a failover) and a killed old primary comes back
    /// as a primary: use `RedisServer::restart_as_replica_of` for it.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.kill9()?;
        match self.spawn_and_wait(1) {
            Ok(()) => Ok(()),
            Err(SpawnOutcome::PortTaken) => Err(HarnessError::StartFailed {
                process: self.name(),
                attempts: 1,
                reason: format!("its port was taken by another process ({ADDR_IN_USE})"),
                log_tail: self.log_tail(ERROR_LOG_LINES),
            }),
            Err(SpawnOutcome::Failed(error)) => Err(error),
        }
    }

    fn spawn_and_wait(&mut self, attempt: u32) -> Result<(), SpawnOutcome> {
        let log_offset = file_len(&self.log_path);
        let stdio_path = self.stdio_path();
        let stdout = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stdio_path)
            .map_err(|source| HarnessError::Io {
                action: "opening",
                path: stdio_path.clone(),
                source,
            })?;
        let stderr = stdout.try_clone().map_err(|source| HarnessError::Io {
            action: "duplicating handle of",
            path: stdio_path.clone(),
            source,
        })?;
        let binary = self.kind.binary();
        let child = Command::new(&binary)
            .arg(&self.config_path)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|source| HarnessError::Spawn {
                binary: binary.clone(),
                source,
            })?;
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let Some(child) = self.child.as_mut() else {
                return Err(HarnessError::NotRunning {
                    process: self.name(),
                }
                .into());
            };
            let exited = child.try_wait().map_err(|source| HarnessError::Process {
                action: "polling",
                process: format!(
                    "{} on {LOOPBACK}:{} (pid {pid})",
                    self.kind.label(),
                    self.port
                ),
                source,
            })?;
            if let Some(status) = exited {
                self.child = None;
                if read_from(&self.log_path, log_offset).contains(ADDR_IN_USE) {
                    return Err(SpawnOutcome::PortTaken);
                }
                return Err(HarnessError::exited(
                    &self.name(),
                    attempt,
                    status,
                    self.log_tail(ERROR_LOG_LINES),
                )
                .into());
            }
            // Another process may hold the port and answer PING; only our own listener counts.
            if answers_ping(self.port) && abstore_operator::local::listens_on(pid, self.port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let log_tail = self.log_tail(ERROR_LOG_LINES);
                let _ = self.kill9();
                return Err(HarnessError::StartFailed {
                    process: self.name(),
                    attempts: attempt,
                    reason: format!("did not answer PING within {START_TIMEOUT:?}"),
                    log_tail,
                }
                .into());
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// SIGKILL (`Child::kill` on Unix) and reap; a no-op when already stopped.
    pub fn kill9(&mut self) -> Result<(), HarnessError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let process = self.name();
        // `kill` fails only when the child has already exited, which `wait` then reaps.
        let _ = child.kill();
        child.wait().map_err(|source| HarnessError::Process {
            action: "waiting for",
            process,
            source,
        })?;
        Ok(())
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_))) | Some(Err(_)) => {
                // Reaped (or unreachable): forget it, so a later kill9 is a no-op.
                self.child = None;
                false
            }
            None => false,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn host(&self) -> &str {
        LOOPBACK
    }

    /// `127.0.0.1:<port>`
    pub fn addr(&self) -> String {
        format!("{LOOPBACK}:{}", self.port)
    }

    /// From now on `url()`, `client()`, `connection()` and the wait helpers authenticate as
    /// `user` (for servers whose default user is off, such as the operator's sentinels).
    pub fn authenticate_as(&mut self, user: &str, password: &str) {
        self.auth = Some((user.to_owned(), password.to_owned()));
    }

    /// `redis://127.0.0.1:<port>`, with the user and password of `authenticate_as` if any
    /// (Sentinel speaks the Redis protocol too).
    pub fn url(&self) -> String {
        match &self.auth {
            Some((user, password)) => format!("redis://{user}:{password}@{}", self.addr()),
            None => format!("redis://{}", self.addr()),
        }
    }

    pub fn client(&self) -> Result<redis::Client, HarnessError> {
        redis::Client::open(self.url()).map_err(|source| HarnessError::Redis {
            command: "opening client".to_owned(),
            addr: self.addr(),
            source,
        })
    }

    /// A multiplexed connection (authenticated only after `authenticate_as`).
    pub async fn connection(&self) -> Result<redis::aio::MultiplexedConnection, HarnessError> {
        crate::wait::connect(&self.url()).await
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    fn stdio_path(&self) -> PathBuf {
        self.log_path.with_file_name(STDIO_FILE)
    }

    pub(crate) fn name(&self) -> String {
        format!("{} on {LOOPBACK}:{}", self.kind.label(), self.port)
    }

    /// The last `lines` lines of the log file, followed by anything the process printed to
    /// stdout/stderr (config errors are printed there, before the log file is opened).
    pub fn log_tail(&self, lines: usize) -> String {
        combined_tail(&self.log_path, &self.stdio_path(), lines)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.kill9();
        let mut logs = LOGS_BY_PORT.lock().unwrap_or_else(PoisonError::into_inner);
        if logs.get(&self.port) == Some(&self.log_path) {
            logs.remove(&self.port);
        }
    }
}

enum SpawnOutcome {
    PortTaken,
    Failed(HarnessError),
}

impl From<HarnessError> for SpawnOutcome {
    fn from(error: HarnessError) -> Self {
        SpawnOutcome::Failed(error)
    }
}

/// A port the kernel just handed out for loopback; free unless someone grabs it before us,
/// which `launch` detects and retries.
/// A port that was free a moment ago on loopback (for extra listeners such as `tls-port`).
pub fn free_port() -> Result<u16, HarnessError> {
    let io_error = |source| HarnessError::Io {
        action: "binding an ephemeral port on",
        path: PathBuf::from(LOOPBACK),
        source,
    };
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io_error)?;
    Ok(listener.local_addr().map_err(io_error)?.port())
}

/// True when something on the port answers PING with PONG, or with an error that only a live
/// server gives (auth required, still loading the dataset, replica without its primary).
fn answers_ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) else {
        return false;
    };
    if stream.set_read_timeout(Some(PROBE_TIMEOUT)).is_err()
        || stream.write_all(b"PING\r\n").is_err()
    {
        return false;
    }
    let mut reply = Vec::new();
    let mut buf = [0_u8; 256];
    while !reply.ends_with(b"\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
        }
    }
    let reply = String::from_utf8_lossy(&reply);
    ["+PONG", "-NOAUTH", "-LOADING", "-MASTERDOWN"]
        .iter()
        .any(|prefix| reply.starts_with(prefix))
}

pub(crate) fn write_file(path: &Path, contents: &str) -> Result<(), HarnessError> {
    let mut file = File::create(path).map_err(|source| HarnessError::Io {
        action: "creating",
        path: path.to_owned(),
        source,
    })?;
    file.write_all(contents.as_bytes())
        .map_err(|source| HarnessError::Io {
            action: "writing",
            path: path.to_owned(),
            source,
        })
}

pub(crate) fn read_file(path: &Path) -> Result<String, HarnessError> {
    fs::read_to_string(path).map_err(|source| HarnessError::Io {
        action: "reading",
        path: path.to_owned(),
        source,
    })
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn read_from(path: &Path, offset: u64) -> String {
    let bytes = fs::read(path).unwrap_or_default();
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).into_owned();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn combined_tail(log: &Path, stdio: &Path, lines: usize) -> String {
    let mut out = tail(log, lines);
    let printed = tail(stdio, lines);
    if !printed.trim().is_empty() {
        out.push_str("\n--- stdout/stderr ---\n");
        out.push_str(&printed);
    }
    if out.trim().is_empty() {
        format!("(log {} is empty)", log.display())
    } else {
        out
    }
}
