//! A call grows: someone in a live call invites more users (they ring and
//! join the same room), a group invitee who declined joins later, and the
//! consent policy treats every newcomer as its rules say.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::consent::{call_in_room, turn_video_on, video};
use crate::helpers::lk_client::LkClient;
use crate::helpers::{TestApp, TestUser, spawn_app, spawn_app_configured};

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

#[tokio::test]
async fn a_group_invitee_who_declined_joins_while_the_call_goes_on() {
    let app = spawn_app().await;
    let (alice, bob, carol) = (app.user("female"), app.user("male"), app.user("male"));
    let (call, _) = app.ring(&alice, &[&bob, &carol], "audio").await;
    let (status, body) = app.call_action(&call, "join", &carol, json!({})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("not_answered")), "{body}");
    let (status, body) = app.call_action(&call, "decline", &carol, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.call_action(&call, "accept", &bob, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, joined) = app.call_action(&call, "join", &carol, json!({})).await;
    assert_eq!(status, StatusCode::OK, "she changed her mind: {joined}");
    assert_eq!(joined["join"]["roomName"], app.room_name(&call));
    let view = app.call(&call, &alice).await;
    let hers = view["participants"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["userId"] == carol.id.as_str()).cloned());
    assert_eq!(hers.map(|p| p["status"].clone()), Some(json!("accepted")), "{view}");
    let (status, body) = app.call_action(&call, "join", &carol, json!({})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("already_answered")), "{body}");
}

#[tokio::test]
async fn only_someone_in_the_call_invites_nobody_twice_and_within_the_limit() {
    let app = spawn_app_configured(|c| c.max_call_participants = 3).await;
    let (alice, bob, carol, dave, stranger) =
        (app.user("female"), app.user("male"), app.user("male"), app.user("male"), app.user("female"));
    let (call, _) = app.ring(&alice, &[&bob], "audio").await;
    let (status, _) = invite(&app, &call, &stranger, &[&carol]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a stranger is told the call does not exist");
    let (status, body) = invite(&app, &call, &bob, &[&carol]).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("not_answered")), "{body}");
    let (status, body) = invite(&app, &call, &alice, &[&bob]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("duplicate_participants")),
        "{body}"
    );
    let (status, body) = invite(&app, &call, &alice, &[&carol, &dave]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("too_many_participants")),
        "{body}"
    );
    let (status, body) = invite(&app, &call, &alice, &[&carol]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
