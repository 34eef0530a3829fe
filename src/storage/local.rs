//! The local disk: files stay in `RECORDING_DIR`, where egress wrote them,
//! and callgate streams them itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Download, FileInfo, Kind, Storage};

#[derive(Clone, Debug)]
pub struct LocalDisk {
    dir: PathBuf,
}

impl LocalDisk {
    pub fn new(dir: PathBuf) -> Self {
        LocalDisk { dir }
    }

    /// Where `key` is on the disk.
    pub fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }
}

#[async_trait]
impl Storage for LocalDisk {
    fn kind(&self) -> Kind {
        Kind::Local
    }

    async fn keep(&self, _path: &Path, name: &str, _info: FileInfo<'_>) -> anyhow::Result<String> {
        Ok(name.to_owned())
    }

    fn download(&self, key: &str, _info: FileInfo<'_>, _now: DateTime<Utc>, _ttl: Duration) -> Download {
        Download::File(self.path(key))
    }

    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        // The call's folder stays: egress may be starting another
        // recording of the call in it.
        let path = self.path(key);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(anyhow::Error::new(err).context(format!("deleting {}", path.display()))),
        }
    }
}
