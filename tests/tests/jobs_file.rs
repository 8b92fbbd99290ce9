//! `abstore-jobs` backup / restore / verify / list against real redis-server processes and the
//! file backend: round trips of a realistic keyspace, refusal of damaged archives before any
//! write, the restore modes, backups under concurrent writes, Sentinel replicas, and the CLI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use abstore_jobs::JobError;
use abstore_jobs::backup::{self, BackupOptions, BackupSummary};
use abstore_jobs::format::{
    Blob, Counts, Data, FORMAT_NAME, FORMAT_VERSION, MANIFEST_NAME, Manifest,
    NOT_POINT_IN_TIME_NOTE, PartWriter, Record, Skipped, Source, Timings, backup_folder, part_name,
};
use abstore_jobs::list::{self, ListOptions};
use abstore_jobs::restore::{self, RestoreMode, RestoreOptions};
use abstore_jobs::storage::Location;
use abstore_jobs::verify::{self, VerifyOptions};
use abstore_tests::keyspace::{assert_same_keyspace, assert_same_unique_counts, snapshot};
use abstore_tests::{RedisServer, Topology, TopologyOptions, wait_for_replication_offset};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

fn location(dir: &Path) -> Location {
    Location::parse(&format!("file://{}", dir.display())).unwrap()
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A key's type, value (collections in a canonical order) and absolute expiry.
/// Bucketeer-shaped data: ec/uc per hour for 40 days (sparse and a few dense HyperLogLogs,
/// expiring 45 days after their bucket), goal counters, dedup flags with TTLs, experiment
/// hashes, sets, lists, sorted sets, binary keys and values, an empty and a 1 MiB value.
async fn fill_realistic(conn: &mut MultiplexedConnection) -> usize {
    let first_bucket = (now_secs() / HOUR) * HOUR - 40 * DAY;
    let mut pipe = redis::pipe();
    let mut written = 0;
    for hour in 0..(40 * 24) {
        let bucket = first_bucket + hour * HOUR;
        let expire_at = bucket + 45 * DAY;
        for variation in ["v1", "default"] {
            let ec = format!("ec:{bucket}:checkout:{variation}");
            let uc = format!("uc:{bucket}:checkout:{variation}");
            pipe.cmd("INCRBY").arg(&ec).arg(hour + 1).ignore();
            let users: Vec<String> = (0..(hour % 17 + 1)).map(|u| format!("user-{u}")).collect();
            pipe.cmd("PFADD").arg(&uc).arg(&users).ignore();
            pipe.cmd("EXPIREAT").arg(&ec).arg(expire_at).ignore();
            pipe.cmd("EXPIREAT").arg(&uc).arg(expire_at).ignore();
            written += 2;
        }
        if hour % 24 == 0 {
            pipe.cmd("INCRBY")
                .arg(format!("gc:{bucket}:checkout:purchase:v1"))
                .arg(3)
                .ignore();
            pipe.cmd("PFADD")
                .arg(format!("gu:{bucket}:checkout:purchase:v1"))
                .arg("buyer-1")
                .ignore();
            written += 2;
        }
    }
    // Dense HyperLogLogs: enough users to leave the sparse encoding.
    for day in 0..3 {
        let key = format!("uc:{}:dense:v1", first_bucket + day * DAY);
        let users: Vec<String> = (0..5000).map(|u| format!("dense-user-{u}")).collect();
        pipe.cmd("PFADD").arg(&key).arg(&users).ignore();
        written += 1;
    }
    for i in 0..50 {
        pipe.cmd("SET")
            .arg(format!("dd:{:040x}", i))
            .arg(1)
            .arg("EX")
            .arg(3600 + i)
            .ignore();
        written += 1;
    }
    pipe.cmd("HSET")
        .arg("exp:checkout")
        .arg(&[("name", "Checkout button"), ("variations", "v1,default")])
        .ignore();
    pipe.cmd("SADD")
        .arg("segments")
        .arg(&["a", "b", "c"])
        .ignore();
    pipe.cmd("RPUSH")
        .arg("history")
        .arg(&["x", "y", "x"])
        .ignore();
    pipe.cmd("ZADD")
        .arg("leaderboard")
        .arg(&[("1.5", "alice"), ("-inf", "bob"), ("inf", "carol")])
        .ignore();
    pipe.cmd("PEXPIREAT")
        .arg("leaderboard")
        .arg((now_secs() + DAY) * 1000)
        .ignore();
    pipe.cmd("SET")
        .arg(b"bin:\xff\x00\xfe".as_slice())
        .arg(b"\x00\x01\xff\xfe".as_slice())
        .ignore();
    pipe.cmd("HSET")
        .arg(b"bin-hash\x80".as_slice())
        .arg(b"\xff".as_slice())
        .arg(b"\x00".as_slice())
        .ignore();
    pipe.cmd("SET").arg("empty").arg("").ignore();
    pipe.cmd("SET")
        .arg("big")
        .arg(vec![b'z'; 1024 * 1024])
        .ignore();
    written += 8;
    pipe.query_async::<()>(conn).await.unwrap();
    written
}

async fn backup_of(server: &RedisServer, dir: &Path) -> BackupSummary {
    backup::run(&BackupOptions::new(server.url(), location(dir)))
        .await
        .unwrap()
}

async fn restore_into(
    target: &RedisServer,
    from: &Path,
    mode: RestoreMode,
) -> Result<restore::RestoreSummary, JobError> {
    restore::run(&RestoreOptions::new(location(from), target.url(), mode)).await
}

/// The one folder of the (single) backup under `dir`.
fn only_backup_folder(dir: &Path) -> PathBuf {
    let manifests: Vec<PathBuf> = walk(dir)
        .into_iter()
        .filter(|p| p.ends_with(MANIFEST_NAME))
        .collect();
    assert_eq!(manifests.len(), 1, "{manifests:?}");
    manifests[0].parent().unwrap().to_owned()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn a_realistic_keyspace_round_trips_with_types_values_and_expiries_intact() {
    // The point of a backup: what comes back is what was there, byte for byte, with the same
    // deadlines, across parts (a small part limit forces several).
    let source = RedisServer::start_default().unwrap();
    let mut conn = source.connection().await.unwrap();
    let written = fill_realistic(&mut conn).await;
    let before = snapshot(&mut conn).await;
    assert_eq!(before.len(), written);

    let dir = tempfile::tempdir().unwrap();
    let options = BackupOptions {
        part_max_records: 1000,
        ..BackupOptions::new(source.url(), location(dir.path()))
    };
    let summary = backup::run(&options).await.unwrap();
    assert_eq!(summary.keys, written as u64);
    assert!(summary.parts >= 4, "{summary:?}");
    assert_eq!(summary.counts.by_kind["ec"], 40 * 24 * 2);
    assert_eq!(summary.counts.by_type["hash"], 2);
    assert!(summary.counts.by_kind["foreign"] >= 6);

    let verified = verify::run(&VerifyOptions {
        from: Location::parse(&summary.backup).unwrap(),
        storage: Default::default(),
    })
    .await
    .unwrap();
    assert_eq!(verified.keys, summary.keys);

    let target = RedisServer::start_default().unwrap();
    let restored = restore_into(&target, dir.path(), RestoreMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(restored.written, written as u64);
    let mut target_conn = target.connection().await.unwrap();
    let after = snapshot(&mut target_conn).await;
    assert_same_keyspace(&before, &after);
    assert_same_unique_counts(&before, &mut conn, &mut target_conn).await;
}

#[tokio::test]
async fn a_backup_of_redis_restores_into_valkey_with_every_key_intact() {
    // Typed reads instead of DUMP keep backups portable: a team moving to Valkey (or a managed
    // service running it) restores the same archive. HyperLogLogs are strings in both.
    let source = RedisServer::start_default().unwrap();
    let mut conn = source.connection().await.unwrap();
    let written = fill_realistic(&mut conn).await;
    let before = snapshot(&mut conn).await;
    let dir = tempfile::tempdir().unwrap();
    backup_of(&source, dir.path()).await;

    let valkey = RedisServer::start_valkey("").unwrap();
    let restored = restore_into(&valkey, dir.path(), RestoreMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(restored.written, written as u64);
    let mut valkey_conn = valkey.connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut valkey_conn)
        .await
        .unwrap();
    assert!(
        info.contains("valkey_version"),
        "not a Valkey server: {info}"
    );
    assert_same_keyspace(&before, &snapshot(&mut valkey_conn).await);
    assert_same_unique_counts(&before, &mut conn, &mut valkey_conn).await;
}

/// Writes a one-part backup made with the format API (for records a live server cannot hold,
/// such as ones already expired) and returns its folder.
async fn handmade_backup(dir: &Path, records: &[Record]) -> PathBuf {
    let started = chrono::Utc::now();
    let folder = dir.join(backup_folder(started, "handmade"));
    std::fs::create_dir_all(&folder).unwrap();
    let mut writer = PartWriter::new(part_name(0)).unwrap();
    let mut data = Vec::new();
    let mut counts = Counts::default();
    for record in records {
        writer.push(record).unwrap();
        counts.add(record);
        data.extend_from_slice(&writer.take_output());
    }
    let (tail, info) = writer.finish().unwrap();
    data.extend_from_slice(&tail);
    std::fs::write(folder.join(&info.name), &data).unwrap();
    let manifest = Manifest {
        format: FORMAT_NAME.to_owned(),
        format_version: FORMAT_VERSION,
        run_id: "handmade".to_owned(),
        point_in_time: false,
        note: NOT_POINT_IN_TIME_NOTE.to_owned(),
        source: Source {
            url: "redis://test".to_owned(),
            server: "test:6379".to_owned(),
            redis_version: "7.0.0".to_owned(),
            from_replica: false,
        },
        match_patterns: Vec::new(),
        keys: info.records,
        bytes: info.bytes,
        counts,
        skipped: Skipped::default(),
        timings: Timings {
            started_at: started.to_rfc3339(),
            finished_at: started.to_rfc3339(),
            duration_ms: 0,
        },
        parts: vec![info],
    };
    std::fs::write(folder.join(MANIFEST_NAME), manifest.to_json().unwrap()).unwrap();
    folder
}

fn string_record(key: &str, value: &str, expire_at_ms: Option<i64>) -> Record {
    Record {
        key: Blob(key.as_bytes().to_vec()),
        expire_at_ms,
        value: Data::String(Blob(value.as_bytes().to_vec())),
    }
}

#[tokio::test]
async fn records_that_expired_since_the_backup_are_not_restored() {
    // Expiry is absolute: restoring days later must not bring back data that should be gone.
    let dir = tempfile::tempdir().unwrap();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let folder = handmade_backup(
        dir.path(),
        &[
            string_record("gone", "1", Some(now_ms - 60_000)),
            string_record("alive", "2", Some(now_ms + 3_600_000)),
            string_record("forever", "3", None),
        ],
    )
    .await;
    let target = RedisServer::start_default().unwrap();
    let summary = restore_into(&target, &folder, RestoreMode::Overwrite)
        .await
        .unwrap();
    assert_eq!((summary.written, summary.expired), (2, 1));
    let mut conn = target.connection().await.unwrap();
    let keys = snapshot(&mut conn).await;
    assert_eq!(
        keys.keys().cloned().collect::<Vec<_>>(),
        [b"alive".to_vec(), b"forever".to_vec()]
    );
    assert!((keys[b"alive".as_slice()].expire_at_ms - (now_ms + 3_600_000)).abs() < 5);
}

/// A backup of a few keys spread over several parts, and a target holding one key of its own.
async fn damaged_archive_setup() -> (
    RedisServer,
    RedisServer,
    tempfile::TempDir,
    PathBuf,
    MultiplexedConnection,
) {
    let source = RedisServer::start_default().unwrap();
    let mut conn = source.connection().await.unwrap();
    for i in 0..30 {
        let _: () = conn.set(format!("k{i}"), i).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let options = BackupOptions {
        part_max_records: 10,
        ..BackupOptions::new(source.url(), location(dir.path()))
    };
    backup::run(&options).await.unwrap();
    let folder = only_backup_folder(dir.path());
    let target = RedisServer::start_default().unwrap();
    let mut target_conn = target.connection().await.unwrap();
    let _: () = target_conn.set("existing", "untouched").await.unwrap();
    (source, target, dir, folder, target_conn)
}

async fn assert_untouched(conn: &mut MultiplexedConnection) {
    let keys = snapshot(conn).await;
    assert_eq!(
        keys.keys().cloned().collect::<Vec<_>>(),
        [b"existing".to_vec()]
    );
}

#[tokio::test]
async fn a_corrupted_or_truncated_last_part_is_refused_before_the_first_write() {
    // The damage sits in the LAST part, so a restore that wrote while checking would already
    // have written the first parts: the target must still hold only its own key.
    let (_source, target, _dir, folder, mut target_conn) = damaged_archive_setup().await;
    let last = folder.join(part_name(2));
    let original = std::fs::read(&last).unwrap();

    let mut corrupted = original.clone();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0x40;
    std::fs::write(&last, &corrupted).unwrap();
    let error = restore_into(&target, &folder, RestoreMode::Overwrite)
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, JobError::BadArchive { .. }), "{message}");
    assert!(
        message.contains(&part_name(2)) && message.contains("sha256"),
        "{message}"
    );
    assert_untouched(&mut target_conn).await;

    std::fs::write(&last, &original[..original.len() - 7]).unwrap();
    let message = restore_into(&target, &folder, RestoreMode::Overwrite)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.contains(&part_name(2)) && message.contains("truncated"),
        "{message}"
    );
    assert_untouched(&mut target_conn).await;

    let verify = verify::run(&VerifyOptions {
        from: location(&folder),
        storage: Default::default(),
    })
    .await
    .unwrap_err();
    assert!(verify.to_string().contains(&part_name(2)));
}

#[tokio::test]
async fn a_backup_without_manifest_or_of_a_newer_format_is_refused() {
    // No manifest means the backup never finished; a newer format may mean something else.
    let (_source, target, dir, folder, mut target_conn) = damaged_archive_setup().await;
    let manifest_path = folder.join(MANIFEST_NAME);
    let manifest = std::fs::read(&manifest_path).unwrap();

    let mut newer: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    newer["format_version"] = serde_json::json!(FORMAT_VERSION + 1);
    std::fs::write(&manifest_path, serde_json::to_vec(&newer).unwrap()).unwrap();
    let message = restore_into(&target, &folder, RestoreMode::Overwrite)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("newer") && message.contains(MANIFEST_NAME),
        "{message}"
    );
    assert_untouched(&mut target_conn).await;

    std::fs::remove_file(&manifest_path).unwrap();
    let error = restore_into(&target, dir.path(), RestoreMode::Overwrite)
        .await
        .unwrap_err();
    assert!(matches!(error, JobError::NoBackup { .. }), "{error}");
    assert_untouched(&mut target_conn).await;
}

#[tokio::test]
async fn merge_adds_counters_and_unions_hyperloglogs_and_keeps_other_live_keys() {
    // Merging a backup into a live store must not lose the events counted since the backup.
    let source = RedisServer::start_default().unwrap();
    let mut src = source.connection().await.unwrap();
    let bucket = (now_secs() / HOUR) * HOUR;
    let ec = format!("ec:{bucket}:flag:v1");
    let uc = format!("uc:{bucket}:flag:v1");
    let _: () = src.incr(&ec, 5).await.unwrap();
    let _: () = src.pfadd(&uc, &["a", "b", "c"]).await.unwrap();
    let _: () = src.set("as:flag:user-1", "v1").await.unwrap();
    let _: () = src.set("exp-only-in-backup", "x").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    backup_of(&source, dir.path()).await;

    let target = RedisServer::start_default().unwrap();
    let mut dst = target.connection().await.unwrap();
    let _: () = dst.incr(&ec, 7).await.unwrap();
    let _: () = dst.pfadd(&uc, &["c", "d"]).await.unwrap();
    let _: () = dst.set("as:flag:user-1", "default").await.unwrap();

    let dry = restore::run(&RestoreOptions {
        dry_run: true,
        ..RestoreOptions::new(location(dir.path()), target.url(), RestoreMode::Merge)
    })
    .await
    .unwrap();
    assert_eq!((dry.merged, dry.kept, dry.written), (2, 1, 1));
    assert_eq!(dst.get::<_, i64>(&ec).await.unwrap(), 7, "dry run wrote");

    let summary = restore_into(&target, dir.path(), RestoreMode::Merge)
        .await
        .unwrap();
    assert_eq!((summary.merged, summary.kept, summary.written), (2, 1, 1));
    assert_eq!(dst.get::<_, i64>(&ec).await.unwrap(), 12);
    assert_eq!(dst.pfcount::<_, u64>(&uc).await.unwrap(), 4);
    assert_eq!(
        dst.get::<_, String>("as:flag:user-1").await.unwrap(),
        "default"
    );
    assert_eq!(
        dst.get::<_, String>("exp-only-in-backup").await.unwrap(),
        "x"
    );
}

#[tokio::test]
async fn missing_writes_only_absent_keys_and_dry_run_writes_nothing() {
    // `missing` fills gaps after data loss without reverting keys that were rewritten since.
    let source = RedisServer::start_default().unwrap();
    let mut src = source.connection().await.unwrap();
    let _: () = src.set("s", "from-backup").await.unwrap();
    let _: () = src.hset("h", "f", "from-backup").await.unwrap();
    let _: () = src.rpush("l", &["1", "2"]).await.unwrap();
    let _: () = src.sadd("only-in-backup", "m").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    backup_of(&source, dir.path()).await;

    let target = RedisServer::start_default().unwrap();
    let mut dst = target.connection().await.unwrap();
    let _: () = dst.set("s", "live").await.unwrap();
    let _: () = dst.hset("h", "g", "live").await.unwrap();
    let before = snapshot(&mut dst).await;

    let dry = restore::run(&RestoreOptions {
        dry_run: true,
        ..RestoreOptions::new(location(dir.path()), target.url(), RestoreMode::Missing)
    })
    .await
    .unwrap();
    assert_eq!((dry.written, dry.kept), (2, 2));
    assert_same_keyspace(&before, &snapshot(&mut dst).await);

    let summary = restore_into(&target, dir.path(), RestoreMode::Missing)
        .await
        .unwrap();
    assert_eq!((summary.written, summary.kept), (2, 2));
    assert_eq!(dst.get::<_, String>("s").await.unwrap(), "live");
    let h: BTreeMap<String, String> = dst.hgetall("h").await.unwrap();
    assert_eq!(h, BTreeMap::from([("g".to_owned(), "live".to_owned())]));
    assert_eq!(
        dst.lrange::<_, Vec<String>>("l", 0, -1).await.unwrap(),
        ["1", "2"]
    );
    assert!(
        dst.sismember::<_, _, bool>("only-in-backup", "m")
            .await
            .unwrap()
    );
    // No scratch key survives the transactions.
    assert_eq!(snapshot(&mut dst).await.len(), 4);
}

#[tokio::test]
async fn keys_written_and_deleted_during_a_backup_do_not_break_it() {
    // A SCAN backup runs against a live store; churn must be skipped or included, never fatal.
    let source = RedisServer::start_default().unwrap();
    let mut conn = source.connection().await.unwrap();
    let mut pipe = redis::pipe();
    for i in 0..20_000 {
        pipe.cmd("SET").arg(format!("stable:{i}")).arg(i).ignore();
    }
    pipe.query_async::<()>(&mut conn).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let writer = {
        let stop = Arc::clone(&stop);
        let rounds = Arc::clone(&rounds);
        let mut conn = source.connection().await.unwrap();
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut pipe = redis::pipe();
                for j in 0..100 {
                    pipe.cmd("SET")
                        .arg(format!("churn:{}", (i + j) % 5000))
                        .arg(j)
                        .ignore();
                    pipe.cmd("DEL")
                        .arg(format!("churn:{}", (i + j + 2500) % 5000))
                        .ignore();
                    pipe.cmd("HSET")
                        .arg(format!("churn-h:{}", (i + j) % 500))
                        .arg("f")
                        .arg(j)
                        .ignore();
                    pipe.cmd("DEL")
                        .arg(format!("churn-h:{}", (i + j + 250) % 500))
                        .ignore();
                }
                pipe.query_async::<()>(&mut conn).await.unwrap();
                i += 100;
                rounds.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Start the backup only once the churn is under way.
    while rounds.load(Ordering::Relaxed) < 3 {
        tokio::task::yield_now().await;
    }
    let dir = tempfile::tempdir().unwrap();
    let summary = backup_of(&source, dir.path()).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();

    assert!(summary.keys >= 20_000, "{summary:?}");
    let verified = verify::run(&VerifyOptions {
        from: location(dir.path()),
        storage: Default::default(),
    })
    .await
    .unwrap();
    assert_eq!(verified.keys, summary.keys);
}

#[tokio::test]
async fn from_replica_reads_a_replica_found_through_sentinel_and_fails_clearly_without_one() {
    // Backups of a busy store should load a replica, not the primary serving the writes.
    let topology = Topology::start(TopologyOptions {
        replicas: 1,
        sentinels: 1,
        quorum: 1,
        ..TopologyOptions::default()
    })
    .await
    .unwrap();
    let mut primary = topology.nodes[0].connection().await.unwrap();
    for i in 0..100 {
        let _: () = primary.set(format!("k{i}"), i).await.unwrap();
    }
    let replica = &topology.nodes[1];
    wait_for_replication_offset(
        &topology.target(replica),
        &topology.target(&topology.nodes[0]),
        std::time::Duration::from_secs(10),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let summary = backup::run(&BackupOptions {
        from_replica: true,
        ..BackupOptions::new(topology.sentinel_url(), location(dir.path()))
    })
    .await
    .unwrap();
    assert_eq!(summary.source.server, replica.addr());
    assert!(summary.source.from_replica);
    assert_eq!(summary.keys, 100);

    let lonely = Topology::start(TopologyOptions {
        replicas: 0,
        sentinels: 1,
        quorum: 1,
        ..TopologyOptions::default()
    })
    .await
    .unwrap();
    let error = backup::run(&BackupOptions {
        from_replica: true,
        ..BackupOptions::new(lonely.sentinel_url(), location(dir.path()))
    })
    .await
    .unwrap_err();
    assert!(matches!(error, JobError::NoReplica { .. }), "{error}");
}

#[tokio::test]
async fn list_shows_complete_backups_and_folders_without_manifest_as_incomplete() {
    // An interrupted run leaves parts without a manifest; on-call must see it is not usable.
    let source = RedisServer::start_default().unwrap();
    let mut conn = source.connection().await.unwrap();
    let _: () = conn.set("a", "1").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let first = backup_of(&source, dir.path()).await;
    let _: () = conn.set("b", "2").await.unwrap();
    let second = backup_of(&source, dir.path()).await;
    let interrupted = dir.path().join("2020/01/01/20200101T000000Z-deadbeef");
    std::fs::create_dir_all(&interrupted).unwrap();
    std::fs::write(interrupted.join(part_name(0)), b"partial").unwrap();

    let listed = list::run(&ListOptions {
        from: location(dir.path()),
        storage: Default::default(),
    })
    .await
    .unwrap();
    assert_eq!((listed.complete, listed.incomplete), (2, 1));
    let oldest = &listed.backups[0];
    assert!(!oldest.complete && oldest.keys.is_none() && oldest.bytes == 7);
    let complete: Vec<_> = listed.backups.iter().filter(|b| b.complete).collect();
    let urls: Vec<&str> = complete.iter().map(|b| b.backup.as_str()).collect();
    assert!(urls.contains(&first.backup.as_str()) && urls.contains(&second.backup.as_str()));

    // A destination URL restores its newest complete backup (the one with both keys).
    let target = RedisServer::start_default().unwrap();
    let restored = restore_into(&target, dir.path(), RestoreMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(restored.keys_in_backup, 2, "{restored:?}");
}

fn cli(args: &[&str], termination_log: &Path) -> (i32, Vec<serde_json::Value>) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_abstore-jobs-cli"))
        .args(args)
        .env("ABSTORE_TERMINATION_LOG", termination_log)
        .env_remove("ABSTORE_REDIS_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (output.status.code().unwrap(), lines)
}

#[tokio::test]
async fn the_cli_ends_every_run_with_one_json_line_and_exits_non_zero_on_failure() {
    // The CronJob's outcome reaches the ABStore status only through this line and exit code.
    let source = RedisServer::start_default().unwrap();
    let mut conn = source.connection().await.unwrap();
    let _: () = conn.set("ec:1699999200:f:v1", 3).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let destination = format!("file://{}/backups", dir.path().display());
    let termination_log = dir.path().join("termination-log");
    std::fs::write(&termination_log, "").unwrap();

    let (code, lines) = cli(
        &[
            "backup",
            "--redis",
            &source.url(),
            "--to",
            &destination,
            "--match",
            "ec:*",
        ],
        &termination_log,
    );
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    assert_eq!(line["command"], "backup");
    assert_eq!(line["ok"], true);
    assert_eq!(line["keys"], 1);
    assert_eq!(line["counts"]["by_kind"]["ec"], 1);
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&termination_log).unwrap()).unwrap();
    assert_eq!(&written, line);

    let (code, lines) = cli(&["verify", "--from", &destination], &termination_log);
    assert_eq!((code, &lines[0]["ok"]), (0, &serde_json::json!(true)));
    let (code, lines) = cli(&["list", "--from", &destination], &termination_log);
    assert_eq!((code, &lines[0]["complete"]), (0, &serde_json::json!(1)));

    let empty = format!("file://{}/nothing-here", dir.path().display());
    let (code, lines) = cli(
        &[
            "restore",
            "--from",
            &empty,
            "--redis",
            &source.url(),
            "--mode",
            "missing",
        ],
        &termination_log,
    );
    assert_eq!(code, 1);
    assert_eq!(lines[0]["ok"], false);
    assert_eq!(lines[0]["category"], "no-backup");
    assert!(lines[0]["error"].as_str().unwrap().contains("nothing-here"));
}
