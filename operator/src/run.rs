//! `abstore-operator run`: flags (each with an environment fallback, for the Helm chart), then
//! logging, the metrics/health server, optional leader election and the controller, until
//! SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use tokio::sync::watch;

use abstore_operator::controller::{self, LeaderElection, RunConfig};
use abstore_operator::leader::{DEFAULT_LEASE_NAME, default_identity};
use abstore_operator::metrics::{self, Metrics, Readiness};
use abstore_operator::model::{
    ANY, DEFAULT_CLUSTER_DOMAIN, DEFAULT_OPERATOR_NAMESPACE, Platform, PlatformError, StorePolicy,
};
use abstore_operator::telemetry::{self, LogFormat};

/// Flags of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "ABSTORE_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Log format: `plain` lines or `json` objects. The level comes from RUST_LOG.
    #[arg(long, env = "ABSTORE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    log_format: LogFormat,
    /// Elect a leader through a Lease so that only one replica reconciles (for more than one
    /// replica). `--leader-election`, `--leader-election=false`, or the env var true/false.
    #[arg(
        long,
        env = "ABSTORE_LEADER_ELECTION",
        num_args = 0..=1,
        default_value = "false",
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
    )]
    leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(long, env = "ABSTORE_LEASE_NAME", default_value = DEFAULT_LEASE_NAME)]
    lease_name: String,
    /// Namespace of the Lease; defaults to the namespace of the client (the pod's own).
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Watch ABStores (and their children) in this namespace only; all namespaces when unset.
    #[arg(long, env = "ABSTORE_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    #[command(flatten)]
    platform: PlatformArgs,
}

/// What the operator knows of its cluster: shared by `run` and `render`.
#[derive(clap::Args, Debug, Clone)]
pub struct PlatformArgs {
    /// The cluster's DNS domain (kubelet's --cluster-domain): pod and Service names, the
    /// Secrets' URLs and the TLS names are `….svc.<domain>`.
    #[arg(long, env = "ABSTORE_CLUSTER_DOMAIN", default_value = DEFAULT_CLUSTER_DOMAIN)]
    cluster_domain: String,
    /// The namespace the operator runs in: the stores' NetworkPolicies admit the operator's
    /// pods from this namespace only. `run`: the pod's own namespace (the chart sets
    /// POD_NAMESPACE), else the kubeconfig's; `render`: abstore-system unless given.
    #[arg(long, env = "POD_NAMESPACE")]
    operator_namespace: Option<String>,
    /// Image prefixes stores may use (comma-separated); `*` allows any. A store naming another
    /// image is refused (InvalidSpec naming the field).
    #[arg(long, env = "ABSTORE_ALLOWED_IMAGES", value_delimiter = ',', default_value = ANY)]
    allowed_images: Vec<String>,
    /// ServiceAccounts a store's backup Jobs may run as (comma-separated); `*` allows any, an
    /// empty value none.
    #[arg(long, env = "ABSTORE_ALLOWED_SERVICE_ACCOUNTS", value_delimiter = ',', default_value = ANY)]
    allowed_service_accounts: Vec<String>,
}

impl PlatformArgs {
    /// The platform, checked; `default_namespace` stands in for an unset operator namespace
    /// (then abstore-system).
    pub fn platform(&self, default_namespace: Option<&str>) -> Result<Platform, PlatformError> {
        let namespace = self
            .operator_namespace
            .as_deref()
            .or(default_namespace)
            .unwrap_or(DEFAULT_OPERATOR_NAMESPACE);
        let list = |values: &[String]| -> Vec<String> {
            values
                .iter()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .collect()
        };
        let policy = StorePolicy {
            allowed_images: list(&self.allowed_images),
            allowed_service_accounts: list(&self.allowed_service_accounts),
        };
        Platform::kubernetes(&self.cluster_domain, namespace, policy)
    }
}

/// Runs the controller until a termination signal.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format).context("setting up logging")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: RunArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster config or kubeconfig)")?;
    let identity = default_identity();
    let leader_election = args.leader_election.then(|| LeaderElection {
        namespace: args
            .lease_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_owned()),
        lease_name: args.lease_name.clone(),
    });
    let platform = args
        .platform
        .platform(Some(client.default_namespace()))
        .context("--cluster-domain / --operator-namespace")?;
    let config = RunConfig {
        watch_namespace: args.watch_namespace.clone(),
        leader_election,
        identity,
        platform,
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        identity = %config.identity,
        watch_namespace = config.watch_namespace.as_deref().unwrap_or("<all>"),
        leader_election = ?config.leader_election,
        cluster_domain = %config.platform.cluster_domain,
        operator_namespace = %config.platform.operator_namespace,
        "starting abstore-operator"
    );

    let metrics = Arc::new(Metrics::new());
    let readiness = Arc::new(Readiness::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("termination signal received; shutting down");
        stop_tx.send_replace(true);
    });

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let mut server_stop = stop_rx.clone();
    let server = tokio::spawn(metrics::serve(
        listener,
        metrics.clone(),
        readiness.clone(),
        async move {
            let _ = server_stop.wait_for(|stop| *stop).await;
        },
    ));

    controller::run(client, config, metrics, readiness, stop_rx).await;
    match server.await {
        Ok(result) => result.with_context(|| format!("serving metrics on {}", args.listen)),
        Err(error) => Err(error).context("metrics server task"),
    }
}

/// SIGTERM (what Kubernetes sends) or Ctrl-C.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                tokio::select! {
                    _ = sigterm.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn defaults_listen_on_8080_with_plain_logs_and_no_leader_election() {
        // The chart relies on these defaults when it sets no flags.
        let cli = Cli::try_parse_from(["run"]).unwrap();
        assert_eq!(cli.run.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(cli.run.log_format, LogFormat::Plain);
        assert!(!cli.run.leader_election);
        assert_eq!(cli.run.lease_name, DEFAULT_LEASE_NAME);
    }

    #[test]
    fn flags_set_leader_election_json_logs_and_a_namespace() {
        // The chart's values map onto these flags.
        let cli = Cli::try_parse_from([
            "run",
            "--leader-election",
            "--log-format",
            "json",
            "--watch-namespace",
            "shop",
            "--lease-namespace",
            "ops",
            "--listen",
            "127.0.0.1:9090",
        ])
        .unwrap();
        assert!(cli.run.leader_election);
        assert_eq!(cli.run.log_format, LogFormat::Json);
        assert_eq!(cli.run.watch_namespace.as_deref(), Some("shop"));
        assert_eq!(cli.run.lease_namespace.as_deref(), Some("ops"));
        assert_eq!(cli.run.listen, "127.0.0.1:9090".parse().unwrap());
        let off = Cli::try_parse_from(["run", "--leader-election=false"]).unwrap();
        assert!(!off.run.leader_election);
    }
}
