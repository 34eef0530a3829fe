//! LiveKit's webhooks: verified, recorded once, kept in the call's timeline,
//! right whatever order they come in; and the policy enforced at the edge.

use std::time::Duration;

use futures::StreamExt;
use livekit_api::services::room::UpdateParticipantOptions;
use livekit_protocol as proto;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::consent::{call_in_room, camera_tracks, participants};

pub const MICROPHONE: i32 = proto::TrackSource::Microphone as i32;

/// The sources LiveKit lets `identity` publish right now.
pub async fn publish_sources(room: &str, identity: &str) -> Vec<i32> {
    participants(room)
        .await
        .into_iter()
        .find(|p| p.identity == identity)
        .and_then(|p| p.permission)
        .map(|p| p.can_publish_sources)
        .unwrap_or_default()
}
use crate::helpers::lk_events::{
    left_event, participant_event, room_event, sign, sign_with, spawn_unreconciled_app,
};
use crate::helpers::{TestApp, TestUser, eventually, livekit_rooms, spawn_app, spawn_app_configured};

async fn answered_call(app: &TestApp, callees: &[&TestUser], caller: &TestUser) -> String {
    let (call, _) = app.ring(caller, callees, "audio").await;
    for callee in callees {
        let (status, body) = app.call_action(&call, "accept", callee, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    call
}

fn status_of(call: &Value, user: &TestUser) -> String {
    call["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .find(|p| p["userId"] == user.id.as_str())
        .and_then(|p| p["status"].as_str())
        .expect("a participant")
        .to_owned()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn the_same_signed_event_delivered_twice_is_recorded_once() {
    let app = spawn_unreconciled_app().await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let call = answered_call(&app, &[&bob], &alice).await;
    let joined = participant_event("participant_joined", &app.room_name(&call), &alice.id, 1_000_000, now());

    assert_eq!(app.deliver(&joined).await, StatusCode::NO_CONTENT);
    assert_eq!(app.deliver(&joined).await, StatusCode::NO_CONTENT, "a second delivery is acknowledged too");
    app.webhooks_settled().await;

    let id = joined["id"].as_str().expect("id");
    let recorded: i64 =
        sqlx::query_scalar("select count(*) from call_events where data->>'livekitEventId' = $1")
            .bind(id)
            .fetch_one(&app.state.db)
            .await
            .expect("count");
    assert_eq!(recorded, 1, "one entry in the timeline");
    let stored: i64 = sqlx::query_scalar("select count(*) from livekit_webhook_events where id = $1")
        .bind(id)
        .fetch_one(&app.state.db)
        .await
        .expect("count");
    assert_eq!(stored, 1);
    assert_eq!(status_of(&app.call(&call, &alice).await, &alice), "joined");
    let told: i64 = app
        .db_count(
            "select count(*) from user_events where call_id = $1 and type = 'participant.joined'",
            &call,
        )
        .await;
    assert_eq!(told, 1, "bob is told once that she joined");
}

#[tokio::test]
async fn forged_tampered_and_foreign_signatures_are_refused_and_nothing_is_stored() {
    let app = spawn_unreconciled_app().await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let call = answered_call(&app, &[&bob], &alice).await;
    let event = participant_event("participant_joined", &app.room_name(&call), &alice.id, 1_000_000, now());
    let body = event.to_string();
    let secret = app.config.livekit.api_secret.expose_secret().to_owned();
    let tampered = body.replace(&alice.id, &bob.id);
    let attempts = [
        (
            "a forged signature",
            body.clone(),
            Some(sign_with("devkey", "not-the-secret-but-32-characters-long", &body)),
        ),
        ("a tampered body", tampered, Some(sign(&body))),
        ("an unknown key", body.clone(), Some(sign_with("otherkey", &secret, &body))),
        ("no signature", body.clone(), None),
        ("garbage", body.clone(), Some("not.a.jwt".to_owned())),
    ];
    for (what, body, auth) in attempts {
        let status = app.deliver_raw(&body, auth.as_deref()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stored: i64 = sqlx::query_scalar("select count(*) from livekit_webhook_events")
        .fetch_one(&app.state.db)
        .await
        .expect("count");
    assert_eq!(stored, 0, "nothing stored");
    let timeline = app
        .db_count("select count(*) from call_events where call_id = $1 and source = 'livekit'", &call)
        .await;
    assert_eq!(timeline, 0, "nothing in the timeline");
    let after = app.call(&call, &alice).await;
    assert_eq!(status_of(&after, &alice), "accepted");
    assert_eq!(status_of(&after, &bob), "accepted");
}

/// Alice, Bob and Carol in a call: everyone joins, Alice's client reconnects
/// (LiveKit closes her first session as a duplicate identity), Carol hangs up.
fn group_story(room: &str, alice: &str, bob: &str, carol: &str) -> Vec<Value> {
    let t = now();
    vec![
        room_event("room_started", room, t - 30),
        participant_event("participant_joined", room, alice, 1_000_000, t - 29),
        participant_event("participant_joined", room, bob, 1_001_000, t - 28),
        participant_event("participant_joined", room, carol, 1_002_000, t - 27),
        left_event(room, alice, 1_000_000, t - 20, "DUPLICATE_IDENTITY"),
        participant_event("participant_joined", room, alice, 1_010_000, t - 20),
        left_event(room, carol, 1_002_000, t - 10, "CLIENT_INITIATED"),
    ]
}

async fn play(app: &TestApp, events: impl Iterator<Item = Value>) {
    for event in events {
        assert_eq!(app.deliver(&event).await, StatusCode::NO_CONTENT);
        // One at a time, so that the order of handling is the order given.
        app.webhooks_settled().await;
    }
}

#[tokio::test]
async fn events_delivered_in_reverse_order_leave_the_same_final_state_as_in_order() {
    let app = spawn_unreconciled_app().await;
    let mut finals = Vec::new();
    for reversed in [false, true] {
        let (alice, bob, carol) = (app.user("female"), app.user("male"), app.user("female"));
        let call = answered_call(&app, &[&bob, &carol], &alice).await;
        let story = group_story(&app.room_name(&call), &alice.id, &bob.id, &carol.id);
        if reversed {
            play(&app, story.into_iter().rev()).await;
        } else {
            play(&app, story.into_iter()).await;
        }
        let state = app.call(&call, &alice).await;
        let summary = (
            state["state"].clone(),
            status_of(&state, &alice),
            status_of(&state, &bob),
            status_of(&state, &carol),
        );
        finals.push(summary);
    }
    let expected = (json!("active"), "joined".to_owned(), "joined".to_owned(), "left".to_owned());
    assert_eq!(finals[0], expected, "in order");
    assert_eq!(finals[1], expected, "in reverse order");
}

#[tokio::test]
async fn an_older_participant_left_does_not_undo_a_newer_join() {
    let app = spawn_unreconciled_app().await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let call = answered_call(&app, &[&bob], &alice).await;
    let room = app.room_name(&call);
    let t = now();
    play(
        &app,
        [
            participant_event("participant_joined", &room, &bob.id, 2_000_000, t - 10),
            participant_event("participant_joined", &room, &alice.id, 2_005_000, t - 5),
            // Her previous session, reported gone late.
            left_event(&room, &alice.id, 1_990_000, t - 8, "SIGNAL_CLOSE"),
        ]
        .into_iter(),
    )
    .await;
    let state = app.call(&call, &alice).await;
    assert_eq!(state["state"], "active", "{state}");
    assert_eq!(status_of(&state, &alice), "joined");
}

#[tokio::test]
async fn room_started_after_room_finished_does_not_revive_the_call() {
    let app = spawn_unreconciled_app().await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let call = answered_call(&app, &[&bob], &alice).await;
    let room = app.room_name(&call);
    let t = now();
    play(
        &app,
        [
            room_event("room_finished", &room, t),
            room_event("room_started", &room, t - 5),
            participant_event("participant_joined", &room, &alice.id, 3_000_000, t - 4),
        ]
        .into_iter(),
    )
    .await;
    let state = app.call(&call, &alice).await;
    assert_eq!(state["state"], "ended");
    assert_eq!(state["endReason"], "room_closed");
    assert_eq!(status_of(&state, &alice), "left", "nobody joins an ended call");
    let timeline = app
        .db_count("select count(*) from call_events where call_id = $1 and type like 'livekit.%'", &call)
        .await;
    assert_eq!(timeline, 3, "every event is in the timeline, even those that changed nothing");
}

#[tokio::test]
async fn a_connection_aborted_is_a_departure() {
    let app = spawn_unreconciled_app().await;
    let (alice, bob, carol) = (app.user("female"), app.user("male"), app.user("male"));
    let call = answered_call(&app, &[&bob, &carol], &alice).await;
    let room = app.room_name(&call);
    let mut aborted = participant_event("participant_connection_aborted", &room, &carol.id, 4_000_000, now());
    aborted["participant"]["disconnectReason"] = json!("JOIN_FAILURE");
    play(&app, [aborted].into_iter()).await;
    assert_eq!(status_of(&app.call(&call, &alice).await, &carol), "left");
}

#[tokio::test]
async fn participants_read_the_timeline_with_type_source_actor_and_time() {
    let app = spawn_unreconciled_app().await;
    let (alice, bob, stranger) = (app.user("female"), app.user("male"), app.user("male"));
    let call = answered_call(&app, &[&bob], &alice).await;
    let room = app.room_name(&call);
    let mut published = participant_event("track_published", &room, &bob.id, 5_000_000, now());
    published["track"] = json!({"sid": "TR_mic", "type": "AUDIO", "source": "MICROPHONE"});
    play(&app, [published].into_iter()).await;

    let (status, body) = app.get(&format!("/api/v1/calls/{call}/events"), &bob).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let events = body["events"].as_array().expect("events");
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds, ["call.started", "call.accepted", "livekit.track_published"]);
    for event in events {
        assert!(
            event["source"].is_string() && event["at"].is_string() && event["actor"].is_string(),
            "{event}"
        );
    }
    assert_eq!(events[0]["source"], "api");
    assert_eq!(events[0]["actor"], alice.id.as_str());
    assert_eq!(events[2]["source"], "livekit");
    assert_eq!(events[2]["actor"], bob.id.as_str());
    assert_eq!(events[2]["data"]["source"], "microphone");

    let (status, _) = app.get(&format!("/api/v1/calls/{call}/events"), &stranger).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "strangers do not learn the call exists");
    let (status, body) = app.get(&format!("/api/v1/calls/{call}/events?limit=2"), &alice).await;
    assert_eq!(status, StatusCode::OK);
    let cursor = body["nextCursor"].as_str().expect("a cursor to the rest").to_owned();
    let (_, rest) = app.get(&format!("/api/v1/calls/{call}/events?after={cursor}"), &alice).await;
    assert_eq!(rest["events"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_camera_published_through_drifted_rights_is_removed_and_recorded_as_a_violation() {
    let app = spawn_app().await;
    let (him, her) = (app.user("male"), app.user("female"));
    let (call, mut a, _b) = call_in_room(&app, &him, &her, "audio", Value::Null).await;
    let room = app.room_name(&call);
    // The reconciler may put the rights back between the grant and the
    // publication; then grant again.
    let mut published = None;
    for _ in 0..3 {
        grant_camera_directly(&room, &him.id).await;
        if let Ok(sid) = a.publish_camera().await.expect("client alive") {
            published = Some(sid);
            break;
        }
    }
    let track = published.expect("LiveKit accepted the camera under the drifted right");

    // LiveKit reports the track; callgate records the violation...
    let db = app.state.db.clone();
    let call_id = uuid::Uuid::parse_str(&call).expect("uuid");
    eventually(Duration::from_secs(5), "the violation is in the ledger", || {
        let (db, track) = (db.clone(), track.clone());
        async move {
            let found: i64 = sqlx::query_scalar(
                "select count(*) from consent_ledger where call_id = $1 and kind = 'violation' \
                 and detail->>'trackSid' = $2",
            )
            .bind(call_id)
            .bind(track)
            .fetch_one(&db)
            .await
            .expect("count");
            found == 1
        }
    })
    .await;
    // ...and puts his rights back, which makes LiveKit remove the track.
    eventually(Duration::from_secs(5), "LiveKit has removed the camera track and the camera right", || {
        let (room, him) = (room.clone(), him.id.clone());
        async move { camera_tracks(&room).await == 0 && publish_sources(&room, &him).await == [MICROPHONE] }
    })
    .await;
    let violations: Vec<(String, Value)> =
        sqlx::query_as("select actor, detail from consent_ledger where call_id = $1 and kind = 'violation'")
            .bind(call_id)
            .fetch_all(&app.state.db)
            .await
            .expect("ledger");
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].0, him.id);
    assert_eq!(violations[0].1["source"], "camera");
    let (_, ledger) = app.get(&format!("/api/v1/calls/{call}/consent"), &her).await;
    let seen = ledger["entries"].as_array().expect("entries").iter().any(|e| e["kind"] == "violation");
    assert!(seen, "participants read the violation in the ledger: {ledger}");
}

/// Drift: the camera right given through LiveKit's API, behind callgate's back.
pub async fn grant_camera_directly(room: &str, identity: &str) {
    let permission = proto::ParticipantPermission {
        can_subscribe: true,
        can_publish: true,
        can_publish_data: true,
        can_publish_sources: vec![MICROPHONE, proto::TrackSource::Camera as i32],
        ..Default::default()
    };
    let options = UpdateParticipantOptions { permission: Some(permission), ..Default::default() };
    livekit_rooms().update_participant(room, identity, options).await.expect("LiveKit takes the grant");
}

/// LiveKit may send an event again while the first delivery is in flight.
/// (`examples/webhook_burst.rs` measures the handler latency of a burst.)
#[tokio::test]
async fn concurrent_deliveries_with_duplicates_are_acknowledged_and_each_recorded_once() {
    const EVENTS: usize = 100;
    let app = spawn_unreconciled_app().await;
    let mut rooms = Vec::new();
    for _ in 0..4 {
        let (alice, bob) = (app.user("female"), app.user("male"));
        let call = answered_call(&app, &[&bob], &alice).await;
        rooms.push(app.room_name(&call));
    }
    let events: Vec<Value> = (0..EVENTS)
        .map(|i| {
            let mut event =
                participant_event("track_unpublished", &rooms[i % rooms.len()], "someone", 6_000_000, now());
            event["track"] = json!({"sid": format!("TR_{i}"), "type": "AUDIO", "source": "MICROPHONE"});
            event
        })
        .collect();
    let deliveries = events.iter().chain(events.iter());
    let statuses: Vec<StatusCode> = futures::stream::iter(deliveries)
        .map(|event| app.deliver(event))
        .buffer_unordered(2 * EVENTS)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == StatusCode::NO_CONTENT), "{statuses:?}");
    app.webhooks_settled().await;
    let recorded: i64 =
        sqlx::query_scalar("select count(*) from call_events where type = 'livekit.track_unpublished'")
            .fetch_one(&app.state.db)
            .await
            .expect("count");
    assert_eq!(recorded, EVENTS as i64, "each event recorded once");
}

/// Sends `head` and then `body` (in a task of its own: the server may
/// answer before it has read it all) on a connection of its own, and
/// returns the server's status line and how long it took.
async fn raw_exchange(app: &TestApp, head: String, body: Vec<u8>) -> (String, Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.address.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(address).await.expect("connected");
    let (mut reader, mut writer) = stream.into_split();
    let started = std::time::Instant::now();
    writer.write_all(head.as_bytes()).await.expect("the head written");
    let sending = tokio::spawn(async move {
        let _ = writer.write_all(&body).await;
        writer
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(n) = reader.read(&mut buf).await {
            answer.extend_from_slice(&buf[..n]);
            if n == 0 || answer.windows(2).any(|w| w == b"\r\n") {
                break;
            }
        }
    })
    .await;
    sending.abort();
    let line = String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned();
    (line, started.elapsed())
}

#[tokio::test]
async fn a_webhook_body_over_the_limit_is_refused_unread_and_a_signature_is_checked_before_any_body() {
    let app = spawn_app().await;
    let auth = sign("{}");
    let post = |extra: &str| {
        format!(
            "POST /webhooks/livekit HTTP/1.1\r\nHost: callgate\r\nContent-Type: application/webhook+json\r\n{extra}\r\n"
        )
    };
    // Ten megabytes announced, none sent: the answer does not wait for them.
    let head = post(&format!("Authorization: {auth}\r\nContent-Length: 10000000\r\n"));
    let (status, took) = raw_exchange(&app, head, Vec::new()).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    assert!(took < Duration::from_secs(2), "answered at once, not after a body: {took:?}");
    // No length announced: read up to the limit (256 KiB), and no further.
    let over = 256 * 1024 + 1024;
    let mut chunked = format!("{over:x}\r\n").into_bytes();
    chunked.extend(std::iter::repeat_n(b' ', over));
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let head = post(&format!("Authorization: {auth}\r\nTransfer-Encoding: chunked\r\n"));
    let (status, _) = raw_exchange(&app, head, chunked).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    // Unsigned: refused on its header, its announced megabytes never awaited.
    let (status, took) = raw_exchange(&app, post("Content-Length: 10000000\r\n"), Vec::new()).await;
    assert!(status.starts_with("HTTP/1.1 401"), "{status}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test]
async fn junk_at_the_webhook_route_is_refused_then_limited_and_livekits_own_still_get_in() {
    let app = spawn_app_configured(|c| c.limits.webhook_refusals_per_minute = 3).await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let call = answered_call(&app, &[&bob], &alice).await;
    for _ in 0..3 {
        assert_eq!(app.deliver_raw("{}", Some("not-a-jwt")).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(app.deliver_raw("{}", Some("not-a-jwt")).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(app.deliver_raw("{}", None).await, StatusCode::TOO_MANY_REQUESTS);
    let forged = sign_with("devkey", "another-secret-of-at-least-32-characters", "{}");
    assert_eq!(app.deliver_raw("{}", Some(&forged)).await, StatusCode::TOO_MANY_REQUESTS);
    // LiveKit itself, from the same address, is never limited.
    let joined = participant_event("participant_joined", &app.room_name(&call), &alice.id, 1_000_000, now());
    for _ in 0..5 {
        assert_eq!(app.deliver(&joined).await, StatusCode::NO_CONTENT);
    }
}
