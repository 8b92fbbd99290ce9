//! Events per second recorded through `abstore` on one local redis-server, side by side in one run
//! with the server's ceiling (`redis-benchmark -P 16 -t incr`) and with a Lamed-style peer
//! (WATCH/MULTI/EXEC per event). Run: `cargo bench -p abstore-tests --bench record`.
//! Results and how to read them: docs/benchmarks.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Instant;

use abstore::connection::Connection;
use abstore::counters::{Event, Recorder, RecorderConfig};
use abstore_tests::RedisServer;

const DAY: i64 = 86_400;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn today() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    now / DAY * DAY
}

fn event(run: &str, i: u64, with_id: bool) -> Event {
    let e = Event::evaluation(
        &format!("flag-{}", i % 20),
        if i.is_multiple_of(2) {
            "control"
        } else {
            "treatment"
        },
        &format!("user-{}", i % 100_000),
        today() + (i % 24) as i64 * 3600,
    );
    if with_id {
        e.with_event_id(format!("{run}-{i}"))
    } else {
        e
    }
}

/// The server's ceiling for single-key increments with 16-deep pipelining.
fn redis_benchmark_incr(server: &RedisServer, requests: u64) -> f64 {
    let out = Command::new("redis-benchmark")
        .args(["-h", server.host(), "-p", &server.port().to_string()])
        .args([
            "-P",
            "16",
            "-t",
            "incr",
            "-n",
            &requests.to_string(),
            "-c",
            "50",
            "--csv",
        ])
        .output()
        .expect("redis-benchmark (package redis-tools) must be installed");
    let text = String::from_utf8_lossy(&out.stdout);
    // CSV: "test","rps",... then "INCR","123456.00",...
    text.lines()
        .find(|l| l.starts_with("\"INCR\""))
        .and_then(|l| l.split(',').nth(1))
        .and_then(|v| v.trim_matches('"').parse().ok())
        .unwrap_or_else(|| panic!("cannot read redis-benchmark output: {text}"))
}

/// `abstore` batches from `tasks` concurrent tasks sharing one multiplexed connection.
async fn abstore_batches(
    url: &str,
    run: &'static str,
    events: u64,
    batch: u64,
    tasks: u64,
    with_id: bool,
) -> f64 {
    let conn = Connection::open(url).await.unwrap();
    let recorder = Recorder::new(conn, RecorderConfig::default()).unwrap();
    recorder.load_script().await.unwrap();
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let recorder = recorder.clone();
        handles.push(tokio::spawn(async move {
            let mut i = t * batch;
            while i < events {
                let evs: Vec<Event> = (i..(i + batch).min(events))
                    .map(|j| event(run, j, with_id))
                    .collect();
                let result = recorder.record_batch(&evs).await.unwrap();
                assert!(result.outcomes.iter().all(|o| o.is_ok()));
                i += batch * tasks;
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    events as f64 / started.elapsed().as_secs_f64()
}

/// One event per round trip, sequentially: the latency-bound case.
async fn abstore_single(url: &str, events: u64) -> f64 {
    let conn = Connection::open(url).await.unwrap();
    let recorder = Recorder::new(conn, RecorderConfig::default()).unwrap();
    let started = Instant::now();
    for i in 0..events {
        recorder.record(&event("single", i, true)).await.unwrap();
    }
    events as f64 / started.elapsed().as_secs_f64()
}

/// Lamed's approach: per event WATCH the dedup key, check it, then MULTI/EXEC the writes; each
/// worker needs its own connection because WATCH state is per connection.
async fn lamed_watch_multi_exec(server: &RedisServer, events: u64, workers: u64) -> f64 {
    let started = Instant::now();
    let mut handles = Vec::new();
    for w in 0..workers {
        let mut con = server
            .client()
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        handles.push(tokio::spawn(async move {
            let mut i = w;
            while i < events {
                let e = event("lamed", i, true);
                let hour = e.timestamp / 3600 * 3600;
                let dedup = format!("dd:lamed:{}", e.event_id.as_deref().unwrap_or_default());
                let ec = format!("ec:{hour}:{}:{}", e.flag, e.variation);
                let uc = format!("uc:{hour}:{}:{}", e.flag, e.variation);
                let expire_at = hour + 31 * DAY;
                loop {
                    let _: () = redis::cmd("WATCH")
                        .arg(&dedup)
                        .query_async(&mut con)
                        .await
                        .unwrap();
                    let seen: bool = redis::cmd("EXISTS")
                        .arg(&dedup)
                        .query_async(&mut con)
                        .await
                        .unwrap();
                    if seen {
                        let _: () = redis::cmd("UNWATCH").query_async(&mut con).await.unwrap();
                        break;
                    }
                    let result: Option<redis::Value> = redis::pipe()
                        .atomic()
                        .cmd("SET")
                        .arg(&dedup)
                        .arg(1)
                        .arg("EX")
                        .arg(86_400)
                        .cmd("INCRBY")
                        .arg(&ec)
                        .arg(1)
                        .cmd("EXPIREAT")
                        .arg(&ec)
                        .arg(expire_at)
                        .arg("NX")
                        .cmd("PFADD")
                        .arg(&uc)
                        .arg(&e.user)
                        .cmd("EXPIREAT")
                        .arg(&uc)
                        .arg(expire_at)
                        .arg("NX")
                        .query_async(&mut con)
                        .await
                        .unwrap();
                    if result.is_some() {
                        break;
                    }
                }
                i += workers;
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    events as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would pass nothing: run only under bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let events = env_u64("ABSTORE_BENCH_EVENTS", 200_000);
    let lamed_events = env_u64("ABSTORE_BENCH_LAMED_EVENTS", 50_000);
    let server = RedisServer::start_default().unwrap();
    let url = server.url();

    let ceiling = redis_benchmark_incr(&server, 1_000_000);
    let batched = abstore_batches(&url, "batched", events, 200, 4, true).await;
    let no_dedup = abstore_batches(&url, "nodedup", events, 200, 4, false).await;
    let single = abstore_single(&url, events / 10).await;
    let lamed = lamed_watch_multi_exec(&server, lamed_events, 4).await;

    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "redis-server {} on {cpus} CPUs; client and server share them",
        redis_version()
    );
    println!("{:<58} {:>12} {:>10}", "what", "per second", "vs ceiling");
    let row = |name: &str, v: f64| println!("{name:<58} {v:>12.0} {:>9.3}x", v / ceiling);
    row(
        "ceiling: redis-benchmark -P 16 -t incr (INCR commands)",
        ceiling,
    );
    row(
        "abstore batches of 200, 4 tasks, dedup+counters+expiry",
        batched,
    );
    row(
        "abstore batches of 200, 4 tasks, counters+expiry (no ids)",
        no_dedup,
    );
    row(
        "abstore one event per round trip, sequential, dedup",
        single,
    );
    row(
        "Lamed-style WATCH/MULTI/EXEC per event, 4 connections",
        lamed,
    );
    println!("abstore batched / Lamed-style: {:.1}x", batched / lamed);
}

fn redis_version() -> String {
    Command::new("redis-server")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(2)
                .unwrap_or("?")
                .to_owned()
        })
        .unwrap_or_else(|_| "?".into())
}
