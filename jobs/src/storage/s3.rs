//! The S3 backend: objects under `s3://bucket/prefix` through aws-sdk-s3, with streamed uploads
//! as multipart uploads that are aborted on failure, and SDK errors turned into `StorageError`s
//! that name the URL (and, for network failures, the endpoint) at fault.
//!
//! # Configuration
//!
//! - Credentials and region come from the standard AWS chain (`aws-config`), in this order:
//!   `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`; `AWS_PROFILE` and
//!   `~/.aws/{config,credentials}`; IRSA (`AWS_ROLE_ARN` and `AWS_WEB_IDENTITY_TOKEN_FILE`, set by
//!   EKS for a service account annotated with `eks.amazonaws.com/role-arn`); EKS Pod Identity
//!   (`AWS_CONTAINER_CREDENTIALS_FULL_URI` and `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, set by
//!   the Pod Identity agent); EC2 instance metadata. Region from `AWS_REGION` /
//!   `AWS_DEFAULT_REGION` / the profile; when none is configured `us-east-1` is used (what
//!   S3-compatible servers expect) and a warning is logged.
//! - `--s3-endpoint URL` (`ABSTORE_S3_ENDPOINT`) points at an S3-compatible server (SeaweedFS,
//!   MinIO, Ceph RGW, …); `--s3-path-style` (`ABSTORE_S3_PATH_STYLE`) addresses buckets as
//!   `endpoint/bucket/key` instead of `bucket.endpoint/key`, which most of them need.
//! - Request checksums are only sent where S3 requires them: several S3-compatible servers reject
//!   the SDK's default CRC trailers, SigV4 already signs each payload's SHA-256, and every backup
//!   part carries its own SHA-256 in the manifest.
//!
//! # IAM permissions
//!
//! On the bucket (`arn:aws:s3:::BUCKET`): `s3:ListBucket` (backup listing; `open` probes the prefix
//! with one ListObjectsV2 call). On the objects (`arn:aws:s3:::BUCKET/PREFIX/*`): `s3:PutObject`
//! (PutObject and the multipart calls), `s3:GetObject`, `s3:AbortMultipartUpload`,
//! `s3:ListMultipartUploadParts`. A lifecycle rule `AbortIncompleteMultipartUpload` (e.g. after
//! 1 day) is still recommended: a job killed outright (OOM, node loss) cannot abort its upload.

use std::fmt;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};

use super::{ObjectInfo, StorageError, StorageOptions};

/// Smallest part size S3 accepts for every part but the last is 5 MiB; 8 MiB keeps the number of
/// requests low while bounding the memory one upload holds.
pub const MIN_PART_SIZE: usize = 8 * 1024 * 1024;
/// S3 allows at most 10,000 parts per upload; doubling the part size every 1,000 parts lifts
/// the object size limit far beyond anything a backup part reaches (78 GiB at a fixed 8 MiB).
const PARTS_PER_SIZE_STEP: u32 = 1000;
/// Used when the AWS chain configures no region: S3-compatible servers accept it, and AWS itself
/// answers with a clear redirect error naming the bucket's region.
const FALLBACK_REGION: &str = "us-east-1";
/// A dead endpoint should fail the job in seconds, not hang it; an 8 MiB part on a slow link
/// still fits in an attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const OPERATION_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(300);

/// S3 error codes that mean the caller's identity is wrong or not allowed.
const ACCESS_DENIED_CODES: &[&str] = &[
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AllAccessDisabled",
    "AccountProblem",
];

/// A bucket and key prefix on S3 (or an S3-compatible server).
#[derive(Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    /// Without leading or trailing `/`; empty for the bucket's root.
    prefix: String,
    /// Where requests go, for error messages.
    endpoint: String,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// Connects with the standard AWS credential chain, then lists the prefix once so that
    /// missing credentials, a denied identity, an unknown bucket or an unreachable endpoint fail
    /// here, before any work starts.
    pub async fn open(
        bucket: &str,
        prefix: &str,
        options: &StorageOptions,
    ) -> Result<S3Store, StorageError> {
        S3Store::open_with_credentials(bucket, prefix, options, None).await
    }

    /// Like `open`, with explicit static credentials instead of the chain when given (tests and
    /// tools that hold a key pair; the environment is process-wide and cannot differ per store).
    pub async fn open_with_credentials(
        bucket: &str,
        prefix: &str,
        options: &StorageOptions,
        credentials: Option<Credentials>,
    ) -> Result<S3Store, StorageError> {
        let prefix = prefix.trim_matches('/').to_owned();
        let url = root_url(bucket, &prefix);
        let sdk_config = aws_config::defaults(BehaviorVersion::latest()).load().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&sdk_config)
            .force_path_style(options.s3_path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(OPERATION_ATTEMPT_TIMEOUT)
                    .build(),
            );
        let region = match sdk_config.region() {
            Some(region) => region.clone(),
            None => {
                tracing::warn!(
                    fallback = FALLBACK_REGION,
                    "no AWS region configured (AWS_REGION, AWS_DEFAULT_REGION or a profile); using the fallback"
                );
                Region::from_static(FALLBACK_REGION)
            }
        };
        builder = builder.region(region.clone());
        if let Some(endpoint) = &options.s3_endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        let credentials_provider = match credentials {
            Some(credentials) => {
                builder = builder.credentials_provider(credentials);
                None
            }
            None => sdk_config.credentials_provider(),
        };
        // Resolving the chain here turns "no credentials anywhere" into one clear error instead
        // of a signing failure on the first request.
        if let Some(provider) = credentials_provider {
            use aws_sdk_s3::config::ProvideCredentials;
            provider
                .provide_credentials()
                .await
                .map_err(|error| StorageError::AccessDenied {
                    url: url.clone(),
                    reason: format!(
                        "no usable AWS credentials (environment, profile, IRSA web identity, EKS Pod Identity or instance metadata): {}",
                        causes(&error)
                    ),
                })?;
        }
        let endpoint = options
            .s3_endpoint
            .clone()
            .unwrap_or_else(|| format!("the AWS S3 endpoint of region {region}"));
        let store = S3Store {
            client: Client::from_conf(builder.build()),
            bucket: bucket.to_owned(),
            prefix,
            endpoint,
        };
        store
            .client
            .list_objects_v2()
            .bucket(&store.bucket)
            .prefix(store.full_key(""))
            .max_keys(1)
            .send()
            .await
            .map_err(|e| store.error("listing", &url, e))?;
        tracing::debug!(url, endpoint = store.endpoint, "S3 store opened");
        Ok(store)
    }

    /// The client, for callers that need an S3 call this interface does not offer.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Writes a small object in one PutObject request.
    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        let url = self.url_of(key);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| self.error("writing", &url, e))?;
        Ok(())
    }

    /// Reads a whole object; `NotFound` when the key does not exist.
    pub async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        let url = self.url_of(key);
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| self.error("reading", &url, e))?;
        let body = output
            .body
            .collect()
            .await
            .map_err(|e| StorageError::Backend {
                action: "reading",
                url: url.clone(),
                reason: format!(
                    "the download from {} broke off: {}",
                    self.endpoint,
                    causes(&e)
                ),
            })?;
        Ok(body.into_bytes())
    }

    /// Every object whose key (relative to the store's prefix) starts with `prefix`, sorted,
    /// following ListObjectsV2 continuation tokens across pages.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let url = self.url_of(prefix);
        let full_prefix = self.full_key(prefix);
        let strip = self.full_key("");
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&full_prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.error("listing", &url, e))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                let Some(relative) = key.strip_prefix(&strip) else {
                    continue;
                };
                objects.push(ObjectInfo {
                    key: relative.to_owned(),
                    size: object
                        .size()
                        .and_then(|s| u64::try_from(s).ok())
                        .unwrap_or(0),
                });
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated().unwrap_or(false) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// Starts a streamed upload; the multipart upload itself is created with the first full
    /// part, so a small object costs one PutObject.
    pub async fn upload(&self, key: &str) -> Result<S3Upload, StorageError> {
        Ok(S3Upload {
            store: self.clone(),
            key: self.full_key(key),
            url: self.url_of(key),
            parts: PartBuffer::new(),
            upload_id: None,
            completed: Vec::new(),
            failed: false,
        })
    }

    /// `prefix/key`, or `key` at the bucket's root. `full_key("")` is the prefix with its
    /// trailing `/`, so listing `backups` never matches `backups-old/…`.
    fn full_key(&self, key: &str) -> String {
        match (self.prefix.is_empty(), key.is_empty()) {
            (true, _) => key.to_owned(),
            (false, true) => format!("{}/", self.prefix),
            (false, false) => format!("{}/{key}", self.prefix),
        }
    }

    fn url_of(&self, key: &str) -> String {
        let root = root_url(&self.bucket, &self.prefix);
        if key.is_empty() {
            root
        } else {
            format!("{}/{key}", root.trim_end_matches('/'))
        }
    }

    fn error<E>(&self, action: &'static str, url: &str, error: SdkError<E>) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        classify(action, url, &self.bucket, &self.endpoint, error)
    }
}

fn root_url(bucket: &str, prefix: &str) -> String {
    if prefix.is_empty() {
        format!("s3://{bucket}")
    } else {
        format!("s3://{bucket}/{prefix}")
    }
}

/// Turns an SDK error into the storage contract's categories: identity problems become
/// `AccessDenied`, missing keys and buckets `NotFound`, everything else `Backend` with the
/// endpoint named (for a refused connection the endpoint is what the operator has to check).
fn classify<E>(
    action: &'static str,
    url: &str,
    bucket: &str,
    endpoint: &str,
    error: SdkError<E>,
) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = error.raw_response().map(|r| r.status().as_u16());
    if let Some(service) = error.as_service_error() {
        let code = service.code().unwrap_or("");
        let message = service.message().unwrap_or("");
        let described = match (code.is_empty(), message.is_empty()) {
            (false, false) => format!("{code}: {message}"),
            (false, true) => code.to_owned(),
            (true, false) => message.to_owned(),
            (true, true) => format!("HTTP status {}", status.unwrap_or(0)),
        };
        if ACCESS_DENIED_CODES.contains(&code) || status == Some(403) {
            return StorageError::AccessDenied {
                url: url.to_owned(),
                reason: format!("{described} (check the AWS credentials and the IAM policy)"),
            };
        }
        if code == "NoSuchBucket" {
            return StorageError::NotFound {
                url: format!("s3://{bucket} (bucket)"),
            };
        }
        if code == "NoSuchKey" || status == Some(404) {
            return StorageError::NotFound {
                url: url.to_owned(),
            };
        }
        return StorageError::Backend {
            action,
            url: url.to_owned(),
            reason: format!("{endpoint} answered {described}"),
        };
    }
    let reason = match &error {
        SdkError::DispatchFailure(failure) if failure.is_io() || failure.is_timeout() => {
            format!("cannot reach S3 endpoint {endpoint}: {}", causes(&error))
        }
        SdkError::TimeoutError(_) => format!(
            "S3 endpoint {endpoint} did not answer in time: {}",
            causes(&error)
        ),
        _ => format!("S3 endpoint {endpoint}: {}", causes(&error)),
    };
    StorageError::Backend {
        action,
        url: url.to_owned(),
        reason,
    }
}

/// The error and its sources joined with `: ` — what `DisplayErrorContext` shows, without the
/// Debug dump it appends, which is noise in a job summary.
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(current) = next {
        let text = current.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        next = current.source();
    }
    parts.join(": ")
}

/// A streamed upload to S3: bytes are buffered into parts of at least `MIN_PART_SIZE`, each
/// sent as an UploadPart; `finish` completes the multipart upload (or sends one PutObject when
/// the object never reached a full part). Any failure aborts the multipart upload, so no parts
/// linger (and keep costing storage) after an error.
pub struct S3Upload {
    store: S3Store,
    key: String,
    url: String,
    parts: PartBuffer,
    upload_id: Option<String>,
    completed: Vec<CompletedPart>,
    /// Set after a failed request: the upload has been aborted and takes no more bytes.
    failed: bool,
}

impl fmt::Debug for S3Upload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Upload")
            .field("url", &self.url)
            .field("upload_id", &self.upload_id)
            .field("parts_sent", &self.completed.len())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl S3Upload {
    /// Appends bytes, sending every part that fills up.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        self.check_usable()?;
        for part in self.parts.push(chunk) {
            if let Err(error) = self.send_part(part).await {
                self.fail().await;
                return Err(error);
            }
        }
        Ok(())
    }

    /// Completes the upload and returns the object's size.
    pub async fn finish(mut self) -> Result<u64, StorageError> {
        self.check_usable()?;
        let size = self.parts.total();
        let rest = self.parts.take_rest();
        let result = if self.upload_id.is_none() {
            self.put_whole(rest).await
        } else {
            self.complete(rest).await
        };
        match result {
            Ok(()) => {
                tracing::debug!(
                    url = self.url,
                    size,
                    parts = self.completed.len(),
                    "uploaded"
                );
                Ok(size)
            }
            Err(error) => {
                self.fail().await;
                Err(error)
            }
        }
    }

    /// Abandons the upload: aborts the multipart upload if one was started (a no-op after a
    /// failure, which already aborted it).
    pub async fn abort(mut self) -> Result<(), StorageError> {
        let Some(upload_id) = self.upload_id.take() else {
            return Ok(());
        };
        self.abort_multipart(&upload_id).await
    }

    fn check_usable(&self) -> Result<(), StorageError> {
        if self.failed {
            return Err(StorageError::Backend {
                action: "writing",
                url: self.url.clone(),
                reason: "the upload already failed and was aborted".to_owned(),
            });
        }
        Ok(())
    }

    async fn put_whole(&self, data: Bytes) -> Result<(), StorageError> {
        self.store
            .client
            .put_object()
            .bucket(&self.store.bucket)
            .key(&self.key)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| self.store.error("writing", &self.url, e))?;
        Ok(())
    }

    async fn send_part(&mut self, data: Bytes) -> Result<(), StorageError> {
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let created = self
                    .store
                    .client
                    .create_multipart_upload()
                    .bucket(&self.store.bucket)
                    .key(&self.key)
                    .send()
                    .await
                    .map_err(|e| self.store.error("starting the upload of", &self.url, e))?;
                let id = created
                    .upload_id()
                    .ok_or_else(|| StorageError::Backend {
                        action: "starting the upload of",
                        url: self.url.clone(),
                        reason: format!(
                            "{} returned no upload id for CreateMultipartUpload",
                            self.store.endpoint
                        ),
                    })?
                    .to_owned();
                tracing::debug!(url = self.url, upload_id = id, "multipart upload started");
                self.upload_id = Some(id.clone());
                id
            }
        };
        let part_number = i32::try_from(self.completed.len() + 1).unwrap_or(i32::MAX);
        let sent = self
            .store
            .client
            .upload_part()
            .bucket(&self.store.bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .part_number(part_number)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| self.store.error("uploading a part of", &self.url, e))?;
        self.completed.push(
            CompletedPart::builder()
                .part_number(part_number)
                .set_e_tag(sent.e_tag().map(str::to_owned))
                .build(),
        );
        Ok(())
    }

    async fn complete(&mut self, rest: Bytes) -> Result<(), StorageError> {
        // A multipart upload needs at least one part; an empty rest after full parts adds none.
        if !rest.is_empty() {
            self.send_part(rest).await?;
        }
        let upload_id = self.upload_id.clone().unwrap_or_default();
        self.store
            .client
            .complete_multipart_upload()
            .bucket(&self.store.bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(self.completed.clone()))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.store.error("completing the upload of", &self.url, e))?;
        self.upload_id = None;
        Ok(())
    }

    /// After a failed request: abort what was started, keeping the first error for the caller
    /// (an abort failure is only logged — the server may be the very thing that is gone).
    async fn fail(&mut self) {
        self.failed = true;
        if let Some(upload_id) = self.upload_id.take()
            && let Err(error) = self.abort_multipart(&upload_id).await
        {
            tracing::warn!(
                url = self.url,
                upload_id,
                %error,
                "could not abort the multipart upload after a failure; a bucket lifecycle rule (AbortIncompleteMultipartUpload) removes its parts"
            );
        }
    }

    async fn abort_multipart(&self, upload_id: &str) -> Result<(), StorageError> {
        self.store
            .client
            .abort_multipart_upload()
            .bucket(&self.store.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| self.store.error("aborting the upload of", &self.url, e))?;
        tracing::debug!(url = self.url, upload_id, "multipart upload aborted");
        Ok(())
    }
}

impl Drop for S3Upload {
    /// An upload dropped unfinished (its task cancelled, an early `?` in the caller) would keep
    /// its parts on S3 until a lifecycle rule removes them; abort it in the background while a
    /// runtime is there to run the request. Best effort: a runtime shutting down may not get to it.
    fn drop(&mut self) {
        let Some(upload_id) = self.upload_id.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                url = self.url,
                upload_id,
                "multipart upload dropped without a runtime to abort it"
            );
            return;
        };
        let client = self.store.client.clone();
        let bucket = self.store.bucket.clone();
        let key = self.key.clone();
        let url = self.url.clone();
        runtime.spawn(async move {
            let aborted = client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
            match aborted {
                Ok(_) => tracing::debug!(url, upload_id, "dropped multipart upload aborted"),
                Err(error) => tracing::warn!(
                    url,
                    upload_id,
                    error = %causes(&error),
                    "could not abort a dropped multipart upload"
                ),
            }
        });
    }
}

/// Cuts a stream of chunks of any size into parts: every part but the last is exactly the part
/// size for its position (8 MiB, doubling every 1,000 parts), so memory stays at one part plus
/// one chunk.
#[derive(Debug)]
struct PartBuffer {
    buffer: BytesMut,
    parts_cut: u32,
    total: u64,
    base_size: usize,
}

impl PartBuffer {
    fn new() -> PartBuffer {
        PartBuffer::with_part_size(MIN_PART_SIZE)
    }

    fn with_part_size(base_size: usize) -> PartBuffer {
        PartBuffer {
            buffer: BytesMut::new(),
            parts_cut: 0,
            total: 0,
            base_size,
        }
    }

    /// The size of the next full part.
    fn part_size(&self) -> usize {
        let doublings = (self.parts_cut / PARTS_PER_SIZE_STEP).min(16);
        self.base_size.saturating_mul(1 << doublings)
    }

    /// Adds a chunk and returns the parts it completed, in order.
    fn push(&mut self, chunk: Bytes) -> Vec<Bytes> {
        self.total += chunk.len() as u64;
        self.buffer.extend_from_slice(&chunk);
        let mut full = Vec::new();
        while self.buffer.len() >= self.part_size() {
            let size = self.part_size();
            full.push(self.buffer.split_to(size).freeze());
            self.parts_cut += 1;
        }
        full
    }

    /// What is left after the last full part (possibly empty).
    fn take_rest(&mut self) -> Bytes {
        self.buffer.split().freeze()
    }

    /// Every byte pushed so far.
    fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn lengths(parts: &[Bytes]) -> Vec<usize> {
        parts.iter().map(Bytes::len).collect()
    }

    #[test]
    fn chunks_smaller_than_a_part_accumulate_until_the_part_is_full() {
        let mut buffer = PartBuffer::with_part_size(10);
        assert!(buffer.push(Bytes::from_static(b"abcd")).is_empty());
        assert!(buffer.push(Bytes::from_static(b"efgh")).is_empty());
        let parts = buffer.push(Bytes::from_static(b"ijkl"));
        assert_eq!(parts, vec![Bytes::from_static(b"abcdefghij")]);
        assert_eq!(buffer.take_rest(), Bytes::from_static(b"kl"));
        assert_eq!(buffer.total(), 12);
    }

    #[test]
    fn one_large_chunk_is_cut_into_several_parts_in_order() {
        let mut buffer = PartBuffer::with_part_size(4);
        let data: Vec<u8> = (0..11).collect();
        let parts = buffer.push(Bytes::from(data.clone()));
        assert_eq!(lengths(&parts), vec![4, 4]);
        let rest = buffer.take_rest();
        let joined: Vec<u8> = parts
            .iter()
            .chain([&rest])
            .flat_map(|p| p.to_vec())
            .collect();
        assert_eq!(joined, data, "no byte lost, duplicated or reordered");
    }

    #[test]
    fn an_exact_multiple_leaves_an_empty_rest() {
        // `finish` must then complete with the parts sent, not add an empty last part.
        let mut buffer = PartBuffer::with_part_size(3);
        assert_eq!(
            lengths(&buffer.push(Bytes::from_static(b"abcdef"))),
            vec![3, 3]
        );
        assert!(buffer.take_rest().is_empty());
    }

    #[test]
    fn nothing_written_is_an_empty_rest() {
        let mut buffer = PartBuffer::new();
        assert!(buffer.take_rest().is_empty());
        assert_eq!(buffer.total(), 0);
    }

    #[test]
    fn the_part_size_doubles_every_thousand_parts_to_stay_under_the_part_limit() {
        // At a fixed 8 MiB an object could not exceed 10,000 parts × 8 MiB.
        let mut buffer = PartBuffer::with_part_size(1);
        let parts = buffer.push(Bytes::from(vec![0_u8; 1000 + 2 * 1000 + 4]));
        assert_eq!(parts.len(), 2001);
        assert!(parts[..1000].iter().all(|p| p.len() == 1));
        assert!(parts[1000..2000].iter().all(|p| p.len() == 2));
        assert_eq!(parts[2000].len(), 4);
        assert_eq!(MIN_PART_SIZE, 8 * 1024 * 1024);
    }

    #[test]
    fn keys_and_urls_sit_under_the_prefix() {
        let store = |prefix: &str| S3Store {
            client: Client::from_conf(
                aws_sdk_s3::config::Builder::new()
                    .behavior_version(BehaviorVersion::latest())
                    .region(Region::from_static(FALLBACK_REGION))
                    .build(),
            ),
            bucket: "b".into(),
            prefix: prefix.into(),
            endpoint: "test".into(),
        };
        let with = store("backups/prod");
        assert_eq!(
            with.full_key("x/manifest.json"),
            "backups/prod/x/manifest.json"
        );
        assert_eq!(with.full_key(""), "backups/prod/");
        assert_eq!(with.url_of("x"), "s3://b/backups/prod/x");
        let root = store("");
        assert_eq!(root.full_key("x"), "x");
        assert_eq!(root.full_key(""), "");
        assert_eq!(root.url_of("x"), "s3://b/x");
        assert_eq!(root.url_of(""), "s3://b");
    }
}
