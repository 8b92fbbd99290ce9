//! The `abstore-api` binary as a process on loopback, for the tracking API's tests.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::k8s::{api_binary, poll};
use crate::{LOOPBACK, RedisServer, free_port};

/// The API key the harness configures.
pub const API_KEY: &str = "test-api-key-123";

/// A running `abstore-api` (killed when dropped).
#[derive(Debug)]
pub struct ApiProcess {
    pub child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ApiProcess {
    /// Starts it on `redis` with [`API_KEY`] and `extra` flags, and waits for `/readyz`.
    pub async fn start(redis: &RedisServer, extra: &[&str]) -> ApiProcess {
        ApiProcess::start_url(&format!("redis://{LOOPBACK}:{}", redis.port()), extra).await
    }

    /// Starts it on the store at `url` (any URL the library takes).
    pub async fn start_url(url: &str, extra: &[&str]) -> ApiProcess {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let key_file = dir.path().join("api-key");
        std::fs::write(&key_file, format!("{API_KEY}\n")).unwrap_or_else(|e| panic!("{e}"));
        let port = free_port().unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new(api_binary())
            .args([
                "--redis-url",
                url,
                "--listen",
                &format!("{LOOPBACK}:{port}"),
                "--api-key-file",
                &key_file.display().to_string(),
            ])
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting abstore-api: {e}"));
        let base = format!("http://{LOOPBACK}:{port}");
        let client = reqwest::Client::new();
        poll(
            "abstore-api to be ready",
            Duration::from_secs(30),
            || async {
                let response = client
                    .get(format!("{base}/readyz"))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if response.status().is_success() {
                    Ok(())
                } else {
                    Err(response.status().to_string())
                }
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        ApiProcess {
            child,
            base,
            _dir: dir,
        }
    }
}
