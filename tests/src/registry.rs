//! A real OCI registry for tests: Debian's `docker-registry` (CNCF distribution 2.8) on a free
//! loopback port, plain HTTP, storage in its own temporary directory, killed on drop. The e2e
//! Helm test pushes the packaged chart to it and installs from `oci://`, the way users install a
//! release from ghcr.io.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::error::HarnessError;
use crate::process::{POLL_INTERVAL, START_ATTEMPTS, free_port};

/// Overrides the registry binary (default: `docker-registry` on PATH, from Debian's
/// docker-registry package, installed by scripts/install-test-deps.sh).
const REGISTRY_BIN_ENV: &str = "DOCKER_REGISTRY_BIN";
const START_TIMEOUT: Duration = Duration::from_secs(30);
const LOG_FILE: &str = "registry.log";

/// A running registry.
#[derive(Debug)]
pub struct OciRegistry {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

impl OciRegistry {
    /// Starts a registry and waits until `GET /v2/` answers 200.
    pub fn start() -> Result<OciRegistry, HarnessError> {
        let io = |action: &'static str, path: &std::path::Path| {
            let path = path.to_path_buf();
            move |source| HarnessError::Io {
                action,
                path,
                source,
            }
        };
        let dir = tempfile::tempdir().map_err(io("creating", &std::env::temp_dir()))?;
        let binary =
            std::env::var(REGISTRY_BIN_ENV).unwrap_or_else(|_| "docker-registry".to_owned());
        let config = dir.path().join("config.yml");
        let log_path = dir.path().join(LOG_FILE);
        let mut reason = String::new();
        for _ in 0..START_ATTEMPTS {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                    dir.path().join("data").display()
                ),
            )
            .map_err(io("writing", &config))?;
            let log = std::fs::File::create(&log_path).map_err(io("creating", &log_path))?;
            let log_err = log.try_clone().map_err(io("opening", &log_path))?;
            let mut child = Command::new(&binary)
                .arg("serve")
                .arg(&config)
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(log_err))
                .spawn()
                .map_err(|source| HarnessError::Spawn {
                    binary: format!(
                        "{binary} (Debian's docker-registry; scripts/install-test-deps.sh installs it)"
                    ),
                    source,
                })?;
            match wait_ready(&mut child, addr) {
                Ok(()) => return Ok(OciRegistry { child, addr, dir }),
                Err(why) => {
                    reason = why;
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        Err(HarnessError::StartFailed {
            process: format!("{binary} serve"),
            attempts: START_ATTEMPTS,
            reason,
            log_tail: std::fs::read_to_string(&log_path).unwrap_or_default(),
        })
    }

    /// `127.0.0.1:<port>`, the registry's host for references (`oci://<host>/…`).
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The registry's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(LOG_FILE)).unwrap_or_default()
    }
}

fn wait_ready(child: &mut Child, addr: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("it exited ({status})"));
        }
        if v2_status(addr) == Some(200) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "GET http://{addr}/v2/ did not answer 200 within {START_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

impl Drop for OciRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The HTTP status of `GET /v2/`, or `None` when nothing answers.
fn v2_status(addr: SocketAddr) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET /v2/ HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}
