//! Google Cloud Storage backend (`gs://bucket/prefix`): objects are written with resumable
//! uploads and read with `read_object` of the official `google-cloud-storage` crate; listing uses
//! the GCS JSON API over HTTP, because the crate lists through gRPC (StorageControl).
//!
//! Credentials: without `--gcs-endpoint` the client uses Application Default Credentials (GKE
//! Workload Identity, a service-account file, gcloud's login); with `--gcs-endpoint` (an emulator
//! such as fake-gcs-server) it uses anonymous credentials and that endpoint for every call.
//!
//! What is tested against a real server, and what is not: `tests/tests/jobs_gcs.rs` runs every
//! call here (put, get, list with prefix and pagination, streamed multi-chunk upload, abort,
//! missing object, missing bucket) against fake-gcs-server, with anonymous credentials. Not
//! tested anywhere: real OAuth tokens (ADC / Workload Identity, sent by the crate and by the
//! listing code from `google-cloud-auth`), the production endpoints, and retries on 429/5xx.
//! The crate's gRPC paths (StorageControl listing and deletion) are not used at all, because no
//! installable emulator serves them. Two emulator quirks shape the client: the crate drops the
//! port from the `Host` header of a custom endpoint (so tests run the emulator on port 80 of its
//! own loopback address), and its single-shot uploads break emulators, so every upload is forced
//! resumable (`with_resumable_upload_threshold(0)`), which is also what large backups use.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use google_cloud_auth::credentials::{CacheableResource, Credentials};
use google_cloud_storage::client::Storage as GcsClient;
use google_cloud_storage::streaming_source::{SizeHint, StreamingSource};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{ObjectInfo, StorageError, StorageOptions};

/// The JSON API's host in production (the crate has its own default for uploads and reads).
const PRODUCTION_ENDPOINT: &str = "https://storage.googleapis.com";
/// Bytes the crate buffers before sending one chunk of a resumable upload. It must keep a chunk
/// until GCS acknowledges it (the source cannot rewind), so this is most of an upload's memory.
/// A multiple of 256 KiB as GCS requires; 8 MiB is the crate's own default, stated here so the
/// bound on memory is visible.
const UPLOAD_CHUNK: usize = 8 * 1024 * 1024;
/// Writes queued between `GcsUpload::write` and the upload task; a full queue makes `write`
/// wait, so a slow network slows the producer instead of growing memory.
const UPLOAD_QUEUE: usize = 4;
/// Objects per page of a listing (the JSON API's maximum is 1000).
const LIST_PAGE_SIZE: u32 = 1000;
/// Attempts of one listing request on a connection error, 429 or 5xx.
const LIST_ATTEMPTS: u32 = 4;
const LIST_BACKOFF: Duration = Duration::from_millis(250);
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// A connected GCS location.
pub struct GcsStore {
    /// Boxed: the client is several hundred bytes and would make every `Storage` that large.
    client: Box<GcsClient>,
    http: reqwest::Client,
    /// `None` against an emulator (anonymous); ADC in production.
    credentials: Option<Credentials>,
    /// Scheme and host of the JSON API, without a trailing slash.
    endpoint: String,
    bucket: String,
    /// Prefix under the bucket, without leading or trailing slashes; may be empty.
    prefix: String,
}

impl fmt::Debug for GcsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcsStore")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// One message from `GcsUpload` to its upload task.
enum Feed {
    Data(Bytes),
    /// The caller called `finish`: end the stream, so the crate finalizes the object.
    Finish,
}

/// The upload's source ended without `finish` (aborted, or the `GcsUpload` was dropped): the
/// stream fails, so the crate never finalizes the resumable session and no object appears.
#[derive(Debug, thiserror::Error)]
#[error("upload abandoned before finish")]
struct Abandoned;

/// The crate's payload: chunks from the channel, ending only on an explicit `Feed::Finish`.
struct ChannelSource {
    receiver: mpsc::Receiver<Feed>,
    finished: bool,
}

impl StreamingSource for ChannelSource {
    type Error = Abandoned;

    async fn next(&mut self) -> Option<Result<Bytes, Abandoned>> {
        if self.finished {
            return None;
        }
        match self.receiver.recv().await {
            Some(Feed::Data(chunk)) => Some(Ok(chunk)),
            Some(Feed::Finish) => {
                self.finished = true;
                None
            }
            // The sender was dropped without `Finish`: ending the stream normally here would
            // commit a truncated object under the final key.
            None => Some(Err(Abandoned)),
        }
    }

    async fn size_hint(&self) -> Result<SizeHint, Abandoned> {
        // Unknown size: the crate then always chooses a resumable upload.
        Ok(SizeHint::new())
    }
}

type UploadResult = Result<google_cloud_storage::model::Object, google_cloud_storage::Error>;

/// A streamed upload: a task runs one resumable upload whose payload is fed through a bounded
/// channel, so memory per upload is at most `UPLOAD_CHUNK` plus `UPLOAD_QUEUE` written chunks.
pub struct GcsUpload {
    url: String,
    sender: Option<mpsc::Sender<Feed>>,
    task: Option<JoinHandle<UploadResult>>,
    written: u64,
}

impl fmt::Debug for GcsUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcsUpload")
            .field("url", &self.url)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl GcsStore {
    /// Builds the client and checks that the bucket exists and may be listed with these
    /// credentials, so a wrong bucket, endpoint or identity fails before a backup starts.
    pub async fn open(
        bucket: &str,
        prefix: &str,
        options: &StorageOptions,
    ) -> Result<GcsStore, StorageError> {
        let bucket_url = format!("gs://{bucket}");
        let backend = |action: &'static str, reason: String| StorageError::Backend {
            action,
            url: bucket_url.clone(),
            reason,
        };
        let builder = GcsClient::builder()
            // Single-shot uploads break emulators and give no chunked retry; resumable always.
            .with_resumable_upload_threshold(0_usize)
            .with_resumable_upload_buffer_size(UPLOAD_CHUNK);
        let (builder, credentials, endpoint) = match options.gcs_endpoint.as_deref() {
            Some(endpoint) => {
                let endpoint = endpoint.trim_end_matches('/').to_owned();
                url::Url::parse(&endpoint).map_err(|e| StorageError::InvalidUrl {
                    url: endpoint.clone(),
                    reason: format!("--gcs-endpoint is not a URL: {e}"),
                })?;
                let anonymous = google_cloud_auth::credentials::anonymous::Builder::new().build();
                let builder = builder
                    .with_endpoint(endpoint.clone())
                    .with_credentials(anonymous);
                (builder, None, endpoint)
            }
            None => {
                let credentials = google_cloud_auth::credentials::Builder::default()
                    .build()
                    .map_err(|e| StorageError::AccessDenied {
                        url: bucket_url.clone(),
                        reason: format!("no Google Cloud default credentials: {e}"),
                    })?;
                let builder = builder.with_credentials(credentials.clone());
                (builder, Some(credentials), PRODUCTION_ENDPOINT.to_owned())
            }
        };
        let client = builder
            .build()
            .await
            .map_err(|e| backend("connecting to", e.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| backend("connecting to", e.to_string()))?;
        let store = GcsStore {
            client: Box::new(client),
            http,
            credentials,
            endpoint,
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
        };
        store.list_page(&store.prefix, None, Some(1)).await?;
        tracing::debug!(bucket, prefix = %store.prefix, endpoint = %store.endpoint, "opened GCS location");
        Ok(store)
    }

    /// Writes a small object (a manifest) in one resumable upload.
    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        let url = self.url_of(key);
        self.client
            .write_object(self.bucket_path(), self.object_name(key), data)
            .send_unbuffered()
            .await
            .map_err(|e| map_error("writing", &url, &e))?;
        Ok(())
    }

    /// Reads a whole object.
    pub async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        let url = self.url_of(key);
        let mut response = self
            .client
            .read_object(self.bucket_path(), self.object_name(key))
            .send()
            .await
            .map_err(|e| map_error("reading", &url, &e))?;
        let mut data = Vec::new();
        while let Some(chunk) = response.next().await {
            let chunk = chunk.map_err(|e| map_error("reading", &url, &e))?;
            data.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(data))
    }

    /// Every object under the root whose key starts with `prefix`, sorted by key.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let full_prefix = self.object_name(prefix);
        let root = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut objects = Vec::new();
        let mut page_token = None;
        loop {
            let page = self
                .list_page(&full_prefix, page_token.as_deref(), None)
                .await?;
            for item in page.items {
                // Names outside the root cannot appear (the listing prefix includes it); skip
                // rather than fail should a server ignore the prefix.
                let Some(key) = item.name.strip_prefix(&root) else {
                    continue;
                };
                let size = item.size.parse().map_err(|_| StorageError::Backend {
                    action: "listing",
                    url: self.url_of(key),
                    reason: format!("the server gave size {:?}, not a number", item.size),
                })?;
                objects.push(ObjectInfo {
                    key: key.to_owned(),
                    size,
                });
            }
            match page.next_page_token {
                Some(token) if !token.is_empty() => page_token = Some(token),
                _ => break,
            }
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// Starts a resumable upload of `key` in a task fed by the returned `GcsUpload`.
    pub async fn upload(&self, key: &str) -> Result<GcsUpload, StorageError> {
        let (sender, receiver) = mpsc::channel(UPLOAD_QUEUE);
        let source = ChannelSource {
            receiver,
            finished: false,
        };
        let write = self.client.write_object::<_, _, _, ChannelSource>(
            self.bucket_path(),
            self.object_name(key),
            source,
        );
        let task = tokio::spawn(write.send_buffered());
        Ok(GcsUpload {
            url: self.url_of(key),
            sender: Some(sender),
            task: Some(task),
            written: 0,
        })
    }

    fn bucket_path(&self) -> String {
        format!("projects/_/buckets/{}", self.bucket)
    }

    /// The object name of a key relative to the root (the root itself for an empty key).
    fn object_name(&self, key: &str) -> String {
        match (self.prefix.is_empty(), key.is_empty()) {
            (true, _) => key.to_owned(),
            (false, true) => format!("{}/", self.prefix),
            (false, false) => format!("{}/{key}", self.prefix),
        }
    }

    fn url_of(&self, key: &str) -> String {
        let name = self.object_name(key);
        format!("gs://{}/{}", self.bucket, name)
    }

    /// One page of `GET /storage/v1/b/{bucket}/o?prefix=…`, retried on transient failures.
    async fn list_page(
        &self,
        prefix: &str,
        page_token: Option<&str>,
        max_results: Option<u32>,
    ) -> Result<ListPage, StorageError> {
        let url = format!("gs://{}/{prefix}", self.bucket);
        let request_url = format!("{}/storage/v1/b/{}/o", self.endpoint, self.bucket);
        let max_results = max_results.unwrap_or(LIST_PAGE_SIZE).to_string();
        let mut query = vec![
            ("prefix", prefix),
            ("maxResults", max_results.as_str()),
            ("fields", "items(name,size),nextPageToken"),
        ];
        if let Some(token) = page_token {
            query.push(("pageToken", token));
        }
        let mut attempt = 1;
        loop {
            let mut request = self.http.get(&request_url).query(&query);
            if let Some(credentials) = &self.credentials {
                request = request.headers(auth_headers(credentials, &url).await?);
            }
            let outcome = request.send().await;
            let retry = match &outcome {
                Ok(response) => {
                    let status = response.status();
                    status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                }
                Err(e) => e.is_connect() || e.is_timeout(),
            };
            if retry && attempt < LIST_ATTEMPTS {
                tracing::debug!(%url, attempt, "listing failed transiently, retrying");
                tokio::time::sleep(LIST_BACKOFF * 2_u32.pow(attempt - 1)).await;
                attempt += 1;
                continue;
            }
            let response = outcome.map_err(|e| StorageError::Backend {
                action: "listing",
                url: url.clone(),
                reason: error_chain(&e),
            })?;
            let status = response.status();
            if status.is_success() {
                return response
                    .json::<ListPage>()
                    .await
                    .map_err(|e| StorageError::Backend {
                        action: "listing",
                        url: url.clone(),
                        reason: format!("unreadable answer: {}", error_chain(&e)),
                    });
            }
            let body = response.text().await.unwrap_or_default();
            let reason = format!("HTTP {status}: {}", body.trim());
            return Err(match status.as_u16() {
                // The listing is of a bucket, so a 404 means the bucket does not exist.
                404 => StorageError::NotFound {
                    url: format!("gs://{}", self.bucket),
                },
                401 | 403 => StorageError::AccessDenied { url, reason },
                _ => StorageError::Backend {
                    action: "listing",
                    url,
                    reason,
                },
            });
        }
    }
}

impl GcsUpload {
    /// Queues a chunk for the upload; waits while the queue is full.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        if chunk.is_empty() {
            return Ok(());
        }
        let len = chunk.len() as u64;
        let Some(sender) = &self.sender else {
            return Err(self.failed_before());
        };
        if sender.send(Feed::Data(chunk)).await.is_err() {
            // The task ended early (bucket missing, access denied, network): report its error.
            self.sender = None;
            return Err(match self.join().await {
                Err(error) => error,
                Ok(_) => self.failed_before(),
            });
        }
        self.written += len;
        Ok(())
    }

    /// Finalizes the object and returns its size.
    pub async fn finish(mut self) -> Result<u64, StorageError> {
        let Some(sender) = self.sender.take() else {
            return Err(self.failed_before());
        };
        // A send error means the task has already ended; `join` then says why.
        let _ = sender.send(Feed::Finish).await;
        drop(sender);
        let object = self.join().await?;
        let size = u64::try_from(object.size).unwrap_or_default();
        if size != self.written {
            return Err(StorageError::Backend {
                action: "uploading",
                url: self.url.clone(),
                reason: format!(
                    "the server stored {size} bytes, {} were written",
                    self.written
                ),
            });
        }
        tracing::debug!(url = %self.url, size, "uploaded");
        Ok(size)
    }

    /// Abandons the upload: the payload stream fails, so the resumable session is never
    /// finalized and nothing appears under the key. GCS discards the unfinished session (and any
    /// chunks it received) by itself after a week; the crate does not expose the session URL
    /// that an explicit cancel (`DELETE`) would need.
    pub async fn abort(mut self) -> Result<(), StorageError> {
        self.sender = None;
        match self.join().await {
            Err(_) => Ok(()),
            // Only reachable if the stream had already been finished, which `finish` consumes.
            Ok(_) => Err(StorageError::Backend {
                action: "aborting upload of",
                url: self.url.clone(),
                reason: "the object was already finalized".to_owned(),
            }),
        }
    }

    async fn join(&mut self) -> Result<google_cloud_storage::model::Object, StorageError> {
        let Some(task) = self.task.take() else {
            return Err(self.failed_before());
        };
        match task.await {
            Ok(result) => result.map_err(|e| map_error("uploading", &self.url, &e)),
            Err(e) => Err(StorageError::Backend {
                action: "uploading",
                url: self.url.clone(),
                reason: format!("the upload task failed: {e}"),
            }),
        }
    }

    fn failed_before(&self) -> StorageError {
        StorageError::Backend {
            action: "uploading",
            url: self.url.clone(),
            reason: "the upload had already failed".to_owned(),
        }
    }
}

impl Drop for GcsUpload {
    fn drop(&mut self) {
        // Dropping the sender without `Finish` fails the stream (see `ChannelSource`), so a
        // dropped upload is abandoned, never committed half-written. The task then ends by itself.
        self.sender = None;
    }
}

/// One page of the JSON API's object listing (only the fields asked for).
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListPage {
    #[serde(default)]
    items: Vec<ListItem>,
    next_page_token: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
struct ListItem {
    name: String,
    /// A decimal string in the JSON API.
    size: String,
}

/// The authorization headers for a JSON API call from the same credentials the client uses.
async fn auth_headers(
    credentials: &Credentials,
    url: &str,
) -> Result<reqwest::header::HeaderMap, StorageError> {
    let denied = |reason: String| StorageError::AccessDenied {
        url: url.to_owned(),
        reason,
    };
    match credentials.headers(Default::default()).await {
        Ok(CacheableResource::New { data, .. }) => Ok(data),
        // Only answered to a caller that passed an entity tag, which this one never does.
        Ok(CacheableResource::NotModified) => {
            Err(denied("the credentials returned no headers".to_owned()))
        }
        Err(e) => Err(denied(format!("getting an access token: {e}"))),
    }
}

/// Maps a client error to the contract's variants, naming the object's URL.
fn map_error(action: &'static str, url: &str, error: &google_cloud_storage::Error) -> StorageError {
    match error.http_status_code() {
        Some(404) => StorageError::NotFound {
            url: url.to_owned(),
        },
        Some(401 | 403) => StorageError::AccessDenied {
            url: url.to_owned(),
            reason: error_chain(error),
        },
        _ if error.is_authentication() => StorageError::AccessDenied {
            url: url.to_owned(),
            reason: error_chain(error),
        },
        _ => StorageError::Backend {
            action,
            url: url.to_owned(),
            reason: error_chain(error),
        },
    }
}

/// An error and its sources on one line (reqwest and the crate put the cause in the source).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
