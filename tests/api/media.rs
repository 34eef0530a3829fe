//! A participant's own media state: recorded, applied to their tracks in
//! LiveKit, announced as `media.updated`.

use std::time::Duration;

use livekit_protocol as proto;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::consent::{call_in_room, participants};
use crate::helpers::{TestApp, TestUser, eventually, spawn_app};

async fn patch_media(app: &TestApp, call: &str, user: &TestUser, body: Value) -> (StatusCode, Value) {
    app.send(Method::PATCH, &format!("/api/v1/calls/{call}/participants/me"), Some(user), Some(body)).await
}

async fn microphone_muted(room: &str, identity: &str) -> Option<bool> {
    let people = participants(room).await;
    let person = people.into_iter().find(|p| p.identity == identity)?;
    person.tracks.iter().find(|t| t.source == proto::TrackSource::Microphone as i32).map(|t| t.muted)
}

#[tokio::test]
async fn muting_through_the_api_mutes_the_published_microphone_in_livekit() {
    let app = spawn_app().await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (call, _a, _b) = call_in_room(&app, &alice, &bob, "audio", Value::Null).await;
    let room = app.room_name(&call);
    let (room_now, alice_id) = (room.clone(), alice.id.clone());
    eventually(Duration::from_secs(5), "LiveKit lists her microphone, unmuted", || {
        let (room, alice) = (room_now.clone(), alice_id.clone());
        async move { microphone_muted(&room, &alice).await == Some(false) }
    })
    .await;

    let (status, body) = patch_media(&app, &call, &alice, json!({"audioEnabled": false})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["participant"]["audioEnabled"], false);
    let (room_now, alice_id) = (room.clone(), alice.id.clone());
    eventually(Duration::from_secs(5), "LiveKit shows her microphone muted", || {
        let (room, alice) = (room_now.clone(), alice_id.clone());
        async move { microphone_muted(&room, &alice).await == Some(true) }
    })
    .await;
    assert_eq!(microphone_muted(&room, &bob.id).await, Some(false), "his is untouched");
    let told = app
        .db_count(
            "select count(*) from user_events where call_id = $1 and type = 'media.updated' \
             and data->'media'->>'audioEnabled' = 'false'",
            &call,
        )
        .await;
    assert_eq!(told, 2, "both participants hear of it");

    // Unmuting is recorded; LiveKit leaves it to her client unless it allows remote unmute.
    let (status, body) = patch_media(&app, &call, &alice, json!({"audioEnabled": true})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let state = app.call(&call, &bob).await;
    let her = state["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .find(|p| p["userId"] == alice.id.as_str())
        .cloned();
    assert_eq!(her.expect("alice")["audioEnabled"], true);
}

#[tokio::test]
async fn with_no_track_published_the_state_is_recorded_without_error() {
    let app = spawn_app().await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (call, _) = app.ring(&alice, &[&bob], "audio").await;
    app.call_action(&call, "accept", &bob, json!({})).await;

    let (status, body) = patch_media(&app, &call, &bob, json!({"audioEnabled": false})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["participant"],
        json!({"userId": bob.id, "audioEnabled": false, "videoEnabled": false, "screenShareEnabled": false})
    );
    let state = app.call(&call, &alice).await;
    let him = state["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .find(|p| p["userId"] == bob.id.as_str())
        .cloned();
    assert_eq!(him.expect("bob")["audioEnabled"], false);
    let (_, timeline) = app.get(&format!("/api/v1/calls/{call}/events"), &alice).await;
    // The last of ours: LiveKit's room_started may be recorded after it.
    let last = timeline["events"]
        .as_array()
        .and_then(|e| {
            e.iter().rev().find(|e| !e["type"].as_str().unwrap_or_default().starts_with("livekit."))
        })
        .cloned()
        .expect("an event");
    assert_eq!(last["type"], "media.updated");
    assert_eq!(last["actor"], bob.id.as_str());
}

#[tokio::test]
async fn the_camera_cannot_be_turned_on_while_video_is_off_and_strangers_change_nothing() {
    let app = spawn_app().await;
    let (alice, bob, stranger) = (app.user("female"), app.user("male"), app.user("male"));
    let (call, _) = app.ring(&alice, &[&bob], "audio").await;
    app.call_action(&call, "accept", &bob, json!({})).await;

    let (status, body) = patch_media(&app, &call, &bob, json!({"videoEnabled": true})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "video_off");
    let (status, body) = patch_media(&app, &call, &bob, json!({"screenShareEnabled": true})).await;
    assert_eq!((status, body["code"].clone()), (StatusCode::CONFLICT, json!("video_off")));
    let (status, body) = patch_media(&app, &call, &bob, json!({"audioEnabled": "off"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "audioEnabled");
    let (status, _) = patch_media(&app, &call, &stranger, json!({"audioEnabled": false})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    app.call_action(&call, "end", &alice, json!({})).await;
    let (status, body) = patch_media(&app, &call, &bob, json!({"audioEnabled": false})).await;
    assert_eq!((status, body["code"].clone()), (StatusCode::CONFLICT, json!("call_ended")));
}
