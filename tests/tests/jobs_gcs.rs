//! The `gs://` storage backend of abstore-jobs against a real GCS emulator (fake-gcs-server):
//! byte-exact put/get, listing with prefixes and pagination, streamed multi-chunk uploads, abort,
//! the errors for a missing object or bucket, and a backup → list → verify → restore round trip
//! of a realistic keyspace through GCS into a fresh redis-server. Anonymous credentials only
//! (see jobs/src/storage/gcs.rs for what the emulator cannot cover).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use abstore_jobs::backup::{self, BackupOptions};
use abstore_jobs::format::{MANIFEST_NAME, backup_folder, part_name};
use abstore_jobs::list::{self, ListOptions};
use abstore_jobs::restore::{self, RestoreMode, RestoreOptions};
use abstore_jobs::storage::{Location, Storage, StorageError, StorageOptions};
use abstore_jobs::verify::{self, VerifyOptions};
use abstore_tests::keyspace::{assert_same_keyspace, assert_same_unique_counts, snapshot};
use abstore_tests::{GcsServer, RedisServer};
use bytes::Bytes;
use futures::StreamExt;
use redis::aio::MultiplexedConnection;

const BUCKET: &str = "abstore-backups";

fn options(server: &GcsServer) -> StorageOptions {
    StorageOptions {
        gcs_endpoint: Some(server.endpoint()),
        ..StorageOptions::default()
    }
}

async fn open(server: &GcsServer, url: &str) -> Storage {
    Storage::open(&Location::parse(url).unwrap(), &options(server))
        .await
        .unwrap()
}

/// Deterministic bytes that are not all the same (so truncation or reordering shows).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u64)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(u64::from(seed)) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_and_get_round_trip_byte_exact() {
    let server = GcsServer::start(&[BUCKET]).unwrap();
    let store = open(&server, &format!("gs://{BUCKET}/prod/eu")).await;

    let every_byte: Vec<u8> = (0..=255_u8).cycle().take(4096).collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("manifest.json", br#"{"format":1}"#.to_vec()),
        ("bin/every-byte", every_byte),
        ("bin/nul-and-crlf", b"\0\r\n\0\xff\xfe".to_vec()),
        ("empty", Vec::new()),
        ("big/1mib", pattern(1 << 20, 7)),
    ];
    for (key, data) in &cases {
        store.put(key, Bytes::from(data.clone())).await.unwrap();
    }
    for (key, data) in &cases {
        let got = store.get(key).await.unwrap();
        assert_eq!(got.len(), data.len(), "{key}");
        assert!(got == data.as_slice(), "{key} differs");
    }

    // Keys are relative to the prefix: the same object seen from the bucket's root.
    let root = open(&server, &format!("gs://{BUCKET}")).await;
    assert_eq!(
        root.get("prod/eu/manifest.json").await.unwrap(),
        Bytes::from_static(br#"{"format":1}"#)
    );

    // Every write went through a resumable session (single-shot uploads break emulators).
    let log = server.log();
    assert!(
        log.contains("uploadType=resumable"),
        "no resumable upload in the log"
    );
    assert!(
        !log.contains("uploadType=multipart") && !log.contains("uploadType=media"),
        "a single-shot upload was made"
    );

    // A put replaces the object.
    store
        .put("manifest.json", Bytes::from_static(b"v2"))
        .await
        .unwrap();
    assert_eq!(
        store.get("manifest.json").await.unwrap(),
        Bytes::from_static(b"v2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_by_prefix_sorts_and_follows_pages() {
    let server = GcsServer::start(&[BUCKET]).unwrap();
    let store = open(&server, &format!("gs://{BUCKET}/p")).await;
    // More than one page of the JSON API (1000 objects a page).
    const MANY: usize = 1203;
    let keys: Vec<String> = (0..MANY).map(|i| format!("many/{i:05}")).collect();
    futures::stream::iter(keys.iter().enumerate())
        .map(|(i, key)| {
            let store = &store;
            async move {
                store
                    .put(key, Bytes::from(vec![b'x'; i % 7]))
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    store
        .put("other/a", Bytes::from_static(b"abc"))
        .await
        .unwrap();
    // Outside the location's prefix `p`, though its name starts with "p".
    let root = open(&server, &format!("gs://{BUCKET}")).await;
    root.put("p2/outside", Bytes::from_static(b"no"))
        .await
        .unwrap();
    root.put("p", Bytes::from_static(b"no")).await.unwrap();

    let many = store.list("many/").await.unwrap();
    assert_eq!(many.len(), MANY);
    let listed: Vec<&str> = many.iter().map(|o| o.key.as_str()).collect();
    let expected: Vec<&str> = keys.iter().map(String::as_str).collect();
    assert_eq!(listed, expected);
    for (i, object) in many.iter().enumerate() {
        assert_eq!(object.size, (i % 7) as u64, "{}", object.key);
    }

    let all = store.list("").await.unwrap();
    assert_eq!(all.len(), MANY + 1);
    assert_eq!(all.last().unwrap().key, "other/a");
    assert_eq!(all.last().unwrap().size, 3);
    assert!(store.list("nothing/").await.unwrap().is_empty());
    assert_eq!(store.list("many/0012").await.unwrap().len(), 10);
    // The listing really followed a page token (the emulator pages at maxResults too).
    assert!(
        server.log().contains("&pageToken="),
        "no paged listing request in the emulator's log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_upload_spans_several_chunks() {
    let server = GcsServer::start(&[BUCKET]).unwrap();
    let store = open(&server, &format!("gs://{BUCKET}/backups")).await;
    // 20 MiB in odd-sized writes: more than two of the client's 8 MiB resumable chunks, and
    // writes that straddle chunk boundaries.
    let data = pattern(20 * 1024 * 1024 + 12_345, 3);
    let mut upload = store
        .upload("2026/01/02/run/part-00000.jsonl.zst")
        .await
        .unwrap();
    for piece in data.chunks(700_001) {
        upload.write(Bytes::copy_from_slice(piece)).await.unwrap();
    }
    // Not visible before finish.
    assert!(matches!(
        store.get("2026/01/02/run/part-00000.jsonl.zst").await,
        Err(StorageError::NotFound { .. })
    ));
    let size = upload.finish().await.unwrap();
    assert_eq!(size, data.len() as u64);
    // Several chunk PUTs to one resumable session, not one request holding everything.
    let chunk_puts = server
        .log()
        .lines()
        .filter(|line| line.contains("\"PUT /upload/") && line.contains("part-00000"))
        .count();
    assert!(chunk_puts >= 3, "{chunk_puts} chunk PUTs for 20 MiB");
    let got = store
        .get("2026/01/02/run/part-00000.jsonl.zst")
        .await
        .unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data.as_slice(), "uploaded object differs");
    let listed = store.list("2026/").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, data.len() as u64);

    // A small streamed upload (one partial chunk) and an empty one work too.
    let mut upload = store.upload("small").await.unwrap();
    upload.write(Bytes::from_static(b"hello ")).await.unwrap();
    upload.write(Bytes::from_static(b"world")).await.unwrap();
    assert_eq!(upload.finish().await.unwrap(), 11);
    assert_eq!(
        store.get("small").await.unwrap(),
        Bytes::from_static(b"hello world")
    );
    let upload = store.upload("empty").await.unwrap();
    assert_eq!(upload.finish().await.unwrap(), 0);
    assert!(store.get("empty").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_or_dropped_upload_leaves_no_object() {
    let server = GcsServer::start(&[BUCKET]).unwrap();
    let store = open(&server, &format!("gs://{BUCKET}/backups")).await;

    // Past one 8 MiB chunk, so the server already holds part of the data when it is aborted.
    let mut upload = store.upload("aborted").await.unwrap();
    for piece in pattern(9 * 1024 * 1024, 1).chunks(1 << 20) {
        upload.write(Bytes::copy_from_slice(piece)).await.unwrap();
    }
    upload.abort().await.unwrap();

    let mut upload = store.upload("dropped").await.unwrap();
    upload.write(Bytes::from_static(b"half")).await.unwrap();
    drop(upload);

    let mut upload = store.upload("aborted-small").await.unwrap();
    upload.write(Bytes::from_static(b"x")).await.unwrap();
    upload.abort().await.unwrap();

    // Then a finished upload under the same key works as usual.
    let mut upload = store.upload("aborted").await.unwrap();
    upload.write(Bytes::from_static(b"final")).await.unwrap();
    upload.finish().await.unwrap();

    // The dropped upload's task fails on its next poll, without a request (its 4 bytes were
    // still in the client's buffer); a wrongly committed drop would have finalized it long
    // before the two uploads above completed.
    for key in ["dropped", "aborted-small"] {
        let error = store.get(key).await.unwrap_err();
        assert!(
            matches!(error, StorageError::NotFound { .. }),
            "{key}: {error}"
        );
    }
    let listed: Vec<String> = store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(listed, ["aborted"]);
    assert_eq!(
        store.get("aborted").await.unwrap(),
        Bytes::from_static(b"final")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_object_is_not_found_naming_its_url() {
    let server = GcsServer::start(&[BUCKET]).unwrap();
    let store = open(&server, &format!("gs://{BUCKET}/prod")).await;
    let error = store.get("2026/01/01/x/manifest.json").await.unwrap_err();
    let url = format!("gs://{BUCKET}/prod/2026/01/01/x/manifest.json");
    match &error {
        StorageError::NotFound { url: named } => assert_eq!(named, &url),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(error.to_string().contains(&url), "{error}");
    assert_eq!(error.category(), "not-found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_fails_at_open_naming_the_bucket() {
    let server = GcsServer::start(&[BUCKET]).unwrap();
    let location = Location::parse("gs://no-such-bucket/prod").unwrap();
    let error = Storage::open(&location, &options(&server))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, StorageError::NotFound { url } if url == "gs://no-such-bucket"),
        "{error:?}"
    );
    assert_eq!(error.to_string(), "gs://no-such-bucket does not exist");

    // A bucket that disappears after open: writes and uploads fail naming the object.
    server.create_bucket("short-lived").unwrap();
    let store = open(&server, "gs://short-lived/x").await;
    server.delete_bucket("short-lived").unwrap();
    let error = store.put("k", Bytes::from_static(b"v")).await.unwrap_err();
    assert!(
        error.to_string().contains("gs://short-lived/x/k"),
        "{error}"
    );
    let mut upload = store.upload("part").await.unwrap();
    let written = upload.write(Bytes::from_static(b"data")).await;
    let error = match written {
        Err(error) => error,
        Ok(()) => upload.finish().await.unwrap_err(),
    };
    assert!(
        error.to_string().contains("gs://short-lived/x/part"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoint_fails_at_open_naming_the_bucket() {
    // Port 80 of an address nothing listens on: connection refused, after the listing's retries.
    let location = Location::parse("gs://b/p").unwrap();
    let options = StorageOptions {
        gcs_endpoint: Some("http://127.0.0.254".to_owned()),
        ..StorageOptions::default()
    };
    let error = Storage::open(&location, &options).await.unwrap_err();
    assert!(error.to_string().contains("gs://b/p"), "{error}");
    assert_eq!(error.category(), "storage");
}

#[test]
fn emulators_run_side_by_side_and_stop_on_drop() {
    let a = GcsServer::start(&["one"]).unwrap();
    let b = GcsServer::start(&["two"]).unwrap();
    assert_ne!(a.ip(), b.ip());
    let pid = a.pid().unwrap();
    drop(a);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "fake-gcs-server pid {pid} still runs after drop"
    );
    drop(b);
}

const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

/// Bucketeer-shaped data (ec/uc per hour for 40 days with sparse and dense HyperLogLogs, goal
/// counters, dedup flags with TTLs) plus every other type, binary keys and values, an empty and
/// a 1 MiB value. Returns the number of keys.
async fn fill(conn: &mut MultiplexedConnection) -> usize {
    let now = chrono::Utc::now().timestamp();
    let first_bucket = (now / HOUR) * HOUR - 40 * DAY;
    let mut pipe = redis::pipe();
    let mut keys = 0;
    for hour in 0..(40 * 24) {
        let bucket = first_bucket + hour * HOUR;
        for variation in ["v1", "default"] {
            let ec = format!("ec:{bucket}:checkout:{variation}");
            let uc = format!("uc:{bucket}:checkout:{variation}");
            let users: Vec<String> = (0..(hour % 13 + 1)).map(|u| format!("user-{u}")).collect();
            pipe.cmd("INCRBY").arg(&ec).arg(hour + 1).ignore();
            pipe.cmd("PFADD").arg(&uc).arg(&users).ignore();
            pipe.cmd("EXPIREAT")
                .arg(&ec)
                .arg(bucket + 45 * DAY)
                .ignore();
            pipe.cmd("EXPIREAT")
                .arg(&uc)
                .arg(bucket + 45 * DAY)
                .ignore();
            keys += 2;
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
            keys += 2;
        }
    }
    for day in 0..2 {
        let users: Vec<String> = (0..5000).map(|u| format!("dense-{u}")).collect();
        pipe.cmd("PFADD")
            .arg(format!("uc:{}:dense:v1", first_bucket + day * DAY))
            .arg(&users)
            .ignore();
        keys += 1;
    }
    for i in 0..40 {
        pipe.cmd("SET")
            .arg(format!("dd:{i:040x}"))
            .arg(1)
            .arg("EX")
            .arg(3600 + i)
            .ignore();
        keys += 1;
    }
    pipe.cmd("HSET")
        .arg("exp:checkout")
        .arg(&[("name", "Checkout"), ("variations", "v1,default")])
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
    pipe.cmd("SET")
        .arg(b"bin:\xff\x00\xfe".as_slice())
        .arg(b"\x00\x01\xff\xfe".as_slice())
        .ignore();
    pipe.cmd("SET").arg("empty").arg("").ignore();
    pipe.cmd("SET")
        .arg("big")
        .arg(pattern(1024 * 1024, 9))
        .ignore();
    keys += 7;
    pipe.query_async::<()>(conn).await.unwrap();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyspace_round_trips_through_gcs_into_a_fresh_redis() {
    let gcs = GcsServer::start(&[BUCKET]).unwrap();
    let storage = options(&gcs);
    let destination = Location::parse(&format!("gs://{BUCKET}/abstore/prod")).unwrap();

    let source = RedisServer::start_default().unwrap();
    let mut source_conn = source.connection().await.unwrap();
    let keys = fill(&mut source_conn).await;
    let before = snapshot(&mut source_conn).await;
    assert_eq!(before.len(), keys);

    // A small part limit forces several parts, each a streamed resumable upload.
    let summary = backup::run(&BackupOptions {
        storage: storage.clone(),
        part_max_records: 700,
        ..BackupOptions::new(source.url(), destination.clone())
    })
    .await
    .unwrap();
    assert_eq!(summary.keys, keys as u64);
    assert!(summary.parts >= 3, "{summary:?}");
    assert!(
        summary
            .backup
            .starts_with(&format!("gs://{BUCKET}/abstore/prod/")),
        "{}",
        summary.backup
    );

    // A later folder with a part and no manifest (a backup that died): listed as incomplete,
    // never restored.
    let store = Storage::open(&destination, &storage).await.unwrap();
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let broken = backup_folder(later, "deadbeef");
    store
        .put(
            &format!("{broken}/{}", part_name(0)),
            Bytes::from_static(b"junk"),
        )
        .await
        .unwrap();

    let listed = list::run(&ListOptions {
        from: destination.clone(),
        storage: storage.clone(),
    })
    .await
    .unwrap();
    assert_eq!((listed.complete, listed.incomplete), (1, 1), "{listed:?}");
    let complete = listed.backups.iter().find(|b| b.complete).unwrap();
    assert_eq!(complete.backup, summary.backup);
    assert_eq!(complete.keys, Some(keys as u64));
    let manifest_key = format!(
        "{}/{MANIFEST_NAME}",
        summary
            .backup
            .strip_prefix(&format!("gs://{BUCKET}/abstore/prod/"))
            .unwrap()
    );
    assert!(store.get(&manifest_key).await.is_ok());

    let verified = verify::run(&VerifyOptions {
        from: Location::parse(&summary.backup).unwrap(),
        storage: storage.clone(),
    })
    .await
    .unwrap();
    assert_eq!(verified.keys, summary.keys);
    assert_eq!(verified.parts, summary.parts);

    // Restore from the destination URL: the newest complete backup is used.
    let target = RedisServer::start_default().unwrap();
    let restored = restore::run(&RestoreOptions {
        storage: storage.clone(),
        ..RestoreOptions::new(destination.clone(), target.url(), RestoreMode::Overwrite)
    })
    .await
    .unwrap();
    assert_eq!(restored.backup, summary.backup);
    assert_eq!(restored.written, keys as u64);

    let mut target_conn = target.connection().await.unwrap();
    let after = snapshot(&mut target_conn).await;
    assert_same_keyspace(&before, &after);
    assert_same_unique_counts(&before, &mut source_conn, &mut target_conn).await;
}
