//! Recording on the real stack: two real WebRTC clients in a call, callgate
//! driving the LiveKit Egress that `deploy/local.sh up` runs, real files
//! read back with ffprobe. Everyone consents -> egress records -> anyone
//! stops -> the file is checked, kept and fetched by those who were in the
//! call, never by anyone else; one no -> nothing is recorded and no egress
//! is left running.
//!
//! While it records, the recorder (a hidden participant of kind EGRESS in
//! the room) is no person to callgate: not among the call's participants,
//! no violation, not put out. Prints the time from the last consent to
//! egress's first recorded second, and egress's CPU and memory while it
//! records.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Digest;

use crate::consent::call_in_room;
use crate::egress::{EgressLoad, probe};
use crate::helpers::{TestApp, TestUser, spawn_app};

pub(crate) async fn recordings(app: &TestApp, call: &str, who: &TestUser) -> (StatusCode, Vec<Value>) {
    let (status, body) = app.get(&format!("/api/v1/calls/{call}/recordings"), who).await;
    (status, body["recordings"].as_array().cloned().unwrap_or_default())
}

/// Polls the call's recordings until the first one is `status` (or fails).
pub(crate) async fn first_recording_is(
    app: &TestApp,
    call: &str,
    who: &TestUser,
    status: &str,
    within: Duration,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (code, list) = recordings(app, call, who).await;
        assert_eq!(code, StatusCode::OK);
        if let Some(first) = list.first() {
            if first["status"] == status {
                return first.clone();
            }
            assert_ne!(first["status"], "failed", "the recording failed: {first}");
        }
        assert!(Instant::now() < deadline, "no recording {status} within {within:?}: {list:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn download(app: &TestApp, id: &str, who: &TestUser) -> (StatusCode, Option<String>, Vec<u8>) {
    let response = app
        .http
        .request(Method::GET, app.url(&format!("/api/v1/recordings/{id}/file")))
        .bearer_auth(&who.token)
        .send()
        .await
        .expect("an answer");
    let status = response.status();
    let kind = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (status, kind, response.bytes().await.expect("the body").to_vec())
}

async fn running_egress(app: &TestApp, call: &str) -> usize {
    let room = app.room_name(call);
    app.state.core.livekit.list_recordings(&room, true).await.expect("LiveKit lists egress").len()
}

#[tokio::test]
async fn once_both_consent_the_call_is_recorded_and_only_those_in_it_fetch_the_file() {
    let _media = crate::helpers::media_turn().await;
    let app = spawn_app().await;
    let (alice, bob, eve) = (app.user("female"), app.user("male"), app.user("female"));
    let (call, _a, _b) = call_in_room(&app, &alice, &bob, "audio", json!(false)).await;

    let (status, asked) =
        app.post(&format!("/api/v1/calls/{call}/recording/requests"), &alice, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{asked}");
    let request = asked["request"]["id"].as_str().expect("a request id").to_owned();
    let (_, seen) = app.get(&format!("/api/v1/calls/{call}/recording"), &bob).await;
    assert_eq!(
        (seen["state"].as_str(), seen["canAnswer"].as_bool()),
        (Some("requested"), Some(true)),
        "{seen}"
    );
    assert_eq!(running_egress(&app, &call).await, 0, "nothing records before bob's yes");

    let path = format!("/api/v1/calls/{call}/recording/requests/{request}/accept");
    let (status, on) = app.post(&path, &bob, json!({})).await;
    let consented = chrono::Utc::now();
    assert_eq!(status, StatusCode::OK, "{on}");
    assert_eq!(on["state"], "on", "{on}");

    // Egress records (its egress_started / egress_updated webhooks say so).
    let recording = first_recording_is(&app, &call, &bob, "recording", Duration::from_secs(60)).await;
    let started: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(recording["startedAt"].clone()).expect("a start time");
    let to_first_second = (started - consented).to_std().unwrap_or_default() + Duration::from_secs(1);
    let id = recording["id"].as_str().expect("an id").to_owned();
    let file = crate::egress::output_dir().join(&call).join(format!("{id}.ogg"));
    let (deadline, recording_from) = (Instant::now() + Duration::from_secs(60), Instant::now());
    let mut load = EgressLoad::start();
    // When the file's sound began, as first seen (what it held then, back
    // from now): on a loaded box egress's page takes seconds to bring the
    // call's audio after egress says it records.
    let mut sound_from: Option<Instant> = None;
    loop {
        let held = probe(&file).map_or(0.0, |(_, seconds)| seconds);
        if held > 0.0 && sound_from.is_none() {
            sound_from = Instant::now().checked_sub(Duration::from_secs_f64(held));
        }
        if held >= 4.0 {
            break;
        }
        assert!(Instant::now() < deadline, "egress wrote no 4 s of {}", file.display());
        load.sample();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    load.sample();

    // The recorder is in the room as a participant of kind EGRESS; to
    // callgate it is no person: the call shows its two people, joined.
    let room = app.room_name(&call);
    let in_room = crate::consent::participants(&room).await;
    let recorder =
        in_room.iter().find(|p| p.identity.starts_with("EG_")).expect("the recorder is in the room");
    assert_eq!(recorder.kind, livekit_protocol::participant_info::Kind::Egress as i32);
    let view = app.call(&call, &alice).await;
    let people = view["participants"].as_array().expect("participants");
    assert_eq!(people.len(), 2, "{view}");
    assert!(people.iter().all(|p| p["status"] == "joined"), "{view}");

    // Bob stops it; egress finishes the file; callgate checks and keeps it.
    let (status, off) = app.post(&format!("/api/v1/calls/{call}/recording/stop"), &bob, json!({})).await;
    assert_eq!((status, off["state"].as_str()), (StatusCode::OK, Some("off")), "{off}");
    let stopped = chrono::Utc::now();
    let sounding = sound_from.map(|from| from.elapsed().as_secs_f64()).unwrap_or_default();
    let ready = first_recording_is(&app, &call, &alice, "ready", Duration::from_secs(60)).await;
    assert_eq!(running_egress(&app, &call).await, 0, "no egress left running");

    let (status, kind, bytes) = download(&app, &id, &alice).await;
    assert_eq!((status, kind.as_deref()), (StatusCode::OK, Some("audio/ogg")));
    assert_eq!(Some(bytes.len() as i64), ready["sizeBytes"].as_i64(), "{ready}");
    assert_eq!(ready["sha256"].as_str(), Some(hex::encode(sha2::Sha256::digest(&bytes)).as_str()));
    let fetched = std::env::temp_dir().join(format!("callgate-fetched-{id}.ogg"));
    std::fs::write(&fetched, &bytes).expect("written");
    let (streams, seconds) = probe(&fetched).expect("ffprobe reads what was fetched");
    let _ = std::fs::remove_file(&fetched);
    assert_eq!(streams, vec![("audio".to_owned(), "opus".to_owned())], "one Opus audio stream");
    // Nothing before egress started (so nothing before the consent), and
    // all from its first sound to the stop.
    let span = (stopped - started).to_std().unwrap_or_default().as_secs_f64();
    assert!(
        (sounding - 2.0..=span + 1.0).contains(&seconds),
        "{seconds} s recorded; {span:.2} s from egress's start to the stop, {sounding:.2} s from its first sound"
    );
    let duration_ms = ready["durationMs"].as_i64().expect("a duration") as f64 / 1000.0;
    assert!((duration_ms - seconds).abs() < 1.0, "egress says {duration_ms} s, ffprobe {seconds} s");

    // Nobody else reaches it, nor learns it exists.
    let (status, _) = recordings(&app, &call, &eve).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = download(&app, &id, &eve).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = download(&app, &uuid::Uuid::new_v4().to_string(), &alice).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The ledger says what was consented to, about what.
    let (_, ledger) = app.get(&format!("/api/v1/calls/{call}/consent"), &alice).await;
    let steps: Vec<(String, String)> = ledger["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["subject"] == "recording")
        .map(|e| (e["kind"].as_str().unwrap_or("").to_owned(), e["actor"].as_str().unwrap_or("").to_owned()))
        .collect();
    let kinds: Vec<&str> = steps.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"request"), "{steps:?}");
    assert!(kinds.contains(&"on") && kinds.last() == Some(&"off"), "{steps:?}");

    let violations = app
        .db_count("select count(*) from consent_ledger where call_id = $1 and kind = 'violation'", &call)
        .await;
    assert_eq!(violations, 0);
    println!(
        "recording figures (audio-only room composite, OGG/Opus): last consent -> egress recording {:.2} s \
         (its first recorded second at {:.2} s); {}; {seconds:.2} s of Opus, {} bytes, ready {:.2} s after the stop",
        to_first_second.as_secs_f64() - 1.0,
        to_first_second.as_secs_f64(),
        load.figures(recording_from),
        bytes.len(),
        (chrono::DateTime::parse_from_rfc3339(ready["endedAt"].as_str().unwrap_or_default())
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or(stopped)
            - stopped)
            .num_milliseconds() as f64
            / 1000.0,
    );

    // Alice has the file deleted; it is gone from the disk and from reach.
    let (status, deleted) =
        app.send(Method::DELETE, &format!("/api/v1/recordings/{id}/file"), Some(&alice), None).await;
    assert_eq!((status, deleted["status"].as_str()), (StatusCode::OK, Some("deleted")), "{deleted}");
    assert!(!file.exists(), "{} is deleted", file.display());
    let (status, _, _) = download(&app, &id, &bob).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn one_no_records_nothing_and_leaves_no_egress_running() {
    let app = spawn_app().await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (call, _a, _b) = call_in_room(&app, &alice, &bob, "audio", json!(false)).await;

    let (status, asked) =
        app.post(&format!("/api/v1/calls/{call}/recording/requests"), &bob, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{asked}");
    let request = asked["request"]["id"].as_str().expect("a request id");
    let path = format!("/api/v1/calls/{call}/recording/requests/{request}/reject");
    let (status, view) = app.post(&path, &alice, json!({})).await;
    assert_eq!((status, view["state"].as_str()), (StatusCode::OK, Some("off")), "{view}");

    // What the job runner would have done by now, it has done.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(running_egress(&app, &call).await, 0);
    let (_, list) = recordings(&app, &call, &bob).await;
    assert!(list.is_empty(), "{list:?}");
    let (status, again) =
        app.post(&format!("/api/v1/calls/{call}/recording/requests"), &bob, json!({})).await;
    assert_eq!(
        (status, again["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("recording_request_cooldown"))
    );
}

/// A request to `service` expected to succeed with `want`.
async fn must(
    service: &crate::helpers::binary::Service,
    method: Method,
    path: &str,
    who: &TestUser,
    body: Option<Value>,
    want: StatusCode,
) -> Value {
    let (status, answer) = service.send(method, path, who, body).await;
    assert_eq!(status, want, "{path}: {answer}");
    answer
}

#[tokio::test]
async fn a_recording_survives_a_kill_of_the_service_and_is_stopped_and_kept_by_the_next_one() {
    let _media = crate::helpers::media_turn().await;
    use crate::helpers::binary::{self, free_port};
    use crate::helpers::lk_client::LkClient;

    let config = crate::helpers::base_config();
    let (database_url, prefix) = crate::helpers::isolated_database(&config).await;
    // An isolated database hears no LiveKit webhook: what egress does
    // reaches this deployment through the reconciler (every second here).
    let env = [
        ("DATABASE_URL", database_url.clone()),
        ("ROOM_PREFIX", prefix.clone()),
        ("RECORDING_DIR", crate::egress::output_dir().to_string_lossy().into_owned()),
        ("RECONCILE_INTERVAL", "1".to_owned()),
    ];
    let port = free_port();
    let service = binary::launch(port, &env).await;
    let app = spawn_app().await; // mints the users' tokens, and reads LiveKit
    let (alice, bob) = (app.user("female"), app.user("male"));

    let body = json!({"participantIds": [bob.id], "type": "audio"});
    let started =
        must(&service, Method::POST, "/api/v1/calls", &alice, Some(body), StatusCode::CREATED).await;
    let call = started["call"]["id"].as_str().expect("a call").to_owned();
    let accept = format!("/api/v1/calls/{call}/accept");
    let accepted = must(&service, Method::POST, &accept, &bob, Some(json!({})), StatusCode::OK).await;
    let url = started["join"]["url"].as_str().expect("url");
    let mut a =
        LkClient::connect(url, started["join"]["token"].as_str().expect("a token")).await.expect("joins");
    let mut b =
        LkClient::connect(url, accepted["join"]["token"].as_str().expect("a token")).await.expect("joins");
    a.publish_audio().await.expect("her audio");
    b.publish_audio().await.expect("his audio");

    let ask = format!("/api/v1/calls/{call}/recording/requests");
    let asked = must(&service, Method::POST, &ask, &alice, Some(json!({})), StatusCode::CREATED).await;
    let request = asked["request"]["id"].as_str().expect("a request");
    let yes = format!("/api/v1/calls/{call}/recording/requests/{request}/accept");
    must(&service, Method::POST, &yes, &bob, Some(json!({})), StatusCode::OK).await;

    // Egress records; then the service is killed, and another takes over.
    let room = format!("{prefix}{call}");
    let livekit = &app.state.core.livekit;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let running = livekit.list_recordings(&room, true).await.expect("listed");
        if running.iter().any(|e| e.status == callgate::livekit::EgressStatus::Active) {
            break;
        }
        assert!(Instant::now() < deadline, "egress is not recording after 60 s: {running:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let killed_at = Instant::now();
    service.kill().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let service = binary::launch(port, &env).await;
    assert_eq!(livekit.list_recordings(&room, true).await.expect("listed").len(), 1, "it recorded on");

    let stop = format!("/api/v1/calls/{call}/recording/stop");
    let off = must(&service, Method::POST, &stop, &bob, Some(json!({})), StatusCode::OK).await;
    assert_eq!(off["state"], "off", "{off}");
    let recorded_across = killed_at.elapsed().as_secs_f64();
    let list = format!("/api/v1/calls/{call}/recordings");
    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = loop {
        let listed = must(&service, Method::GET, &list, &alice, None, StatusCode::OK).await;
        let first = listed["recordings"][0].clone();
        if first["status"] == "ready" {
            break first;
        }
        assert_ne!(first["status"], "failed", "{first}");
        assert!(Instant::now() < deadline, "not ready within 60 s: {listed}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(livekit.list_recordings(&room, true).await.expect("listed").is_empty(), "no egress left");
    let id = ready["id"].as_str().expect("an id");
    let file = crate::egress::output_dir().join(&call).join(format!("{id}.ogg"));
    let (streams, seconds) = probe(&file).expect("ffprobe reads it");
    assert_eq!(streams, vec![("audio".to_owned(), "opus".to_owned())]);
    assert!(
        seconds >= recorded_across - 1.0,
        "{seconds} s, but it ran {recorded_across:.1} s across the restart"
    );
    let _ = std::fs::remove_file(&file);
}

#[tokio::test]
async fn asking_to_record_again_and_again_is_limited_like_video_requests() {
    let app =
        crate::helpers::spawn_app_configured(|c| c.rate_limits.video_requests_per_participant = 2).await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (call, _a, _b) = call_in_room(&app, &alice, &bob, "audio", json!(false)).await;
    let ask = format!("/api/v1/calls/{call}/recording/requests");
    let stop = format!("/api/v1/calls/{call}/recording/stop");
    for _ in 0..2 {
        let (status, body) = app.post(&ask, &bob, json!({})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = app.post(&stop, &bob, json!({})).await; // he takes it back
        assert_eq!((status, body["state"].as_str()), (StatusCode::OK, Some("off")), "{body}");
    }

    let (status, body) = app.post(&ask, &bob, json!({})).await;

    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")),
        "{body}"
    );
    let prompts = app
        .db_count("select count(*) from consent_ledger where call_id = $1 and subject = 'recording' and kind = 'request'", &call)
        .await;
    assert_eq!(prompts, 2, "the third was never put to Alice");
}
