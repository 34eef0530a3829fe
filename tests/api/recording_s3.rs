//! Recordings kept in S3-compatible storage, on the real stack: real
//! WebRTC clients, the LiveKit Egress and the versitygw (v1.8.0, the S3
//! server) that `deploy/local.sh up` runs, with .env.example's S3 settings.
//! Everyone consents -> egress writes the file -> callgate uploads it to the
//! bucket and deletes its local copy -> those who were in the call follow a
//! presigned link that works for RECORDING_LINK_TTL, nobody else learns it
//! exists -> a participant's delete removes the object.
//!
//! The app has a database of its own, so that its own job runner (not
//! another test app's, on local storage) keeps the file: LiveKit's
//! webhooks never reach it, the reconciler (every second) tells it what
//! egress does. Prints the time from the stop to the file kept in the
//! bucket.

use std::time::{Duration, Instant};

use callgate::config::{Config, RecordingStorage, S3Config};
use callgate::storage::{Download, FileInfo, S3, Storage};
use reqwest::{Method, StatusCode, redirect};
use rusty_s3::actions::{CreateBucket, GetObject, HeadObject};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use secrecy::ExposeSecret;
use serde_json::json;
use sha2::Digest;

use crate::consent::call_in_room;
use crate::egress::probe;
use crate::helpers::{Options, TestApp, TestUser, spawn_app_with};
use crate::recording::first_recording_is;

/// .env.example's bucket (exported by deploy/local.sh test), as
/// `RECORDING_STORAGE=s3` reads it.
fn bucket_settings() -> S3Config {
    let config = Config::from_lookup(|name| match name {
        "RECORDING_STORAGE" => Some("s3".to_owned()),
        _ => std::env::var(name).ok(),
    })
    .expect("the test environment (deploy/local.sh test exports .env.example)");
    match config.recording.storage {
        RecordingStorage::S3(s3) => s3,
        RecordingStorage::Local => unreachable!("RECORDING_STORAGE=s3"),
    }
}

/// The bucket, reached as the test's own S3 client (not callgate's).
struct TestBucket {
    bucket: Bucket,
    credentials: Credentials,
    http: reqwest::Client,
}

impl TestBucket {
    /// The bucket, made if it is not there yet (`up` makes it too).
    async fn open() -> TestBucket {
        // Before any app is built: reqwest's TLS takes the process's provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let s3 = bucket_settings();
        let endpoint = s3.endpoint.parse().expect("S3_ENDPOINT");
        let bucket = Bucket::new(endpoint, UrlStyle::Path, s3.bucket, s3.region).expect("a bucket");
        let credentials = Credentials::new(s3.access_key_id, s3.secret_access_key.expose_secret());
        let test = TestBucket { bucket, credentials, http: reqwest::Client::new() };
        let create = CreateBucket::new(&test.bucket, &test.credentials).sign(Duration::from_secs(60));
        let made = test.http.put(create).send().await.expect("versitygw answers (deploy/local.sh up)");
        assert!(
            made.status().is_success() || made.status() == StatusCode::CONFLICT,
            "creating the bucket: {}",
            made.status()
        );
        test
    }

    /// The object's bytes, if there is one.
    async fn object(&self, key: &str) -> Option<Vec<u8>> {
        let url = GetObject::new(&self.bucket, Some(&self.credentials), key).sign(Duration::from_secs(60));
        let answer = self.http.get(url).send().await.expect("versitygw answers");
        match answer.status() {
            StatusCode::OK => Some(answer.bytes().await.expect("the object").to_vec()),
            StatusCode::NOT_FOUND => None,
            other => panic!("GET {key}: {other}"),
        }
    }

    async fn exists(&self, key: &str) -> bool {
        let url = HeadObject::new(&self.bucket, Some(&self.credentials), key).sign(Duration::from_secs(60));
        let status = self.http.head(url).send().await.expect("versitygw answers").status();
        assert!(status == StatusCode::OK || status == StatusCode::NOT_FOUND, "HEAD {key}: {status}");
        status == StatusCode::OK
    }
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// `GET /recordings/{id}/file` as `who`, redirects followed (reqwest does
/// not send the token to another host): status, content type, bytes.
async fn fetch_file(app: &TestApp, id: &str, who: &TestUser) -> (StatusCode, Option<String>, Vec<u8>) {
    let answer = app
        .http
        .get(app.url(&format!("/api/v1/recordings/{id}/file")))
        .bearer_auth(&who.token)
        .send()
        .await
        .expect("an answer");
    let status = answer.status();
    let kind = answer.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (status, kind, answer.bytes().await.expect("the body").to_vec())
}

#[tokio::test]
async fn with_s3_storage_the_recording_is_uploaded_its_local_copy_deleted_and_only_participants_follow_a_short_lived_link()
 {
    let _media = crate::helpers::media_turn().await;
    let bucket = TestBucket::open().await;
    let ttl = Duration::from_secs(3);
    let app = spawn_app_with(Options {
        isolated: true,
        configure: Box::new(move |c| {
            c.recording.storage = RecordingStorage::S3(bucket_settings());
            c.recording.link_ttl = ttl;
            c.reconcile_interval = Duration::from_secs(1);
        }),
    })
    .await;
    let (alice, bob, eve) = (app.user("female"), app.user("male"), app.user("female"));
    let (call, _a, _b) = call_in_room(&app, &alice, &bob, "audio", json!(false)).await;

    let (status, asked) =
        app.post(&format!("/api/v1/calls/{call}/recording/requests"), &alice, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{asked}");
    let request = asked["request"]["id"].as_str().expect("a request id");
    let path = format!("/api/v1/calls/{call}/recording/requests/{request}/accept");
    let (status, on) = app.post(&path, &bob, json!({})).await;
    assert_eq!((status, on["state"].as_str()), (StatusCode::OK, Some("on")), "{on}");
    let recording = first_recording_is(&app, &call, &bob, "recording", Duration::from_secs(60)).await;
    let id = recording["id"].as_str().expect("an id").to_owned();
    // Egress writes where it always does; a few seconds of the call's sound.
    let local = crate::egress::output_dir().join(&call).join(format!("{id}.ogg"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while probe(&local).map_or(0.0, |(_, seconds)| seconds) < 3.0 {
        assert!(Instant::now() < deadline, "egress wrote no 3 s of {}", local.display());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let (status, off) = app.post(&format!("/api/v1/calls/{call}/recording/stop"), &bob, json!({})).await;
    assert_eq!((status, off["state"].as_str()), (StatusCode::OK, Some("off")), "{off}");
    let stopped = Instant::now();
    let ready = first_recording_is(&app, &call, &alice, "ready", Duration::from_secs(60)).await;
    let kept_after = stopped.elapsed();

    // In the bucket, whole; not on the disk any more.
    let key = format!("recordings/{call}/{id}.ogg");
    let object = bucket.object(&key).await.expect("the object is in the bucket");
    assert_eq!(Some(object.len() as i64), ready["sizeBytes"].as_i64(), "{ready}");
    assert_eq!(ready["sha256"].as_str(), Some(sha256(&object).as_str()), "the bucket holds what was checked");
    let gone_by = Instant::now() + Duration::from_secs(10);
    while local.exists() {
        assert!(Instant::now() < gone_by, "{} is still there", local.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fetched = std::env::temp_dir().join(format!("callgate-s3-{id}.ogg"));
    std::fs::write(&fetched, &object).expect("written");
    let read = probe(&fetched);
    let _ = std::fs::remove_file(&fetched);
    let (streams, seconds) = read.expect("ffprobe reads the object");
    assert_eq!(streams, vec![("audio".to_owned(), "opus".to_owned())]);

    // A participant is sent to a presigned link; it gives the file.
    let no_follow = reqwest::Client::builder().redirect(redirect::Policy::none()).build().expect("a client");
    let answer = no_follow
        .get(app.url(&format!("/api/v1/recordings/{id}/file")))
        .bearer_auth(&bob.token)
        .send()
        .await
        .expect("an answer");
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let header =
        |name: &str| answer.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert_eq!(header("cache-control"), "private, no-store");
    let endpoint = bucket_settings().endpoint;
    assert!(header("location").starts_with(&format!("{endpoint}/")), "{}", header("location"));
    let (status, kind, bytes) = fetch_file(&app, &id, &bob).await;
    assert_eq!((status, kind.as_deref()), (StatusCode::OK, Some("audio/ogg")));
    assert_eq!(sha256(&bytes), sha256(&object));

    // The link itself, and its end.
    let (status, link) = app.get(&format!("/api/v1/recordings/{id}/link"), &alice).await;
    assert_eq!(status, StatusCode::OK, "{link}");
    let url = link["url"].as_str().expect("a url").to_owned();
    let expires_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(link["expiresAt"].clone()).expect("a time");
    let lifetime = (expires_at - chrono::Utc::now()).num_milliseconds();
    assert!((0..=3_000).contains(&lifetime), "works for the TTL: {lifetime} ms left");
    let anyone = reqwest::Client::new();
    let answer = anyone.get(&url).send().await.expect("versitygw answers");
    assert_eq!(answer.status(), StatusCode::OK, "the link works without credentials");
    assert_eq!(sha256(&answer.bytes().await.expect("bytes")), sha256(&object));

    // Nobody else reaches it, nor learns it exists.
    for path in [format!("/api/v1/recordings/{id}/file"), format!("/api/v1/recordings/{id}/link")] {
        let (status, _) = app.get(&path, &eve).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _, _) = fetch_file(&app, &uuid::Uuid::new_v4().to_string(), &alice).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let wait = (expires_at - chrono::Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(2);
    tokio::time::sleep(wait).await;
    let expired = anyone.get(&url).send().await.expect("versitygw answers").status();
    assert_eq!(expired, StatusCode::FORBIDDEN, "the link stops working after its TTL");

    // Alice has it deleted: the object goes, the row stays `deleted`.
    let (status, deleted) =
        app.send(Method::DELETE, &format!("/api/v1/recordings/{id}/file"), Some(&alice), None).await;
    assert_eq!((status, deleted["status"].as_str()), (StatusCode::OK, Some("deleted")), "{deleted}");
    assert!(!bucket.exists(&key).await, "{key} is deleted from the bucket");
    let (status, _, _) = fetch_file(&app, &id, &bob).await;
    assert_eq!(status, StatusCode::CONFLICT);
    println!(
        "S3 storage figures: {seconds:.2} s of Opus, {} bytes, ready (uploaded to versitygw, checked, \
         local copy deleted) {:.2} s after the stop",
        object.len(),
        kept_after.as_secs_f64()
    );
}

#[tokio::test]
async fn a_file_larger_than_a_part_goes_up_in_parts_and_comes_back_whole_through_its_link() {
    let bucket = TestBucket::open().await;
    let s3 = S3::new(&bucket_settings()).expect("the bucket's client");
    let size = (callgate::storage::PART_SIZE * 2 + 12_345) as usize;
    let bytes: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let name = format!("test-{}/large.mp4", uuid::Uuid::new_v4());
    let path = std::env::temp_dir().join(format!("callgate-large-{}.mp4", uuid::Uuid::new_v4()));
    std::fs::write(&path, &bytes).expect("written");
    let info = FileInfo { filename: "recording-large.mp4", content_type: "video/mp4" };

    let began = Instant::now();
    let key = s3.keep(&path, &name, info).await.expect("kept");
    let took = began.elapsed();
    let _ = std::fs::remove_file(&path);

    assert_eq!(key, format!("recordings/{name}"));
    let Download::Link { url, .. } = s3.download(&key, info, chrono::Utc::now(), Duration::from_secs(60))
    else {
        panic!("a bucket's file is fetched by a link")
    };
    let answer = reqwest::get(&url).await.expect("versitygw answers");
    let header =
        |name: &str| answer.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert_eq!(header("content-type"), "video/mp4");
    assert_eq!(header("content-disposition"), "attachment; filename=\"recording-large.mp4\"");
    let fetched = answer.bytes().await.expect("the object");
    assert!(fetched.len() == size && sha256(&fetched) == sha256(&bytes), "the object is the file");
    s3.delete(&key).await.expect("deleted");
    s3.delete(&key).await.expect("deleting it again is no error");
    assert!(!bucket.exists(&key).await);
    println!(
        "S3 storage figures: {size} bytes in {} parts uploaded and checked in {:.2} s",
        size.div_ceil(callgate::storage::PART_SIZE as usize),
        took.as_secs_f64()
    );
}
