//! Recording when things go against it, on the real stack with the LiveKit
//! Egress that `deploy/local.sh up` supervises: a newcomer who does not
//! consent as they join stops it (the file ends and is kept, the ledger says
//! off, the room's metadata drops the indicator, no egress is left); the
//! recorder killed mid-recording leaves a `failed` recording and no egress
//! running, and egress comes back for the next one; someone invited while
//! in another call (written `busy`) reaches no recording of it.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::consent::call_in_room;
use crate::helpers::lk_client::LkClient;
use crate::helpers::{TestApp, TestUser, spawn_app};
use crate::recording::{download, first_recording_is, recordings, running_egress};

/// `asker` asks to record, `others` consent: the call is being recorded
/// (egress says so). The recording's id.
async fn recorded(app: &TestApp, call: &str, asker: &TestUser, others: &[&TestUser]) -> String {
    let (status, asked) =
        app.post(&format!("/api/v1/calls/{call}/recording/requests"), asker, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{asked}");
    let request = asked["request"]["id"].as_str().expect("a request id").to_owned();
    for who in others {
        let path = format!("/api/v1/calls/{call}/recording/requests/{request}/accept");
        let (status, view) = app.post(&path, who, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{view}");
    }
    let recording = first_recording_is(app, call, asker, "recording", Duration::from_secs(60)).await;
    recording["id"].as_str().expect("an id").to_owned()
}

/// Waits until the room's metadata, as a participant's LiveKit client
/// reads it, says `recording` is `want`.
async fn room_says_recording(client: &mut LkClient, want: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let raw = client.state().await.expect("the client's state").room_metadata;
        let meta: Value = serde_json::from_str(&raw).expect("the room's metadata is JSON");
        if meta["recording"] == want {
            return;
        }
        assert!(Instant::now() < deadline, "the room's metadata never said recording {want}: {raw}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The kinds of the call's recording steps in the ledger, as `who` reads it.
async fn recording_steps(app: &TestApp, call: &str, who: &TestUser) -> Vec<String> {
    let (status, ledger) = app.get(&format!("/api/v1/calls/{call}/consent"), who).await;
    assert_eq!(status, StatusCode::OK, "{ledger}");
    ledger["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["subject"] == "recording")
        .map(|e| e["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn a_newcomer_who_joins_without_consenting_stops_the_recording_and_its_file_is_kept() {
    let _media = crate::helpers::media_turn().await;
    let app = spawn_app().await;
    let (alice, bob, carol) = (app.user("female"), app.user("male"), app.user("female"));
    let (call, mut a, _b) = call_in_room(&app, &alice, &bob, "audio", json!(false)).await;
    let id = recorded(&app, &call, &alice, &[&bob]).await;
    room_says_recording(&mut a, true).await;
    let file = crate::egress::output_dir().join(&call).join(format!("{id}.ogg"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while crate::egress::probe(&file).is_none_or(|(_, seconds)| seconds < 2.0) {
        assert!(Instant::now() < deadline, "egress wrote no 2 s of {}", file.display());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Carol is rung in; the call tells her it is being recorded, and she
    // answers without consenting to it.
    let (status, body) =
        app.call_action(&call, "invitations", &bob, json!({"participantIds": [carol.id]})).await;
    assert_eq!((status, body["rung"].clone()), (StatusCode::OK, json!([carol.id])), "{body}");
    assert_eq!(app.call(&call, &carol).await["recording"], "on");
    let (status, answered) = app.call_action(&call, "accept", &carol, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{answered}");

    let (_, view) = app.get(&format!("/api/v1/calls/{call}/recording"), &alice).await;
    assert_eq!(view["state"], "off", "{view}");
    room_says_recording(&mut a, false).await;
    let ready = first_recording_is(&app, &call, &alice, "ready", Duration::from_secs(60)).await;
    assert_eq!(ready["id"], id.as_str());
    assert_eq!(running_egress(&app, &call).await, 0, "no egress left running");
    let (streams, seconds) = crate::egress::probe(&file).expect("ffprobe reads the file");
    assert_eq!(streams, vec![("audio".to_owned(), "opus".to_owned())]);
    assert!(seconds >= 2.0, "{seconds} s");
    let steps = recording_steps(&app, &call, &alice).await;
    assert_eq!(steps.last().map(String::as_str), Some("off"), "{steps:?}");
    let _ = std::fs::remove_file(&file);
}

/// The pid of the `egress run-handler` process recording `egress_id` (its
/// request, with the id, is on its command line).
fn handler_of(egress_id: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_string_lossy().parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<String> =
            cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let handler = args.iter().any(|a| a == "run-handler") && args.iter().any(|a| a.contains(egress_id));
        handler.then_some(pid)
    })
}

/// Whether egress takes recordings again: its status port answers and the
/// supervisor's child is not `dead`.
async fn egress_back(dead: &str) -> bool {
    let file = std::env::var("CALLGATE_EGRESS_PID_FILE").expect("CALLGATE_EGRESS_PID_FILE");
    let child = std::fs::read_to_string(file).unwrap_or_default();
    let port = std::env::var("CALLGATE_EGRESS_HEALTH_PORT")
        .expect("CALLGATE_EGRESS_HEALTH_PORT (exported by deploy/local.sh test)");
    let answers =
        reqwest::get(format!("http://127.0.0.1:{port}/")).await.is_ok_and(|r| r.status().is_success());
    answers && !child.trim().is_empty() && child.trim() != dead
}

#[tokio::test]
async fn an_egress_killed_mid_recording_leaves_a_failed_recording_no_egress_running_and_the_consent_lapsed() {
    // Egress stops its whole service when a recording's handler dies (the
    // supervisor starts it again): no other recording runs meanwhile.
    let _media = crate::helpers::MEDIA.acquire_many(2).await.expect("the semaphore is never closed");
    let app = spawn_app().await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (call, mut her_client, _b) = call_in_room(&app, &alice, &bob, "audio", json!(false)).await;
    let id = recorded(&app, &call, &bob, &[&alice]).await;
    room_says_recording(&mut her_client, true).await;
    let room = app.room_name(&call);
    let running = app.state.core.livekit.list_recordings(&room, true).await.expect("listed");
    let egress = running.first().expect("egress records the room").egress_id.clone();
    let handler = handler_of(&egress).unwrap_or_else(|| panic!("no run-handler process records {egress}"));
    let service = std::fs::read_to_string(std::env::var("CALLGATE_EGRESS_PID_FILE").expect("the pid file"))
        .expect("egress's pid");

    // The handler was started in a session of its own: its chromium and
    // Xvfb go with it.
    let killed = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{handler}")])
        .status()
        .expect("kill runs");
    assert!(killed.success(), "kill -9 of the handler's process group {handler}");
    let killed_at = Instant::now();

    let deadline = killed_at + Duration::from_secs(30);
    let failed = loop {
        let (_, list) = recordings(&app, &call, &alice).await;
        let first = list.first().cloned().expect("the recording is listed");
        if first["status"] == "failed" {
            break first;
        }
        assert_ne!(first["status"], "ready", "a killed recording is not kept: {first}");
        assert!(Instant::now() < deadline, "not failed 30 s after the kill: {first}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let to_failed = killed_at.elapsed();
    assert_eq!(failed["id"], id.as_str());
    assert_eq!(running_egress(&app, &call).await, 0, "no egress left running");
    let hooks = app
        .db_count(
            "select count(*) from app_webhook_outbox where call_id = $1 and type = 'recording.failed'",
            &call,
        )
        .await;
    assert_eq!(hooks, 1, "the host hears of it once");
    let (status, _, _) = download(&app, &id, &alice).await;
    assert_eq!(status, StatusCode::CONFLICT, "a failed recording has no file to fetch");
    // The call goes on.
    let view = app.call(&call, &alice).await;
    assert_eq!(view["state"], "active", "{view}");
    // Nothing records, so nobody is told it does: the consent lapsed (an
    // `off` of nobody's), the indicator is off, and nothing starts again
    // until someone asks anew.
    let steps = recording_steps(&app, &call, &alice).await;
    assert_eq!(steps.last().map(String::as_str), Some("off"), "{steps:?}");
    let (_, seen) = app.get(&format!("/api/v1/calls/{call}/recording"), &alice).await;
    assert_eq!(seen["state"], "off", "{seen}");
    assert_eq!(app.call(&call, &alice).await["recording"], "off");
    room_says_recording(&mut her_client, false).await;
    let told = app
        .db_count("select count(*) from user_events where call_id = $1 and type = 'recording.off'", &call)
        .await;
    assert_eq!(told, 2, "both present are told it is off");
    println!(
        "killed egress: recording failed {:.1} s after the kill; recording steps {steps:?}",
        to_failed.as_secs_f64()
    );

    // Egress is back (the supervisor restarted it) for whatever records next.
    let deadline = Instant::now() + Duration::from_secs(90);
    while !egress_back(service.trim()).await {
        assert!(Instant::now() < deadline, "egress is not back 90 s after the kill");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn one_written_busy_when_invited_reaches_no_recording_of_the_call() {
    let _media = crate::helpers::media_turn().await;
    let app = spawn_app().await;
    let (alice, bob, dave, erin) =
        (app.user("female"), app.user("male"), app.user("male"), app.user("female"));
    let (call, _a, _b) = call_in_room(&app, &alice, &bob, "audio", json!(false)).await;
    let id = recorded(&app, &call, &alice, &[&bob]).await;
    // Dave is in another call (answered just now: nobody joining its room
    // would end it after CONNECT_TIMEOUT, and egress may take a while).
    let (other, _) = app.ring(&dave, &[&erin], "audio").await;
    let (status, body) = app.call_action(&other, "accept", &erin, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) =
        app.call_action(&call, "invitations", &alice, json!({"participantIds": [dave.id]})).await;
    assert_eq!((status, body["busy"].clone()), (StatusCode::OK, json!([dave.id])), "{body}");
    let (status, off) = app.post(&format!("/api/v1/calls/{call}/recording/stop"), &bob, json!({})).await;
    assert_eq!((status, off["state"].as_str()), (StatusCode::OK, Some("off")), "{off}");
    first_recording_is(&app, &call, &alice, "ready", Duration::from_secs(60)).await;

    let (status, list) = recordings(&app, &call, &dave).await;
    assert_eq!((status, list.len()), (StatusCode::NOT_FOUND, 0), "busy: never in the call");
    let (status, _, bytes) = download(&app, &id, &dave).await;
    assert_eq!((status, bytes.starts_with(b"OggS")), (StatusCode::NOT_FOUND, false));
    // Those who were in it do reach it.
    let (status, _, bytes) = download(&app, &id, &bob).await;
    assert_eq!((status, bytes.starts_with(b"OggS")), (StatusCode::OK, true));
    let file = crate::egress::output_dir().join(&call).join(format!("{id}.ogg"));
    let _ = std::fs::remove_file(&file);
}
