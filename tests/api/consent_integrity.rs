//! The consent promise against a modified client: video under another
//! label, old tokens, leavers coming back, forged data messages. What a
//! participant can read about who consented, and the decisions that need no
//! real SFU, are proved in-process (tests/fast/consent_reading.rs).

use std::time::{Duration, Instant};

use livekit_protocol as proto;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::consent::{answer, call_in_room, group_in_room, participants, request_video, revoke};
use crate::helpers::lk_client::LkClient;
use crate::helpers::{TestApp, TestUser, eventually, spawn_app};

const VIDEO: i32 = proto::TrackType::Video as i32;

/// How soon someone who must not be in a room is out of it. The goal is a
/// second, and the consent bench measures it (`mislabelled → gone`, p95 about
/// 200 ms); this bound only says "it happens". On a loaded two-core machine
/// running the whole suite, LiveKit's webhook about the track can itself
/// come seconds late (3 s was exceeded once in CI), which a bench reports
/// and a test must not flake on.
const OUT_WITHIN: Duration = Duration::from_secs(10);

/// Video tracks LiveKit lists for `identity` in the room.
async fn video_tracks_of(room: &str, identity: &str) -> usize {
    participants(room)
        .await
        .iter()
        .filter(|p| p.identity == identity)
        .flat_map(|p| &p.tracks)
        .filter(|t| t.r#type == VIDEO)
        .count()
}

async fn in_room(room: &str, identity: &str) -> bool {
    match crate::helpers::livekit_rooms().list_participants(room).await {
        Ok(people) => people.iter().any(|p| p.identity == identity),
        // The room is gone (the call ended): nobody is in it.
        Err(_) => false,
    }
}

async fn admin_ledger(app: &TestApp, call: &str) -> Vec<Value> {
    let admin = app.user_with_roles("male", &["admin"]);
    let (status, body) = app.get(&format!("/api/v1/calls/{call}/consent"), &admin).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["entries"].as_array().expect("entries").clone()
}

/// He calls her, both join: she with a client that subscribes by kind (the
/// README's rule), he with an ordinary one. Returns the call, his client,
/// hers, and his join answer (for his old token).
async fn answered_call(app: &TestApp, him: &TestUser, her: &TestUser) -> (String, LkClient, LkClient, Value) {
    let (call, started) = app.ring(him, &[her], "audio").await;
    let (status, accepted) = app.call_action(&call, "accept", her, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{accepted}");
    let url = started["join"]["url"].as_str().expect("url");
    let mut his =
        LkClient::connect(url, started["join"]["token"].as_str().expect("token")).await.expect("he joins");
    let mut hers = LkClient::connect_by_kind(url, accepted["join"]["token"].as_str().expect("token"))
        .await
        .expect("she joins");
    his.publish_audio().await.expect("his audio");
    hers.publish_audio().await.expect("her audio");
    app.wait_for_call(&call, him, Duration::from_secs(15), |c| c["state"] == "active").await;
    (call, his, hers, started)
}

/// He publishes video labelled `label` (with video on first if `on`): he is
/// out of the room at once, his video never reached her, the ledger
/// has the violation, and he cannot come back into the call.
async fn a_video_track_labelled_as_puts_him_out(label: &str, on: bool) {
    let app = spawn_app().await;
    let (him, her) = (app.user("male"), app.user("female"));
    let (call, mut his, mut hers, started) = answered_call(&app, &him, &her).await;
    let room = app.room_name(&call);
    if on {
        let (_, body) = request_video(&app, &call, &him).await;
        let request = body["request"]["id"].as_str().expect("id").to_owned();
        let (_, body) = answer(&app, &call, &request, &her, "accept").await;
        assert_eq!(body["state"], "on");
        his.wait_for_matching(
            "participant_permissions_changed",
            json!({"local": true}),
            0,
            Duration::from_secs(5),
        )
        .await
        .expect("his rights follow");
    }
    let seen = hers.last_seq().await.expect("seq");

    let published = his.publish_video_as(label).await.expect("alive");
    assert!(published.is_ok(), "LiveKit takes video labelled {label} (it checks labels only): {published:?}");
    let at = Instant::now();
    eventually(OUT_WITHIN, "he is out of the room, his tracks with him", || {
        let (room, him) = (room.clone(), him.id.clone());
        async move { !in_room(&room, &him).await }
    })
    .await;
    let window = at.elapsed();
    assert_eq!(video_tracks_of(&room, &him.id).await, 0);

    // She never took a video track of his.
    let events = hers.events(seen).await.expect("events");
    let took_video = events.iter().any(|e| {
        e.event == "track_subscribed"
            && e.str("identity") == Some(him.id.as_str())
            && e.str("kind") == Some("video")
    });
    assert!(!took_video, "she subscribed to his video: {events:?}");
    // The ledger has the violation, and he is out of the call (a 1:1 ends).
    let ledger = admin_ledger(&app, &call).await;
    let violation = ledger.iter().find(|e| e["kind"] == "violation").expect("a violation in the ledger");
    assert_eq!(violation["actor"], him.id.as_str());
    let ended = app.wait_for_call(&call, &her, Duration::from_secs(5), |c| c["state"] == "ended").await;
    assert_eq!(ended["endReason"], "violation", "{ended}");
    let me = ended["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .find(|p| p["userId"] == him.id.as_str());
    assert_eq!(me.expect("him")["status"], "removed");
    // A second attempt in the call fails: no new token, and the old one gets him nowhere.
    let (status, body) = app.call_action(&call, "token", &him, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let url = started["join"]["url"].as_str().expect("url");
    assert!(
        LkClient::connect(url, started["join"]["token"].as_str().expect("token")).await.is_err(),
        "no room to join"
    );
    eprintln!("{label}: the publisher of a mislabelled video track was out after {window:?}");
}

#[tokio::test]
async fn a_video_track_labelled_screen_share_audio_while_video_is_off_is_refused_by_livekit() {
    let app = spawn_app().await;
    let (him, her) = (app.user("male"), app.user("female"));
    let (call, mut his, _hers, _) = answered_call(&app, &him, &her).await;
    let refused = his.publish_video_as_expecting_refusal("screen_share_audio").await.expect("alive");
    assert!(refused.is_err(), "not an allowed source while video is off: {refused:?}");
    assert_eq!(video_tracks_of(&app.room_name(&call), &him.id).await, 0);
}

#[tokio::test]
async fn a_video_track_labelled_microphone_puts_its_publisher_out_of_the_call_at_once() {
    a_video_track_labelled_as_puts_him_out("microphone", false).await;
}

#[tokio::test]
async fn a_video_track_labelled_screen_share_audio_while_video_is_on_puts_its_publisher_out_at_once() {
    a_video_track_labelled_as_puts_him_out("screen_share_audio", true).await;
}

#[tokio::test]
async fn a_mislabelled_video_track_published_while_video_is_on_is_gone_after_her_revoke() {
    let app = spawn_app().await;
    let (him, her, w2) = (app.user("male"), app.user("female"), app.user("female"));
    // A group, so that the call goes on without him.
    let (call, mut his, clients, _) = group_in_room(&app, &him, &[&her, &w2]).await;
    app.wait_for_call(&call, &him, Duration::from_secs(15), |c| c["state"] == "active").await;
    let (_, body) = request_video(&app, &call, &him).await;
    let request = body["request"]["id"].as_str().expect("id").to_owned();
    answer(&app, &call, &request, &her, "accept").await;
    let (_, on) = answer(&app, &call, &request, &w2, "accept").await;
    assert_eq!(on["state"], "on");
    assert!(his.publish_video_as("microphone").await.expect("alive").is_ok());
    // Her revoke races his removal for the mislabelled track (a leave turns
    // video off too): either turns video off first, and the other finds it off.
    let (status, body) = revoke(&app, &call, &her).await;
    assert!(
        status == StatusCode::OK || (status == StatusCode::CONFLICT && body["code"] == "video_off"),
        "{status} {body}"
    );
    let room = app.room_name(&call);
    eventually(OUT_WITHIN * 2, "no video track of his in LiveKit", || {
        let (room, him) = (room.clone(), him.id.clone());
        async move { video_tracks_of(&room, &him).await == 0 }
    })
    .await;
    let view = app.call(&call, &her).await;
    assert_eq!(view["state"], "active", "the call goes on without him: {view}");
    drop(clients);
}

#[tokio::test]
async fn after_leaving_one_who_comes_back_with_the_old_token_is_out_of_the_room_at_once() {
    let app = spawn_app().await;
    let (him, w1, w2) = (app.user("male"), app.user("female"), app.user("female"));
    let (call, _his, mut clients, tokens) = group_in_room(&app, &him, &[&w1, &w2]).await;
    let w2_client = clients.pop().expect("hers");
    app.wait_for_call(&call, &him, Duration::from_secs(15), |c| c["state"] == "active").await;
    let (status, body) = app.call_action(&call, "leave", &w2, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    drop(w2_client);
    let room = app.room_name(&call);
    eventually(Duration::from_secs(5), "she has left the room", || {
        let (room, w2) = (room.clone(), w2.id.clone());
        async move { !in_room(&room, &w2).await }
    })
    .await;

    let back = LkClient::connect(&app.config.livekit.url, &tokens[1]).await;
    let at = Instant::now();
    if back.is_ok() {
        eventually(OUT_WITHIN, "back with her old token, she is put out at once", || {
            let (room, w2) = (room.clone(), w2.id.clone());
            async move { !in_room(&room, &w2).await }
        })
        .await;
    }
    eprintln!("a leaver back with an old token was out after {:?}", at.elapsed());
    let (status, _) = app.call_action(&call, "token", &w2, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "and gets no new token");
}

#[tokio::test]
async fn a_participant_cannot_pass_for_the_server_in_a_data_message() {
    let app = spawn_app().await;
    let (him, her) = (app.user("male"), app.user("female"));
    let (call, mut his, mut hers) = call_in_room(&app, &him, &her, "audio", Value::Null).await;
    let since = hers.last_seq().await.expect("seq");
    his.publish_data("callgate.video", r#"{"type":"video.state","video":"on"}"#).await.expect("sent");
    let forged = hers
        .wait_for_matching("data_received", json!({"topic": "callgate.video"}), since, Duration::from_secs(5))
        .await
        .expect("she receives his message");
    assert_eq!(forged.str("identity"), Some(him.id.as_str()), "it carries his identity");

    let since = hers.last_seq().await.expect("seq");
    let (_, body) = request_video(&app, &call, &him).await;
    let request = body["request"]["id"].as_str().expect("id").to_owned();
    answer(&app, &call, &request, &her, "accept").await;
    let real = hers
        .wait_for_matching("data_received", json!({"topic": "callgate.video"}), since, Duration::from_secs(5))
        .await
        .expect("the server's own message");
    assert_eq!(real.fields.get("identity"), Some(&Value::Null), "the server's has no participant");
    // Room metadata, which only callgate can set, follows (it may land a
    // moment after the data message).
    let since = hers.last_seq().await.expect("seq");
    let metadata: Value =
        serde_json::from_str(&hers.state().await.expect("state").room_metadata).expect("room metadata");
    if metadata["video"] != "on" {
        let changed = hers
            .wait_for_matching("room_metadata_changed", json!({}), since, Duration::from_secs(5))
            .await
            .expect("the room metadata changes");
        let metadata: Value = serde_json::from_str(changed.str("metadata").expect("metadata")).expect("JSON");
        assert_eq!(metadata["video"], "on", "room metadata, which only callgate can set, agrees");
    }
}

/// A token with the camera right, for `him` in `call`'s room: what LiveKit
/// refreshes a connected client's token to while video is on.
fn camera_token(app: &TestApp, call: &str, him: &TestUser) -> String {
    use callgate::domain::consent::TrackSource;
    use callgate::livekit::tokens::{JoinGrant, mint};
    let room = app.room_name(call);
    let grant = JoinGrant {
        identity: &him.id,
        name: None,
        room: &room,
        sources: &[TrackSource::Microphone, TrackSource::Camera],
        waiting: false,
        ttl: Duration::from_secs(600),
    };
    let now = callgate::clock::Clock::now(&callgate::clock::SystemClock);
    mint(&app.config.livekit.api_key, app.config.livekit.api_secret.expose_secret(), &grant, now)
        .expect("a token")
        .0
}

/// LiveKit skips a rights update equal to what it holds, and a camera that
/// was pending when callgate withdrew the right on his join is published
/// just after: callgate must make LiveKit apply the rights again. His
/// camera, published at once with such a token while video is off, is gone
/// from LiveKit every time, whoever wins the race. (The race is LiveKit's:
/// a few rounds catch the stale camera often, not always; the consent
/// bench's ten rounds caught it.)
#[tokio::test]
async fn a_camera_published_at_once_with_a_camera_token_while_video_is_off_never_stays() {
    let app = spawn_app().await;
    for round in 0..4 {
        let (him, her) = (app.user("male"), app.user("female"));
        let (call, _) = app.ring(&him, &[&her], "audio").await;
        let (_, accepted) = app.call_action(&call, "accept", &her, json!({})).await;
        let url = app.config.livekit.url.clone();
        let mut hers = LkClient::connect_honest(&url, accepted["join"]["token"].as_str().expect("token"))
            .await
            .expect("she joins");
        hers.publish_audio().await.expect("her audio");
        let since = hers.last_seq().await.expect("seq");
        let mut his = LkClient::connect(&url, &camera_token(&app, &call, &him)).await.expect("he joins");
        let published = his.publish_camera().await.expect("alive");
        if published.is_ok() {
            // LiveKit took it: once it is published (if it ever is), it must go.
            let _ = hers
                .wait_for_matching(
                    "track_published",
                    json!({"identity": him.id, "source": "camera"}),
                    since,
                    Duration::from_secs(5),
                )
                .await;
        }
        let room = app.room_name(&call);
        eventually(OUT_WITHIN, "no camera of his stays in LiveKit", || {
            let (room, him) = (room.clone(), him.id.clone());
            async move { video_tracks_of(&room, &him).await == 0 }
        })
        .await;
        assert_eq!(
            hers.received_video_frames(&him.id).await.expect("frames"),
            0,
            "round {round}: {published:?}"
        );
    }
}
