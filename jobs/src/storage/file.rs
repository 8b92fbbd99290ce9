//! The local-directory backend (`file:///path`): objects are files under the root. An object is
//! written to a hidden temporary next to its final name, fsynced, renamed into place and the
//! directory fsynced, so a crash leaves either the whole object or nothing under its name.

use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use super::{ObjectInfo, StorageError};

/// Temporaries start with this, so `list` can skip them and an interrupted run is recognisable.
const TEMP_PREFIX: &str = ".tmp-";

#[derive(Debug)]
pub struct FileStore {
    root: PathBuf,
}

#[derive(Debug)]
pub struct FileUpload {
    file: tokio::fs::File,
    temp: PathBuf,
    target: PathBuf,
    written: u64,
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StorageError {
    let path = path.display().to_string();
    move |source| StorageError::Io {
        action,
        path,
        source,
    }
}

impl FileStore {
    /// A store rooted at `root`; the directory is created on the first write, so a destination
    /// that does not exist yet is fine for backup and lists as empty.
    pub fn open(root: PathBuf) -> Result<FileStore, StorageError> {
        if !root.is_absolute() {
            return Err(StorageError::InvalidUrl {
                url: root.display().to_string(),
                reason: "a file location must be an absolute path".to_owned(),
            });
        }
        Ok(FileStore { root })
    }

    /// The path of `key`, refusing keys that would leave the root (`..`, absolute).
    fn path_of(&self, key: &str) -> Result<PathBuf, StorageError> {
        let relative = Path::new(key);
        let safe = !key.is_empty()
            && relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
        if !safe {
            return Err(StorageError::InvalidUrl {
                url: format!("file://{}/{key}", self.root.display()),
                reason: "object keys must be relative paths without '..'".to_owned(),
            });
        }
        Ok(self.root.join(relative))
    }

    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        let mut upload = self.upload(key).await?;
        if let Err(e) = upload.write(data).await {
            // The write error is the one to report; a failed cleanup only leaves a temporary.
            let _ = upload.abort().await;
            return Err(e);
        }
        upload.finish().await.map(|_| ())
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        let path = self.path_of(key)?;
        match tokio::fs::read(&path).await {
            Ok(data) => Ok(Bytes::from(data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StorageError::NotFound {
                url: format!("file://{}", path.display()),
            }),
            Err(e) => Err(io_error("reading", &path)(e)),
        }
    }

    /// Every file under the root whose key starts with `prefix`, temporaries excluded, sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let mut found = Vec::new();
        let mut pending = vec![(self.root.clone(), String::new())];
        while let Some((dir, key_prefix)) = pending.pop() {
            let mut entries = match tokio::fs::read_dir(&dir).await {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error("listing", &dir)(e)),
            };
            while let Some(entry) = entries
                .next_entry()
                .await
                .map_err(io_error("listing", &dir))?
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(TEMP_PREFIX) {
                    continue;
                }
                let key = format!("{key_prefix}{name}");
                let file_type = entry
                    .file_type()
                    .await
                    .map_err(io_error("listing", &entry.path()))?;
                if file_type.is_dir() {
                    // Only descend where keys under the folder can still match the prefix.
                    let folder = format!("{key}/");
                    if folder.starts_with(prefix) || prefix.starts_with(&folder) {
                        pending.push((entry.path(), folder));
                    }
                } else if file_type.is_file() && key.starts_with(prefix) {
                    let size = entry
                        .metadata()
                        .await
                        .map_err(io_error("reading metadata of", &entry.path()))?
                        .len();
                    found.push(ObjectInfo { key, size });
                }
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    pub async fn upload(&self, key: &str) -> Result<FileUpload, StorageError> {
        let target = self.path_of(key)?;
        let dir = target.parent().unwrap_or(&self.root).to_owned();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(io_error("creating", &dir))?;
        let file_name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = dir.join(format!(
            "{TEMP_PREFIX}{}-{file_name}",
            uuid::Uuid::new_v4().simple()
        ));
        let file = tokio::fs::File::create(&temp)
            .await
            .map_err(io_error("creating", &temp))?;
        Ok(FileUpload {
            file,
            temp,
            target,
            written: 0,
        })
    }
}

impl FileUpload {
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        self.file
            .write_all(&chunk)
            .await
            .map_err(io_error("writing", &self.temp))?;
        self.written += chunk.len() as u64;
        Ok(())
    }

    /// fsync, rename into place, fsync the directory (so the rename itself survives a crash).
    pub async fn finish(mut self) -> Result<u64, StorageError> {
        let result = async {
            self.file
                .flush()
                .await
                .map_err(io_error("writing", &self.temp))?;
            self.file
                .sync_all()
                .await
                .map_err(io_error("syncing", &self.temp))?;
            tokio::fs::rename(&self.temp, &self.target)
                .await
                .map_err(io_error("renaming into place", &self.target))?;
            if let Some(dir) = self.target.parent() {
                let dir_handle = tokio::fs::File::open(dir)
                    .await
                    .map_err(io_error("opening", dir))?;
                dir_handle
                    .sync_all()
                    .await
                    .map_err(io_error("syncing", dir))?;
            }
            Ok(self.written)
        }
        .await;
        if result.is_err() {
            // Best effort: the error above is the one that matters.
            let _ = tokio::fs::remove_file(&self.temp).await;
        }
        result
    }

    pub async fn abort(self) -> Result<(), StorageError> {
        drop(self.file);
        match tokio::fs::remove_file(&self.temp).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("removing", &self.temp)(e)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn objects_appear_only_when_finished_and_list_sorted_and_recursive() {
        // Backups rely on "nothing under the final name until finish" to never expose half parts.
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path().to_owned()).unwrap();
        let mut upload = store.upload("b/2/part").await.unwrap();
        upload.write(Bytes::from_static(b"hello ")).await.unwrap();
        assert!(store.list("").await.unwrap().is_empty());
        upload.write(Bytes::from_static(b"world")).await.unwrap();
        assert_eq!(upload.finish().await.unwrap(), 11);
        store.put("a/1", Bytes::from_static(b"x")).await.unwrap();
        store.put("b/1", Bytes::from_static(b"yy")).await.unwrap();

        let keys: Vec<_> = store
            .list("")
            .await
            .unwrap()
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect();
        assert_eq!(
            keys,
            [
                ("a/1".to_owned(), 1),
                ("b/1".to_owned(), 2),
                ("b/2/part".to_owned(), 11)
            ]
        );
        assert_eq!(store.list("b/2").await.unwrap().len(), 1);
        assert_eq!(
            store.get("b/2/part").await.unwrap(),
            Bytes::from_static(b"hello world")
        );
    }

    #[tokio::test]
    async fn an_aborted_upload_leaves_nothing_behind() {
        // A failed backup must not leave temporaries that fill the disk run after run.
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path().to_owned()).unwrap();
        let mut upload = store.upload("x/part").await.unwrap();
        upload.write(Bytes::from_static(b"data")).await.unwrap();
        upload.abort().await.unwrap();
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("x")).unwrap().collect();
        assert!(leftovers.is_empty());
    }

    #[tokio::test]
    async fn missing_objects_and_escaping_keys_are_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path().to_owned()).unwrap();
        assert!(matches!(
            store.get("nope").await,
            Err(StorageError::NotFound { .. })
        ));
        assert!(store.get("../etc/passwd").await.is_err());
        assert!(store.list("").await.unwrap().is_empty());
    }
}
