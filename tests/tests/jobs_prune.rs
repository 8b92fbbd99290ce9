//! `abstore-jobs prune` against real redis-server processes: exactly the expired counters go
//! (hourly and daily stamps, env prefixes, buckets either side of the cutoff) while malformed,
//! foreign and bucket-less keys stay, also with writes during the pass; random keyspaces and
//! cutoffs (property test); dry run; the prune user of the operator-rendered ACL; Sentinel with a
//! failover mid-pass; and the command line's summary line and exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use abstore_jobs::JobError;
use abstore_jobs::prune::{self, PruneOptions, PruneSummary, SUMMARY_DAYS};
use abstore_operator::credentials::Role;
use abstore_tests::keyspace::{assert_same_keyspace, snapshot};
use abstore_tests::{
    LOOPBACK, RedisServer, Rendered, Topology, TopologyOptions, free_port, wait_for_failover,
    wait_for_replication_offset,
};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use redis::aio::MultiplexedConnection;

const HOUR: i64 = 3600;
const DAY: i64 = 86_400;
/// The "now" of the exact tests; with 31 days of retention the cutoff is 2024-02-13T12:00:00Z.
const NOW: &str = "2024-03-15T12:00:00Z";
const RETENTION_DAYS: u32 = 31;
/// Kubernetes cuts termination messages at 4 KiB; the operator reads lastPrune from there.
const TERMINATION_MESSAGE_MAX: usize = 4096;
const POLL: Duration = Duration::from_millis(10);

fn now() -> DateTime<Utc> {
    prune::parse_now(NOW).unwrap()
}

fn cutoff() -> i64 {
    now().timestamp() - i64::from(RETENTION_DAYS) * DAY
}

fn options(url: &str) -> PruneOptions {
    PruneOptions {
        now: Some(now()),
        retention_days: RETENTION_DAYS,
        ..PruneOptions::new(url)
    }
}

fn day_of(secs: i64) -> String {
    DateTime::from_timestamp(secs, 0)
        .unwrap()
        .date_naive()
        .to_string()
}

async fn all_keys(conn: &mut MultiplexedConnection) -> BTreeSet<Vec<u8>> {
    let mut keys = BTreeSet::new();
    let mut iter: redis::AsyncIter<Vec<u8>> = redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("COUNT")
        .arg(500)
        .clone()
        .iter_async(conn)
        .await
        .unwrap();
    while let Some(key) = iter.next().await {
        keys.insert(key.unwrap());
    }
    keys
}

/// Writes every key: unique-user counters as HyperLogLogs, experiments as hashes, the rest as
/// strings (prune decides by name, but it should meet the types the writers use).
async fn write_keys(conn: &mut MultiplexedConnection, keys: &[Vec<u8>]) {
    for chunk in keys.chunks(2000) {
        let mut pipe = redis::pipe();
        for key in chunk {
            let unique_users = [&b"uc:"[..], b"gu:", b":uc:", b":gu:"];
            if unique_users
                .iter()
                .any(|tag| key.windows(tag.len()).any(|w| w == *tag))
            {
                pipe.cmd("PFADD").arg(key).arg("user-1").ignore();
            } else if key.starts_with(b"exp:") {
                pipe.cmd("HSET").arg(key).arg("name").arg("x").ignore();
            } else {
                pipe.cmd("SET").arg(key).arg(1).ignore();
            }
        }
        pipe.query_async::<()>(conn).await.unwrap();
    }
}

/// The hand-picked keyspace of the exact test: (expired, everything else).
fn edge_keyspace() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let cut = cutoff();
    let cut_day = cut - cut.rem_euclid(DAY);
    let before = cut - HOUR;
    let expired: Vec<String> = vec![
        // Hourly buckets: the last hour before the cutoff, every kind, with and without env.
        format!("ec:{before}:checkout:v1"),
        format!("uc:{before}:checkout:v1"),
        format!("gc:{before}:checkout:buy:v1"),
        format!("gu:{before}:checkout:buy:v1"),
        format!("prod:ec:{before}:checkout:default"),
        format!("staging-eu.1:gu:{before}:checkout:buy:v2"),
        // Daily buckets: the day the cutoff falls in starts before it.
        format!("ec:{cut_day}:checkout:v1"),
        format!("prod:uc:{cut_day}:checkout:v1"),
        // Very old, and the first valid bucket of all.
        format!(
            "gc:{}:checkout:buy:v1",
            cut - 400 * DAY - cut.rem_euclid(HOUR)
        ),
        "ec:0:f:v".to_owned(),
    ];
    let mut kept: Vec<Vec<u8>> = [
        // At the cutoff, just after it, the next day, now, and the last valid bucket.
        format!("ec:{cut}:checkout:v1"),
        format!("uc:{}:checkout:v1", cut + HOUR),
        format!("prod:gc:{cut}:checkout:buy:v1"),
        format!("ec:{}:checkout:v1", cut_day + DAY),
        format!("gu:{}:checkout:buy:v1", now().timestamp()),
        "ec:253402297200:f:v".to_owned(),
        // Valid keys without a bucket.
        "dd:397cd045cdc3965268d3fa191e072f17360c2f35".to_owned(),
        "prod:dd:397cd045cdc3965268d3fa191e072f17360c2f35".to_owned(),
        "as:checkout:user:with:colons".to_owned(),
        "exp:checkout".to_owned(),
        "tmp:merge-1".to_owned(),
        // Malformed or foreign, many of them with old-looking stamps.
        "ec:notanumber:f:v".to_owned(),
        format!("session:ec:{before}"),
        format!("session:ec:{before}:token"),
        format!("ec:{before}:f"),
        format!("ec:{before}:f:v:extra"),
        format!("ec:0{before}:f:v"),
        format!("ec:{}:f:v", before + 1),
        format!("ec:-{before}:f:v"),
        format!("EC:{before}:f:v"),
        format!("bad env:ec:{before}:f:v"),
        "ec:99999999999999999999:f:v".to_owned(),
        "ec:253402300800:f:v".to_owned(),
        "user:42".to_owned(),
        "segments".to_owned(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect();
    kept.push(format!("ec:{before}:f:v\u{0}").into_bytes());
    kept.push(b"ec:\xff\xfe:f:v".to_vec());
    kept.push(b"\x00\xff\x01".to_vec());
    (expired.into_iter().map(String::into_bytes).collect(), kept)
}

/// Bulk counters so the pass spans many SCAN pages: `days` days of hourly `ec` keys before the
/// cutoff and as many after it.
fn bulk_keyspace(days: i64, flags: usize) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let cut = cutoff();
    let first = cut - days * DAY;
    let mut expired = Vec::new();
    let mut kept = Vec::new();
    for hour in 0..(2 * days * 24) {
        let bucket = first + hour * HOUR;
        for flag in 0..flags {
            let key = format!("ec:{bucket}:bulk-{flag}:v").into_bytes();
            if bucket < cut {
                expired.push(key);
            } else {
                kept.push(key);
            }
        }
    }
    (expired, kept)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_the_expired_counters_go_while_keys_are_written_and_deleted_during_the_pass() {
    // The safety net must never touch what is not ours or not expired, even on a live store.
    let server = RedisServer::start_default().unwrap();
    let mut conn = server.connection().await.unwrap();
    let (edge_expired, edge_kept) = edge_keyspace();
    let (bulk_expired, bulk_kept) = bulk_keyspace(5, 30);
    let expired: BTreeSet<Vec<u8>> = edge_expired.iter().chain(&bulk_expired).cloned().collect();
    for keys in [&edge_expired, &edge_kept, &bulk_expired, &bulk_kept] {
        write_keys(&mut conn, keys).await;
    }
    let before = all_keys(&mut conn).await;
    assert_eq!(
        before.len(),
        expired.len() + edge_kept.len() + bulk_kept.len()
    );

    // Writers add counters within retention and foreign keys, and delete expired keys ahead of
    // prune, all the time prune runs; enough new keys to make Redis grow its table mid-scan.
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let deleted_by_writer = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, rounds, deleted_by_writer) = (
            Arc::clone(&stop),
            Arc::clone(&rounds),
            Arc::clone(&deleted_by_writer),
        );
        let mut conn = server.connection().await.unwrap();
        let victims: Vec<Vec<u8>> = bulk_expired.iter().step_by(7).cloned().collect();
        tokio::spawn(async move {
            let mut written = BTreeSet::new();
            let mut round = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let mut pipe = redis::pipe();
                for i in 0..50 {
                    let n = round * 50 + i;
                    let bucket = now().timestamp() - (n as i64 % 24) * HOUR;
                    let counter = format!("ec:{bucket}:live-{n}:v").into_bytes();
                    let foreign = format!("session:{n}").into_bytes();
                    pipe.cmd("INCRBY").arg(&counter).arg(1).ignore();
                    pipe.cmd("SET").arg(&foreign).arg(n).ignore();
                    written.insert(counter);
                    written.insert(foreign);
                }
                let mut deletes = redis::pipe();
                for victim in victims.iter().skip(round * 5).take(5) {
                    deletes.cmd("UNLINK").arg(victim);
                }
                pipe.query_async::<()>(&mut conn).await.unwrap();
                let gone: Vec<i64> = deletes.query_async(&mut conn).await.unwrap();
                deleted_by_writer.fetch_add(gone.iter().sum::<i64>() as u64, Ordering::Relaxed);
                round += 1;
                rounds.fetch_add(1, Ordering::Relaxed);
            }
            written
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while rounds.load(Ordering::Relaxed) < 3 {
        assert!(Instant::now() < deadline, "the writer made no progress");
        tokio::time::sleep(POLL).await;
    }
    let rounds_before = rounds.load(Ordering::Relaxed);
    let summary = prune::run(&options(&server.url())).await.unwrap();
    let rounds_during = rounds.load(Ordering::Relaxed) - rounds_before;
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.unwrap();
    assert!(rounds_during > 0, "no writes happened during the pass");

    let after = all_keys(&mut conn).await;
    let expected: BTreeSet<Vec<u8>> = before
        .difference(&expired)
        .cloned()
        .chain(written)
        .collect();
    let lost: Vec<_> = expected
        .difference(&after)
        .map(|k| String::from_utf8_lossy(k))
        .collect();
    let left: Vec<_> = after
        .difference(&expected)
        .map(|k| String::from_utf8_lossy(k))
        .collect();
    assert!(lost.is_empty(), "prune deleted keys it must keep: {lost:?}");
    assert!(left.is_empty(), "expired keys left behind: {left:?}");

    // Numbers are honest: every deletion counted comes from an UNLINK reply of 1.
    let by_writer = deleted_by_writer.load(Ordering::Relaxed);
    assert!(summary.deleted <= expired.len() as u64, "{summary:?}");
    assert!(
        summary.deleted + by_writer >= expired.len() as u64,
        "{summary:?}"
    );
    assert_eq!(summary.deleted + summary.already_gone, summary.expired);
    assert_eq!(summary.by_kind.values().sum::<u64>(), summary.deleted);
    let listed: u64 =
        summary.by_day.values().sum::<u64>() + summary.earlier_days.as_ref().map_or(0, |e| e.keys);
    assert_eq!(listed, summary.deleted);
    assert!(
        summary.scanned >= before.len() as u64 - by_writer,
        "{summary:?}"
    );
    // 17 malformed keys of the edge keyspace, plus the writer's foreign `session:<n>` keys.
    let foreign = summary.unparsed.by_reason["unknown_kind"];
    assert_eq!(
        summary.unparsed.keys - foreign,
        17 - 3,
        "{:?}",
        summary.unparsed
    );
    assert!(foreign >= 3, "{:?}", summary.unparsed);
    assert_eq!(summary.not_day_keyed.keys, 5, "{:?}", summary.not_day_keyed);
    assert_eq!(summary.cutoff, "2024-02-13T12:00:00Z");
    assert!(!summary.dry_run);
}

#[tokio::test]
async fn a_dry_run_reports_by_kind_and_day_and_changes_nothing() {
    // On-call previews a first prune (or a shorter retention) before letting it delete.
    let server = RedisServer::start_default().unwrap();
    let mut conn = server.connection().await.unwrap();
    let (edge_expired, edge_kept) = edge_keyspace();
    let (bulk_expired, bulk_kept) = bulk_keyspace(3, 10);
    for keys in [&edge_expired, &edge_kept, &bulk_expired, &bulk_kept] {
        write_keys(&mut conn, keys).await;
    }
    // Some keys carry TTLs, which a dry run must not touch either.
    for key in bulk_expired.iter().step_by(3) {
        let _: () = redis::cmd("PEXPIREAT")
            .arg(key)
            .arg((Utc::now().timestamp() + DAY) * 1000)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let before = snapshot(&mut conn).await;

    let summary = prune::run(&PruneOptions {
        dry_run: true,
        ..options(&server.url())
    })
    .await
    .unwrap();
    assert_same_keyspace(&before, &snapshot(&mut conn).await);

    let expired = (edge_expired.len() + bulk_expired.len()) as u64;
    assert!(summary.dry_run);
    assert_eq!((summary.expired, summary.deleted), (expired, 0));
    assert_eq!(summary.kept, (bulk_kept.len() + 6) as u64);
    // By kind: the bulk is all ec; the edge keys are listed in edge_keyspace.
    let by_kind: BTreeMap<&str, u64> = summary
        .by_kind
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    let bulk = bulk_expired.len() as u64;
    assert_eq!(
        by_kind,
        BTreeMap::from([("ec", 4 + bulk), ("uc", 2), ("gc", 2), ("gu", 2)])
    );
    // By day: the bulk starts at noon three days before the cutoff (10 flags x 12 hours), then
    // two full days (x 24), then the cutoff's own morning plus 8 edge keys; two very old days.
    let cut = cutoff();
    let mut expected_days = BTreeMap::new();
    expected_days.insert(day_of(cut - 3 * DAY), 120);
    expected_days.insert(day_of(cut - 2 * DAY), 240);
    expected_days.insert(day_of(cut - DAY), 240);
    expected_days.insert(day_of(cut), 120 + 8);
    expected_days.insert(day_of(cut - 400 * DAY), 1);
    expected_days.insert(day_of(0), 1);
    let by_day: BTreeMap<String, u64> = summary.by_day.clone();
    assert_eq!(by_day, expected_days);
    assert!(summary.earlier_days.is_none());
    assert_eq!(summary.unparsed.keys, 17);
    assert_eq!(summary.unparsed.examples.len(), 3);
    assert!(summary.unparsed.by_reason["invalid_bucket"] >= 6);
    assert_eq!(summary.unparsed.by_reason["not_utf8"], 2);
    assert_eq!(summary.not_day_keyed.by_kind["dd"], 2);
}

// ---------------------------------------------------------------------------------------------
// Property test: random keyspaces and cutoffs.

/// A generated key and whether it must go; the oracle is the construction, not the key parser.
#[derive(Clone, Debug)]
struct Generated {
    key: Vec<u8>,
    expired: bool,
}

const COUNTER_TAGS: [&str; 4] = ["ec", "uc", "gc", "gu"];
const ENVS: [&str; 4] = ["", "prod", "eu-1.x", "A_b"];
const MAX_BUCKET_SECS: i64 = 253_402_297_200;

fn with_env(env: &str, rest: String) -> String {
    if env.is_empty() {
        rest
    } else {
        format!("{env}:{rest}")
    }
}

fn counter_key(env: &str, tag: &str, bucket: i64, id: &str) -> String {
    let goal = if tag.starts_with('g') { ":goal" } else { "" };
    with_env(env, format!("{tag}:{bucket}:{id}{goal}:v"))
}

/// Buckets near the cutoff (either side, hourly or snapped to the day) or anywhere at all.
fn bucket_near(cutoff: i64) -> impl Strategy<Value = i64> {
    let cut_hour = cutoff.div_euclid(HOUR) * HOUR;
    prop_oneof![
        4 => (-72i64..72, any::<bool>()).prop_map(move |(hours, daily)| {
            let b = cut_hour + hours * HOUR;
            if daily { b - b.rem_euclid(DAY) } else { b }
        }),
        1 => (0..=MAX_BUCKET_SECS / HOUR).prop_map(|h| h * HOUR),
    ]
    .prop_map(|b| b.clamp(0, MAX_BUCKET_SECS))
}

fn generated(cutoff: i64) -> impl Strategy<Value = Generated> {
    let id = "[a-z0-9]{1,6}";
    let counter =
        (0..4usize, 0..4usize, bucket_near(cutoff), id).prop_map(move |(tag, env, bucket, id)| {
            Generated {
                key: counter_key(ENVS[env], COUNTER_TAGS[tag], bucket, &id).into_bytes(),
                expired: bucket < cutoff,
            }
        });
    let bucketless = (0..4usize, 0..4usize, id).prop_map(|(kind, env, id)| {
        let rest = match kind {
            0 => format!("dd:{:0>40}", id),
            1 => format!("as:{id}:user:{id}"),
            2 => format!("exp:{id}"),
            _ => format!("tmp:{id}"),
        };
        Generated {
            key: with_env(ENVS[env], rest).into_bytes(),
            expired: false,
        }
    });
    // Malformed: old-looking stamps in shapes the schema refuses.
    let malformed = (0..4usize, 0..9usize, bucket_near(cutoff), 1..HOUR, id).prop_map(
        |(tag, shape, bucket, offset, id)| {
            let tag = COUNTER_TAGS[tag];
            let key = match shape {
                0 => format!("{tag}:0{bucket}:{id}:v"),
                1 => format!("{tag}:{}:{id}:v", bucket + offset),
                2 => format!("session:{tag}:{bucket}"),
                3 => format!("{tag}:{bucket}"),
                4 => format!("{}:{bucket}:{id}:v", tag.to_uppercase()),
                5 => format!("{tag}:-{bucket}:{id}:v"),
                6 => format!("{tag}:{bucket}{id}x:{id}:v"),
                7 => format!("{tag}:{}:{id}:v", MAX_BUCKET_SECS + HOUR * offset),
                _ => format!("user:{bucket}:{id}"),
            };
            Generated {
                key: key.into_bytes(),
                expired: false,
            }
        },
    );
    let binary = (
        bucket_near(cutoff),
        proptest::collection::vec(128u8..=255, 1..4),
    )
        .prop_map(|(bucket, junk)| {
            // 0xff never occurs in UTF-8, so this can never be a valid key.
            let mut key = format!("ec:{bucket}:").into_bytes();
            key.push(0xff);
            key.extend(junk);
            key.extend(b":v");
            Generated {
                key,
                expired: false,
            }
        });
    prop_oneof![6 => counter, 2 => bucketless, 2 => malformed, 1 => binary]
}

/// A case: the time prune runs at, the retention, the keys, and the UNLINK batch size.
fn prune_case() -> impl Strategy<Value = (i64, u32, Vec<Generated>, usize)> {
    let latest = Utc::now().timestamp();
    (1_000_000_000i64..latest, 1u32..400).prop_flat_map(|(now, days)| {
        let cutoff = now - i64::from(days) * DAY;
        (
            Just(now),
            Just(days),
            proptest::collection::vec(generated(cutoff), 0..300),
            1usize..600,
        )
    })
}

#[test]
fn random_keyspaces_and_cutoffs_lose_nothing_unexpired_and_leave_nothing_expired() {
    // The parser-independent oracle: keys built as expired counters go, every other key stays.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = RedisServer::start_default().unwrap();
    let conn = runtime.block_on(server.connection()).unwrap();
    let mut runner = TestRunner::new(Config {
        cases: 48,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&prune_case(), |(now, days, keys, batch_size)| {
        let mut conn = conn.clone();
        runtime.block_on(async {
            let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
            let all: Vec<Vec<u8>> = keys.iter().map(|g| g.key.clone()).collect();
            write_keys(&mut conn, &all).await;
            let expired: BTreeSet<Vec<u8>> = keys
                .iter()
                .filter(|g| g.expired)
                .map(|g| g.key.clone())
                .collect();
            let everything: BTreeSet<Vec<u8>> = all.into_iter().collect();
            let summary = prune::run(&PruneOptions {
                now: DateTime::from_timestamp(now, 0),
                retention_days: days,
                batch_size,
                ..PruneOptions::new(server.url())
            })
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let after = all_keys(&mut conn).await;
            let expected: BTreeSet<Vec<u8>> = everything.difference(&expired).cloned().collect();
            prop_assert_eq!(&after, &expected);
            prop_assert_eq!(summary.deleted, expired.len() as u64);
            prop_assert_eq!(summary.scanned, everything.len() as u64);
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------------------------
// The operator's prune user.

/// The URL the CronJob builds: the role's user, the password from its mounted file.
fn job_url(store: &Rendered, role: Role, server: &RedisServer) -> String {
    let user = role.username();
    format!(
        "redis://{user}@{}:{}?password_file={}",
        server.host(),
        server.port(),
        store.paths.credential_file(user)
    )
}

async fn admin(store: &Rendered, server: &RedisServer) -> MultiplexedConnection {
    redis::Client::open(store.url(Role::Operator.username(), server.port()))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_operators_prune_user_is_enough_and_a_user_without_unlink_fails_naming_the_key() {
    // The CronJob runs as the prune role of the rendered ACL; if it lacked a command, every
    // scheduled prune would fail in production and nowhere else.
    let store = Rendered::new("redis: {replicas: 1}");
    let server = RedisServer::start(&store.redis_conf()).unwrap();
    let mut admin = admin(&store, &server).await;
    let (edge_expired, edge_kept) = edge_keyspace();
    write_keys(&mut admin, &edge_expired).await;
    write_keys(&mut admin, &edge_kept).await;

    // With a user that may SCAN but not UNLINK, the failure names the URL, the key and NOPERM.
    let error = prune::run(&options(&job_url(&store, Role::Backup, &server)))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(
            error,
            JobError::Key {
                command: "UNLINK",
                ..
            }
        ),
        "{message}"
    );
    assert!(message.to_lowercase().contains("noperm"), "{message}");
    assert!(
        message.contains(&format!("{}:{}", server.host(), server.port())),
        "{message}"
    );
    assert!(!message.contains(store.credentials.password("backup").unwrap()));
    assert_eq!(
        all_keys(&mut admin).await.len(),
        edge_expired.len() + edge_kept.len()
    );

    // The prune user: exactly the expired counters go, through the CLI as the CronJob calls it.
    let termination_log = tempfile::NamedTempFile::new().unwrap();
    let (code, lines) = cli(
        &[
            "prune",
            "--redis",
            &job_url(&store, Role::Prune, &server),
            "--retention-days",
            &RETENTION_DAYS.to_string(),
            "--now",
            NOW,
        ],
        termination_log.path(),
        &[],
    );
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(lines[0]["deleted"], edge_expired.len() as u64);
    let after = all_keys(&mut admin).await;
    let kept: BTreeSet<Vec<u8>> = edge_kept.into_iter().collect();
    assert_eq!(after, kept);
}

// ---------------------------------------------------------------------------------------------
// Sentinel.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_sentinel_a_failover_mid_pass_restarts_the_scan_on_the_new_primary() {
    // A SCAN cursor of the old primary means nothing on the new one; prune must start over there
    // and still leave no expired key behind.
    let topology = Topology::start(TopologyOptions {
        replicas: 1,
        sentinels: 1,
        quorum: 1,
        ..TopologyOptions::default()
    })
    .await
    .unwrap();
    let mut primary = topology.nodes[0].connection().await.unwrap();
    let (expired, kept) = bulk_keyspace(20, 40);
    write_keys(&mut primary, &expired).await;
    write_keys(&mut primary, &kept).await;
    wait_for_replication_offset(
        &topology.target(&topology.nodes[1]),
        &topology.target(&topology.nodes[0]),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let total = (expired.len() + kept.len()) as i64;

    // Slow enough (58 000 keys scanned and deleted: about 6 s) to fail over in the middle even
    // on a loaded machine (a SENTINEL FAILOVER takes 1-2 s).
    let url = topology.sentinel_url();
    let pass = tokio::spawn(async move {
        prune::run(&PruneOptions {
            max_keys_per_sec: 10_000,
            ..options(&url)
        })
        .await
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let size: i64 = redis::cmd("DBSIZE")
            .query_async(&mut primary)
            .await
            .unwrap();
        if size < total - 1_000 {
            break;
        }
        assert!(Instant::now() < deadline, "prune deleted nothing");
        tokio::time::sleep(POLL).await;
    }
    let old = topology.current_primary().await.unwrap();
    let mut sentinel = topology.sentinels[0]
        .client()
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("SENTINEL")
        .arg("FAILOVER")
        .arg(&topology.master_name)
        .query_async(&mut sentinel)
        .await
        .unwrap();
    let new = wait_for_failover(
        &topology.sentinels[0],
        &topology.master_name,
        (&old.0, old.1),
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    let summary: PruneSummary = pass.await.unwrap().unwrap();
    assert!(summary.scan_restarts >= 1, "{summary:?}");
    assert_eq!(summary.server, format!("{}:{}", new.0, new.1));

    let new_node = topology.nodes.iter().find(|n| n.port() == new.1).unwrap();
    let mut new_primary = new_node.connection().await.unwrap();
    let after = all_keys(&mut new_primary).await;
    let kept: BTreeSet<Vec<u8>> = kept.into_iter().collect();
    assert_eq!(
        after, kept,
        "the new primary holds expired keys or lost kept ones"
    );
}

// ---------------------------------------------------------------------------------------------
// The command line.

fn cli(
    args: &[&str],
    termination_log: &Path,
    env: &[(&str, &str)],
) -> (i32, Vec<serde_json::Value>) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_abstore-jobs-cli"))
        .args(args)
        .env("ABSTORE_TERMINATION_LOG", termination_log)
        .env_remove("ABSTORE_REDIS_URL")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    for line in stdout.lines() {
        assert!(
            line.len() < TERMINATION_MESSAGE_MAX,
            "{} bytes: {line}",
            line.len()
        );
    }
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (output.status.code().unwrap(), lines)
}

#[tokio::test]
async fn the_cli_prints_one_bounded_summary_line_and_refuses_unsafe_arguments() {
    // The outcome reaches the ABStore status through this line; it must fit in 4 KiB even on a
    // first prune of years of data with hostile keys around.
    let server = RedisServer::start_default().unwrap();
    let mut conn = server.connection().await.unwrap();
    let cut = cutoff();
    let mut keys: Vec<Vec<u8>> = (1..=(SUMMARY_DAYS as i64 + 60))
        .map(|d| format!("ec:{}:flag:v", cut - cut.rem_euclid(DAY) - d * DAY).into_bytes())
        .collect();
    keys.extend((0..10).map(|i| format!("ec:x{i}{}:f:v", "\"\\\n".repeat(300)).into_bytes()));
    keys.extend((0..10).map(|i| format!("as:f:{i}{}", "u".repeat(500)).into_bytes()));
    write_keys(&mut conn, &keys).await;
    let dir = tempfile::tempdir().unwrap();
    let termination_log = dir.path().join("termination-log");
    std::fs::write(&termination_log, "").unwrap();
    let url = server.url();

    let (code, lines) = cli(
        &["prune", "--redis", &url, "--now", NOW, "--dry-run"],
        &termination_log,
        &[("ABSTORE_PRUNE_MAX_KEYS_PER_SEC", "100000")],
    );
    assert_eq!((code, lines.len()), (0, 1), "{lines:?}");
    let line = &lines[0];
    assert_eq!(line["command"], "prune");
    assert_eq!(line["ok"], true);
    assert_eq!(line["dry_run"], true);
    assert_eq!(line["retention_days"], 31);
    assert_eq!(line["max_keys_per_sec"], 100_000);
    assert_eq!(line["expired"], SUMMARY_DAYS as u64 + 60);
    assert_eq!(line["by_day"].as_object().unwrap().len(), SUMMARY_DAYS);
    assert_eq!(line["earlier_days"]["days"], 60);
    assert_eq!(line["unparsed"]["keys"], 10);
    assert_eq!(line["not_day_keyed"]["keys"], 10);
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&termination_log).unwrap()).unwrap();
    assert_eq!(&written, line);
    assert_eq!(all_keys(&mut conn).await.len(), keys.len());

    let (code, lines) = cli(
        &["prune", "--redis", &url, "--now", NOW],
        &termination_log,
        &[("ABSTORE_PRUNE_RETENTION_DAYS", "0")],
    );
    assert_eq!(code, 1);
    assert_eq!(lines[0]["ok"], false);
    assert_eq!(lines[0]["category"], "invalid-argument");
    assert!(
        lines[0]["error"]
            .as_str()
            .unwrap()
            .contains("--retention-days")
    );

    let tomorrow = (Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let (code, lines) = cli(
        &["prune", "--redis", &url, "--now", &tomorrow],
        &termination_log,
        &[],
    );
    assert_eq!(
        (code, &lines[0]["category"]),
        (1, &serde_json::json!("invalid-argument"))
    );
    assert!(lines[0]["error"].as_str().unwrap().contains("--now"));

    let (code, lines) = cli(
        &["prune", "--redis", &url, "--now", "yesterday"],
        &termination_log,
        &[],
    );
    assert_eq!((code, lines.len()), (2, 0), "a usage error is clap's");

    let nobody = format!("redis://{LOOPBACK}:{}", free_port().unwrap());
    let (code, lines) = cli(&["prune", "--redis", &nobody], &termination_log, &[]);
    assert_eq!(
        (code, &lines[0]["category"]),
        (1, &serde_json::json!("redis"))
    );
    assert!(
        lines[0]["error"].as_str().unwrap().contains(&nobody[8..]),
        "{}",
        lines[0]["error"]
    );
    assert_eq!(all_keys(&mut conn).await.len(), keys.len());

    // And for real: the expired days go, the rest stays.
    let (code, lines) = cli(
        &["prune", "--redis", &url, "--now", NOW],
        &termination_log,
        &[],
    );
    assert_eq!(
        (code, &lines[0]["deleted"]),
        (0, &serde_json::json!(SUMMARY_DAYS as u64 + 60))
    );
    assert_eq!(all_keys(&mut conn).await.len(), 20);
}
