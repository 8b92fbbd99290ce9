//! The operator's own Prometheus metrics and the small HTTP server that serves them with the
//! health endpoints (`/metrics`, `/healthz`, `/readyz`). Metric names are defined here once;
//! the controller records into them, the chart's ServiceMonitor scrapes them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Prefix of every metric name (`abstore_operator_reconcile_runs_total`, …).
pub const METRIC_PREFIX: &str = "abstore_operator";
/// Path of the Prometheus scrape endpoint.
pub const METRICS_PATH: &str = "/metrics";
/// Path of the liveness endpoint.
pub const HEALTHZ_PATH: &str = "/healthz";
/// Path of the readiness endpoint.
pub const READYZ_PATH: &str = "/readyz";
/// Content type of the OpenMetrics text format prometheus-client writes.
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of the reconcile failure counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// The error's `category()`: the same string as the Event reason.
    pub category: String,
}

/// Outcome of a status write: the status subresource is written under a timeout, and each
/// outcome is counted so a slow or refusing API server shows on a dashboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusWriteOutcome {
    Succeeded,
    Failed,
    TimedOut,
}

impl StatusWriteOutcome {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusWriteOutcome::Succeeded => "succeeded",
            StatusWriteOutcome::Failed => "failed",
            StatusWriteOutcome::TimedOut => "timed_out",
        }
    }
}

/// Labels of the status-write counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusWriteLabels {
    /// `succeeded`, `failed` or `timed_out`.
    pub outcome: String,
}

/// Labels of the per-store metrics. Not `namespace`: Prometheus sets that target label to the
/// operator's own namespace.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    pub store_namespace: String,
    pub store: String,
}

/// Labels of the primary-change counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PrimaryChangeLabels {
    pub store_namespace: String,
    pub store: String,
    /// `Failover` (Sentinel moved it) or `Switchover` (the operator did, in a rollout).
    pub reason: String,
}

/// What one reconcile saw of a store, for the per-store gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreSnapshot {
    pub redis_ready: i64,
    pub redis_desired: i64,
    pub sentinels_ready: i64,
    pub sentinel_quorum: i64,
    pub primary_available: bool,
    /// `None` when the store has no backup CronJob.
    pub backup: Option<crate::job_runs::LastRuns>,
    /// `None` when the store has no prune CronJob.
    pub prune: Option<crate::job_runs::LastRuns>,
}

/// The last-run gauges of one CronJob kind.
#[derive(Debug, Default)]
struct JobGauges {
    last_success: Family<StoreLabels, Gauge>,
    last_run: Family<StoreLabels, Gauge>,
    last_run_succeeded: Family<StoreLabels, Gauge>,
    last_keys: Family<StoreLabels, Gauge>,
    last_bytes: Family<StoreLabels, Gauge>,
    last_duration: Family<StoreLabels, Gauge<f64, AtomicU64>>,
}

impl JobGauges {
    fn register(&self, registry: &mut Registry, job: &str) {
        registry.register(
            format!("{job}_last_success_timestamp_seconds"),
            format!("When the store's last successful {job} Job finished (Unix time)"),
            self.last_success.clone(),
        );
        registry.register(
            format!("{job}_last_run_timestamp_seconds"),
            format!("When the store's last {job} Job finished, successful or not (Unix time)"),
            self.last_run.clone(),
        );
        registry.register(
            format!("{job}_last_run_succeeded"),
            format!("1 if the store's last finished {job} Job succeeded, 0 if it failed"),
            self.last_run_succeeded.clone(),
        );
        let keys = match job {
            "backup" => "Keys the store's last successful backup wrote (its summary line)",
            _ => "Keys the store's last successful prune deleted (its summary line)",
        };
        registry.register(format!("{job}_last_keys"), keys, self.last_keys.clone());
        if job == "backup" {
            registry.register(
                format!("{job}_last_bytes"),
                "Bytes the store's last successful backup wrote (its summary line)",
                self.last_bytes.clone(),
            );
        }
        registry.register(
            format!("{job}_last_duration_seconds"),
            format!("How long the store's last successful {job} ran (its summary line)"),
            self.last_duration.clone(),
        );
    }

    /// Sets what is known, and removes what is not (no CronJob, or no finished Job yet), so a
    /// stale value never stands in for a missing one.
    fn record(&self, labels: &StoreLabels, runs: Option<crate::job_runs::LastRuns>) {
        let runs = runs.unwrap_or_default();
        match runs.last_success {
            Some(at) => {
                self.last_success.get_or_create(labels).set(at.as_second());
            }
            None => {
                self.last_success.remove(labels);
            }
        }
        match runs.last_finished {
            Some((at, succeeded)) => {
                self.last_run.get_or_create(labels).set(at.as_second());
                self.last_run_succeeded
                    .get_or_create(labels)
                    .set(i64::from(succeeded));
            }
            None => {
                self.last_run.remove(labels);
                self.last_run_succeeded.remove(labels);
            }
        }
        match runs.figures {
            Some(figures) => {
                self.last_keys
                    .get_or_create(labels)
                    .set(i64::try_from(figures.keys).unwrap_or(i64::MAX));
                match figures.bytes {
                    Some(bytes) => {
                        self.last_bytes
                            .get_or_create(labels)
                            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
                    }
                    None => {
                        self.last_bytes.remove(labels);
                    }
                }
                self.last_duration
                    .get_or_create(labels)
                    .set(figures.duration_ms as f64 / 1000.0);
            }
            None => {
                self.last_keys.remove(labels);
                self.last_bytes.remove(labels);
                self.last_duration.remove(labels);
            }
        }
    }
}

/// The operator's metrics, registered once at start-up.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Reconciles started.
    pub reconcile_runs: Counter,
    /// Reconciles that returned an error, by category.
    pub reconcile_failures: Family<FailureLabels, Counter>,
    /// Wall time of a reconcile, in seconds.
    pub reconcile_duration: Histogram,
    /// Status writes by outcome.
    pub status_writes: Family<StatusWriteLabels, Counter>,
    /// 1 while this replica holds the leader Lease (or leader election is off), else 0.
    pub leader: Gauge,
    store_redis_ready: Family<StoreLabels, Gauge>,
    store_redis_desired: Family<StoreLabels, Gauge>,
    store_sentinels_ready: Family<StoreLabels, Gauge>,
    store_sentinel_quorum: Family<StoreLabels, Gauge>,
    store_primary_available: Family<StoreLabels, Gauge>,
    store_primary_changes: Family<PrimaryChangeLabels, Counter>,
    backup: JobGauges,
    prune: JobGauges,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(METRIC_PREFIX);
        let reconcile_runs = Counter::default();
        let reconcile_failures = Family::<FailureLabels, Counter>::default();
        // 10 ms … ~40 s: a reconcile is a handful of API calls, slow ones wait on timeouts.
        let reconcile_duration = Histogram::new(exponential_buckets(0.01, 2.0, 13));
        let status_writes = Family::<StatusWriteLabels, Counter>::default();
        let leader = Gauge::default();
        registry.register(
            "reconcile_runs",
            "Reconciles of ABStores started",
            reconcile_runs.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, by error category",
            reconcile_failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Wall time of one reconcile",
            reconcile_duration.clone(),
        );
        registry.register(
            "status_writes",
            "ABStore status writes, by outcome (succeeded, failed, timed_out)",
            status_writes.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica is the active controller",
            leader.clone(),
        );
        let store_gauges: [(&str, &str, Family<StoreLabels, Gauge>); 5] = [
            (
                "store_redis_ready",
                "Ready Redis pods of the store",
                Family::default(),
            ),
            (
                "store_redis_desired",
                "Redis pods the store should have",
                Family::default(),
            ),
            (
                "store_sentinels_ready",
                "Ready sentinel pods of the store",
                Family::default(),
            ),
            (
                "store_sentinel_quorum",
                "Sentinels that must agree to fail the store over",
                Family::default(),
            ),
            (
                "store_primary_available",
                "1 when the operator's heal knows the store's primary",
                Family::default(),
            ),
        ];
        for (name, help, family) in &store_gauges {
            registry.register(*name, *help, family.clone());
        }
        let [
            redis_ready,
            redis_desired,
            sentinels_ready,
            sentinel_quorum,
            primary_available,
        ] = store_gauges.map(|(_, _, family)| family);
        let store_primary_changes = Family::<PrimaryChangeLabels, Counter>::default();
        registry.register(
            "store_primary_changes",
            "Changes of the store's primary the operator recorded, by reason (Failover, Switchover)",
            store_primary_changes.clone(),
        );
        let backup = JobGauges::default();
        backup.register(&mut registry, "backup");
        let prune = JobGauges::default();
        prune.register(&mut registry, "prune");
        Metrics {
            registry,
            reconcile_runs,
            reconcile_failures,
            reconcile_duration,
            status_writes,
            leader,
            store_redis_ready: redis_ready,
            store_redis_desired: redis_desired,
            store_sentinels_ready: sentinels_ready,
            store_sentinel_quorum: sentinel_quorum,
            store_primary_available: primary_available,
            store_primary_changes,
            backup,
            prune,
        }
    }

    /// Records what a reconcile saw of a store (the per-store gauges).
    pub fn observe_store(&self, namespace: &str, store: &str, snapshot: &StoreSnapshot) {
        let labels = StoreLabels {
            store_namespace: namespace.to_owned(),
            store: store.to_owned(),
        };
        for (family, value) in [
            (&self.store_redis_ready, snapshot.redis_ready),
            (&self.store_redis_desired, snapshot.redis_desired),
            (&self.store_sentinels_ready, snapshot.sentinels_ready),
            (&self.store_sentinel_quorum, snapshot.sentinel_quorum),
            (
                &self.store_primary_available,
                i64::from(snapshot.primary_available),
            ),
        ] {
            family.get_or_create(&labels).set(value);
        }
        self.backup.record(&labels, snapshot.backup);
        self.prune.record(&labels, snapshot.prune);
    }

    /// Drops every per-store series: a replica that stops leading must not keep reporting what it
    /// last saw (an old backup time would raise ABStoreBackupTooOld hours later, next to the new
    /// leader's fresh series).
    pub fn forget_stores(&self) {
        for family in [
            &self.store_redis_ready,
            &self.store_redis_desired,
            &self.store_sentinels_ready,
            &self.store_sentinel_quorum,
            &self.store_primary_available,
        ] {
            family.clear();
        }
        self.store_primary_changes.clear();
        for jobs in [&self.backup, &self.prune] {
            jobs.last_success.clear();
            jobs.last_run.clear();
            jobs.last_run_succeeded.clear();
            jobs.last_keys.clear();
            jobs.last_bytes.clear();
            jobs.last_duration.clear();
        }
    }

    /// Drops the series of one store, when it is deleted: a deleted store must not keep
    /// reporting (its last backup time would raise ABStoreBackupTooOld a day later, its
    /// readiness gauges would sit at their last values on every dashboard).
    pub fn forget_store(&self, namespace: &str, store: &str) {
        let labels = StoreLabels {
            store_namespace: namespace.to_owned(),
            store: store.to_owned(),
        };
        for family in [
            &self.store_redis_ready,
            &self.store_redis_desired,
            &self.store_sentinels_ready,
            &self.store_sentinel_quorum,
            &self.store_primary_available,
        ] {
            family.remove(&labels);
        }
        for reason in [
            crate::topology::REASON_FAILOVER,
            crate::topology::REASON_SWITCHOVER,
        ] {
            self.store_primary_changes.remove(&PrimaryChangeLabels {
                store_namespace: namespace.to_owned(),
                store: store.to_owned(),
                reason: reason.to_owned(),
            });
        }
        for jobs in [&self.backup, &self.prune] {
            jobs.record(&labels, None);
        }
    }

    /// Counts a change of a store's primary (`reason`: Failover or Switchover).
    pub fn primary_changed(&self, namespace: &str, store: &str, reason: &str) {
        self.store_primary_changes
            .get_or_create(&PrimaryChangeLabels {
                store_namespace: namespace.to_owned(),
                store: store.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts a reconcile and returns a timer that records its duration when dropped, so an
    /// early return or a panic-free error path is timed as well.
    pub fn reconcile_started(&self) -> ReconcileTimer<'_> {
        self.reconcile_runs.inc();
        ReconcileTimer {
            histogram: &self.reconcile_duration,
            start: Instant::now(),
        }
    }

    /// Counts a failed reconcile.
    pub fn reconcile_failed(&self, category: &str) {
        self.reconcile_failures
            .get_or_create(&FailureLabels {
                category: category.to_owned(),
            })
            .inc();
    }

    /// Counts a status write.
    pub fn status_written(&self, outcome: StatusWriteOutcome) {
        self.status_writes
            .get_or_create(&StatusWriteLabels {
                outcome: outcome.as_str().to_owned(),
            })
            .inc();
    }

    /// The metrics in the OpenMetrics text format.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Records a reconcile's duration when dropped.
#[derive(Debug)]
pub struct ReconcileTimer<'a> {
    histogram: &'a Histogram,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

/// Whether this process should receive traffic / count as available (`/readyz`).
///
/// Ready means: the controller's watch of ABStores has listed once (it has a view of the
/// cluster) — or, with leader election, this replica is a standby that has talked to the
/// Lease API successfully and can take over. A standby is ready on purpose: otherwise a
/// two-replica Deployment could never finish a rollout.
#[derive(Debug, Default)]
pub struct Readiness {
    ready: AtomicBool,
}

impl Readiness {
    /// Marks the process ready or not.
    pub fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether the process is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// State the HTTP handlers read.
#[derive(Clone, Debug)]
struct ServerState {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

/// The router of the metrics and health server (separate from `serve` so tests can call it).
pub fn router(metrics: Arc<Metrics>, readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route(METRICS_PATH, get(metrics_handler))
        .route(HEALTHZ_PATH, get(healthz_handler))
        .route(READYZ_PATH, get(readyz_handler))
        .with_state(ServerState { metrics, readiness })
}

/// Serves `router` on `listener` (bound by the caller, so a port in use fails start-up
/// before the controller runs) until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(listen) = listener.local_addr() {
        tracing::info!(%listen, "serving /metrics, /healthz and /readyz");
    }
    axum::serve(listener, router(metrics, readiness))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics_handler(State(state): State<ServerState>) -> Response {
    match state.metrics.render() {
        Ok(body) => ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], body).into_response(),
        Err(error) => {
            tracing::error!(%error, "encoding metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

// Liveness is the process answering at all: a wedged controller is caught by readiness and
// by the reconcile metrics, and restarting it for a slow API server would not help.
async fn healthz_handler() -> &'static str {
    "ok"
}

async fn readyz_handler(State(state): State<ServerState>) -> Response {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[test]
    fn metrics_render_with_the_prefix_and_failure_category() {
        // The chart's alerts and dashboards use these names; a rename must fail a test.
        let metrics = Metrics::new();
        {
            let _timer = metrics.reconcile_started();
        }
        metrics.reconcile_failed("apply");
        metrics.status_written(StatusWriteOutcome::TimedOut);
        let text = metrics.render().unwrap();
        assert!(
            text.contains("abstore_operator_reconcile_runs_total 1"),
            "{text}"
        );
        assert!(
            text.contains("abstore_operator_reconcile_failures_total{category=\"apply\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("abstore_operator_reconcile_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("abstore_operator_status_writes_total{outcome=\"timed_out\"} 1"),
            "{text}"
        );
    }

    /// Every per-store series of `store` in namespace `ab`: readiness, a failover and a
    /// switchover, a successful backup and prune.
    fn observe_everything(metrics: &Metrics, store: &str) {
        let at = "2026-11-24T00:00:00Z".parse().unwrap();
        let runs = crate::job_runs::LastRuns {
            last_finished: Some((at, true)),
            last_success: Some(at),
            figures: None,
        };
        metrics.observe_store(
            "ab",
            store,
            &StoreSnapshot {
                redis_desired: 3,
                backup: Some(runs),
                prune: Some(runs),
                ..StoreSnapshot::default()
            },
        );
        metrics.primary_changed("ab", store, "Failover");
        metrics.primary_changed("ab", store, "Switchover");
    }

    #[test]
    fn a_replica_that_stops_leading_forgets_every_store() {
        let metrics = Metrics::new();
        observe_everything(&metrics, "shop");
        let seen = metrics.render().unwrap();
        assert!(seen.contains(r#"store="shop""#), "{seen}");
        metrics.forget_stores();
        let text = metrics.render().unwrap();
        assert!(!text.contains("store="), "{text}");
        // The operator's own series stay.
        assert!(text.contains("abstore_operator_leader"), "{text}");
    }

    #[test]
    fn a_deleted_store_is_forgotten_and_the_others_stay() {
        let metrics = Metrics::new();
        for store in ["shop", "ads"] {
            observe_everything(&metrics, store);
        }
        metrics.forget_store("ab", "shop");
        let text = metrics.render().unwrap();
        assert!(!text.contains(r#"store="shop""#), "{text}");
        for family in [
            "abstore_operator_store_redis_desired",
            "abstore_operator_store_primary_changes_total",
            "abstore_operator_backup_last_success_timestamp_seconds",
            "abstore_operator_prune_last_success_timestamp_seconds",
        ] {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(family) && l.contains(r#"store="ads""#)),
                "{family} of the other store: {text}"
            );
        }
    }

    #[tokio::test]
    async fn readyz_follows_readiness_and_healthz_always_answers() {
        // Kubernetes probes read only the status code.
        let readiness = Arc::new(Readiness::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(Arc::new(Metrics::new()), readiness.clone());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        assert_eq!(get_status(addr, HEALTHZ_PATH).await, 200);
        assert_eq!(get_status(addr, READYZ_PATH).await, 503);
        readiness.set(true);
        assert_eq!(get_status(addr, READYZ_PATH).await, 200);
        assert_eq!(get_status(addr, METRICS_PATH).await, 200);
        server.abort();
    }

    // A minimal HTTP/1.0 GET over a blocking socket, so the test needs no HTTP client crate.
    async fn get_status(addr: SocketAddr, path: &str) -> u16 {
        let request = format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n");
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            response
                .split_whitespace()
                .nth(1)
                .and_then(|code| code.parse().ok())
                .unwrap()
        })
        .await
        .unwrap()
    }
}
