//! Backup and restore throughput and peak memory of `abstore-jobs` on one local redis-server,
//! side by side in one run with the ceilings and a peer:
//! - backup ceiling: the export redis-cli itself can do, `redis-cli --scan` piped into
//!   `redis-cli --pipe` as GET + PTTL for every key; also the replay of GET + PTTL for key names
//!   known in advance (no SCAN: a floor of what reading the values costs the server, which no
//!   exporter can reach since it must discover the keys);
//! - peer: a pipelined redis-py exporter; ours: `abstore-jobs backup` to a directory and to S3
//!   (SeaweedFS on loopback);
//! - restore ceiling: `redis-cli --pipe` of the SET/PFADD load file; ours: `abstore-jobs restore`
//!   from the directory and from S3.
//!
//! Every row also reports the redis-server's CPU time (from /proc), which shows where the time
//! goes: on two cores the client and the server compete. Run:
//! `cargo build --release -p abstore-jobs && cargo bench -p abstore-tests --bench backup`
//! (`ABSTORE_BENCH_KEYS=5000000` for the 5M run). Results: docs/benchmarks.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use abstore_tests::{RedisServer, S3Server, measure};

const HOUR: u64 = 3600;
const DAY: u64 = 86_400;

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
/// Returns the elapsed time and the number of replies redis-cli counted.
fn redis_cli_pipe(server: &RedisServer, file: &Path) -> (Duration, u64) {
    let started = Instant::now();
    let output = Command::new("redis-cli")
        .args([
            "-h",
            server.host(),
            "-p",
            &server.port().to_string(),
            "--pipe",
        ])
        .stdin(std::fs::File::open(file).unwrap())
        .output()
        .expect("redis-cli (package redis-tools) must be installed");
    assert!(output.status.success(), "redis-cli --pipe failed");
    (started.elapsed(), pipe_replies(&output.stdout))
}

/// The "replies: N" redis-cli --pipe prints at the end.
fn pipe_replies(stdout: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(stdout);
    text.rsplit("replies: ")
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no reply count in redis-cli --pipe output: {text}"))
}

/// The export redis-cli can do by itself: `redis-cli --scan` (one key per line) turned into
/// GET + PTTL commands streamed into `redis-cli --pipe`, all three running at once.
fn redis_cli_export(server: &RedisServer) -> (Duration, u64) {
    let port = server.port().to_string();
    let started = Instant::now();
    let mut scan = Command::new("redis-cli")
        .args(["-h", server.host(), "-p", &port, "--scan"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = Command::new("redis-cli")
        .args(["-h", server.host(), "-p", &port, "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let keys = BufReader::new(scan.stdout.take().unwrap());
        let mut commands = BufWriter::new(pipe.stdin.take().unwrap());
        for key in keys.split(b'\n') {
            let key = key.unwrap();
            if !key.is_empty() {
                resp(&mut commands, &[b"GET", &key]);
                resp(&mut commands, &[b"PTTL", &key]);
            }
        }
        commands.flush().unwrap();
    }
    assert!(scan.wait().unwrap().success(), "redis-cli --scan failed");
    let output = pipe.wait_with_output().unwrap();
    assert!(output.status.success(), "redis-cli --pipe failed");
    (started.elapsed(), pipe_replies(&output.stdout))
}

/// Runs `f`, returning its result and the CPU seconds `server` spent meanwhile.
fn with_server_cpu<T>(server: &RedisServer, f: impl FnOnce() -> T) -> (T, f64) {
    let pid = server.pid().unwrap();
    let before = measure::cpu_seconds(pid).unwrap();
    let result = f();
    (result, measure::cpu_seconds(pid).unwrap() - before)
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
    let run = measure::run_measured(command);
    (run.elapsed, run.peak_kib)
}

fn rate(keys: u64, elapsed: Duration) -> f64 {
    keys as f64 / elapsed.as_secs_f64()
}

/// Turns the peer's export (JSON lines of base64 key, base64 value, PTTL) into `SET key value
/// PXAT at` commands; returns how many.
fn write_restore_file(export: &Path, path: &Path) -> u64 {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    let now_ms = now_secs() * 1000;
    let mut out = BufWriter::new(std::fs::File::create(path).unwrap());
    let mut count = 0;
    for line in BufReader::new(std::fs::File::open(export).unwrap()).lines() {
        let record: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        let key = engine.decode(record["k"].as_str().unwrap()).unwrap();
        let value = engine.decode(record["v"].as_str().unwrap()).unwrap();
        let pttl = record["pttl"].as_i64().unwrap();
        assert!(pttl > 0, "bench keys all expire in the future");
        let at = (now_ms + pttl as u64).to_string();
        resp(&mut out, &[b"SET", &key, &value, b"PXAT", at.as_bytes()]);
        count += 1;
    }
    out.flush().unwrap();
    count
}

/// One row of the results.
struct Row {
    label: &'static str,
    elapsed: Duration,
    rss_kib: Option<u64>,
    server_cpu: f64,
}

fn print_rows(title: &str, keys: u64, ceiling: &Row, rows: &[Row]) {
    println!("\n{title} of {keys} keys");
    println!(
        "  {:<44} {:>10} {:>9} {:>9} {:>12}",
        "", "keys/s", "ratio", "peak RSS", "server CPU"
    );
    let ceiling_rate = rate(keys, ceiling.elapsed);
    for row in std::iter::once(ceiling).chain(rows) {
        let rss = row
            .rss_kib
            .map_or_else(|| "-".to_owned(), |kib| format!("{} MiB", kib / 1024));
        println!(
            "  {:<44} {:>10.0} {:>9.2} {:>9} {:>10.2} s",
            row.label,
            rate(keys, row.elapsed),
            rate(keys, row.elapsed) / ceiling_rate,
            rss,
            row.server_cpu
        );
    }
}

/// Environment for an `abstore-jobs` child using `s3`, isolated from any real AWS setup.
fn s3_command(binary: &Path, s3: &S3Server, scratch: &Path) -> Command {
    let mut command = Command::new(binary);
    command
        .envs(s3.env())
        .env("AWS_CONFIG_FILE", scratch.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            scratch.join("no-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE");
    command
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
    let (load, _) = redis_cli_pipe(&source, &load_file);
    let loaded = dbsize(&source);
    assert_eq!(loaded, keys, "the load file did not load every key");
    println!("loaded {loaded} keys in {:.1} s", load.as_secs_f64());

    let s3 = S3Server::start().expect("start SeaweedFS (scripts/install-test-deps.sh)");
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(s3.create_bucket("bench"))
        .unwrap();
    let jobs = jobs_binary();

    // Backup: the ceilings, the peer, and abstore-jobs to a directory and to S3.
    let ((export, replies), export_cpu) = with_server_cpu(&source, || redis_cli_export(&source));
    assert_eq!(replies, 2 * loaded, "redis-cli export missed keys");
    let ((replay, replies), replay_cpu) =
        with_server_cpu(&source, || redis_cli_pipe(&source, &export_file));
    assert_eq!(replies, 2 * loaded, "GET+PTTL replay missed keys");
    let peer_out = work.path().join("redis-py.jsonl");
    let ((peer, peer_rss), peer_cpu) = with_server_cpu(&source, || {
        run_measured(Command::new("python3").args([
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../scripts/bench/redis_py_export.py"
            ),
            source.host(),
            &source.port().to_string(),
            peer_out.to_str().unwrap(),
        ]))
    });
    let backups = work.path().join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    let destination = format!("file://{}", backups.display());
    let ((ours, ours_rss), ours_cpu) = with_server_cpu(&source, || {
        run_measured(Command::new(&jobs).args([
            "backup",
            "--redis",
            &source.url(),
            "--to",
            &destination,
        ]))
    });
    let s3_destination = "s3://bench/backups";
    let ((ours_s3, ours_s3_rss), ours_s3_cpu) = with_server_cpu(&source, || {
        run_measured(s3_command(&jobs, &s3, work.path()).args([
            "backup",
            "--redis",
            &source.url(),
            "--to",
            s3_destination,
        ]))
    });

    // Restore: the ceiling (redis-cli --pipe of SET key value PXAT, the very commands restore
    // sends, made from the peer's export) and abstore-jobs, into fresh servers, from the
    // directory and from S3.
    let restore_file = work.path().join("restore.resp");
    assert_eq!(write_restore_file(&peer_out, &restore_file), loaded);
    let ceiling_target = RedisServer::start_default().unwrap();
    let ((restore_ceiling, replies), restore_ceiling_cpu) =
        with_server_cpu(&ceiling_target, || {
            redis_cli_pipe(&ceiling_target, &restore_file)
        });
    assert_eq!(replies, loaded);
    assert_eq!(dbsize(&ceiling_target), loaded, "the SET replay lost keys");
    drop(ceiling_target);
    let restore_args = |from: &str, url: &str| {
        [
            "restore",
            "--from",
            from,
            "--redis",
            url,
            "--mode",
            "overwrite",
        ]
        .map(str::to_owned)
    };
    let target = RedisServer::start_default().unwrap();
    let ((restore, restore_rss), restore_cpu) = with_server_cpu(&target, || {
        run_measured(Command::new(&jobs).args(restore_args(&destination, &target.url())))
    });
    assert_eq!(dbsize(&target), loaded, "restore lost keys");
    drop(target);
    let target = RedisServer::start_default().unwrap();
    let ((restore_s3, restore_s3_rss), restore_s3_cpu) = with_server_cpu(&target, || {
        run_measured(
            s3_command(&jobs, &s3, work.path()).args(restore_args(s3_destination, &target.url())),
        )
    });
    assert_eq!(dbsize(&target), loaded, "restore from S3 lost keys");

    let ceiling = Row {
        label: "redis-cli --scan | --pipe GET+PTTL (ceiling)",
        elapsed: export,
        rss_kib: None,
        server_cpu: export_cpu,
    };
    print_rows(
        "backup",
        loaded,
        &ceiling,
        &[
            Row {
                label: "redis-cli --pipe GET+PTTL, names known",
                elapsed: replay,
                rss_kib: None,
                server_cpu: replay_cpu,
            },
            Row {
                label: "redis-py pipelined export (peer)",
                elapsed: peer,
                rss_kib: Some(peer_rss),
                server_cpu: peer_cpu,
            },
            Row {
                label: "abstore-jobs backup to file://",
                elapsed: ours,
                rss_kib: Some(ours_rss),
                server_cpu: ours_cpu,
            },
            Row {
                label: "abstore-jobs backup to s3:// (SeaweedFS)",
                elapsed: ours_s3,
                rss_kib: Some(ours_s3_rss),
                server_cpu: ours_s3_cpu,
            },
        ],
    );
    print_rows(
        "restore",
        loaded,
        &Row {
            label: "redis-cli --pipe SET PXAT (ceiling)",
            elapsed: restore_ceiling,
            rss_kib: None,
            server_cpu: restore_ceiling_cpu,
        },
        &[
            Row {
                label: "abstore-jobs restore from file://",
                elapsed: restore,
                rss_kib: Some(restore_rss),
                server_cpu: restore_cpu,
            },
            Row {
                label: "abstore-jobs restore from s3://",
                elapsed: restore_s3,
                rss_kib: Some(restore_s3_rss),
                server_cpu: restore_s3_cpu,
            },
        ],
    );
}
