//! An in-memory bucket for tests, compiled always (it is small): it keeps
//! what it was given under the keys an S3 bucket would, can be told to
//! refuse the next uploads, and records every upload with whether the
//! local file was still there.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Download, FileInfo, Kind, Storage};

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Vec<u8>>,
    /// Uploads still to refuse.
    refuse: usize,
    /// Every upload tried, in order: the key, and whether it was kept.
    uploads: Vec<(String, bool)>,
    deleted: Vec<String>,
}

#[derive(Default)]
pub struct FakeBucket {
    state: Mutex<State>,
}

impl FakeBucket {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next `n` uploads fail (the bucket is unreachable).
    pub fn refuse_uploads(&self, n: usize) {
        self.state().refuse = n;
    }

    pub fn object(&self, key: &str) -> Option<Vec<u8>> {
        self.state().objects.get(key).cloned()
    }

    pub fn keys(&self) -> Vec<String> {
        self.state().objects.keys().cloned().collect()
    }

    /// Every upload tried, in order: the key, and whether it was kept.
    pub fn uploads(&self) -> Vec<(String, bool)> {
        self.state().uploads.clone()
    }

    /// The keys deleted, in order.
    pub fn deleted(&self) -> Vec<String> {
        self.state().deleted.clone()
    }
}

#[async_trait]
impl Storage for FakeBucket {
    fn kind(&self) -> Kind {
        Kind::S3
    }

    async fn keep(&self, path: &Path, name: &str, _info: FileInfo<'_>) -> anyhow::Result<String> {
        let key = format!("recordings/{name}");
        let refused = {
            let mut state = self.state();
            let refused = state.refuse > 0;
            state.refuse = state.refuse.saturating_sub(1);
            state.uploads.push((key.clone(), !refused));
            refused
        };
        anyhow::ensure!(!refused, "the fake bucket is unreachable");
        let bytes = tokio::fs::read(path).await?;
        self.state().objects.insert(key.clone(), bytes);
        Ok(key)
    }

    fn download(&self, key: &str, _info: FileInfo<'_>, now: DateTime<Utc>, ttl: Duration) -> Download {
        let expires_at = now + ttl;
        Download::Link {
            url: format!("https://bucket.invalid/{key}?expires={}", expires_at.timestamp()),
            expires_at,
        }
    }

    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        let mut state = self.state();
        state.objects.remove(key);
        state.deleted.push(key.to_owned());
        Ok(())
    }
}
