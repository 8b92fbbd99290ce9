//! The `abstore` data model against a real redis-server: counters, expiry, dedup (also under
//! concurrent duplicates), batches, reads, conversion and sticky assignment.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use abstore::assignment::WeightedVariation;
use abstore::connection::Connection;
use abstore::counters::{Event, Outcome, Recorder, RecorderConfig};
use abstore::keys::{Env, Granularity};
use abstore::reads::{Metric, Reader, VariationStats};
use abstore::sticky::StickyAssigner;
use abstore_tests::RedisServer;
use redis::AsyncCommands;

const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Start of today (UTC), so every bucket the tests write is inside retention.
fn today() -> i64 {
    now() / DAY * DAY
}

async fn setup() -> (RedisServer, Recorder, redis::aio::MultiplexedConnection) {
    let server = RedisServer::start_default().unwrap();
    let conn = Connection::open(&server.url()).await.unwrap();
    let recorder = Recorder::new(conn, RecorderConfig::default()).unwrap();
    let raw = server.connection().await.unwrap();
    (server, recorder, raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evaluation_moves_the_hourly_count_and_unique_users_and_sets_expiry_from_the_bucket() {
    let (_server, recorder, mut raw) = setup().await;
    let at = today() + 5 * HOUR + 17 * 60;
    let hour = today() + 5 * HOUR;
    for user in ["u1", "u2", "u1"] {
        let outcome = recorder
            .record(&Event::evaluation("checkout", "blue", user, at))
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Counted);
    }
    let count: i64 = raw.get(format!("ec:{hour}:checkout:blue")).await.unwrap();
    assert_eq!(
        count, 3,
        "three evaluations without event ids are three counts"
    );
    let users: i64 = raw
        .pfcount(format!("uc:{hour}:checkout:blue"))
        .await
        .unwrap();
    assert_eq!(users, 2, "u1 twice is one unique user");
    // Expiry is bucket start + 31 days, on both keys, so the data ages out without prune.
    for key in [
        format!("ec:{hour}:checkout:blue"),
        format!("uc:{hour}:checkout:blue"),
    ] {
        let expire_at: i64 = redis::cmd("EXPIRETIME")
            .arg(&key)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert_eq!(expire_at, hour + 31 * DAY, "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_is_set_once_and_never_extended_by_later_writes() {
    let (_server, recorder, mut raw) = setup().await;
    let hour = today();
    let key = format!("ec:{hour}:f:v");
    // An operator shortened this key's life by hand; later writes must not extend it (NX).
    recorder
        .record(&Event::evaluation("f", "v", "u", hour))
        .await
        .unwrap();
    let short = now() + 1000;
    let _: () = redis::cmd("EXPIREAT")
        .arg(&key)
        .arg(short)
        .query_async(&mut raw)
        .await
        .unwrap();
    recorder
        .record(&Event::evaluation("f", "v", "u2", hour))
        .await
        .unwrap();
    let expire_at: i64 = redis::cmd("EXPIRETIME")
        .arg(&key)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(expire_at, short);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goal_events_write_goal_keys_with_env_prefix_and_daily_buckets() {
    let server = RedisServer::start_default().unwrap();
    let conn = Connection::open(&server.url()).await.unwrap();
    let env = Env::new("prod").unwrap();
    let recorder = Recorder::new(
        conn,
        RecorderConfig {
            env: Some(env),
            granularity: Granularity::Day,
            ..RecorderConfig::default()
        },
    )
    .unwrap();
    let day = today();
    recorder
        .record(&Event::goal(
            "checkout",
            "purchase",
            "blue",
            "u1",
            day + 7 * HOUR,
        ))
        .await
        .unwrap();
    let mut raw = server.connection().await.unwrap();
    let count: i64 = raw
        .get(format!("prod:gc:{day}:checkout:purchase:blue"))
        .await
        .unwrap();
    assert_eq!(count, 1);
    let users: i64 = raw
        .pfcount(format!("prod:gu:{day}:checkout:purchase:blue"))
        .await
        .unwrap();
    assert_eq!(users, 1);
    let keys: Vec<String> = raw.keys("*").await.unwrap();
    assert_eq!(keys.len(), 2, "no other keys written: {keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_id_counts_once() {
    let (_server, recorder, mut raw) = setup().await;
    let at = today() + HOUR;
    let event =
        Event::evaluation("f", "v", "u", at).with_event_id("6f1c7a1e-0000-4000-8000-000000000001");
    assert_eq!(recorder.record(&event).await.unwrap(), Outcome::Counted);
    assert_eq!(recorder.record(&event).await.unwrap(), Outcome::Duplicate);
    let count: i64 = raw.get(format!("ec:{}:f:v", today() + HOUR)).await.unwrap();
    assert_eq!(count, 1);
    // The dedup flag is the schema's dd: key and carries the configured lifetime.
    let flags: Vec<String> = raw.keys("dd:*").await.unwrap();
    assert_eq!(flags.len(), 1);
    let ttl: i64 = raw.ttl(&flags[0]).await.unwrap();
    assert!(ttl > 23 * 3600 && ttl <= 24 * 3600, "ttl {ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_from_many_clients_count_each_event_exactly_once() {
    let server = RedisServer::start_default().unwrap();
    let at = today() + 2 * HOUR;
    let events: Vec<Event> = (0..200)
        .map(|i| {
            Event::evaluation(
                "f",
                if i % 2 == 0 { "a" } else { "b" },
                &format!("user-{i}"),
                at,
            )
            .with_event_id(format!("event-{i}"))
        })
        .collect();
    // 8 independent connections each deliver every event twice, concurrently.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let conn = Connection::open(&server.url()).await.unwrap();
        let recorder = Recorder::new(conn, RecorderConfig::default()).unwrap();
        let events = events.clone();
        tasks.push(tokio::spawn(async move {
            let mut counted = 0;
            for chunk in events.chunks(25) {
                let mut doubled = chunk.to_vec();
                doubled.extend_from_slice(chunk);
                let result = recorder.record_batch(&doubled).await.unwrap();
                for o in result.outcomes {
                    if o.unwrap() == Outcome::Counted {
                        counted += 1;
                    }
                }
            }
            counted
        }));
    }
    let mut counted = 0;
    for t in tasks {
        counted += t.await.unwrap();
    }
    assert_eq!(
        counted, 200,
        "exactly one delivery of each event is reported as counted"
    );
    let mut raw = server.connection().await.unwrap();
    let a: i64 = raw
        .get(format!("ec:{}:f:a", today() + 2 * HOUR))
        .await
        .unwrap();
    let b: i64 = raw
        .get(format!("ec:{}:f:b", today() + 2 * HOUR))
        .await
        .unwrap();
    assert_eq!((a, b), (100, 100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_reports_each_event_and_bad_events_do_not_sink_the_batch() {
    let (_server, recorder, mut raw) = setup().await;
    let at = today() + 3 * HOUR;
    let long_ago = today() - 40 * DAY;
    let events = vec![
        Event::evaluation("f", "v", "u1", at).with_event_id("e1"),
        Event::evaluation("f", "v", "u1", at).with_event_id("e1"),
        Event::evaluation("bad:flag", "v", "u1", at),
        Event::evaluation("f", "v", "u2", long_ago),
        Event::evaluation("f", "v", "u3", at),
    ];
    let result = recorder.record_batch(&events).await.unwrap();
    let outcomes: Vec<String> = result
        .outcomes
        .iter()
        .map(|o| match o {
            Ok(o) => format!("{o:?}"),
            Err(e) => format!("error: {e}"),
        })
        .collect();
    assert_eq!(outcomes[0], "Counted");
    assert_eq!(outcomes[1], "Duplicate");
    assert!(
        outcomes[2].starts_with("error") && outcomes[2].contains("bad:flag"),
        "the error names the offending value: {}",
        outcomes[2]
    );
    assert_eq!(outcomes[3], "Expired", "past retention: nothing written");
    assert_eq!(outcomes[4], "Counted");
    let count: i64 = raw
        .get(format!("ec:{}:f:v", today() + 3 * HOUR))
        .await
        .unwrap();
    assert_eq!(count, 2);
    let old: Vec<String> = raw.keys(format!("*{}*", long_ago)).await.unwrap();
    assert!(old.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_recovers_when_the_server_forgets_the_script() {
    let (_server, recorder, mut raw) = setup().await;
    let at = today();
    recorder
        .record(&Event::evaluation("f", "v", "u1", at))
        .await
        .unwrap();
    // A failover to a replica (or SCRIPT FLUSH) empties the script cache: NOSCRIPT is not applied
    // and must be resent after loading, without counting anything twice.
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut raw)
        .await
        .unwrap();
    let result = recorder
        .record_batch(&[
            Event::evaluation("f", "v", "u2", at),
            Event::evaluation("f", "v", "u3", at),
        ])
        .await
        .unwrap();
    assert!(
        result
            .outcomes
            .iter()
            .all(|o| matches!(o, Ok(Outcome::Counted)))
    );
    let count: i64 = raw.get(format!("ec:{at}:f:v")).await.unwrap();
    assert_eq!(count, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_give_hour_day_and_a_daily_series_with_union_of_users_over_the_range() {
    let (server, recorder, mut raw) = setup().await;
    let d0 = today() - 2 * DAY;
    // Day 0: blue 3 evaluations by u1,u2; red 1 by u3.  Day 1: blue 2 by u1 (again), u4.
    // Day 2: no evaluations, one goal.
    let events = vec![
        Event::evaluation("f", "blue", "u1", d0 + HOUR),
        Event::evaluation("f", "blue", "u2", d0 + HOUR + 5),
        Event::evaluation("f", "blue", "u2", d0 + 5 * HOUR),
        Event::evaluation("f", "red", "u3", d0 + 23 * HOUR + 3599),
        Event::evaluation("f", "blue", "u1", d0 + DAY),
        Event::evaluation("f", "blue", "u4", d0 + DAY + 12 * HOUR),
        Event::goal("f", "buy", "blue", "u1", d0 + DAY + 13 * HOUR),
        Event::goal("f", "buy", "blue", "u1", d0 + DAY + 14 * HOUR),
        Event::goal("f", "buy", "red", "u3", d0 + 2 * DAY),
    ];
    let result = recorder.record_batch(&events).await.unwrap();
    assert!(result.outcomes.iter().all(|o| o.is_ok()));

    let conn = Connection::open(&server.url()).await.unwrap();
    let reader = Reader::new(conn, None, Granularity::Hour);
    let hour = reader
        .hour(&Metric::Evaluations, "f", &["blue", "red"], d0 + HOUR + 100)
        .await
        .unwrap();
    assert_eq!(hour.start, d0 + HOUR);
    assert_eq!(
        hour.variations["blue"],
        VariationStats { count: 2, users: 2 }
    );
    assert_eq!(
        hour.variations["red"],
        VariationStats { count: 0, users: 0 }
    );

    let day = reader
        .day(&Metric::Evaluations, "f", &["blue", "red"], d0 + 10)
        .await
        .unwrap();
    assert_eq!(
        day.variations["blue"],
        VariationStats { count: 3, users: 2 }
    );
    assert_eq!(day.variations["red"], VariationStats { count: 1, users: 1 });

    let series = reader
        .days(
            &Metric::Evaluations,
            "f",
            &["blue", "red"],
            d0,
            d0 + 2 * DAY,
        )
        .await
        .unwrap();
    let starts: Vec<i64> = series.points.iter().map(|p| p.start).collect();
    assert_eq!(starts, vec![d0, d0 + DAY, d0 + 2 * DAY]);
    assert_eq!(
        series.points[1].variations["blue"],
        VariationStats { count: 2, users: 2 }
    );
    assert_eq!(
        series.points[2].variations["blue"],
        VariationStats::default()
    );
    // u1 on both days counts once: users are the union, counts the sum.
    assert_eq!(series.total["blue"], VariationStats { count: 5, users: 3 });
    assert_eq!(series.total["red"], VariationStats { count: 1, users: 1 });

    let conversion = reader
        .conversion("f", "buy", &["blue", "red"], d0, d0 + 2 * DAY)
        .await
        .unwrap();
    assert_eq!(conversion["blue"].goal_count, 2);
    assert_eq!(conversion["blue"].goal_users, 1);
    assert_eq!(conversion["blue"].evaluation_users, 3);
    assert!((conversion["blue"].rate.unwrap() - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(conversion["red"].rate, Some(1.0));

    // The range merge used temporary keys; none may be left behind.
    let temps: Vec<String> = raw.keys("tmp:*").await.unwrap();
    assert!(temps.is_empty(), "{temps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_holding_garbage_is_reported_with_its_key() {
    let (server, _recorder, mut raw) = setup().await;
    let hour = today();
    let key = format!("ec:{hour}:f:v");
    let _: () = raw.set(&key, "not-a-number").await.unwrap();
    let reader = Reader::new(
        Connection::open(&server.url()).await.unwrap(),
        None,
        Granularity::Hour,
    );
    let err = reader
        .hour(&Metric::Evaluations, "f", &["v"], hour)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&key) && err.contains("not-a-number"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_assignment_keeps_the_first_variation_until_it_is_withdrawn() {
    let server = RedisServer::start_default().unwrap();
    let conn = Connection::open(&server.url()).await.unwrap();
    let sticky = StickyAssigner::new(conn, None, Duration::from_secs(3600)).unwrap();
    let v = |id: &str, weight| WeightedVariation {
        id: id.into(),
        weight,
    };
    let first = sticky
        .assign("f", "user-1", &[v("a", 50), v("b", 50)])
        .await
        .unwrap();
    assert!(!first.existing);
    // Weights change so that the deterministic choice would differ; the user keeps theirs.
    let other = if first.variation == "a" { "b" } else { "a" };
    let later = sticky
        .assign(
            "f",
            "user-1",
            &[v(&first.variation, 1), v(other, 1_000_000)],
        )
        .await
        .unwrap();
    assert_eq!(later.variation, first.variation);
    assert!(later.existing);
    // Their variation is withdrawn: they move, and the move is stored.
    let moved = sticky
        .assign("f", "user-1", &[v(&first.variation, 0), v(other, 1)])
        .await
        .unwrap();
    assert_eq!(moved.variation, other);
    let mut raw = server.connection().await.unwrap();
    let stored: String = raw.get("as:f:user-1").await.unwrap();
    assert_eq!(stored, other);
    let ttl: i64 = raw.ttl("as:f:user-1").await.unwrap();
    assert!(ttl > 3500 && ttl <= 3600, "ttl {ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assignment_is_the_same_in_another_process() {
    // The Python reference computes the same slot from SHA-256; see abstore::assignment tests.
    // Here: two independent connections/assigners agree for many users (no per-process state).
    let server = RedisServer::start_default().unwrap();
    let variations = vec![
        WeightedVariation {
            id: "a".into(),
            weight: 10,
        },
        WeightedVariation {
            id: "b".into(),
            weight: 90,
        },
    ];
    let s1 = StickyAssigner::new(
        Connection::open(&server.url()).await.unwrap(),
        Some(Env::new("e1").unwrap()),
        Duration::from_secs(60),
    )
    .unwrap();
    let s2 = StickyAssigner::new(
        Connection::open(&server.url()).await.unwrap(),
        Some(Env::new("e2").unwrap()),
        Duration::from_secs(60),
    )
    .unwrap();
    let mut seen = BTreeMap::new();
    for i in 0..200 {
        let user = format!("user-{i}");
        let a = s1.assign("f", &user, &variations).await.unwrap().variation;
        let b = s2.assign("f", &user, &variations).await.unwrap().variation;
        assert_eq!(a, b, "{user}");
        *seen.entry(a).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "both variations are used: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_holding_another_type_refuses_only_its_events_and_a_retry_counts_them() {
    let (_server, recorder, mut raw) = setup().await;
    let hour = today() + 4 * HOUR;
    let broken = format!("ec:{hour}:f:broken");
    let _: () = raw.sadd(&broken, "not-a-counter").await.unwrap();
    let events = vec![
        Event::evaluation("f", "ok", "u1", hour).with_event_id("ok-1"),
        Event::evaluation("f", "broken", "u1", hour).with_event_id("broken-1"),
        Event::evaluation("f", "broken", "u2", hour).with_event_id("broken-2"),
        Event::evaluation("f", "ok", "u2", hour).with_event_id("ok-2"),
    ];
    let result = recorder.record_batch(&events).await.unwrap();
    assert!(matches!(result.outcomes[0], Ok(Outcome::Counted)));
    assert!(matches!(result.outcomes[3], Ok(Outcome::Counted)));
    for o in &result.outcomes[1..3] {
        let err = o.as_ref().unwrap_err().to_string();
        assert!(
            err.contains(&broken) && err.contains("WRONGTYPE"),
            "the error names the key and the server's reason: {err}"
        );
    }
    let ok: i64 = raw.get(format!("ec:{hour}:f:ok")).await.unwrap();
    assert_eq!(ok, 2, "the other counter of the same call was written");
    // Nothing of the refused events stayed: no flags, no users.
    let users: i64 = raw.exists(format!("uc:{hour}:f:broken")).await.unwrap();
    assert_eq!(users, 0);
    let flags: Vec<String> = raw.keys("dd:*").await.unwrap();
    assert_eq!(
        flags.len(),
        2,
        "only the counted events keep a flag: {flags:?}"
    );
    // Once the key is repaired, resending the refused events counts them (not Duplicate).
    let _: () = raw.del(&broken).await.unwrap();
    let retry = recorder.record_batch(&events[1..3]).await.unwrap();
    assert!(
        retry
            .outcomes
            .iter()
            .all(|o| matches!(o, Ok(Outcome::Counted))),
        "{retry:?}"
    );
    let count: i64 = raw.get(&broken).await.unwrap();
    assert_eq!(count, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_unique_users_key_undoes_the_count_it_was_written_with() {
    let (_server, recorder, mut raw) = setup().await;
    let hour = today() + 6 * HOUR;
    let _: () = raw.set(format!("ec:{hour}:f:v"), 10).await.unwrap();
    let _: () = raw.set(format!("uc:{hour}:f:v"), "garbage").await.unwrap();
    let result = recorder
        .record_batch(&[
            Event::evaluation("f", "v", "u1", hour).with_event_id("e1"),
            Event::evaluation("f", "v", "u2", hour),
        ])
        .await
        .unwrap();
    for o in &result.outcomes {
        let err = o.as_ref().unwrap_err().to_string();
        assert!(err.contains(&format!("uc:{hour}:f:v")), "{err}");
    }
    let count: i64 = raw.get(format!("ec:{hour}:f:v")).await.unwrap();
    assert_eq!(count, 10, "the INCRBY was undone");
    let flags: Vec<String> = raw.keys("dd:*").await.unwrap();
    assert!(flags.is_empty(), "the flag was removed: {flags:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_batch_with_duplicates_inside_and_across_calls_counts_each_event_once() {
    let (_server, recorder, mut raw) = setup().await;
    let base = today();
    // 1 500 events over six calls of the script, each id twice: once early, once late in the
    // batch, so most duplicates land in another script call than their first delivery.
    let unique: Vec<Event> = (0..750)
        .map(|i| {
            Event::evaluation(
                &format!("f{}", i % 3),
                ["a", "b"][i % 2],
                &format!("user-{}", i % 97),
                base + (i as i64 % 5) * HOUR,
            )
            .with_event_id(format!("big-{i}"))
        })
        .collect();
    let mut batch = unique.clone();
    batch.extend(unique.iter().rev().cloned());
    let result = recorder.record_batch(&batch).await.unwrap();
    let counted = result
        .outcomes
        .iter()
        .filter(|o| matches!(o, Ok(Outcome::Counted)))
        .count();
    let duplicates = result
        .outcomes
        .iter()
        .filter(|o| matches!(o, Ok(Outcome::Duplicate)))
        .count();
    assert_eq!((counted, duplicates), (750, 750));
    // Each counter holds exactly its events, and every key expires with its bucket.
    let mut expected: BTreeMap<String, (i64, std::collections::BTreeSet<String>)> = BTreeMap::new();
    for e in &unique {
        let key = format!("{}:{}:{}", e.timestamp / HOUR * HOUR, e.flag, e.variation);
        let entry = expected.entry(key).or_default();
        entry.0 += 1;
        entry.1.insert(e.user.clone());
    }
    for (key, (count, users)) in &expected {
        let got: i64 = raw.get(format!("ec:{key}")).await.unwrap();
        assert_eq!(got, *count, "ec:{key}");
        let got_users: i64 = raw.pfcount(format!("uc:{key}")).await.unwrap();
        assert!(
            (got_users - users.len() as i64).abs() <= 1,
            "uc:{key}: {got_users} vs {}",
            users.len()
        );
        let bucket: i64 = key.split(':').next().unwrap().parse().unwrap();
        for kind in ["ec", "uc"] {
            let at: i64 = redis::cmd("EXPIRETIME")
                .arg(format!("{kind}:{key}"))
                .query_async(&mut raw)
                .await
                .unwrap();
            assert_eq!(at, bucket + 31 * DAY, "{kind}:{key}");
        }
    }
}
