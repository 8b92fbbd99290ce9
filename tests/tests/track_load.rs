//! The api bench's load generator (`track-load`, tests/src/bin/track-load.rs) as a process
//! against a real `abstore-api` on a real redis-server: what it reports is what the API did,
//! paced and closed loop, and bad flags or an unreachable API fail it with the flag or address
//! named. The bench itself is not run in CI; this keeps its generator honest there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use abstore_tests::api::ApiProcess;
use abstore_tests::{LOOPBACK, RedisServer, free_port};
use serde_json::Value;

fn track_load(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_track-load"))
        .args(args)
        .output()
        .expect("running track-load")
}

fn report(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "track-load failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The API's count of events it recorded as counted, from its `/metrics`.
async fn counted(api: &ApiProcess) -> u64 {
    let text = reqwest::get(format!("{}/metrics", api.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("abstore_api_events_total{outcome=\"counted\"} "))
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_track_load_reports_is_what_the_api_recorded() {
    let redis = RedisServer::start_default().unwrap();
    let api = ApiProcess::start(&redis, &["--rate-limit", "1000000000"]).await;
    let addr = api.base.trim_start_matches("http://").to_owned();

    // Paced: exactly rate x seconds requests, every one answered 200 and counted (each has a
    // fresh uuid, so none is a duplicate).
    let paced = report(&track_load(&[
        "--addr",
        &addr,
        "--connections",
        "8",
        "--seconds",
        "2",
        "--rate",
        "400",
    ]));
    assert_eq!(paced["sent"], 800, "{paced}");
    assert_eq!(paced["answered"], 800, "{paced}");
    assert_eq!(paced["statuses"]["200"], 800, "{paced}");
    // The 800 were spread over the two seconds, not sent at once.
    let seconds = paced["seconds"].as_f64().unwrap();
    assert!((1.9..10.0).contains(&seconds), "{paced}");
    let (p50, p99, max) = (
        paced["p50_us"].as_u64().unwrap(),
        paced["p99_us"].as_u64().unwrap(),
        paced["max_us"].as_u64().unwrap(),
    );
    assert!(0 < p50 && p50 <= p99 && p99 <= max, "{paced}");
    assert_eq!(counted(&api).await, 800);

    // Closed loop: whatever it answered, the API counted; nothing is left on the wire.
    let closed = report(&track_load(&[
        "--addr",
        &addr,
        "--connections",
        "4",
        "--seconds",
        "1",
    ]));
    let answered = closed["answered"].as_u64().unwrap();
    assert!(answered > 0, "{closed}");
    assert_eq!(closed["sent"], closed["answered"], "{closed}");
    assert_eq!(
        closed["statuses"]["200"].as_u64(),
        Some(answered),
        "{closed}"
    );
    assert_eq!(counted(&api).await, 800 + answered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_other_than_200_fails_the_run() {
    let redis = RedisServer::start_default().unwrap();
    // One request per second per client: the rest of a 200/s second are answered 429.
    let api = ApiProcess::start(&redis, &["--rate-limit", "1"]).await;
    let addr = api.base.trim_start_matches("http://").to_owned();
    let output = track_load(&[
        "--addr",
        &addr,
        "--connections",
        "2",
        "--seconds",
        "1",
        "--rate",
        "200",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a run with 429s succeeded");
    assert!(stderr.contains("429"), "{stderr}");
}

#[test]
fn bad_flags_and_an_unreachable_api_fail_naming_them() {
    let unused = format!("{LOOPBACK}:{}", free_port().unwrap());
    for (args, named) in [
        (vec!["--addr", &unused, "--rate", "0"], "--rate"),
        (
            vec!["--addr", &unused, "--connections", "0"],
            "--connections",
        ),
        (vec!["--addr", &unused, "--seconds", "0"], "--seconds"),
        (vec!["--addr", &unused, "--seconds", "1"], unused.as_str()),
        (vec!["--addr", "not-an-address"], "--addr"),
    ] {
        let output = track_load(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
}
