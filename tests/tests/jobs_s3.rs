//! The S3 storage backend against a real S3 server (SeaweedFS with SigV4 enforced): round trips,
//! pagination, multipart uploads and their abort, and the errors a user sees for wrong
//! credentials, an unknown bucket and a server that dies mid-upload. Then the `abstore-jobs`
//! command line end to end through S3 (credentials from the AWS environment, as in production):
//! backup → list → verify → restore into a fresh redis-server, and a backup whose S3 server is
//! killed mid-upload.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use abstore_jobs::format::{MANIFEST_NAME, part_name};
use abstore_jobs::storage::s3::{MIN_PART_SIZE, S3Store};
use abstore_jobs::storage::{Storage, StorageError};
use abstore_tests::keyspace::{assert_same_keyspace, assert_same_unique_counts, snapshot};
use abstore_tests::{RedisServer, S3Server};
use aws_sdk_s3::config::Credentials;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

const BUCKET: &str = "backups";

async fn server_with_bucket() -> S3Server {
    let server = S3Server::start().expect("start SeaweedFS");
    server.create_bucket(BUCKET).await.expect("create bucket");
    server
}

async fn open(server: &S3Server, prefix: &str) -> S3Store {
    S3Store::open_with_credentials(
        BUCKET,
        prefix,
        &server.storage_options(),
        Some(server.credentials()),
    )
    .await
    .expect("open S3 store")
}

/// Deterministic bytes that differ at every offset, so a lost, repeated or reordered part shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(2_654_435_761).to_le_bytes()[1])
        .collect()
}

async fn pending_uploads(server: &S3Server) -> Vec<String> {
    let listed = server
        .client()
        .list_multipart_uploads()
        .bucket(BUCKET)
        .send()
        .await
        .expect("ListMultipartUploads");
    listed
        .uploads()
        .iter()
        .filter_map(|u| u.key().map(str::to_owned))
        .collect()
}

async fn object_exists(server: &S3Server, key: &str) -> bool {
    server
        .client()
        .head_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .is_ok()
}

#[tokio::test]
async fn put_get_and_list_round_trip_under_the_prefix_across_list_pages() {
    let server = server_with_bucket().await;
    let store = open(&server, "abstore/prod").await;

    store
        .put(
            "2024/01/01/run/manifest.json",
            Bytes::from_static(b"{\"v\":1}"),
        )
        .await
        .unwrap();
    assert_eq!(
        store.get("2024/01/01/run/manifest.json").await.unwrap(),
        Bytes::from_static(b"{\"v\":1}")
    );

    // More keys than one ListObjectsV2 page (1,000), so the continuation token is followed.
    const KEYS: usize = 1_050;
    futures::stream::iter(0..KEYS)
        .map(|i| {
            let store = &store;
            async move {
                store
                    .put(&format!("many/part-{i:05}"), Bytes::from(vec![b'x'; i % 7]))
                    .await
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await
        .unwrap();
    // A sibling prefix that must not show up: `abstore/prod` is not `abstore/prod-old`.
    let sibling = open(&server, "abstore/prod-old").await;
    sibling.put("many/part-99999", Bytes::new()).await.unwrap();

    let listed = store.list("many/").await.unwrap();
    assert_eq!(listed.len(), KEYS);
    assert_eq!(listed[0].key, "many/part-00000");
    assert_eq!(listed[KEYS - 1].key, format!("many/part-{:05}", KEYS - 1));
    assert!(listed.windows(2).all(|w| w[0].key < w[1].key), "sorted");
    assert!(
        listed
            .iter()
            .enumerate()
            .all(|(i, o)| o.size == (i % 7) as u64)
    );

    let everything = store.list("").await.unwrap();
    assert_eq!(everything.len(), KEYS + 1);
    assert!(everything.iter().all(|o| !o.key.starts_with('/')));
    assert!(store.list("nothing-here/").await.unwrap().is_empty());
}

#[tokio::test]
async fn get_of_a_missing_key_is_not_found_naming_the_url() {
    let server = server_with_bucket().await;
    let store = open(&server, "p").await;
    let error = store.get("absent/manifest.json").await.unwrap_err();
    assert!(matches!(error, StorageError::NotFound { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("s3://backups/p/absent/manifest.json"),
        "{error}"
    );
}

#[tokio::test]
async fn a_multipart_upload_of_several_parts_downloads_byte_exact() {
    let server = server_with_bucket().await;
    let store = open(&server, "multi").await;
    // Three full parts and a short last one, written in odd-sized chunks that straddle parts.
    let data = pattern(3 * MIN_PART_SIZE + 123_457);
    let mut upload = Storage::S3(store.clone()).upload("big.bin").await.unwrap();
    for chunk in data.chunks(1_000_003) {
        upload.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    assert!(
        !object_exists(&server, "multi/big.bin").await,
        "nothing is visible before finish"
    );
    let size = upload.finish().await.unwrap();
    assert_eq!(size, data.len() as u64);

    let head = server
        .client()
        .head_object()
        .bucket(BUCKET)
        .key("multi/big.bin")
        .send()
        .await
        .unwrap();
    // A multipart ETag ends in -<parts>; this proves the multipart path ran, not one PutObject.
    assert!(
        head.e_tag().unwrap_or("").contains("-4"),
        "{:?}",
        head.e_tag()
    );

    let downloaded = store.get("big.bin").await.unwrap();
    assert_eq!(downloaded.len(), data.len());
    assert!(downloaded == data, "downloaded bytes differ");
    assert!(pending_uploads(&server).await.is_empty());
}

#[tokio::test]
async fn a_small_upload_is_one_object_and_an_empty_one_is_allowed() {
    let server = server_with_bucket().await;
    let store = Storage::S3(open(&server, "").await);
    let mut upload = store.upload("small").await.unwrap();
    upload.write(Bytes::from_static(b"hello ")).await.unwrap();
    upload.write(Bytes::from_static(b"world")).await.unwrap();
    assert_eq!(upload.finish().await.unwrap(), 11);
    assert_eq!(
        store.get("small").await.unwrap(),
        Bytes::from_static(b"hello world")
    );

    let empty = store.upload("empty").await.unwrap();
    assert_eq!(empty.finish().await.unwrap(), 0);
    assert!(store.get("empty").await.unwrap().is_empty());

    // An exact multiple of the part size ends without an empty extra part.
    let data = pattern(MIN_PART_SIZE);
    let mut upload = store.upload("exact").await.unwrap();
    upload.write(Bytes::from(data.clone())).await.unwrap();
    assert_eq!(upload.finish().await.unwrap(), data.len() as u64);
    assert!(store.get("exact").await.unwrap() == data);
}

#[tokio::test]
async fn abort_leaves_no_object_and_no_pending_multipart_upload() {
    let server = server_with_bucket().await;
    let store = Storage::S3(open(&server, "aborted").await);
    let mut upload = store.upload("part-00001.jsonl.zst").await.unwrap();
    upload
        .write(Bytes::from(pattern(2 * MIN_PART_SIZE + 10)))
        .await
        .unwrap();
    assert_eq!(
        pending_uploads(&server).await,
        vec!["aborted/part-00001.jsonl.zst".to_owned()],
        "parts were sent as a multipart upload"
    );
    upload.abort().await.unwrap();

    assert!(pending_uploads(&server).await.is_empty());
    assert!(!object_exists(&server, "aborted/part-00001.jsonl.zst").await);
    assert!(store.list("").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_upload_is_aborted_in_the_background() {
    // A cancelled backup task drops its upload without calling abort.
    let server = server_with_bucket().await;
    let store = Storage::S3(open(&server, "dropped").await);
    let mut upload = store.upload("part").await.unwrap();
    upload
        .write(Bytes::from(pattern(MIN_PART_SIZE + 1)))
        .await
        .unwrap();
    assert_eq!(pending_uploads(&server).await.len(), 1);
    drop(upload);

    let deadline = Instant::now() + Duration::from_secs(20);
    while !pending_uploads(&server).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the dropped upload was not aborted"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(!object_exists(&server, "dropped/part").await);
}

#[tokio::test]
async fn wrong_credentials_are_access_denied_naming_the_url() {
    let server = server_with_bucket().await;
    let wrong = Credentials::new(server.access_key(), "not-the-secret", None, None, "test");
    let error =
        S3Store::open_with_credentials(BUCKET, "prod", &server.storage_options(), Some(wrong))
            .await
            .unwrap_err();
    assert!(
        matches!(error, StorageError::AccessDenied { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("s3://backups/prod"), "{message}");
    assert!(message.contains("credentials"), "{message}");

    let unknown = Credentials::new("AKUNKNOWN", "whatever", None, None, "test");
    let error =
        S3Store::open_with_credentials(BUCKET, "", &server.storage_options(), Some(unknown))
            .await
            .unwrap_err();
    assert!(
        matches!(error, StorageError::AccessDenied { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_identity_without_write_permission_is_access_denied_on_put() {
    let server = server_with_bucket().await;
    let store = S3Store::open_with_credentials(
        BUCKET,
        "prod",
        &server.storage_options(),
        Some(server.reader_credentials()),
    )
    .await
    .expect("the reader may list");
    let error = store.put("x", Bytes::from_static(b"x")).await.unwrap_err();
    assert!(
        matches!(error, StorageError::AccessDenied { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("s3://backups/prod/x"), "{error}");
}

#[tokio::test]
async fn an_unknown_bucket_is_refused_at_open_naming_the_bucket() {
    let server = server_with_bucket().await;
    let error = S3Store::open_with_credentials(
        "no-such-bucket",
        "prod",
        &server.storage_options(),
        Some(server.credentials()),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, StorageError::NotFound { .. }), "{error:?}");
    assert!(error.to_string().contains("s3://no-such-bucket"), "{error}");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_backend_error_naming_the_endpoint() {
    let server = server_with_bucket().await;
    let options = server.storage_options();
    drop(server);
    let error = S3Store::open_with_credentials(
        BUCKET,
        "prod",
        &options,
        Some(Credentials::new("a", "b", None, None, "test")),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, StorageError::Backend { .. }), "{error:?}");
    let endpoint = options.s3_endpoint.unwrap();
    assert!(error.to_string().contains(&endpoint), "{error}");
    assert!(error.to_string().contains("s3://backups/prod"), "{error}");
}

#[tokio::test]
async fn the_server_killed_mid_upload_fails_the_upload_and_leaves_no_object() {
    let mut server = server_with_bucket().await;
    let store = Storage::S3(open(&server, "killed").await);
    let mut upload = store.upload("part-00001.jsonl.zst").await.unwrap();
    upload
        .write(Bytes::from(pattern(MIN_PART_SIZE + 1)))
        .await
        .expect("first part goes through");

    server.kill9().unwrap();
    let written = upload.write(Bytes::from(pattern(MIN_PART_SIZE))).await;
    let error = match written {
        Err(error) => error,
        Ok(()) => upload.finish().await.unwrap_err(),
    };
    assert!(matches!(error, StorageError::Backend { .. }), "{error:?}");
    assert!(error.to_string().contains(&server.endpoint()), "{error}");

    server.restart().unwrap();
    assert!(!object_exists(&server, "killed/part-00001.jsonl.zst").await);
    // The store still works once the server is back: the next run succeeds.
    let store = Storage::S3(open(&server, "killed").await);
    let mut upload = store.upload("part-00001.jsonl.zst").await.unwrap();
    upload.write(Bytes::from_static(b"again")).await.unwrap();
    upload.finish().await.unwrap();
    assert_eq!(
        store.get("part-00001.jsonl.zst").await.unwrap(),
        Bytes::from_static(b"again")
    );
}

// ---- the command line end to end through S3 ----

const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

/// Bytes zstd cannot shrink (xorshift), so a backup part is as large as the values in it and
/// crosses the 8 MiB multipart threshold.
fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[3]
        })
        .collect()
}

/// Bucketeer-shaped counters and HyperLogLogs (hourly, 40 days, with TTLs), a dense HLL, dedup
/// flags, every other type, binary and empty values, and `big_values` incompressible 1 MiB
/// values. Returns the number of keys.
async fn fill(conn: &mut MultiplexedConnection, big_values: usize) -> usize {
    let now = chrono::Utc::now().timestamp();
    let first_bucket = (now / HOUR) * HOUR - 40 * DAY;
    let mut pipe = redis::pipe();
    let mut keys = 0;
    for hour in 0..(40 * 24) {
        let bucket = first_bucket + hour * HOUR;
        let ec = format!("ec:{bucket}:checkout:v1");
        let uc = format!("uc:{bucket}:checkout:v1");
        let users: Vec<String> = (0..(hour % 11 + 1)).map(|u| format!("user-{u}")).collect();
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
    let dense: Vec<String> = (0..5000).map(|u| format!("dense-{u}")).collect();
    pipe.cmd("PFADD")
        .arg(format!("uc:{first_bucket}:dense:v1"))
        .arg(&dense)
        .ignore();
    for i in 0..20 {
        pipe.cmd("SET")
            .arg(format!("dd:{i:040x}"))
            .arg(1)
            .arg("EX")
            .arg(3600 + i)
            .ignore();
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
        .arg(&[("1.5", "alice"), ("-inf", "bob")])
        .ignore();
    pipe.cmd("SET")
        .arg(b"bin:\xff\x00".as_slice())
        .arg(b"\x00\x01\xff".as_slice())
        .ignore();
    pipe.cmd("SET").arg("empty").arg("").ignore();
    keys += 1 + 20 + 6;
    pipe.query_async::<()>(&mut *conn).await.unwrap();
    for i in 0..big_values {
        let _: () = conn
            .set(format!("big:{i:03}"), incompressible(1 << 20, i as u64))
            .await
            .unwrap();
        keys += 1;
    }
    keys
}

/// `abstore-jobs` as a child process with the AWS environment of a pod (static keys here; IRSA
/// or Pod Identity in EKS), nothing from the developer's own AWS configuration.
fn jobs_command(server: &S3Server, args: &[&str], scratch: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_abstore-jobs-cli"));
    command
        .args(args)
        .envs(server.env())
        .env("AWS_CONFIG_FILE", scratch.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            scratch.join("no-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("ABSTORE_TERMINATION_LOG", scratch.join("termination-log"))
        .env_remove("AWS_PROFILE")
        .env_remove("ABSTORE_REDIS_URL")
        .stdin(Stdio::null());
    command
}

/// Runs a command to completion: exit code and its one JSON summary line.
fn run_jobs(mut command: Command) -> (i32, serde_json::Value) {
    let output = command.output().unwrap();
    summary_of(
        output.status.code().unwrap_or(-1),
        &output.stdout,
        &output.stderr,
    )
}

fn summary_of(code: i32, stdout: &[u8], stderr: &[u8]) -> (i32, serde_json::Value) {
    let stdout = String::from_utf8_lossy(stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "one summary line expected; stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(stderr)
    );
    (code, serde_json::from_str(lines[0]).unwrap())
}

async fn keys_under(server: &S3Server, prefix: &str) -> Vec<String> {
    let listed = server
        .client()
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix(prefix)
        .send()
        .await
        .unwrap();
    listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyspace_round_trips_through_s3_with_the_command_line() {
    let s3 = server_with_bucket().await;
    let scratch = tempfile::tempdir().unwrap();
    let destination = format!("s3://{BUCKET}/abstore/prod");
    let source = RedisServer::start_default().unwrap();
    let mut source_conn = source.connection().await.unwrap();
    // 20 incompressible MiB: the one backup part goes up as a multipart upload of 3 S3 parts.
    let keys = fill(&mut source_conn, 20).await;
    let before = snapshot(&mut source_conn).await;
    assert_eq!(before.len(), keys);

    // Endpoint and path style as flags here (the kill test uses their environment variables).
    let mut backup = jobs_command(
        &s3,
        &["backup", "--redis", &source.url(), "--to", &destination],
        scratch.path(),
    );
    backup
        .env_remove("ABSTORE_S3_ENDPOINT")
        .env_remove("ABSTORE_S3_PATH_STYLE")
        .args(["--s3-endpoint", &s3.endpoint(), "--s3-path-style"]);
    let (code, summary) = run_jobs(backup);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["ok"], true, "{summary}");
    assert_eq!(summary["keys"], keys as u64, "{summary}");
    let folder = summary["backup"].as_str().unwrap().to_owned();
    let folder_key = folder.strip_prefix(&format!("s3://{BUCKET}/")).unwrap();
    assert!(folder_key.starts_with("abstore/prod/"), "{folder}");

    let stored = keys_under(&s3, folder_key).await;
    assert!(
        stored.contains(&format!("{folder_key}/{MANIFEST_NAME}")),
        "{stored:?}"
    );
    let part = s3
        .client()
        .head_object()
        .bucket(BUCKET)
        .key(format!("{folder_key}/{}", part_name(0)))
        .send()
        .await
        .unwrap();
    assert!(
        part.e_tag().unwrap_or("").contains('-'),
        "the part went up as a multipart upload: {:?}",
        part.e_tag()
    );
    assert!(pending_uploads(&s3).await.is_empty());

    let (code, listed) = run_jobs(jobs_command(
        &s3,
        &["list", "--from", &destination],
        scratch.path(),
    ));
    assert_eq!(code, 0, "{listed}");
    assert_eq!(
        (listed["complete"].as_u64(), listed["incomplete"].as_u64()),
        (Some(1), Some(0)),
        "{listed}"
    );
    assert_eq!(listed["backups"][0]["backup"], folder.as_str());

    let (code, verified) = run_jobs(jobs_command(
        &s3,
        &["verify", "--from", &folder],
        scratch.path(),
    ));
    assert_eq!(code, 0, "{verified}");
    assert_eq!(verified["keys"], keys as u64);

    // Restore from the destination: its newest complete backup.
    let target = RedisServer::start_default().unwrap();
    let (code, restored) = run_jobs(jobs_command(
        &s3,
        &[
            "restore",
            "--from",
            &destination,
            "--redis",
            &target.url(),
            "--mode",
            "overwrite",
        ],
        scratch.path(),
    ));
    assert_eq!(code, 0, "{restored}");
    assert_eq!(restored["backup"], folder.as_str());
    assert_eq!(restored["written"], keys as u64);

    let mut target_conn = target.connection().await.unwrap();
    let after = snapshot(&mut target_conn).await;
    assert_same_keyspace(&before, &after);
    assert_same_unique_counts(&before, &mut source_conn, &mut target_conn).await;
}

#[tokio::test]
async fn the_command_line_with_wrong_credentials_fails_with_access_denied_naming_the_url() {
    let s3 = server_with_bucket().await;
    let scratch = tempfile::tempdir().unwrap();
    let source = RedisServer::start_default().unwrap();
    let mut command = jobs_command(
        &s3,
        &[
            "backup",
            "--redis",
            &source.url(),
            "--to",
            &format!("s3://{BUCKET}/prod"),
        ],
        scratch.path(),
    );
    command.env("AWS_SECRET_ACCESS_KEY", "wrong");
    let (code, summary) = run_jobs(command);
    assert_ne!(code, 0, "{summary}");
    assert_eq!(summary["ok"], false);
    assert_eq!(summary["category"], "access-denied", "{summary}");
    let error = summary["error"].as_str().unwrap();
    assert!(error.contains(&format!("s3://{BUCKET}/prod")), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_whose_s3_server_is_killed_mid_upload_fails_without_manifest_and_the_next_run_succeeds()
 {
    let mut s3 = server_with_bucket().await;
    let scratch = tempfile::tempdir().unwrap();
    let destination = format!("s3://{BUCKET}/killed");
    let source = RedisServer::start_default().unwrap();
    let mut source_conn = source.connection().await.unwrap();
    // Enough incompressible data that the upload is still running after its first S3 part.
    let keys = fill(&mut source_conn, 24).await;

    let mut child: Child = jobs_command(
        &s3,
        &["backup", "--redis", &source.url(), "--to", &destination],
        scratch.path(),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();

    // Kill the server once the multipart upload exists (its first part is on its way or stored).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before the S3 server could be killed"
        );
        if !pending_uploads(&s3).await.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no multipart upload started in time"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s3.kill9().unwrap();

    let output = child.wait_with_output().unwrap();
    let (code, summary) = summary_of(
        output.status.code().unwrap_or(-1),
        &output.stdout,
        &output.stderr,
    );
    assert_ne!(code, 0, "{summary}");
    assert_eq!(summary["ok"], false, "{summary}");
    let error = summary["error"].as_str().unwrap();
    assert!(
        error.contains(&s3.endpoint()),
        "the error names the endpoint: {error}"
    );
    assert!(
        error.contains(&destination),
        "the error names the backup: {error}"
    );

    s3.restart().unwrap();
    let stored = keys_under(&s3, "killed/").await;
    assert!(
        !stored.iter().any(|k| k.ends_with(MANIFEST_NAME)),
        "a failed backup has no manifest: {stored:?}"
    );

    let (code, summary) = run_jobs(jobs_command(
        &s3,
        &["backup", "--redis", &source.url(), "--to", &destination],
        scratch.path(),
    ));
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["keys"], keys as u64);
    let (code, listed) = run_jobs(jobs_command(
        &s3,
        &["list", "--from", &destination],
        scratch.path(),
    ));
    assert_eq!(code, 0, "{listed}");
    assert_eq!(listed["complete"], 1, "{listed}");
    assert_eq!(
        listed["backups"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["complete"] == true)
            .count(),
        1
    );

    let target = RedisServer::start_default().unwrap();
    let (code, restored) = run_jobs(jobs_command(
        &s3,
        &[
            "restore",
            "--from",
            &destination,
            "--redis",
            &target.url(),
            "--mode",
            "overwrite",
        ],
        scratch.path(),
    ));
    assert_eq!(code, 0, "{restored}");
    assert_eq!(restored["written"], keys as u64);
}
