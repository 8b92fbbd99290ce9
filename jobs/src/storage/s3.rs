//! Placeholder until the S3 backend lands: every call fails with a clear error.

use bytes::Bytes;

use super::{ObjectInfo, StorageError, StorageOptions};

#[derive(Debug)]
pub struct S3Store {
    url: String,
}

#[derive(Debug)]
pub struct S3Upload {
    url: String,
}

fn unsupported(url: &str) -> StorageError {
    StorageError::Backend {
        action: "opening",
        url: url.to_owned(),
        reason: "this backend is not built yet".to_owned(),
    }
}

impl S3Store {
    pub async fn open(
        bucket: &str,
        prefix: &str,
        _options: &StorageOptions,
    ) -> Result<S3Store, StorageError> {
        Err(unsupported(&format!("{bucket}/{prefix}")))
    }
    pub async fn put(&self, _key: &str, _data: Bytes) -> Result<(), StorageError> {
        Err(unsupported(&self.url))
    }
    pub async fn get(&self, _key: &str) -> Result<Bytes, StorageError> {
        Err(unsupported(&self.url))
    }
    pub async fn list(&self, _prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        Err(unsupported(&self.url))
    }
    pub async fn upload(&self, _key: &str) -> Result<S3Upload, StorageError> {
        Err(unsupported(&self.url))
    }
}

impl S3Upload {
    pub async fn write(&mut self, _chunk: Bytes) -> Result<(), StorageError> {
        Err(unsupported(&self.url))
    }
    pub async fn finish(self) -> Result<u64, StorageError> {
        Err(unsupported(&self.url))
    }
    pub async fn abort(self) -> Result<(), StorageError> {
        Err(unsupported(&self.url))
    }
}
