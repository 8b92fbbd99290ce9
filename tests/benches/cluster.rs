//! Cluster mode against one Sentinel-mode primary, side by side in one run (issue 20): events
//! per second recorded through `abstore` with dedup, and the servers' CPU seconds per million
//! events, for one primary (Bucketeer layout) and Redis Clusters of 1, 2 and 3 shards (cluster
//! layout, formed by the operator's cluster heal), each with batches of 200 and 2 000 events.
//! Also each shard's share of the events. On a machine with few cores client and servers share
//! them: absolute throughput cannot grow with shards here; what the table shows is the per-event
//! server cost and that nothing is coordinated across shards (each event's keys are on one).
//! Run: `cargo bench -p abstore-tests --bench cluster`. Results: docs/benchmarks.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use abstore::connection::Connection;
use abstore::counters::{Event, Recorder, RecorderConfig};
use abstore_operator::cluster::heal::{ClusterHealTarget, heal_once};
use abstore_operator::cluster::plan::{ClusterTarget, Member};
use abstore_operator::heal::Endpoint;
use abstore_tests::{RedisServer, measure};

const DAY: i64 = 86_400;
const CLUSTER_CONFIG: &str =
    "cluster-enabled yes\ncluster-config-file nodes.conf\ncluster-node-timeout 5000\n";

/// The record benchmark's workload: 20 flags, two variations, 100 000 users, today's 24 hours.
fn events(run: &str, n: u64) -> Vec<Event> {
    let today = chrono::Utc::now().timestamp() / DAY * DAY;
    (0..n)
        .map(|i| {
            Event::evaluation(
                &format!("flag-{}", i % 20),
                if i % 2 == 0 { "control" } else { "treatment" },
                &format!("user-{}", i % 100_000),
                today + (i % 24) as i64 * 3600,
            )
            .with_event_id(format!("{run}-{i}"))
        })
        .collect()
}

/// Forms a cluster of `servers` (one primary each, no replicas) with the operator's heal.
async fn form(servers: &[RedisServer]) {
    let members = servers
        .iter()
        .enumerate()
        .map(|(n, s)| Member {
            shard: u16::try_from(n).unwrap(),
            index: 0,
            endpoint: Endpoint::new(s.host(), s.port()),
            bus_port: None,
        })
        .collect();
    let target = ClusterHealTarget {
        cluster: ClusterTarget {
            shards: u16::try_from(servers.len()).unwrap(),
            members,
        },
        operator_auth: None,
        operator_auth_previous: None,
        tls_ca: None,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let report = heal_once(&target).await;
        if report.settled() {
            let mut ok = true;
            for s in servers {
                let mut con = s.connection().await.unwrap();
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut con)
                    .await
                    .unwrap();
                ok &= info.contains("cluster_state:ok");
            }
            if ok {
                return;
            }
        }
        assert!(Instant::now() < deadline, "cluster not formed: {report:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Row {
    name: String,
    per_second: f64,
    /// Server CPU µs per event, all servers together (= CPU seconds per million events).
    server_us: f64,
    client_us: f64,
    /// Each server's share of the keys written.
    shares: Vec<f64>,
}

async fn run(name: &str, url: &str, servers: &[RedisServer], n: u64, batch: usize) -> Row {
    for s in servers {
        let mut con = s.connection().await.unwrap();
        let () = redis::cmd("FLUSHALL").query_async(&mut con).await.unwrap();
    }
    let conn = Connection::open(url).await.unwrap();
    let recorder = Recorder::new(conn, RecorderConfig::default()).unwrap();
    recorder.load_script().await.unwrap();
    let events = Arc::new(events(name, n));
    let pids: Vec<u32> = servers.iter().map(|s| s.pid().unwrap()).collect();
    let server_cpu = || -> f64 { pids.iter().map(|p| measure::cpu_seconds(*p).unwrap()).sum() };
    let (server_before, own_before) = (server_cpu(), measure::own_cpu_seconds().unwrap());
    let started = Instant::now();
    let tasks = 4;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (recorder, events) = (recorder.clone(), Arc::clone(&events));
        handles.push(tokio::spawn(async move {
            for chunk in events.chunks(batch).skip(t).step_by(tasks) {
                let result = recorder.record_batch(chunk).await.unwrap();
                assert!(result.outcomes.iter().all(Result::is_ok));
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let per_event = |s: f64| s * 1e6 / n as f64;
    let mut keys = Vec::new();
    for s in servers {
        let mut con = s.connection().await.unwrap();
        let size: u64 = redis::cmd("DBSIZE").query_async(&mut con).await.unwrap();
        keys.push(size as f64);
    }
    let total: f64 = keys.iter().sum();
    Row {
        name: format!("{name}, batches of {batch}"),
        per_second: n as f64 / elapsed,
        server_us: per_event(server_cpu() - server_before),
        client_us: per_event(measure::own_cpu_seconds().unwrap() - own_before),
        shares: keys.iter().map(|k| k / total).collect(),
    }
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n = measure::env_u64("ABSTORE_BENCH_EVENTS", 200_000);
    let mut rows = Vec::new();
    let single = vec![RedisServer::start_default().unwrap()];
    for batch in [200, 2000] {
        rows.push(
            run(
                "one primary (Sentinel mode)",
                &single[0].url(),
                &single,
                n,
                batch,
            )
            .await,
        );
    }
    for shards in 1..=3 {
        let servers: Vec<RedisServer> = (0..shards)
            .map(|_| RedisServer::start(CLUSTER_CONFIG).unwrap())
            .collect();
        form(&servers).await;
        let seeds: Vec<String> = servers.iter().map(|s| s.addr()).collect();
        let url = format!("redis+cluster://{}", seeds.join(","));
        for batch in [200, 2000] {
            rows.push(
                run(
                    &format!("cluster, {shards} shard(s)"),
                    &url,
                    &servers,
                    n,
                    batch,
                )
                .await,
            );
        }
    }
    let base = rows[0].server_us;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("{n} events with dedup per row, 4 tasks; {cpus} CPUs shared by client and servers");
    println!(
        "{:<52} {:>11} {:>22} {:>10} {:>10}  keys per server",
        "what", "events/s", "server s / M events", "vs one", "client µs"
    );
    for row in &rows {
        let shares: Vec<String> = row
            .shares
            .iter()
            .map(|s| format!("{:.0}%", s * 100.0))
            .collect();
        println!(
            "{:<52} {:>11.0} {:>22.2} {:>9.2}x {:>10.2}  {}",
            row.name,
            row.per_second,
            row.server_us,
            row.server_us / base,
            row.client_us,
            shares.join(" / ")
        );
    }
}
