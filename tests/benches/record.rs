//! Events per second recorded through `abstore` on one local redis-server, side by side in one run
//! with the server's ceiling (`redis-benchmark -P 16 -t incr`), a Lamed-style peer
//! (WATCH/MULTI/EXEC per event, in Rust) and the real Lamed backend (PyPI `lamed==0.4.3`, its own
//! `track` called from Python). Run: `cargo bench -p abstore-tests --bench record`.
//! Results and how to read them: docs/benchmarks.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use abstore::batching::{BatchingConfig, BatchingRecorder};
use abstore::connection::Connection;
use abstore::counters::{Event, Outcome, Recorder, RecorderConfig, WaitForReplicas};
use abstore_tests::lamed::run_lamed_processes;
use abstore_tests::{RedisServer, measure};

const DAY: i64 = 86_400;

fn today() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    now / DAY * DAY
}

/// The benchmark's workload: 20 flags, two variations, users from a pool of 100 000, spread over
/// the 24 hours of today, so a batch of 200 touches 120 distinct counters. Made before the clock
/// starts, so every row measures recording, not building test data.
fn events(run: &str, n: u64, with_id: bool) -> Vec<Event> {
    let today = today();
    (0..n)
        .map(|i| {
            let e = Event::evaluation(
                &format!("flag-{}", i % 20),
                if i.is_multiple_of(2) {
                    "control"
                } else {
                    "treatment"
                },
                &format!("user-{}", i % 100_000),
                today + (i % 24) as i64 * 3600,
            );
            if with_id {
                e.with_event_id(format!("{run}-{i}"))
            } else {
                e
            }
        })
        .collect()
}

/// One row of the table.
struct Row {
    name: String,
    per_second: f64,
    /// Server CPU microseconds per event (or per command for the ceiling).
    server_us: f64,
    /// The client's CPU microseconds per event, when the client is this process or reports it.
    client_us: Option<f64>,
}

/// Runs `work` (which records `n` events) and measures wall time, the server's CPU and this
/// process's CPU.
async fn measured<F: std::future::Future<Output = ()>>(
    name: &str,
    servers: &[&RedisServer],
    n: u64,
    work: F,
) -> Row {
    let pids: Vec<u32> = servers.iter().map(|s| s.pid().unwrap()).collect();
    let server_cpu = || -> f64 { pids.iter().map(|p| measure::cpu_seconds(*p).unwrap()).sum() };
    let (server_before, own_before) = (server_cpu(), measure::own_cpu_seconds().unwrap());
    let started = Instant::now();
    work.await;
    let elapsed = started.elapsed().as_secs_f64();
    let per_event = |seconds: f64| seconds * 1e6 / n as f64;
    Row {
        name: name.to_owned(),
        per_second: n as f64 / elapsed,
        server_us: per_event(server_cpu() - server_before),
        client_us: Some(per_event(measure::own_cpu_seconds().unwrap() - own_before)),
    }
}

/// `redis-benchmark -P 16 -c 50 -n <requests> --csv <args>` against `server`: the rate its CSV
/// reports for the test whose name starts with `test`, and the server's CPU per request.
fn redis_benchmark(
    server: &RedisServer,
    name: &str,
    requests: u64,
    args: &[&str],
    test: &str,
) -> Row {
    let pid = server.pid().unwrap();
    let before = measure::cpu_seconds(pid).unwrap();
    let out = Command::new("redis-benchmark")
        .args(["-h", server.host(), "-p", &server.port().to_string()])
        .args(["-P", "16", "-c", "50", "-n", &requests.to_string(), "--csv"])
        .args(args)
        .output()
        .expect("redis-benchmark (package redis-tools) must be installed");
    let server_seconds = measure::cpu_seconds(pid).unwrap() - before;
    let text = String::from_utf8_lossy(&out.stdout);
    // CSV: "test","rps",... then "INCR","123456.00",...
    let per_second = text
        .lines()
        .find(|l| l.starts_with(&format!("\"{test}")))
        .and_then(|l| l.split(',').nth(1))
        .and_then(|v| v.trim_matches('"').parse().ok())
        .unwrap_or_else(|| panic!("cannot read redis-benchmark output: {text}"));
    Row {
        name: name.into(),
        per_second,
        server_us: server_seconds * 1e6 / requests as f64,
        client_us: None,
    }
}

/// The server's ceiling for single-key increments with 16-deep pipelining.
fn redis_benchmark_incr(server: &RedisServer, requests: u64) -> Row {
    redis_benchmark(
        server,
        "ceiling: redis-benchmark -P 16 -t incr (INCR commands)",
        requests,
        &["-t", "incr"],
        "INCR",
    )
}

fn assert_recorded(outcomes: &[abstore::Result<Outcome>]) {
    let failed: Vec<_> = outcomes.iter().filter(|o| o.is_err()).take(3).collect();
    assert!(failed.is_empty(), "events failed: {failed:?}");
}

/// A ceiling for dedup itself: what the server does when it only sets the flags — `SET … NX EX`
/// of new keys as long as abstore's (`dd:` + 40 hex digits), pipelined 16 deep by
/// `redis-benchmark`. No recorder that keeps a flag per event can beat it.
fn redis_benchmark_dedup_flags(server: &RedisServer, requests: u64) -> Row {
    let key = format!("dd:__rand_int__{}", "f".repeat(28));
    redis_benchmark(
        server,
        "dedup-flag ceiling: redis-benchmark -P 16 SET dd:… NX EX (new keys)",
        requests,
        &["-r", "1000000000", "SET", &key, "1", "NX", "EX", "86400"],
        "SET ",
    )
}

/// The previous abstore release's recording: one `EVALSHA` of a per-event script for every
/// event (flag, INCRBY, EXPIREAT NX, PFADD, EXPIREAT NX), pipelined in batches, kept here as a
/// row so the gain is measured in the same run.
const PER_EVENT_SCRIPT: &str = r"
local i = 1
local ttl = tonumber(ARGV[1])
if ttl > 0 then
  if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ttl) then
    return 0
  end
  i = 2
end
redis.call('INCRBY', KEYS[i], ARGV[4])
redis.call('EXPIREAT', KEYS[i], ARGV[2], 'NX')
redis.call('PFADD', KEYS[i + 1], ARGV[3])
redis.call('EXPIREAT', KEYS[i + 1], ARGV[2], 'NX')
return 1
";

async fn per_event_scripts(server: &RedisServer, events: Vec<Event>, batch: usize, tasks: usize) {
    let con = server
        .client()
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let script = redis::Script::new(PER_EVENT_SCRIPT);
    let _: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(PER_EVENT_SCRIPT)
        .query_async(&mut con.clone())
        .await
        .unwrap();
    let hash = script.get_hash().to_owned();
    let events = Arc::new(events);
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (mut con, events, hash) = (con.clone(), Arc::clone(&events), hash.clone());
        handles.push(tokio::spawn(async move {
            for chunk in events.chunks(batch).skip(t).step_by(tasks) {
                let mut pipe = redis::pipe();
                for e in chunk {
                    let hour = e.timestamp / 3600 * 3600;
                    let flag = abstore::keys::Key::dedup(
                        None,
                        abstore::keys::EventKind::Evaluation,
                        e.event_id.as_deref().unwrap(),
                    )
                    .unwrap();
                    pipe.cmd("EVALSHA")
                        .arg(&hash)
                        .arg(3)
                        .arg(flag.to_string())
                        .arg(format!("ec:{hour}:{}:{}", e.flag, e.variation))
                        .arg(format!("uc:{hour}:{}:{}", e.flag, e.variation))
                        .arg(86_400)
                        .arg(hour + 31 * DAY)
                        .arg(&e.user)
                        .arg(1);
                }
                let replies: Vec<i64> = pipe.query_async(&mut con).await.unwrap();
                assert!(replies.iter().all(|r| *r == 1), "{replies:?}");
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
}

/// `Recorder::record_batch` from `tasks` concurrent tasks sharing one multiplexed connection.
async fn batches(recorder: Recorder, events: Vec<Event>, batch: usize, tasks: usize) {
    let events = Arc::new(events);
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (recorder, events) = (recorder.clone(), Arc::clone(&events));
        handles.push(tokio::spawn(async move {
            for chunk in events.chunks(batch).skip(t).step_by(tasks) {
                let result = recorder.record_batch(chunk).await.unwrap();
                assert_recorded(&result.outcomes);
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
}

/// `callers` tasks, each recording one event at a time through one `BatchingRecorder`.
async fn single_event_callers(recorder: Recorder, events: Vec<Event>, callers: usize) {
    let batching = Arc::new(BatchingRecorder::new(recorder, BatchingConfig::default()).unwrap());
    let events = Arc::new(events);
    let mut handles = Vec::new();
    for c in 0..callers {
        let (batching, events) = (Arc::clone(&batching), Arc::clone(&events));
        handles.push(tokio::spawn(async move {
            for e in events.iter().skip(c).step_by(callers) {
                batching.record(e.clone()).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    Arc::into_inner(batching).unwrap().shutdown().await;
}

/// One event per round trip, sequentially: the latency-bound case.
async fn one_by_one(recorder: Recorder, events: Vec<Event>) {
    for e in &events {
        recorder.record(e).await.unwrap();
    }
}

/// Lamed's approach, in Rust: per event WATCH the dedup key, check it, then MULTI/EXEC the
/// writes (with the counters, uniques and expiry abstore writes); each worker needs its own
/// connection because WATCH state is per connection.
async fn lamed_style(server: &RedisServer, events: Vec<Event>, workers: usize) {
    let events = Arc::new(events);
    let mut handles = Vec::new();
    for w in 0..workers {
        let mut con = server
            .client()
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let events = Arc::clone(&events);
        handles.push(tokio::spawn(async move {
            for e in events.iter().skip(w).step_by(workers) {
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
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
}

/// The real Lamed: `processes` Python processes, each calling `lamed.lamed.track` for its share
/// of `n` events (scripts/bench/lamed_track.py).
fn lamed_python(server: &RedisServer, n: u64, processes: u64) -> Row {
    let pid = server.pid().unwrap();
    let before = measure::cpu_seconds(pid).unwrap();
    let load = run_lamed_processes(server, n, processes, "py-lamed").unwrap();
    let per_event = |seconds: f64| seconds * 1e6 / load.events as f64;
    Row {
        name: format!("Lamed 0.4.3 track() from Python, {processes} processes"),
        per_second: load.per_second,
        server_us: per_event(measure::cpu_seconds(pid).unwrap() - before),
        client_us: Some(per_event(load.cpu_seconds)),
    }
}

/// Every row starts from an empty keyspace: the keys an earlier row wrote (a million flags after
/// the dedup ceiling) would make the dictionary bigger and every later row slower.
async fn flush(server: &RedisServer) {
    let mut raw = server.connection().await.unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut raw).await.unwrap();
}

async fn recorder(server: &RedisServer, config: RecorderConfig) -> Recorder {
    flush(server).await;
    let conn = Connection::open(&server.url()).await.unwrap();
    let recorder = Recorder::new(conn, config).unwrap();
    recorder.load_script().await.unwrap();
    recorder
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would pass nothing: run only under bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n = measure::env_u64("ABSTORE_BENCH_EVENTS", 200_000);
    let lamed_n = measure::env_u64("ABSTORE_BENCH_LAMED_EVENTS", 50_000);
    let python_n = measure::env_u64("ABSTORE_BENCH_PY_LAMED_EVENTS", 20_000);
    let server = RedisServer::start_default().unwrap();
    let on = [&server];
    let default = RecorderConfig::default();

    let mut rows = vec![
        redis_benchmark_incr(&server, 1_000_000),
        redis_benchmark_dedup_flags(&server, 1_000_000),
    ];
    let batched = {
        let (r, e) = (
            recorder(&server, default.clone()).await,
            events("batched", n, true),
        );
        measured(
            "abstore batches of 200, 4 tasks, dedup+counters+expiry",
            &on,
            n,
            batches(r, e, 200, 4),
        )
        .await
    };
    let batched_rate = batched.per_second;
    rows.push(batched);
    flush(&server).await;
    let e = events("previous", n, true);
    let previous = measured(
        "previous abstore: one EVALSHA per event, batches of 200, 4 tasks",
        &on,
        n,
        per_event_scripts(&server, e, 200, 4),
    )
    .await;
    let previous_rate = previous.per_second;
    rows.push(previous);
    let (r, e) = (
        recorder(&server, default.clone()).await,
        events("nodedup", n, false),
    );
    rows.push(
        measured(
            "abstore batches of 200, 4 tasks, counters+expiry (no ids)",
            &on,
            n,
            batches(r, e, 200, 4),
        )
        .await,
    );
    let (r, e) = (
        recorder(&server, default.clone()).await,
        events("callers", n, true),
    );
    rows.push(
        measured(
            "abstore 1000 single-event callers, BatchingRecorder, dedup",
            &on,
            n,
            single_event_callers(r, e, 1000),
        )
        .await,
    );
    let (r, e) = (
        recorder(&server, default.clone()).await,
        events("single", n / 20, true),
    );
    rows.push(
        measured(
            "abstore one event per round trip, sequential, dedup",
            &on,
            n / 20,
            one_by_one(r, e),
        )
        .await,
    );
    flush(&server).await;
    let e = events("lamed", lamed_n, true);
    let lamed = measured(
        "Lamed-style WATCH/MULTI/EXEC per event, 4 connections",
        &on,
        lamed_n,
        lamed_style(&server, e, 4),
    )
    .await;
    let lamed_rate = lamed.per_second;
    rows.push(lamed);
    flush(&server).await;
    let python = lamed_python(&server, python_n, 4);
    let python_rate = python.per_second;
    rows.push(python);

    // Durability mode: a primary with one replica; the same batches with and without WAIT 1.
    let primary = RedisServer::start_default().unwrap();
    let replica = RedisServer::start_replica_of("", &primary).unwrap();
    wait_for_replica(&primary).await;
    let pair = [&primary, &replica];
    let (r, e) = (
        recorder(&primary, default.clone()).await,
        events("repl", n, true),
    );
    rows.push(
        measured(
            "with a replica: batches of 200, 4 tasks, dedup, no WAIT",
            &pair,
            n,
            batches(r, e, 200, 4),
        )
        .await,
    );
    let waited = RecorderConfig {
        wait_for_replicas: Some(WaitForReplicas {
            replicas: 1,
            timeout: Duration::from_secs(1),
        }),
        ..default.clone()
    };
    let (r, e) = (recorder(&primary, waited).await, events("wait", n, true));
    rows.push(
        measured(
            "with a replica: the same with WAIT 1 per batch",
            &pair,
            n,
            batches(r, e, 200, 4),
        )
        .await,
    );

    let ceiling = rows[0].per_second;
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "redis-server {} on {cpus} CPUs; client and server share them",
        redis_version()
    );
    println!(
        "{:<60} {:>11} {:>10} {:>11} {:>11}",
        "what", "per second", "vs ceiling", "server µs", "client µs"
    );
    for row in &rows {
        println!(
            "{:<60} {:>11.0} {:>9.3}x {:>11.2} {:>11}",
            row.name,
            row.per_second,
            row.per_second / ceiling,
            row.server_us,
            row.client_us.map_or("-".into(), |c| format!("{c:.2}")),
        );
    }
    println!("(server/client µs: CPU time per event; for the ceiling, per INCR)");
    println!(
        "abstore batched / Lamed-style: {:.1}x; / Lamed 0.4.3: {:.1}x; / previous abstore: {:.1}x; / dedup-flag ceiling: {:.2}x",
        batched_rate / lamed_rate,
        batched_rate / python_rate,
        batched_rate / previous_rate,
        batched_rate / rows[1].per_second,
    );
}

/// Polls until the primary reports a connected replica in sync.
async fn wait_for_replica(primary: &RedisServer) {
    let mut con = primary.connection().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut con)
            .await
            .unwrap();
        if info.contains("state=online") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replica never came online: {info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
