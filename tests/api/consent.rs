//! The video consent policy, end to end: the SFU itself refuses the camera
//! until she consents.

use std::time::{Duration, Instant};

use livekit_protocol as proto;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::helpers::lk_client::LkClient;
use crate::helpers::{TestApp, TestUser, eventually, livekit_rooms, spawn_app};

const CAMERA: i32 = proto::TrackSource::Camera as i32;

/// An answered call with both in the room, publishing audio.
pub async fn call_in_room(
    app: &TestApp,
    caller: &TestUser,
    callee: &TestUser,
    kind: &str,
    video: Value,
) -> (String, LkClient, LkClient) {
    let (call, started) = app.ring(caller, &[callee], kind).await;
    let (status, accepted) = app.call_action(&call, "accept", callee, json!({"video": video})).await;
    assert_eq!(status, StatusCode::OK, "{accepted}");
    let url = started["join"]["url"].as_str().expect("url");
    let mut a = LkClient::connect(url, started["join"]["token"].as_str().expect("token"))
        .await
        .expect("caller joins");
    let mut b = LkClient::connect(url, accepted["join"]["token"].as_str().expect("token"))
        .await
        .expect("callee joins");
    a.publish_audio().await.expect("caller audio");
    b.publish_audio().await.expect("callee audio");
    app.wait_for_call(&call, caller, Duration::from_secs(15), |c| c["state"] == "active").await;
    (call, a, b)
}

/// A group call: `caller` rings `callees`, who all answer, and everyone joins
/// the room. Returns the call, the caller's client, the callees' clients and
/// their join tokens, in order. (Whether the call is active depends on the
/// app hearing LiveKit's webhooks; callers wait for that themselves.)
pub async fn group_in_room(
    app: &TestApp,
    caller: &TestUser,
    callees: &[&TestUser],
) -> (String, LkClient, Vec<LkClient>, Vec<String>) {
    let (call, started) = app.ring(caller, callees, "audio").await;
    let url = started["join"]["url"].as_str().expect("url").to_owned();
    let first =
        LkClient::connect(&url, started["join"]["token"].as_str().expect("token")).await.expect("joins");
    let (mut clients, mut tokens) = (Vec::new(), Vec::new());
    for callee in callees {
        let (_, body) = app.call_action(&call, "accept", callee, json!({})).await;
        let token = body["join"]["token"].as_str().expect("token").to_owned();
        clients.push(LkClient::connect(&url, &token).await.expect("joins"));
        tokens.push(token);
    }
    (call, first, clients, tokens)
}

pub async fn participants(room: &str) -> Vec<proto::ParticipantInfo> {
    livekit_rooms().list_participants(room).await.expect("LiveKit lists participants")
}

pub async fn camera_tracks(room: &str) -> usize {
    participants(room).await.iter().flat_map(|p| &p.tracks).filter(|t| t.source == CAMERA).count()
}

pub async fn camera_right(room: &str, identity: &str) -> Option<bool> {
    participants(room)
        .await
        .iter()
        .find(|p| p.identity == identity)
        .map(|p| p.permission.as_ref().is_some_and(|perm| perm.can_publish_sources.contains(&CAMERA)))
}

pub async fn request_video(app: &TestApp, call: &str, user: &TestUser) -> (StatusCode, Value) {
    app.post(&format!("/api/v1/calls/{call}/video/requests"), user, json!({})).await
}

pub async fn answer(
    app: &TestApp,
    call: &str,
    request: &str,
    user: &TestUser,
    verb: &str,
) -> (StatusCode, Value) {
    app.post(&format!("/api/v1/calls/{call}/video/requests/{request}/{verb}"), user, json!({})).await
}

pub async fn revoke(app: &TestApp, call: &str, user: &TestUser) -> (StatusCode, Value) {
    app.post(&format!("/api/v1/calls/{call}/video/revoke"), user, json!({})).await
}

pub async fn video(app: &TestApp, call: &str, user: &TestUser) -> Value {
    let (status, body) = app.get(&format!("/api/v1/calls/{call}/video"), user).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn ledger_kinds(app: &TestApp, call: &str, user: &TestUser) -> Vec<String> {
    let (status, body) = app.get(&format!("/api/v1/calls/{call}/consent"), user).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["kind"].as_str().map(str::to_owned))
        .collect()
}

fn sources_of(app: &TestApp, join: &Value) -> Vec<String> {
    let lk = &app.config.livekit;
    livekit_api::access_token::TokenVerifier::with_api_key(&lk.api_key, lk.api_secret.expose_secret())
        .verify(join["token"].as_str().expect("token"))
        .expect("token")
        .video
        .can_publish_sources
}

/// He asks, she says yes: video is on.
pub async fn turn_video_on(app: &TestApp, call: &str, him: &TestUser, her: &TestUser) {
    let (status, body) = request_video(app, call, him).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let request = body["request"]["id"].as_str().expect("request id").to_owned();
    assert_eq!(video(app, call, her).await["canAnswer"], true);
    assert_eq!(video(app, call, him).await["canAnswer"], false, "nobody answers their own request");
    let (status, body) = answer(app, call, &request, her, "accept").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "on");
}

#[tokio::test]
async fn his_camera_is_refused_by_livekit_until_she_consents() {
    let app = spawn_app().await;
    let (him, her) = (app.user("male"), app.user("female"));
    let (call, mut a, _b) = call_in_room(&app, &him, &her, "audio", Value::Null).await;
    let refused = a.publish_camera_expecting_refusal().await.expect("client alive");
    assert!(refused.is_err(), "LiveKit must refuse the camera: {refused:?}");
    assert_eq!(camera_tracks(&app.room_name(&call)).await, 0, "LiveKit shows no camera track");
}

#[tokio::test]
async fn once_she_accepts_both_publish_camera_and_see_each_other() {
    let app = spawn_app().await;
    let (him, her) = (app.user("male"), app.user("female"));
    let (call, mut a, mut b) = call_in_room(&app, &him, &her, "audio", Value::Null).await;
    let since = a.last_seq().await.expect("seq");
    turn_video_on(&app, &call, &him, &her).await;
    let changed = a
        .wait_for_matching(
            "participant_permissions_changed",
            json!({"local": true}),
            since,
            Duration::from_secs(5),
        )
        .await
        .expect("he is told his rights changed");
    assert!(changed.permissions().expect("permissions").may_publish("camera"));
    a.publish_camera().await.expect("alive").expect("his camera is accepted");
    b.publish_camera().await.expect("alive").expect("her camera is accepted");
    let room = app.room_name(&call);
    eventually(Duration::from_secs(10), "both see each other's video", || {
        let room = room.clone();
        async move { camera_tracks(&room).await == 2 }
    })
    .await;
    // Media reaching each client is the claim; how soon is the bench's. On a
    // loaded two-core machine the first decoded frame can take many seconds.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen_by_him = a.received_video_frames(&her.id).await.expect("frames");
        let seen_by_her = b.received_video_frames(&him.id).await.expect("frames");
        if seen_by_him > 0 && seen_by_her > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "frames: him {seen_by_him}, her {seen_by_her}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metadata: Value =
        serde_json::from_str(&a.state().await.expect("state").room_metadata).expect("room metadata is JSON");
    assert_eq!(metadata["video"], "on");
    // His own consent (asking is consenting); hers is hers to read.
    assert_eq!(ledger_kinds(&app, &call, &him).await, vec!["request", "consent", "on"]);
}

#[tokio::test]
async fn when_she_revokes_the_cameras_are_gone_within_two_seconds() {
    let app = spawn_app().await;
    let (him, her) = (app.user("male"), app.user("female"));
    let (call, mut a, mut b) = call_in_room(&app, &him, &her, "audio", Value::Null).await;
    turn_video_on(&app, &call, &him, &her).await;
    a.wait_for_matching("participant_permissions_changed", json!({"local": true}), 0, Duration::from_secs(5))
        .await
        .expect("on");
    a.publish_camera().await.expect("alive").expect("camera on");
    b.publish_camera().await.expect("alive").expect("camera on");
    let room = app.room_name(&call);
    eventually(Duration::from_secs(5), "two cameras", || {
        let room = room.clone();
        async move { camera_tracks(&room).await == 2 }
    })
    .await;
    let (since_a, since_b) = (a.last_seq().await.expect("seq"), b.last_seq().await.expect("seq"));

    let (status, body) = revoke(&app, &call, &her).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "off");
    eventually(Duration::from_secs(2), "no camera track in LiveKit", || {
        let room = room.clone();
        async move { camera_tracks(&room).await == 0 }
    })
    .await;
    for (client, since) in [(&mut a, since_a), (&mut b, since_b)] {
        let told = client
            .wait_for_matching(
                "participant_permissions_changed",
                json!({"local": true}),
                since,
                Duration::from_secs(2),
            )
            .await
            .expect("each client is told its rights changed");
        assert!(!told.permissions().expect("permissions").may_publish("camera"));
    }
    // Her own answers, not his implicit consent.
    assert_eq!(ledger_kinds(&app, &call, &her).await, vec!["request", "consent", "on", "revoke", "off"]);
}

#[tokio::test]
async fn a_token_minted_while_video_was_on_gives_no_camera_after_a_revoke_not_even_for_a_moment() {
    let app = spawn_app().await;
    let (him, her) = (app.user("male"), app.user("female"));
    let (call, _) = app.ring(&him, &[&her], "audio").await;
    app.call_action(&call, "accept", &her, json!({})).await;
    turn_video_on(&app, &call, &him, &her).await;
    let (_, old) = app.call_action(&call, "token", &him, json!({})).await;
    assert_eq!(sources_of(&app, &old["join"]), vec!["microphone"], "no camera in a join token, ever");
    revoke(&app, &call, &her).await;
    let mut client = LkClient::connect(
        old["join"]["url"].as_str().expect("url"),
        old["join"]["token"].as_str().expect("token"),
    )
    .await
    .expect("he joins with the old token");
    assert!(!client.initial_permissions().may_publish("camera"), "no camera right on joining");
    let room = app.room_name(&call);
    assert_eq!(camera_right(&room, &him.id).await, Some(false));
    assert!(client.publish_camera_expecting_refusal().await.expect("alive").is_err(), "camera refused");
    assert_eq!(camera_tracks(&room).await, 0);
}

#[tokio::test]
async fn one_who_joins_while_video_is_on_gets_the_camera_from_livekit_once_in_the_room() {
    let app = spawn_app().await;
    let (him, her) = (app.user("male"), app.user("female"));
    let (call, started) = app.ring(&him, &[&her], "audio").await;
    app.call_action(&call, "accept", &her, json!({})).await;
    turn_video_on(&app, &call, &him, &her).await;
    let mut client = LkClient::connect(
        started["join"]["url"].as_str().expect("url"),
        started["join"]["token"].as_str().expect("token"),
    )
    .await
    .expect("he joins");
    assert!(!client.initial_permissions().may_publish("camera"), "the token itself carries none");
    client
        .wait_for_matching(
            "participant_permissions_changed",
            json!({"local": true}),
            0,
            Duration::from_secs(5),
        )
        .await
        .expect("LiveKit grants the camera once his join is reported");
    client.publish_camera().await.expect("alive").expect("his camera is accepted");
}

#[tokio::test]
async fn racing_answers_and_revokes_leave_the_ledger_and_livekit_consistent() {
    let app = spawn_app().await;
    let (him, w1, w2) = (app.user("male"), app.user("female"), app.user("female"));
    let (call, started) = app.ring(&him, &[&w1, &w2], "audio").await;
    let url = started["join"]["url"].as_str().expect("url").to_owned();
    let mut clients = vec![
        LkClient::connect(&url, started["join"]["token"].as_str().expect("token")).await.expect("joins"),
    ];
    for w in [&w1, &w2] {
        let (_, body) = app.call_action(&call, "accept", w, json!({})).await;
        clients.push(
            LkClient::connect(&url, body["join"]["token"].as_str().expect("token")).await.expect("joins"),
        );
    }
    app.wait_for_call(&call, &him, Duration::from_secs(15), |c| c["state"] == "active").await;

    // Request against request: exactly one wins.
    let (r1, r2) = tokio::join!(request_video(&app, &call, &him), request_video(&app, &call, &w2));
    let statuses = [r1.0, r2.0];
    assert!(statuses.contains(&StatusCode::CREATED), "{statuses:?}");
    assert!(statuses.contains(&StatusCode::CONFLICT), "{statuses:?}");
    let request = video(&app, &call, &w1).await["request"]["id"].as_str().expect("pending").to_owned();
    let requester = video(&app, &call, &w1).await["request"]["requestedBy"].as_str().expect("by").to_owned();
    let answerers: Vec<&TestUser> = [&w1, &w2].into_iter().filter(|w| w.id != requester).collect();

    // The same answer from two devices at once: one consent.
    let first = answerers[0];
    let (a1, a2) = tokio::join!(
        answer(&app, &call, &request, first, "accept"),
        answer(&app, &call, &request, first, "accept")
    );
    assert!(a1.0.is_success() || a2.0.is_success(), "{a1:?} {a2:?}");

    // Accept against revoke.
    let revoker = if first.id == w1.id { &w1 } else { &w2 };
    let last = answerers.get(1).copied().unwrap_or(first);
    let _ = tokio::join!(answer(&app, &call, &request, last, "accept"), revoke(&app, &call, revoker));

    // Both answered; the loser's settling may still be pushing rights (it
    // pushes until no newer change has committed): LiveKit agrees with the
    // committed state within the two seconds a revoke promises.
    let state = video(&app, &call, &him).await["state"].as_str().expect("state").to_owned();
    let room = app.room_name(&call);
    let started = Instant::now();
    for identity in [&him.id, &w1.id, &w2.id] {
        if camera_right(&room, identity).await != Some(state == "on") {
            eprintln!("LiveKit disagreed with `{state}` for {identity} right after the answers");
        }
    }
    eventually(Duration::from_secs(2), "LiveKit agrees with the committed state for everyone", || {
        let (room, state, ids) =
            (room.clone(), state.clone(), [him.id.clone(), w1.id.clone(), w2.id.clone()]);
        async move {
            for identity in &ids {
                if camera_right(&room, identity).await != Some(state == "on") {
                    return false;
                }
            }
            true
        }
    })
    .await;
    eprintln!(
        "LiveKit agreed with `{state}` {:.0} ms after the answers",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let kinds = ledger_kinds(&app, &call, &him).await;
    assert_eq!(kinds.iter().filter(|k| *k == "request").count(), 1, "{kinds:?}");
    let ons = kinds.iter().filter(|k| *k == "on").count();
    let offs = kinds.iter().filter(|k| *k == "off").count();
    assert!(ons == offs || (ons == offs + 1 && state == "on"), "on/off alternate: {kinds:?}");
    let consents_by_first = app
        .db_count("select count(*) from consent_ledger where call_id = $1 and kind = 'consent'", &call)
        .await;
    assert!(consents_by_first <= 4, "{kinds:?}");
    drop(clients);
}
