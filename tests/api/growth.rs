//! A call grows: someone in a live call invites more users (they ring and
//! join the same room), and the consent policy treats every newcomer as its
//! rules say. Who may invite whom, and a group invitee who declined joining
//! later, are proved in-process (tests/fast/invitations.rs).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::consent::{call_in_room, turn_video_on, video};
use crate::helpers::lk_client::LkClient;
use crate::helpers::{TestApp, TestUser, spawn_app};

async fn invite(app: &TestApp, call: &str, by: &TestUser, who: &[&TestUser]) -> (StatusCode, Value) {
    let ids: Vec<&str> = who.iter().map(|u| u.id.as_str()).collect();
    app.call_action(call, "invitations", by, json!({"participantIds": ids})).await
}

async fn hears(client: &mut LkClient, identity: &str) -> bool {
    for _ in 0..100 {
        if client.received_frames(identity, "microphone").await.unwrap_or(0) > 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test]
async fn an_active_call_grows_to_three_who_rings_answers_joins_the_same_room_and_hears_both() {
    let app = spawn_app().await;
    let (alice, bob, carol) = (app.user("female"), app.user("male"), app.user("male"));
    let (call, _a, _b) = call_in_room(&app, &alice, &bob, "audio", Value::Null).await;
    let (status, body) = invite(&app, &call, &bob, &[&carol]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rung"], json!([carol.id]));
    let (status, answered) = app.call_action(&call, "accept", &carol, json!({})).await;
    assert_eq!(status, StatusCode::OK, "carol answers the call she was rung into: {answered}");
    assert_eq!(answered["join"]["roomName"], app.room_name(&call), "the same room");
    let url = answered["join"]["url"].as_str().expect("url");
    let mut c = LkClient::connect(url, answered["join"]["token"].as_str().expect("token")).await.expect("in");
    assert!(hears(&mut c, alice.id.as_str()).await, "carol hears alice");
    assert!(hears(&mut c, bob.id.as_str()).await, "carol hears bob");
    let view = app.call(&call, &alice).await;
    assert_eq!(view["participants"].as_array().map(Vec::len), Some(3), "{view}");
    assert_eq!(view["state"], "active");
}

#[tokio::test]
async fn a_woman_invited_while_video_is_on_turns_it_off_unless_she_consents_as_she_joins() {
    let app = spawn_app().await;
    for (consents, stays) in [(Value::Null, "off"), (json!(true), "on")] {
        let (him, her, newcomer) = (app.user("male"), app.user("female"), app.user("female"));
        let (call, _a, _b) = call_in_room(&app, &him, &her, "audio", Value::Null).await;
        turn_video_on(&app, &call, &him, &her).await;
        let (status, body) = invite(&app, &call, &her, &[&newcomer]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = app.call_action(&call, "accept", &newcomer, json!({"video": consents})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(video(&app, &call, &him).await["state"], stays, "video with her answer {consents}");
    }
}
