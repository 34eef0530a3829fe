//! Where recordings' files are kept, behind the [`Storage`] port: the local
//! disk (`RECORDING_DIR`, where LiveKit Egress writes them) or an
//! S3-compatible bucket (`RECORDING_STORAGE=s3`). `local` is the disk,
//! `s3` the bucket (requests presigned by `rusty-s3`, sent with reqwest),
//! `fake` an in-memory bucket for tests.
//!
//! A file is named the same everywhere, `{call}/{recording}.{ext}`
//! ([`Storage::keep`] turns that into the storage's key); a recording's
//! row says which storage holds it (`local` or `s3`) and its key there.

pub mod fake;
mod local;
mod s3;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::config::{RecordingConfig, RecordingStorage};

pub use local::LocalDisk;
pub use s3::{PART_SIZE, S3};

/// Which storage holds a file, as a recording's row says (`storage`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Local,
    S3,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Local => "local",
            Kind::S3 => "s3",
        }
    }
}

/// What a stored file is, for those who fetch it.
#[derive(Clone, Copy, Debug)]
pub struct FileInfo<'a> {
    /// The name a download is saved under.
    pub filename: &'a str,
    pub content_type: &'a str,
}

/// How a stored file is fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Download {
    /// Streamed by callgate from this path.
    File(std::path::PathBuf),
    /// Fetched from the storage itself at this URL (presigned), which works
    /// until `expires_at`.
    Link { url: String, expires_at: DateTime<Utc> },
}

#[async_trait]
pub trait Storage: Send + Sync {
    fn kind(&self) -> Kind;

    /// Keeps the local file `path`, named `name` (`{call}/{recording}.{ext}`),
    /// and says its key in this storage once it is safely there. The local
    /// disk keeps it where it is; a bucket gets it uploaded (and checked),
    /// the local copy left for the caller to delete. Idempotent: keeping
    /// the same file again overwrites the same key.
    async fn keep(&self, path: &Path, name: &str, info: FileInfo<'_>) -> anyhow::Result<String>;

    /// How `key` is fetched from `now` for `ttl`.
    fn download(&self, key: &str, info: FileInfo<'_>, now: DateTime<Utc>, ttl: Duration) -> Download;

    /// Deletes `key`; one already gone is no error.
    async fn delete(&self, key: &str) -> anyhow::Result<()>;
}

/// The storage `RECORDING_STORAGE` names.
pub fn from_config(config: &RecordingConfig) -> anyhow::Result<Arc<dyn Storage>> {
    Ok(match &config.storage {
        RecordingStorage::Local => Arc::new(LocalDisk::new(config.dir.clone())),
        RecordingStorage::S3(s3) => Arc::new(S3::new(s3)?),
    })
}
