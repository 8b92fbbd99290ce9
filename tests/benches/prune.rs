//! Prune speed and its cost to other clients, side by side in one run on one local redis-server:
//! keys scanned per second by `abstore-jobs prune --dry-run` against `redis-cli --scan` (which
//! sends SCAN without COUNT, so 10) and a bare `SCAN … COUNT 1000` loop (what prune sends, with
//! nothing done with the keys), keys deleted per second, and the latency of a
//! concurrent INCR client while prune runs, against the same client on the idle server, without
//! and with `--max-keys-per-sec`. Run: `cargo bench -p abstore-tests --bench prune`
//! (`ABSTORE_BENCH_KEYS=…` to change the 1M keys, 20 % expired). Results: docs/benchmarks.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use abstore_tests::{RedisServer, measure};

const HOUR: u64 = 3600;
const DAY: u64 = 86_400;
const RETENTION_DAYS: u64 = 31;
/// One key in this many is past retention.
const EXPIRED_ONE_IN: u64 = 5;
/// `--max-keys-per-sec` of the rate-limited runs (keys scanned plus keys deleted).
const RATE_LIMITS: [u64; 2] = [200_000, 50_000];
/// How often the latency probe sends an INCR.
const PROBE_INTERVAL: Duration = Duration::from_micros(500);
/// How long the idle latency baseline is sampled.
const IDLE_SAMPLE: Duration = Duration::from_secs(5);

fn keys_to_load() -> u64 {
    std::env::var("ABSTORE_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// One RESP command.
fn resp(out: &mut impl Write, args: &[&[u8]]) {
    write!(out, "*{}\r\n", args.len()).unwrap();
    for arg in args {
        write!(out, "${}\r\n", arg.len()).unwrap();
        out.write_all(arg).unwrap();
        out.write_all(b"\r\n").unwrap();
    }
}

/// Bucketeer-shaped counters without TTL (what prune exists for): hourly buckets, 70 % `ec`,
/// 30 % `uc`, one in five in the 30 days before the cutoff, the rest in the 30 days before now.
/// Writes the whole keyspace to `all` and only the expired keys to `expired` (to reload them).
fn write_load_files(all: &Path, expired: &Path, keys: u64) -> u64 {
    let mut all = std::io::BufWriter::new(std::fs::File::create(all).unwrap());
    let mut old = std::io::BufWriter::new(std::fs::File::create(expired).unwrap());
    let now_hour = now_secs() / HOUR * HOUR;
    let cutoff = now_hour - RETENTION_DAYS * DAY;
    let hours = 30 * 24;
    let mut expired_keys = 0;
    for i in 0..keys {
        let is_expired = i % EXPIRED_ONE_IN == 0;
        let newest = if is_expired { cutoff - HOUR } else { now_hour };
        let bucket = newest - (i % hours) * HOUR;
        let tag = if i % 10 < 7 { "ec" } else { "uc" };
        let variation = if i % 2 == 0 { "control" } else { "treatment" };
        let key = format!("{tag}:{bucket}:flag-{}:{variation}", i / hours);
        let value = (i % 5000).to_string();
        let command: [&[u8]; 3] = [b"SET", key.as_bytes(), value.as_bytes()];
        resp(&mut all, &command);
        if is_expired {
            resp(&mut old, &command);
            expired_keys += 1;
        }
    }
    all.flush().unwrap();
    old.flush().unwrap();
    expired_keys
}

fn redis_cli(server: &RedisServer) -> Command {
    let mut command = Command::new("redis-cli");
    command.args(["-h", server.host(), "-p", &server.port().to_string()]);
    command
}

fn redis_cli_pipe(server: &RedisServer, file: &Path) {
    let status = redis_cli(server)
        .arg("--pipe")
        .stdin(std::fs::File::open(file).unwrap())
        .stdout(Stdio::null())
        .status()
        .expect("redis-cli (package redis-tools) must be installed");
    assert!(status.success(), "redis-cli --pipe failed");
}

fn dbsize(server: &RedisServer) -> u64 {
    let out = redis_cli(server).arg("DBSIZE").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// `redis-cli --scan`, output counted and discarded: (keys, elapsed).
fn redis_cli_scan(server: &RedisServer) -> (u64, Duration) {
    let started = Instant::now();
    let mut child = redis_cli(server)
        .arg("--scan")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap())
        .split(b'\n')
        .count() as u64;
    assert!(child.wait().unwrap().success());
    (lines, started.elapsed())
}

/// `SCAN cursor COUNT 1000` until the cursor is 0, one call at a time on one connection, keys
/// counted and dropped: the ceiling of a single sequential scanner.
fn bare_scan(server: &RedisServer) -> (u64, Duration) {
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let started = Instant::now();
    let (mut cursor, mut keys) = (0u64, 0u64);
    loop {
        let (next, page): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query(&mut conn)
            .unwrap();
        keys += page.len() as u64;
        if next == 0 {
            return (keys, started.elapsed());
        }
        cursor = next;
    }
}

/// A client sending one INCR every [`PROBE_INTERVAL`] and timing each reply, until stopped. Paced
/// like an application client, not flat out: on two cores a closed-loop probe would itself take
/// a core from the server and measure CPU contention instead of the server's latency.
struct LatencyProbe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Duration>>,
}

impl LatencyProbe {
    fn start(server: &RedisServer) -> LatencyProbe {
        let mut stream = TcpStream::connect((server.host(), server.port())).unwrap();
        stream.set_nodelay(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut samples = Vec::new();
                let mut line = String::new();
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    next += PROBE_INTERVAL;
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let sent = Instant::now();
                    stream
                        .write_all(b"*2\r\n$4\r\nINCR\r\n$11\r\nbench:probe\r\n")
                        .unwrap();
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                    samples.push(sent.elapsed());
                    assert!(line.starts_with(':'), "INCR answered {line:?}");
                }
                samples
            })
        };
        LatencyProbe { stop, thread }
    }

    fn stop(self) -> Latency {
        self.stop.store(true, Ordering::Relaxed);
        Latency::of(self.thread.join().unwrap())
    }
}

#[derive(Debug)]
struct Latency {
    samples: usize,
    p50: Duration,
    p99: Duration,
    p999: Duration,
    max: Duration,
}

impl Latency {
    fn of(mut samples: Vec<Duration>) -> Latency {
        samples.sort();
        let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
        Latency {
            samples: samples.len(),
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
            max: *samples.last().unwrap(),
        }
    }

    fn row(&self, what: &str, idle: &Latency) {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "  {what:<44} {:>8} {:>8.0} {:>8.0} {:>8.0} {:>8.0}  p99 {:.2}x idle",
            self.samples,
            us(self.p50),
            us(self.p99),
            us(self.p999),
            us(self.max),
            us(self.p99) / us(idle.p99)
        );
    }
}

/// A finished prune run: wall time, peak RSS, and its summary line.
struct Run {
    elapsed: Duration,
    peak_kib: u64,
    summary: serde_json::Value,
}

fn prune(server: &RedisServer, extra: &[&str]) -> Run {
    let run = measure::run_measured(
        Command::new(env!("CARGO_BIN_EXE_abstore-jobs-cli"))
            .args(["prune", "--redis", &server.url()])
            .args(extra)
            .env("ABSTORE_TERMINATION_LOG", "/nonexistent/termination-log"),
    );
    Run {
        elapsed: run.elapsed,
        peak_kib: run.peak_kib,
        summary: serde_json::from_slice(&run.stdout).unwrap(),
    }
}

fn rate(keys: u64, elapsed: Duration) -> f64 {
    keys as f64 / elapsed.as_secs_f64()
}

fn field(run: &Run, name: &str) -> u64 {
    run.summary[name].as_u64().unwrap()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets` builds benches too; only `cargo bench` runs them.
        return;
    }
    let keys = keys_to_load();
    let work = tempfile::tempdir().unwrap();
    let all_file = work.path().join("all.resp");
    let expired_file = work.path().join("expired.resp");
    let expired = write_load_files(&all_file, &expired_file, keys);
    let server = RedisServer::start_default().unwrap();
    redis_cli_pipe(&server, &all_file);
    let loaded = dbsize(&server);
    println!("loaded {loaded} keys, {expired} of them past {RETENTION_DAYS} days");

    // Scanning: the same keyspace, nothing deleted.
    let (cli_keys, cli_scan) = redis_cli_scan(&server);
    let (bare_keys, bare) = bare_scan(&server);
    assert_eq!((cli_keys, bare_keys), (loaded, loaded));
    let dry = prune(&server, &["--dry-run"]);
    assert_eq!(field(&dry, "scanned"), loaded);
    assert_eq!(field(&dry, "expired"), expired);

    // Latency of another client: idle, then during prune unlimited, then rate limited (the
    // expired keys reloaded before each run).
    let probe = LatencyProbe::start(&server);
    std::thread::sleep(IDLE_SAMPLE);
    let idle = probe.stop();
    let mut runs = Vec::new();
    for limit in std::iter::once(0).chain(RATE_LIMITS) {
        if limit > 0 {
            redis_cli_pipe(&server, &expired_file);
        }
        reset_stats(&server);
        let probe = LatencyProbe::start(&server);
        let run = prune(&server, &["--max-keys-per-sec", &limit.to_string()]);
        let latency = probe.stop();
        let busy = server_busy(&server);
        assert_eq!(field(&run, "deleted"), expired);
        assert_eq!(dbsize(&server), loaded - expired + 1);
        let what = if limit == 0 {
            "unlimited".to_owned()
        } else {
            format!("--max-keys-per-sec {limit}")
        };
        runs.push((what, run, latency, busy));
    }

    let base = rate(loaded, cli_scan);
    println!("\nscanning {loaded} keys (keys/s, ratio to redis-cli --scan)");
    println!(
        "  redis-cli --scan (COUNT 10)            {:>10.0}  1.00",
        base
    );
    println!(
        "  bare SCAN COUNT 1000 loop (ceiling)    {:>10.0}  {:.2}",
        rate(loaded, bare),
        rate(loaded, bare) / base
    );
    println!(
        "  abstore-jobs prune --dry-run           {:>10.0}  {:.2}  {} MiB peak RSS",
        rate(loaded, dry.elapsed),
        rate(loaded, dry.elapsed) / base,
        dry.peak_kib / 1024
    );
    println!("\nprune of {expired} expired keys among {loaded} (whole run, scan included)");
    for (what, run, _, busy) in &runs {
        println!(
            "  {what:<28} {:>6.2} s  scanned {:>9.0}/s  deleted {:>8.0}/s  server busy {:>4.0} ms  {} MiB peak RSS",
            run.elapsed.as_secs_f64(),
            rate(field(run, "scanned"), run.elapsed),
            rate(field(run, "deleted"), run.elapsed),
            busy.as_secs_f64() * 1e3,
            run.peak_kib / 1024
        );
    }
    println!(
        "\nlatency of a concurrent INCR client (µs)      samples      p50      p99    p99.9      max"
    );
    idle.row("idle server", &idle);
    for (what, _, latency, _) in &runs {
        latency.row(&format!("during prune, {what}"), &idle);
    }
}

fn reset_stats(server: &RedisServer) {
    let status = redis_cli(server)
        .args(["CONFIG", "RESETSTAT"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Server time spent in SCAN and UNLINK since the last reset (`INFO commandstats`).
fn server_busy(server: &RedisServer) -> Duration {
    let out = redis_cli(server)
        .args(["INFO", "commandstats"])
        .output()
        .unwrap();
    let usec: u64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("cmdstat_scan:") || l.starts_with("cmdstat_unlink:"))
        .filter_map(|l| {
            l.split(',')
                .find_map(|f| f.strip_prefix("usec="))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum();
    Duration::from_micros(usec)
}
