//! `abstore-api`: serves the tracking API on one Redis (Sentinel or cluster URL).

use std::net::SocketAddr;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

use abstore_api::server::{Api, AppState};
use abstore_api::store::TrackingStore;

/// mimalloc instead of glibc malloc: every request allocates its parameters, keys and response
/// (measured in docs/benchmarks.md, "The tracking API over HTTP").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(version, about = "ABStore's Lamed-compatible tracking API")]
struct Args {
    /// The store's URL (redis://, redis+sentinel://, redis+cluster://; password_file=… in it).
    #[arg(long, env = "ABSTORE_API_REDIS_URL")]
    redis_url: String,
    /// Where to listen.
    #[arg(long, env = "ABSTORE_API_LISTEN", default_value = "127.0.0.1:8088")]
    listen: SocketAddr,
    /// A file holding the API key that reports, delete and the results page require
    /// (x-api-key); read again every 2 s, so a new key needs no restart.
    #[arg(long, env = "ABSTORE_API_KEY_FILE")]
    api_key_file: Option<PathBuf>,
    /// Browser origins allowed to call `track` (CORS), comma-separated, like
    /// `https://shop.example`; none: no cross-origin calls.
    #[arg(long, env = "ABSTORE_API_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Vec<String>,
    /// Replicas that must have each event before `track` answers 200 (`WAIT`); 0: the primary's
    /// acknowledgement is enough.
    #[arg(long, env = "ABSTORE_API_WAIT_REPLICAS", default_value_t = 0)]
    wait_replicas: u32,
    /// How long `track` waits for them before answering 503 (the event is then resent by the
    /// client and deduplicated).
    #[arg(long, env = "ABSTORE_API_WAIT_TIMEOUT_MS", default_value_t = 500)]
    wait_timeout_ms: u64,
    /// `track` requests per second per client address (bursts of twice that).
    #[arg(long, env = "ABSTORE_API_RATE_LIMIT", default_value_t = 200)]
    rate_limit: u32,
    /// Threads serving requests; default: one per CPU the process may use (a container's CPU
    /// limit counts). 1 leaves the other cores to a Redis or load generator on the same machine.
    #[arg(long, env = "ABSTORE_API_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    worker_threads: Option<u16>,
}

/// Connects to the store, waiting while it is not there yet (a store and its API are created
/// together; in Kubernetes the API's startup probe allows for it). A URL or file that can
/// never work fails at once, naming the problem.
async fn connect(url: &str) -> anyhow::Result<abstore::connection::Connection> {
    use abstore::error::Error;
    let mut wait = std::time::Duration::from_millis(250);
    loop {
        match abstore::connection::Connection::open(url).await {
            Ok(conn) => return Ok(conn),
            Err(
                error @ (Error::InvalidUrl { .. }
                | Error::File { .. }
                | Error::MissingEnv { .. }
                | Error::InvalidArgument { .. }),
            ) => return Err(error).context("connecting to --redis-url"),
            Err(error) => {
                tracing::warn!(%error, retry_in_ms = wait.as_millis(), "the store is not reachable yet");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(5));
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    abstore::crypto::install_default_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.worker_threads {
        runtime.worker_threads(usize::from(threads));
    }
    runtime
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let api_key = match &args.api_key_file {
        Some(path) => Some(
            abstore_api::key::read_key_file(path)
                .context("--api-key-file (ABSTORE_API_KEY_FILE)")?,
        ),
        None => None,
    };
    let conn = connect(&args.redis_url).await?;
    let state = Arc::new(AppState {
        store: TrackingStore::new(
            conn,
            (args.wait_replicas > 0).then(|| abstore::counters::WaitForReplicas {
                replicas: args.wait_replicas,
                timeout: std::time::Duration::from_millis(args.wait_timeout_ms),
            }),
        ),
        api_key: abstore_api::key::ApiKey::new(api_key),
        metrics: abstore_api::metrics::Metrics::new(),
        limiter: abstore_api::limits::RateLimiter::new(args.rate_limit),
        allowed_origins: args.allowed_origins.clone(),
    });
    // A new key in the file (a rotated Secret) is taken without a restart.
    if let Some(path) = args.api_key_file.clone() {
        let state = Arc::clone(&state);
        tokio::spawn(async move { state.api_key.follow(&path).await });
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on --listen {}", args.listen))?;
    tracing::info!(address = %listener.local_addr()?, "abstore-api listening");
    // Each answer goes out when written, not held back by Nagle's algorithm for an ACK (what
    // nginx's tcp_nodelay does on keep-alive connections).
    let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set on a connection");
        }
    });
    // SIGTERM (Kubernetes) or Ctrl-C: stop accepting, finish the requests in flight, exit 0.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    axum::serve(listener, Api::new(state))
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            tracing::info!("shutting down: draining requests in flight");
        })
        .await?;
    Ok(())
}
