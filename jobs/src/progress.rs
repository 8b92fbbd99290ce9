//! Progress of a long run: a bar on stderr when it is a terminal, else a log line at a fixed
//! interval (CronJob logs), so a slow backup is visibly alive either way.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a non-terminal run logs its progress.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// How often the bar is redrawn.
const BAR_INTERVAL: Duration = Duration::from_millis(200);
const BAR_TEMPLATE: &str =
    "{spinner} {msg} {pos}/{len} keys [{elapsed_precise}] {bar:40} {per_sec} eta {eta}";

/// Counters shared with the pipeline stages, and the task that shows them.
#[derive(Debug)]
pub struct Progress {
    keys: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Starts showing progress of `what` (`backup`, `restore` …); `total` is an estimate.
    pub fn start(what: &'static str, total: Option<u64>) -> Progress {
        let keys = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total.unwrap_or(0));
            if let Ok(style) = ProgressStyle::with_template(BAR_TEMPLATE) {
                bar.set_style(style);
            }
            bar.set_message(what);
            bar
        });
        let task = {
            let keys = Arc::clone(&keys);
            let bar = bar.clone();
            tokio::spawn(async move {
                let period = if bar.is_some() {
                    BAR_INTERVAL
                } else {
                    LOG_INTERVAL
                };
                let mut ticker = tokio::time::interval(period);
                ticker.tick().await;
                loop {
                    ticker.tick().await;
                    let done = keys.load(Ordering::Relaxed);
                    match &bar {
                        Some(bar) => {
                            // The keyspace grows during a run; never show more done than total.
                            if done > bar.length().unwrap_or(0) {
                                bar.set_length(done);
                            }
                            bar.set_position(done);
                        }
                        None => {
                            let secs = started.elapsed().as_secs_f64().max(0.001);
                            tracing::info!(
                                job = what,
                                keys = done,
                                total,
                                keys_per_sec = (done as f64 / secs).round(),
                                "progress"
                            );
                        }
                    }
                }
            })
        };
        Progress { keys, task, bar }
    }

    /// Counts keys done.
    pub fn add(&self, keys: u64) {
        self.keys.fetch_add(keys, Ordering::Relaxed);
    }

    /// A handle the pipeline stages can count with.
    pub fn counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.keys)
    }

    /// Stops the display.
    pub fn finish(self) {
        self.task.abort();
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
