//! The S3 storage backend against a real S3 server (SeaweedFS with SigV4 enforced): round trips,
//! pagination, multipart uploads and their abort, and the errors a user sees for wrong
//! credentials, an unknown bucket and a server that dies mid-upload.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use abstore_jobs::storage::s3::{MIN_PART_SIZE, S3Store};
use abstore_jobs::storage::{Storage, StorageError};
use abstore_tests::S3Server;
use aws_sdk_s3::config::Credentials;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

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
