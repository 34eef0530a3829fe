//! An S3-compatible bucket (`RECORDING_STORAGE=s3`): requests presigned by
//! `rusty-s3` (SigV4, path-style) and sent with reqwest. A file up to
//! [`PART_SIZE`] goes up in one PUT, a larger one in parts of that size
//! (an upload that fails is aborted); either way the object's size is
//! checked before the file counts as kept. Downloads are presigned GET
//! links the participants' clients follow.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, ETAG};
use rusty_s3::actions::{
    AbortMultipartUpload, CompleteMultipartUpload, CreateMultipartUpload, DeleteObject, GetObject,
    HeadObject, PutObject, UploadPart,
};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use secrecy::ExposeSecret;
use tokio::io::AsyncReadExt;

use super::{Download, FileInfo, Kind, Storage};
use crate::config::S3Config;

/// Files larger than this go up in parts of this size (S3's parts are 5 MiB
/// to 5 GiB, at most 10,000 of them: files up to 160 GiB).
pub const PART_SIZE: u64 = 16 * 1024 * 1024;
const MAX_PARTS: u64 = 10_000;
/// callgate's own requests are sent as soon as they are signed.
const SIGNED_FOR: Duration = Duration::from_secs(600);
/// One request (a part of `PART_SIZE` at most) may take this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

pub struct S3 {
    bucket: Bucket,
    credentials: Credentials,
    http: reqwest::Client,
}

impl S3 {
    pub fn new(config: &S3Config) -> anyhow::Result<Self> {
        let endpoint: reqwest::Url = config.endpoint.parse().context("S3_ENDPOINT is no URL")?;
        let bucket = Bucket::new(endpoint, UrlStyle::Path, config.bucket.clone(), config.region.clone())
            .map_err(|e| anyhow!("S3_ENDPOINT and S3_BUCKET name no bucket: {e}"))?;
        let credentials = Credentials::new(
            config.access_key_id.clone(),
            config.secret_access_key.expose_secret().to_owned(),
        );
        // reqwest's TLS takes the process's provider (the app installs the same).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("an HTTP client for S3")?;
        Ok(S3 { bucket, credentials, http })
    }

    /// The key a file named `name` is kept under.
    fn key_of(name: &str) -> String {
        format!("recordings/{name}")
    }

    async fn put_whole(&self, key: &str, path: &Path, info: FileInfo<'_>) -> anyhow::Result<()> {
        let body = tokio::fs::read(path).await.with_context(|| format!("reading {}", path.display()))?;
        let mut put = PutObject::new(&self.bucket, Some(&self.credentials), key);
        put.headers_mut().insert("content-type", info.content_type);
        let sent = self.http.put(put.sign(SIGNED_FOR)).header(CONTENT_TYPE, info.content_type).body(body);
        answered(sent.send().await, "PutObject").await?;
        Ok(())
    }

    async fn put_parts(&self, key: &str, path: &Path, size: u64, info: FileInfo<'_>) -> anyhow::Result<()> {
        ensure!(size.div_ceil(PART_SIZE) <= MAX_PARTS, "{size} bytes is more than S3 takes in parts");
        let mut create = CreateMultipartUpload::new(&self.bucket, Some(&self.credentials), key);
        create.headers_mut().insert("content-type", info.content_type);
        let sent = self.http.post(create.sign(SIGNED_FOR)).header(CONTENT_TYPE, info.content_type);
        let created = answered(sent.send().await, "CreateMultipartUpload").await?;
        let text = created.text().await.map_err(|e| e.without_url())?;
        let created = CreateMultipartUpload::parse_response(&text)
            .map_err(|e| anyhow!("S3 CreateMultipartUpload answered what it is not: {e}"))?;
        let upload = created.upload_id();
        let outcome = match self.parts(key, upload, path, size).await {
            Ok(etags) => self.complete(key, upload, &etags).await,
            Err(err) => Err(err),
        };
        if outcome.is_err() {
            // Its parts would be kept (and paid for) until then.
            let abort = AbortMultipartUpload::new(&self.bucket, Some(&self.credentials), key, upload);
            if let Err(err) = answered(self.http.delete(abort.sign(SIGNED_FOR)).send().await, "Abort").await {
                tracing::warn!(key, error = format!("{err:#}"), "could not abort a failed multipart upload");
            }
        }
        outcome
    }

    /// Uploads the file's parts in order; their ETags.
    async fn parts(&self, key: &str, upload: &str, path: &Path, size: u64) -> anyhow::Result<Vec<String>> {
        let mut file =
            tokio::fs::File::open(path).await.with_context(|| format!("opening {}", path.display()))?;
        let mut etags = Vec::new();
        let mut left = size;
        while left > 0 {
            let number = u16::try_from(etags.len() + 1).context("too many parts")?;
            let mut chunk = vec![0; usize::try_from(left.min(PART_SIZE))?];
            file.read_exact(&mut chunk).await.with_context(|| format!("reading {}", path.display()))?;
            left -= chunk.len() as u64;
            let part = UploadPart::new(&self.bucket, Some(&self.credentials), key, number, upload);
            let answer =
                answered(self.http.put(part.sign(SIGNED_FOR)).body(chunk).send().await, "UploadPart").await?;
            let etag = answer.headers().get(ETAG).and_then(|v| v.to_str().ok());
            etags.push(etag.ok_or_else(|| anyhow!("S3 UploadPart answered no ETag"))?.to_owned());
        }
        Ok(etags)
    }

    async fn complete(&self, key: &str, upload: &str, etags: &[String]) -> anyhow::Result<()> {
        let etags = etags.iter().map(String::as_str);
        let complete =
            CompleteMultipartUpload::new(&self.bucket, Some(&self.credentials), key, upload, etags);
        let url = complete.sign(SIGNED_FOR);
        let answer = answered(self.http.post(url).body(complete.body()).send().await, "Complete").await?;
        // S3 may answer 200 and say in the body that it failed.
        let text = answer.text().await.map_err(|e| e.without_url())?;
        if text.contains("<Error>") {
            bail!("S3 CompleteMultipartUpload failed: {}", error_code(&text));
        }
        Ok(())
    }

    /// The size of the object `key`, if there is one.
    async fn size_of(&self, key: &str) -> anyhow::Result<Option<u64>> {
        let head = HeadObject::new(&self.bucket, Some(&self.credentials), key);
        let answer = self.http.head(head.sign(SIGNED_FOR)).send().await.map_err(|e| e.without_url())?;
        if answer.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let answer = answered(Ok(answer), "HeadObject").await?;
        let length = answer.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
        length.map(Some).ok_or_else(|| anyhow!("S3 HeadObject answered no Content-Length"))
    }
}

#[async_trait]
impl Storage for S3 {
    fn kind(&self) -> Kind {
        Kind::S3
    }

    async fn keep(&self, path: &Path, name: &str, info: FileInfo<'_>) -> anyhow::Result<String> {
        let key = Self::key_of(name);
        let size =
            tokio::fs::metadata(path).await.with_context(|| format!("reading {}", path.display()))?.len();
        let began = Instant::now();
        if size > PART_SIZE {
            self.put_parts(&key, path, size, info).await?;
        } else {
            self.put_whole(&key, path, info).await?;
        }
        let stored = self.size_of(&key).await?;
        ensure!(stored == Some(size), "the bucket holds {stored:?} bytes of {key}, not {size}");
        let parts = if size > PART_SIZE { size.div_ceil(PART_SIZE) } else { 1 };
        let ms = began.elapsed().as_millis();
        tracing::info!(key, size, parts, ms, "a recording was uploaded to the bucket");
        Ok(key)
    }

    fn download(&self, key: &str, info: FileInfo<'_>, now: DateTime<Utc>, ttl: Duration) -> Download {
        let mut get = GetObject::new(&self.bucket, Some(&self.credentials), key);
        let disposition = format!("attachment; filename=\"{}\"", info.filename);
        get.query_mut().insert("response-content-disposition", disposition);
        get.query_mut().insert("response-content-type", info.content_type);
        let second = now.timestamp();
        let at = jiff::Timestamp::from_second(second).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let url = get.sign_with_time(ttl, &at).to_string();
        let signed_at = DateTime::from_timestamp(second, 0).unwrap_or(now);
        Download::Link { url, expires_at: signed_at + ttl }
    }

    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        let delete = DeleteObject::new(&self.bucket, Some(&self.credentials), key);
        let answer = self.http.delete(delete.sign(SIGNED_FOR)).send().await.map_err(|e| e.without_url())?;
        if answer.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        answered(Ok(answer), "DeleteObject").await?;
        Ok(())
    }
}

/// A successful answer, or what S3 said went wrong (never the signed URL).
async fn answered(
    sent: Result<reqwest::Response, reqwest::Error>,
    what: &str,
) -> anyhow::Result<reqwest::Response> {
    let answer = sent.map_err(|e| anyhow::Error::new(e.without_url()).context(format!("S3 {what}")))?;
    if answer.status().is_success() {
        return Ok(answer);
    }
    let status = answer.status();
    let text = answer.text().await.unwrap_or_default();
    bail!("S3 {what}: {status} {}", error_code(&text))
}

/// The `<Code>` of an S3 error document.
fn error_code(text: &str) -> &str {
    let code = text.split_once("<Code>").and_then(|(_, rest)| rest.split_once("</Code>"));
    code.map_or("", |(code, _)| code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket() -> S3 {
        S3::new(&S3Config {
            endpoint: "http://127.0.0.1:7070".into(),
            bucket: "callgate-recordings".into(),
            region: "us-east-1".into(),
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: String::from("a-secret").into(),
        })
        .expect("a bucket")
    }

    #[test]
    fn a_download_link_is_a_presigned_get_that_expires_with_the_ttl_and_names_the_file() {
        let now = DateTime::parse_from_rfc3339("2026-12-07T22:00:00.750Z").expect("a time").to_utc();
        let info = FileInfo { filename: "recording-1.ogg", content_type: "audio/ogg" };
        let Download::Link { url, expires_at } =
            bucket().download("recordings/c/1.ogg", info, now, Duration::from_secs(300))
        else {
            panic!("a link")
        };
        assert!(url.starts_with("http://127.0.0.1:7070/callgate-recordings/recordings/c/1.ogg?"), "{url}");
        for part in [
            "X-Amz-Date=20261207T220000Z",
            "X-Amz-Expires=300",
            "X-Amz-Credential=AKIDEXAMPLE%2F20261207%2Fus-east-1%2Fs3%2Faws4_request",
            "response-content-disposition=attachment%3B%20filename%3D%22recording-1.ogg%22",
            "response-content-type=audio%2Fogg",
            "X-Amz-Signature=",
        ] {
            assert!(url.contains(part), "{part} in {url}");
        }
        assert!(!url.contains("a-secret"), "{url}");
        assert_eq!(expires_at.to_rfc3339(), "2026-12-07T22:05:00+00:00");
    }

    #[test]
    fn an_s3_error_says_its_code() {
        let text = "<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>x</Message></Error>";
        assert_eq!(error_code(text), "NoSuchBucket");
        assert_eq!(error_code("<html>"), "");
    }
}
