//! The command line of `abstore-jobs`: clap arguments with environment fallbacks, logging to
//! stderr, one run, and the summary line plus exit code. Lives in the library so the tests
//! crate can build the very same binary (see `tests/src/bin/abstore-jobs-cli.rs`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::backup::{self, BackupOptions, PART_MAX_BYTES, PART_MAX_RECORDS};
use crate::error::{JobError, Result};
use crate::list::{self, ListOptions};
use crate::prune::{self, DEFAULT_RETENTION_DAYS, DELETE_BATCH, PruneOptions};
use crate::restore::{self, RestoreMode, RestoreOptions};
use crate::storage::{Location, StorageOptions};
use crate::summary::{self, Failure, Success, TERMINATION_LOG, TERMINATION_LOG_ENV};
use crate::verify::{self, VerifyOptions};

/// Exit code of a run that failed (clap uses 2 for usage errors).
pub const EXIT_FAILURE: u8 = 1;

#[derive(Debug, Parser)]
#[command(
    name = "abstore-jobs",
    version,
    about = "ABStore maintenance jobs: backup, restore, verify, list, prune"
)]
pub struct Cli {
    /// Log line format on stderr.
    #[arg(long, global = true, env = "ABSTORE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
    /// Where the summary line is also written, if the file exists (Kubernetes creates it).
    #[arg(long, global = true, env = TERMINATION_LOG_ENV, default_value = TERMINATION_LOG)]
    pub termination_log: PathBuf,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

/// Endpoints of S3-compatible servers and GCS emulators; production leaves them unset.
#[derive(Debug, Args)]
pub struct StorageArgs {
    /// S3 endpoint URL (SeaweedFS, MinIO, …); default: AWS.
    #[arg(long, global = true, env = "ABSTORE_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// Path-style S3 addressing (most S3-compatible servers need it).
    #[arg(long, global = true, env = "ABSTORE_S3_PATH_STYLE")]
    pub s3_path_style: bool,
    /// GCS endpoint URL (fake-gcs-server); default: Google.
    #[arg(long, global = true, env = "ABSTORE_GCS_ENDPOINT")]
    pub gcs_endpoint: Option<String>,
}

impl StorageArgs {
    fn options(&self) -> StorageOptions {
        StorageOptions {
            s3_endpoint: self.s3_endpoint.clone(),
            s3_path_style: self.s3_path_style,
            gcs_endpoint: self.gcs_endpoint.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Export keys (SCAN + typed reads) into a new dated backup folder under --to.
    Backup(BackupArgs),
    /// Check a backup completely, then write it into Redis.
    Restore(RestoreArgs),
    /// Check a backup (manifest, checksums, counts, decodability) without Redis.
    Verify(VerifyArgs),
    /// List the backups under a destination, complete or not.
    List(ListArgs),
    /// Delete counters (ec/uc/gc/gu) whose bucket started more than --retention-days ago.
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// redis://, rediss://, redis+sentinel:// or redis+cluster:// URL (password_file=… etc. as
    /// query parameters); a cluster's shards are read in parallel.
    #[arg(long, env = "ABSTORE_REDIS_URL")]
    pub redis: String,
    /// Destination: file:///path, s3://bucket/prefix or gs://bucket/prefix.
    #[arg(long, env = "ABSTORE_BACKUP_TO")]
    pub to: String,
    /// Only keys matching this glob (SCAN MATCH syntax); repeat for several.
    #[arg(long = "match", value_name = "GLOB")]
    pub match_patterns: Vec<String>,
    /// Read from a healthy replica found through Sentinel (a redis+sentinel:// URL), or from one
    /// replica of each shard (a redis+cluster:// URL).
    #[arg(long, env = "ABSTORE_FROM_REPLICA")]
    pub from_replica: bool,
    /// Records per part before a new part starts.
    #[arg(long, default_value_t = PART_MAX_RECORDS)]
    pub part_max_records: u64,
    /// Uncompressed bytes per part before a new part starts.
    #[arg(long, default_value_t = PART_MAX_BYTES)]
    pub part_max_bytes: u64,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A backup folder URL, or a destination URL (its newest complete backup is used).
    #[arg(long, env = "ABSTORE_RESTORE_FROM")]
    pub from: String,
    /// The Redis to write into.
    #[arg(long, env = "ABSTORE_REDIS_URL")]
    pub redis: String,
    /// overwrite: replace keys; missing: only absent keys; merge: add counters, union HLLs.
    #[arg(long, value_enum)]
    pub mode: ModeArg,
    /// Check the backup and report what would be written; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Overwrite,
    Missing,
    Merge,
}

impl From<ModeArg> for RestoreMode {
    fn from(mode: ModeArg) -> RestoreMode {
        match mode {
            ModeArg::Overwrite => RestoreMode::Overwrite,
            ModeArg::Missing => RestoreMode::Missing,
            ModeArg::Merge => RestoreMode::Merge,
        }
    }
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A backup folder URL, or a destination URL (its newest complete backup is checked).
    #[arg(long, env = "ABSTORE_RESTORE_FROM")]
    pub from: String,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The destination backups were written to.
    #[arg(long, env = "ABSTORE_BACKUP_TO")]
    pub from: String,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// redis://, rediss:// or redis+sentinel:// URL of the primary.
    #[arg(long, env = "ABSTORE_REDIS_URL")]
    pub redis: String,
    /// Counters whose bucket started more than this many days before --now are deleted (>= 1).
    #[arg(long, env = "ABSTORE_PRUNE_RETENTION_DAYS", default_value_t = DEFAULT_RETENTION_DAYS)]
    pub retention_days: u32,
    /// Report what would be deleted, by kind and day; delete nothing.
    #[arg(long, env = "ABSTORE_PRUNE_DRY_RUN")]
    pub dry_run: bool,
    /// Measure the retention from this RFC 3339 time instead of the clock (not in the future).
    #[arg(long, env = "ABSTORE_PRUNE_NOW", value_parser = prune::parse_now)]
    pub now: Option<chrono::DateTime<chrono::Utc>>,
    /// Keys scanned plus keys deleted per second at most, in small commands, to spare other
    /// clients' latency; 0 is unlimited.
    #[arg(long, env = "ABSTORE_PRUNE_MAX_KEYS_PER_SEC", default_value_t = 0)]
    pub max_keys_per_sec: u64,
    /// Keys per pipelined UNLINK batch.
    #[arg(long, env = "ABSTORE_PRUNE_BATCH_SIZE", default_value_t = DELETE_BATCH)]
    pub batch_size: usize,
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Backup(_) => "backup",
            Command::Restore(_) => "restore",
            Command::Verify(_) => "verify",
            Command::List(_) => "list",
            Command::Prune(_) => "prune",
        }
    }
}

/// The binary's entry point: parse, run, print the summary, exit 0 or [`EXIT_FAILURE`].
pub fn main() -> ExitCode {
    // Two rustls backends are compiled in: without this the first TLS request may panic.
    abstore::crypto::install_default_provider();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let command = cli.command.name();
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| JobError::Task {
            stage: "runtime",
            reason: e.to_string(),
        })
        .and_then(|runtime| runtime.block_on(run(&cli)));
    let (line, code) = match outcome {
        Ok(line) => (line, ExitCode::SUCCESS),
        Err(error) => {
            tracing::error!(error = %error, "{command} failed");
            let failure = Failure {
                command,
                ok: false,
                error: error.to_string(),
                category: error.category(),
            };
            (summary::line(&failure), ExitCode::from(EXIT_FAILURE))
        }
    };
    summary::emit(&line, &cli.termination_log);
    code
}

/// Runs the command and renders its success line.
pub async fn run(cli: &Cli) -> Result<String> {
    let storage = cli.storage.options();
    let command = cli.command.name();
    fn ok<T: Serialize>(command: &str, summary: &T) -> String {
        summary::line(&Success {
            command,
            ok: true,
            summary,
        })
    }
    Ok(match &cli.command {
        Command::Backup(args) => {
            let options = BackupOptions {
                storage,
                match_patterns: args.match_patterns.clone(),
                from_replica: args.from_replica,
                part_max_records: args.part_max_records,
                part_max_bytes: args.part_max_bytes,
                ..BackupOptions::new(args.redis.clone(), Location::parse(&args.to)?)
            };
            ok(command, &backup::run(&options).await?)
        }
        Command::Restore(args) => {
            let options = RestoreOptions {
                storage,
                dry_run: args.dry_run,
                ..RestoreOptions::new(
                    Location::parse(&args.from)?,
                    args.redis.clone(),
                    args.mode.into(),
                )
            };
            ok(command, &restore::run(&options).await?)
        }
        Command::Verify(args) => {
            let options = VerifyOptions {
                from: Location::parse(&args.from)?,
                storage,
            };
            ok(command, &verify::run(&options).await?)
        }
        Command::List(args) => {
            let options = ListOptions {
                from: Location::parse(&args.from)?,
                storage,
            };
            ok(command, &list::run(&options).await?)
        }
        Command::Prune(args) => {
            let options = PruneOptions {
                retention_days: args.retention_days,
                dry_run: args.dry_run,
                now: args.now,
                max_keys_per_sec: args.max_keys_per_sec,
                batch_size: args.batch_size,
                ..PruneOptions::new(args.redis.clone())
            };
            ok(command, &prune::run(&options).await?)
        }
    })
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
