//! Join tokens from the cache (`calls::join_cache`): kept while nothing
//! about the call changes, forgotten on every instance the moment it does
//! (a NOTIFY at commit). Someone who left gets no token, nor does anyone
//! once the call has ended. (A token never carries the camera: a session
//! gets its video rights from the call as it joins, `consent.rs`.)

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, eventually, spawn_app};

/// Generous: a notification takes about a millisecond; a loaded box is
/// slower. Well under the cache's 30 s, so only forgetting passes.
const FORGOTTEN_WITHIN: Duration = Duration::from_secs(5);
/// An instance keeps nothing until its LISTEN is confirmed; on a saturated
/// box its connection may wait for the pool and be tried again.
const KEPT_WITHIN: Duration = Duration::from_secs(30);

async fn token(app: &TestApp, call: &str, user: &TestUser) -> (StatusCode, Value) {
    app.call_action(call, "token", user, json!({})).await
}

fn user_id(user: &TestUser) -> callgate::domain::UserId {
    callgate::domain::UserId::parse(&user.id).expect("a user id")
}

fn call_id(call: &str) -> callgate::domain::CallId {
    callgate::domain::CallId(call.parse().expect("a uuid"))
}

/// Alice calls Bob and Carol on `one`; they answer there. Both instances
/// then hand Bob tokens from what they kept.
async fn answered_and_kept(one: &TestApp, two: &TestApp) -> (TestUser, TestUser, String) {
    let (alice, bob, carol) = (one.user("female"), one.user("male"), one.user("female"));
    let (call, _) = one.ring(&alice, &[&bob, &carol], "audio").await;
    for callee in [&bob, &carol] {
        let (status, body) = one.call_action(&call, "accept", callee, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    for app in [one, two] {
        // The answer's own notification may come after the first read began.
        eventually(KEPT_WITHIN, "the instance keeps what his token needs", || async {
            let (status, body) = token(app, &call, &bob).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            app.state.core.joins.get(call_id(&call), &user_id(&bob)).is_some()
        })
        .await;
    }
    (alice, bob, call)
}

#[tokio::test]
async fn after_he_leaves_a_call_that_goes_on_no_instance_hands_him_a_token_from_what_it_kept() {
    let (one, two) = (spawn_app().await, spawn_app().await);
    let (alice, bob, call) = answered_and_kept(&one, &two).await;
    let (status, body) = two.call_action(&call, "leave", &bob, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for app in [&one, &two] {
        eventually(FORGOTTEN_WITHIN, "a token after leaving is refused", || async {
            let (status, body) = token(app, &call, &bob).await;
            status == StatusCode::CONFLICT && body["code"] == "not_in_call"
        })
        .await;
        let (status, body) = token(app, &call, &alice).await;
        assert_eq!(status, StatusCode::OK, "the call goes on for the others: {body}");
    }
}

#[tokio::test]
async fn an_ended_call_gives_no_token_from_what_was_kept() {
    let (one, two) = (spawn_app().await, spawn_app().await);
    let (alice, bob, call) = answered_and_kept(&one, &two).await;
    let (status, body) = one.call_action(&call, "end", &alice, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for app in [&one, &two] {
        eventually(FORGOTTEN_WITHIN, "no token for an ended call", || async {
            token(app, &call, &bob).await.0 == StatusCode::CONFLICT
        })
        .await;
        let kept = app.state.core.joins.get(call_id(&call), &user_id(&bob));
        assert!(kept.is_none(), "nothing is kept of an ended call");
    }
}
