//! `abstore::batching::BatchingRecorder` against a real redis-server: many single-event callers
//! get their own outcomes, counts stay exact under duplicates, a full queue refuses or holds
//! callers back, shutdown drains, and a short `WAIT` is reported per event.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use abstore::Error;
use abstore::batching::{BatchingConfig, BatchingRecorder};
use abstore::connection::Connection;
use abstore::counters::{Event, Outcome, Recorder, RecorderConfig, WaitForReplicas};
use abstore_tests::RedisServer;
use redis::AsyncCommands;

const HOUR: i64 = 3600;

fn this_hour() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    now / HOUR * HOUR
}

async fn recorder(server: &RedisServer, config: RecorderConfig) -> Recorder {
    Recorder::new(Connection::open(&server.url()).await.unwrap(), config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_single_event_callers_each_get_their_outcome_and_duplicates_count_once() {
    a_thousand_callers(BatchingConfig::default()).await;
}

/// abstore-api's setting: no timer, a batch is what the callers ready together queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_linger_a_thousand_callers_still_share_script_calls() {
    a_thousand_callers(BatchingConfig {
        linger: Duration::ZERO,
        ..BatchingConfig::default()
    })
    .await;
}

/// abstore-api's runtime with `--worker-threads 1`.
#[tokio::test(flavor = "current_thread")]
async fn with_no_linger_on_one_thread_a_thousand_callers_still_share_script_calls() {
    a_thousand_callers(BatchingConfig {
        linger: Duration::ZERO,
        ..BatchingConfig::default()
    })
    .await;
}

async fn a_thousand_callers(config: BatchingConfig) {
    let server = RedisServer::start_default().unwrap();
    let batching = Arc::new(
        BatchingRecorder::new(recorder(&server, RecorderConfig::default()).await, config).unwrap(),
    );
    let hour = this_hour();
    // 1 000 callers; caller c sends event c, then event c again, then event (c + 1) % 1000:
    // every id arrives three times, from two callers, often in the same batch.
    let mut tasks = Vec::new();
    for c in 0..1000usize {
        let batching = Arc::clone(&batching);
        tasks.push(tokio::spawn(async move {
            let event = |i: usize| {
                Event::evaluation("f", ["a", "b"][i % 2], &format!("u{i}"), hour)
                    .with_event_id(format!("id-{i}"))
            };
            let mut counted = 0;
            for i in [c, c, (c + 1) % 1000] {
                match batching.record(event(i)).await.unwrap() {
                    Outcome::Counted => counted += 1,
                    Outcome::Duplicate => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
            counted
        }));
    }
    let mut counted = 0;
    for t in tasks {
        counted += t.await.unwrap();
    }
    assert_eq!(counted, 1000, "exactly one delivery of each event counted");
    let mut raw = server.connection().await.unwrap();
    let a: i64 = raw.get(format!("ec:{hour}:f:a")).await.unwrap();
    let b: i64 = raw.get(format!("ec:{hour}:f:b")).await.unwrap();
    assert_eq!((a, b), (500, 500));
    // The callers' events were gathered: far fewer script calls than events.
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut raw)
        .await
        .unwrap();
    let calls: u64 = info
        .lines()
        .find(|l| l.starts_with("cmdstat_evalsha:"))
        .and_then(|l| l.split("calls=").nth(1))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no evalsha stats: {info}"));
    assert!(
        calls < 3000 / 4,
        "3000 events took {calls} script calls: not batched"
    );
    Arc::into_inner(batching).unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_try_record_and_everything_queued_is_recorded_once_writes_resume() {
    let server = RedisServer::start_default().unwrap();
    let batching = BatchingRecorder::new(
        recorder(&server, RecorderConfig::default()).await,
        BatchingConfig {
            max_batch: 1,
            linger: Duration::ZERO,
            queue: 2,
            max_in_flight: 1,
        },
    )
    .unwrap();
    let hour = this_hour();
    // Writes hang while the server pauses them, so the one batch in flight does not finish and
    // the queue behind it fills.
    let mut raw = server.connection().await.unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(60_000)
        .arg("WRITE")
        .query_async(&mut raw)
        .await
        .unwrap();
    let mut pending = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        let event = Event::evaluation("f", "v", &format!("u{}", pending.len()), hour)
            .with_event_id(format!("q-{}", pending.len()));
        match batching.try_record(event) {
            Ok(outcome) => pending.push(tokio::spawn(outcome)),
            Err(e) => break e,
        }
        assert!(
            Instant::now() < deadline,
            "the queue never filled ({} accepted)",
            pending.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        matches!(refused, Error::Overloaded { queue: 2 }),
        "{refused}"
    );
    assert!(refused.to_string().contains("queue is full"), "{refused}");
    // At most: one in flight, one taken by the gatherer waiting for a slot, two queued.
    assert!((3..=4).contains(&pending.len()), "{}", pending.len());
    let _: () = redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query_async(&mut raw)
        .await
        .unwrap();
    let accepted = pending.len() as i64;
    for p in pending {
        // Duplicate too is "counted once": a resend after a response timeout finds the flag.
        let outcome = p.await.unwrap().unwrap();
        assert!(
            matches!(outcome, Outcome::Counted | Outcome::Duplicate),
            "{outcome:?}"
        );
    }
    let count: i64 = raw.get(format!("ec:{hour}:f:v")).await.unwrap();
    assert_eq!(count, accepted, "every accepted event, and only those");
    batching.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_returns_after_every_queued_event_is_written() {
    let server = RedisServer::start_default().unwrap();
    let batching = BatchingRecorder::new(
        recorder(&server, RecorderConfig::default()).await,
        BatchingConfig {
            linger: Duration::from_millis(200),
            ..BatchingConfig::default()
        },
    )
    .unwrap();
    let hour = this_hour();
    let outcomes: Vec<_> = (0..50)
        .map(|i| {
            batching
                .try_record(Event::evaluation("f", "v", &format!("u{i}"), hour))
                .unwrap()
        })
        .collect();
    batching.shutdown().await;
    let mut raw = server.connection().await.unwrap();
    let count: i64 = raw.get(format!("ec:{hour}:f:v")).await.unwrap();
    assert_eq!(count, 50, "shutdown wrote the lingering batch first");
    for o in outcomes {
        assert_eq!(o.await.unwrap(), Outcome::Counted);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_no_replica_confirmed_is_reported_not_replicated_by_both_recorders() {
    let server = RedisServer::start_default().unwrap();
    let config = RecorderConfig {
        wait_for_replicas: Some(WaitForReplicas {
            replicas: 1,
            timeout: Duration::from_millis(50),
        }),
        ..RecorderConfig::default()
    };
    let hour = this_hour();
    let plain = recorder(&server, config.clone()).await;
    let err = plain
        .record(&Event::evaluation("f", "v", "u1", hour).with_event_id("w-1"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotReplicated {
                requested: 1,
                acknowledged: 0
            }
        ),
        "{err}"
    );
    let batching =
        BatchingRecorder::new(recorder(&server, config).await, BatchingConfig::default()).unwrap();
    let err = batching
        .record(Event::evaluation("f", "v", "u2", hour).with_event_id("w-2"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotReplicated { .. }), "{err}");
    // The events are on the primary; a resend is a harmless duplicate.
    let mut raw = server.connection().await.unwrap();
    let count: i64 = raw.get(format!("ec:{hour}:f:v")).await.unwrap();
    assert_eq!(count, 2);
    batching.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_are_refused_naming_the_field() {
    let server = RedisServer::start_default().unwrap();
    let cases = [
        (
            BatchingConfig {
                max_batch: 0,
                ..BatchingConfig::default()
            },
            "max_batch",
        ),
        (
            BatchingConfig {
                linger: Duration::from_secs(5),
                ..BatchingConfig::default()
            },
            "linger",
        ),
        (
            BatchingConfig {
                queue: 0,
                ..BatchingConfig::default()
            },
            "queue",
        ),
        (
            BatchingConfig {
                max_in_flight: 0,
                ..BatchingConfig::default()
            },
            "max_in_flight",
        ),
    ];
    for (config, field) in cases {
        let err = BatchingRecorder::new(recorder(&server, RecorderConfig::default()).await, config)
            .unwrap_err()
            .to_string();
        assert!(err.contains(field), "{err}");
    }
}
