//! `abstore-operator local up | status | down`: flags and output of the local topology (see
//! `abstore_operator::local`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};

use abstore_operator::local::{self, ClusterSupervisor, Layout, Supervisor};
use abstore_operator::telemetry::{self, LogFormat};

#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Start the store's Redis and Sentinel processes on loopback and keep healing them until
    /// Ctrl-C / SIGTERM (which stops them). Re-running on the same --dir restarts the same store.
    Up(UpArgs),
    /// Show the local topology: primary, replicas and sentinels with addresses and pids.
    Status(StatusArgs),
    /// Stop every process `local up` started in --dir.
    Down(DirArgs),
    /// Ask the running `local up` to restart every process one at a time, as for a
    /// configuration change: replicas, then the primary after a switchover, then the sentinels.
    Restart(DirArgs),
}

#[derive(Debug, Args)]
pub struct DirArgs {
    /// Directory of the local store (state, passwords, data, logs).
    #[arg(long, env = "ABSTORE_LOCAL_DIR", default_value = ".abstore-local")]
    dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// The ABStore YAML (the same file `kubectl apply` takes).
    #[arg(
        short = 'f',
        long = "filename",
        env = "ABSTORE_LOCAL_FILE",
        value_name = "FILE"
    )]
    file: PathBuf,
    #[command(flatten)]
    dir: DirArgs,
    /// Log format on stderr.
    #[arg(long, env = "ABSTORE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    dir: DirArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    output: Output,
}

pub fn run(command: LocalCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        match command {
            LocalCommand::Up(args) => up(args).await,
            LocalCommand::Status(args) => status(args).await,
            LocalCommand::Restart(args) => {
                let layout = Layout::new(&args.dir);
                let pid = local::request_restart(&layout).with_context(|| {
                    format!("requesting a restart of the local store in {}", args.dir.display())
                })?;
                println!(
                    "rolling restart requested; local up (pid {pid}) restarts every process one at a time (see local status)"
                );
                Ok(())
            }
            LocalCommand::Down(args) => {
                let layout = Layout::new(&args.dir);
                let stopped = local::down(&layout, Duration::from_secs(10))
                    .await
                    .with_context(|| {
                        format!("stopping the local store in {}", args.dir.display())
                    })?;
                println!("stopped {} processes", stopped.len());
                Ok(())
            }
        }
    })
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format).context("setting up logging")?;
    let starting = || {
        format!(
            "starting {} in {}",
            args.file.display(),
            args.dir.dir.display()
        )
    };
    let model = local::load_model(&args.file).with_context(starting)?;
    if let Some(cluster) = model.cluster() {
        let supervisor = ClusterSupervisor::up(&args.file, &args.dir.dir)
            .await
            .with_context(starting)?;
        let layout = supervisor.layout().clone();
        let state = supervisor.state().clone();
        println!(
            "ABStore {} is up: a Redis Cluster of {} shards × {} nodes, every slot served",
            state.name,
            cluster.shards,
            1 + cluster.replicas_per_shard
        );
        println!("  connect:     {}", local::app_url(&layout, &state));
        println!(
            "  credentials: {} (one password file per user)",
            layout.credentials_dir().display()
        );
        if let Some(url) = local::api::api_url(&state) {
            println!(
                "  api:         {url} (tracking API; key in {}; results page {url}/dashboard)",
                local::api::api_key_file(&layout).display()
            );
        }
        println!(
            "  status:      abstore-operator local status --dir {}",
            layout.dir.display()
        );
        println!(
            "Healing until Ctrl-C (which stops every process). Edits of {} are not followed in cluster mode yet.",
            args.file.display()
        );
        supervisor
            .run_until(crate::run::wait_for_signal())
            .await
            .context("stopping the local store")?;
        println!("stopped");
        return Ok(());
    }
    let supervisor = Supervisor::up(&args.file, &args.dir.dir)
        .await
        .with_context(|| {
            format!(
                "starting {} in {}",
                args.file.display(),
                args.dir.dir.display()
            )
        })?;
    let layout = supervisor.layout().clone();
    let state = supervisor.state().clone();
    println!(
        "ABStore {} is up: {} Redis nodes, {} sentinels, primary {}",
        state.name,
        state.nodes.len(),
        state.sentinels.len(),
        state.primary.as_deref().unwrap_or("?")
    );
    println!("  connect:     {}", local::app_url(&layout, &state));
    println!(
        "  credentials: {} (one password file per user)",
        layout.credentials_dir().display()
    );
    if let Some(url) = local::api::api_url(&state) {
        println!(
            "  api:         {url} (tracking API; key in {}; results page {url}/dashboard)",
            local::api::api_key_file(&layout).display()
        );
    }
    if state.tls {
        println!(
            "  tls:         TLS only; clients trust {} (certificates in {})",
            layout.tls_ca_file().display(),
            layout.tls_dir().display()
        );
    }
    println!(
        "  status:      abstore-operator local status --dir {}",
        layout.dir.display()
    );
    println!(
        "Healing until Ctrl-C (which stops every process). Edits of {} are rolled out; \
         `abstore-operator local restart --dir {}` restarts every process one at a time.",
        args.file.display(),
        layout.dir.display()
    );
    supervisor
        .run_until(crate::run::wait_for_signal())
        .await
        .context("stopping the local store")?;
    println!("stopped");
    Ok(())
}

async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let layout = Layout::new(&args.dir.dir);
    let status = local::status(&layout)
        .await
        .with_context(|| format!("reading the local store in {}", args.dir.dir.display()))?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&status)?),
        Output::Text => {
            println!("ABStore {} in {}", status.name, status.dir);
            if status.slots_covered.is_none() {
                println!(
                    "primary:     {}",
                    status.primary.as_deref().unwrap_or("none")
                );
            }
            println!("connect:     {}", status.url);
            if let Some(api) = &status.api {
                println!("api:         {api}");
            }
            println!("credentials: {}", status.credentials_dir);
            if let Some(tls) = &status.tls {
                match (&tls.server_certificate_expires, &tls.error) {
                    (Some(expires), _) => println!(
                        "tls:         CA {}; server certificate expires {expires}",
                        tls.ca_file
                    ),
                    (None, error) => println!(
                        "tls:         CA {}; server certificate: {}",
                        tls.ca_file,
                        error.as_deref().unwrap_or("unreadable")
                    ),
                }
            }
            match status.supervisor_pid {
                Some(pid) => println!("healer:      pid {pid}"),
                None => println!("healer:      not running"),
            }
            if let Some(step) = &status.rollout {
                println!("rollout:     {step}");
            }
            if let Some(covered) = status.slots_covered {
                println!("slots:       {covered} of 16384 served");
            }
            for node in &status.nodes {
                let shard = node
                    .shard
                    .map(|s| format!("shard {s:<3} "))
                    .unwrap_or_default();
                let slots = node
                    .slots
                    .as_ref()
                    .map(|s| format!(" slots {s}"))
                    .unwrap_or_default();
                println!(
                    "redis     {:<16} pid {:<8} {shard}{}{slots}",
                    node.address,
                    node.pid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
                    node.role
                        .clone()
                        .or_else(|| node.error.clone())
                        .unwrap_or_default()
                );
            }
            for (job, run) in &status.jobs {
                println!(
                    "{job:<9} last run {} {}",
                    run.finished_at,
                    if run.ok { "ok" } else { "FAILED" }
                );
            }
            for sentinel in &status.sentinels {
                println!(
                    "sentinel  {:<16} pid {:<8} {}",
                    sentinel.address,
                    sentinel
                        .pid
                        .map_or_else(|| "-".to_owned(), |p| p.to_string()),
                    sentinel
                        .primary
                        .as_ref()
                        .map(|p| format!("primary {p}"))
                        .or_else(|| sentinel.error.clone())
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}
