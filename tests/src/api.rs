//! The `abstore-api` binary as a process on loopback, for the tracking API's tests.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

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
    /// The key file it was started with (`--api-key-file`; it follows the file).
    pub fn key_file(&self) -> std::path::PathBuf {
        self._dir.path().join("api-key")
    }

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
        wait_ready(&base, "abstore-api", Duration::from_secs(30)).await;
        ApiProcess {
            child,
            base,
            _dir: dir,
        }
    }
}

/// Lamed's participation event (every other event is a goal).
pub const PARTICIPATE: &str = "participate";
const HOUR: i64 = 3600;

/// Where tracked events fell in time. The API stamps an event with its own clock, so a test
/// reads the clock before and after each request: when both are in one UTC hour the event is
/// known to be in it; else it straddled an hour's end and may be in either.
#[derive(Debug, Default, Clone)]
pub struct HourTally {
    /// Per (event, variant): events known to be in each hour (start, unix seconds).
    pub known: BTreeMap<(String, String), BTreeMap<i64, u64>>,
    /// Per (event, variant): events sent while an hour ended.
    pub straddling: BTreeMap<(String, String), u64>,
}

impl HourTally {
    /// Counts `n` events of (`event`, `variant`) known to be in the hour containing `at`.
    pub fn add_known(&mut self, event: &str, variant: &str, at: i64, n: u64) {
        *self
            .known
            .entry((event.to_owned(), variant.to_owned()))
            .or_default()
            .entry(at - at.rem_euclid(HOUR))
            .or_default() += n;
    }

    /// Every event of (`event`, `variant`).
    pub fn total(&self, event: &str, variant: &str) -> u64 {
        let key = (event.to_owned(), variant.to_owned());
        self.known.get(&key).map_or(0, |h| h.values().sum::<u64>())
            + self.straddling.get(&key).copied().unwrap_or_default()
    }

    /// Asserts that the `hours` of a `/v1/experiments/{experiment}` answer hold these events:
    /// each hour at least the events known to be in it and at most those plus the straddling
    /// ones, and all of them in total (participations' and goals' event counts).
    pub fn assert_hours(&self, results: &Value) {
        let hours = results["hours"]
            .as_array()
            .unwrap_or_else(|| panic!("no hours in {results}"));
        for ((event, variant), known) in &self.known {
            let key = (event.clone(), variant.clone());
            let straddling = self.straddling.get(&key).copied().unwrap_or_default();
            let mut sum = 0;
            for hour in hours {
                let start = hour["start"].as_i64().unwrap_or_else(|| panic!("{hour}"));
                let number = if event == PARTICIPATE {
                    &hour["variants"][variant]["events"]
                } else {
                    &hour["goals"][event][variant]["events"]
                };
                let n = number
                    .as_u64()
                    .unwrap_or_else(|| panic!("{event}/{variant} at {start}: {hour}"));
                let expected = known.get(&start).copied().unwrap_or_default();
                assert!(
                    expected <= n && n <= expected + straddling,
                    "{event}/{variant} in the hour from {start}: {n}, expected {expected} \
                     (+ up to {straddling} sent as an hour ended)"
                );
                sum += n;
            }
            assert_eq!(
                sum,
                self.total(event, variant),
                "{event}/{variant} over all hours"
            );
        }
    }
}

impl ApiProcess {
    /// Tracks one event with `GET /track` (asserting a 200) and tallies its hour.
    pub async fn track(
        &self,
        client: &reqwest::Client,
        tally: &mut HourTally,
        (namespace, experiment): (&str, &str),
        (variant, event, uuid): (&str, &str, &str),
    ) {
        let before = chrono::Utc::now().timestamp();
        let response = client
            .get(format!("{}/track", self.base))
            .query(&[
                ("namespace", namespace),
                ("experiment", experiment),
                ("variant", variant),
                ("event", event),
                ("uuid", uuid),
            ])
            .send()
            .await
            .unwrap_or_else(|e| panic!("track: {e}"));
        assert_eq!(
            response.status(),
            200,
            "track {experiment}/{variant}/{event}"
        );
        let after = chrono::Utc::now().timestamp();
        if before.div_euclid(HOUR) == after.div_euclid(HOUR) {
            tally.add_known(event, variant, before, 1);
        } else {
            *tally
                .straddling
                .entry((event.to_owned(), variant.to_owned()))
                .or_default() += 1;
        }
    }
}

/// Waits until `<base>/readyz` answers 200 (the API reached its store), for at most `timeout`;
/// `what` names the process in the failure.
pub async fn wait_ready(base: &str, what: &str, timeout: Duration) {
    let client = reqwest::Client::new();
    poll(&format!("{what} to be ready"), timeout, || async {
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
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// `GET url` with `key` as `x-api-key`: asserts a 200 and returns the JSON body.
pub async fn read_json(client: &reqwest::Client, url: &str, key: &str) -> Value {
    let response = client
        .get(url)
        .header("x-api-key", key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status();
    let text = response
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(status, 200, "GET {url}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: {e}: {text}"))
}
