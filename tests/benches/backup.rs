//! Backup and restore throughput and peak memory of `abstore-jobs` on one local redis-server,
//! side by side in one run with the ceiling (`redis-cli --pipe` of GET + PTTL for every key; of
//! SET for restore) and a peer (a pipelined redis-py exporter). Run:
//! `cargo build --release -p abstore-jobs && cargo bench -p abstore-tests --bench backup`
//! (`ABSTORE_BENCH_KEYS=5000000` for the 5M run). Results: docs/benchmarks.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use abstore_tests::RedisServer;

const HOUR: u64 = 3600;
const DAY: u64 = 86_400;
/// How often the child's peak RSS (VmHWM) is sampled.
const RSS_POLL: Duration = Duration::from_millis(20);

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

/// A Bucketeer-shaped keyspace: 70 % `ec:` counters, 30 % `uc:` HyperLogLogs, hourly buckets
/// over 31 days ending tomorrow, every key expiring at bucket + 31 days (so none expires during
/// the run), every key distinct. Returns the key names.
fn write_load_file(path: &Path, keys: u64) -> Vec<String> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let start = now_secs() / HOUR * HOUR - 30 * DAY;
    let mut names = Vec::with_capacity(keys as usize);
    for i in 0..keys {
        let bucket = start + (i % (31 * 24)) * HOUR;
        let flag = i / (31 * 24);
        let variation = if i % 2 == 0 { "control" } else { "treatment" };
        let expire_ms = ((bucket + 31 * DAY) * 1000).to_string();
        if i % 10 < 7 {
            let key = format!("ec:{bucket}:flag-{flag}:{variation}");
            let value = (i % 5000).to_string();
            resp(
                &mut out,
                &[
                    b"SET",
                    key.as_bytes(),
                    value.as_bytes(),
                    b"PXAT",
                    expire_ms.as_bytes(),
                ],
            );
            names.push(key);
        } else {
            let key = format!("uc:{bucket}:flag-{flag}:{variation}");
            let users: Vec<String> = (0..8).map(|u| format!("user-{}", i * 8 + u)).collect();
            let mut args: Vec<&[u8]> = vec![b"PFADD", key.as_bytes()];
            args.extend(users.iter().map(|u| u.as_bytes()));
            resp(&mut out, &args);
            resp(
                &mut out,
                &[b"PEXPIREAT", key.as_bytes(), expire_ms.as_bytes()],
            );
            names.push(key);
        }
    }
    out.flush().unwrap();
    names
}

fn write_export_file(path: &Path, names: &[String]) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for key in names {
        resp(&mut out, &[b"GET", key.as_bytes()]);
        resp(&mut out, &[b"PTTL", key.as_bytes()]);
    }
    out.flush().unwrap();
}

/// `redis-cli --pipe < file`: the fastest a client can push these commands and read replies.
fn redis_cli_pipe(server: &RedisServer, file: &Path) -> Duration {
    let started = Instant::now();
    let status = Command::new("redis-cli")
        .args([
            "-h",
            server.host(),
            "-p",
            &server.port().to_string(),
            "--pipe",
        ])
        .stdin(std::fs::File::open(file).unwrap())
        .stdout(Stdio::null())
        .status()
        .expect("redis-cli (package redis-tools) must be installed");
    assert!(status.success(), "redis-cli --pipe failed");
    started.elapsed()
}

fn dbsize(server: &RedisServer) -> u64 {
    let out = Command::new("redis-cli")
        .args([
            "-h",
            server.host(),
            "-p",
            &server.port().to_string(),
            "DBSIZE",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// The `abstore-jobs` binary next to this bench's build (target/<profile>/abstore-jobs).
fn jobs_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let binary = profile_dir.join("abstore-jobs");
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build --release -p abstore-jobs` first",
        binary.display()
    );
    binary
}

/// Runs a command to completion, sampling its peak RSS; returns (elapsed, peak RSS in KiB).
fn run_measured(command: &mut Command) -> (Duration, u64) {
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    loop {
        if let Ok(status) = std::fs::read_to_string(&status_path)
            && let Some(kib) = status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        {
            peak_kib = peak_kib.max(kib);
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(RSS_POLL);
    }
    let elapsed = started.elapsed();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (elapsed, peak_kib)
}

fn rate(keys: u64, elapsed: Duration) -> f64 {
    keys as f64 / elapsed.as_secs_f64()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets` builds benches too; only `cargo bench` runs them.
        return;
    }
    let keys = keys_to_load();
    let work = tempfile::tempdir().unwrap();
    let load_file = work.path().join("load.resp");
    let export_file = work.path().join("export.resp");
    let names = write_load_file(&load_file, keys);
    write_export_file(&export_file, &names);
    drop(names);

    let source = RedisServer::start_default().unwrap();
    let load = redis_cli_pipe(&source, &load_file);
    let loaded = dbsize(&source);
    println!("loaded {loaded} keys in {:.1} s", load.as_secs_f64());

    // Backup: ceiling, peer, abstore-jobs to a directory.
    let ceiling = redis_cli_pipe(&source, &export_file);
    let peer_out = work.path().join("redis-py.jsonl");
    let (peer, peer_rss) = run_measured(Command::new("python3").args([
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/bench/redis_py_export.py"
        ),
        source.host(),
        &source.port().to_string(),
        peer_out.to_str().unwrap(),
    ]));
    let backups = work.path().join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    let destination = format!("file://{}", backups.display());
    let (ours, ours_rss) = run_measured(Command::new(jobs_binary()).args([
        "backup",
        "--redis",
        &source.url(),
        "--to",
        &destination,
    ]));

    // Restore: ceiling (redis-cli --pipe of the load file) and abstore-jobs, into fresh servers.
    let ceiling_target = RedisServer::start_default().unwrap();
    let restore_ceiling = redis_cli_pipe(&ceiling_target, &load_file);
    drop(ceiling_target);
    let target = RedisServer::start_default().unwrap();
    let (restore, restore_rss) = run_measured(Command::new(jobs_binary()).args([
        "restore",
        "--from",
        &destination,
        "--redis",
        &target.url(),
        "--mode",
        "overwrite",
    ]));
    assert_eq!(dbsize(&target), loaded, "restore lost keys");

    let ceiling_rate = rate(loaded, ceiling);
    println!("\nbackup of {loaded} keys (keys/s, ratio to the ceiling, peak RSS)");
    println!(
        "  redis-cli --pipe GET+PTTL (ceiling) {:>10.0}  1.00",
        ceiling_rate
    );
    println!(
        "  redis-py pipelined export (peer)    {:>10.0}  {:.2}  {} MiB",
        rate(loaded, peer),
        rate(loaded, peer) / ceiling_rate,
        peer_rss / 1024
    );
    println!(
        "  abstore-jobs backup to file://      {:>10.0}  {:.2}  {} MiB",
        rate(loaded, ours),
        rate(loaded, ours) / ceiling_rate,
        ours_rss / 1024
    );
    let restore_ceiling_rate = rate(loaded, restore_ceiling);
    println!("restore of {loaded} keys");
    println!(
        "  redis-cli --pipe SET (ceiling)      {:>10.0}  1.00",
        restore_ceiling_rate
    );
    println!(
        "  abstore-jobs restore --mode overwrite {:>8.0}  {:.2}  {} MiB",
        rate(loaded, restore),
        rate(loaded, restore) / restore_ceiling_rate,
        restore_rss / 1024
    );
}
