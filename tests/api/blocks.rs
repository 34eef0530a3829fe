//! No pestering: after three declines a caller cannot ring the same callee
//! for a while, and a user may block another; a block looks to the blocked
//! caller exactly like a busy callee.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::events::EventStream;
use crate::helpers::{TestApp, TestUser, spawn_app};

/// `caller` rings `callee`, who declines; the call's id.
async fn decline(app: &TestApp, caller: &TestUser, callee: &TestUser) -> String {
    let (call, _) = app.ring(caller, &[callee], "audio").await;
    let (status, body) = app.call_action(&call, "decline", callee, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    call
}

#[tokio::test]
async fn after_three_declines_the_fourth_call_is_refused_with_retry_after_and_never_rings() {
    let app = spawn_app().await;
    let (alice, bob, carol, dave) =
        (app.user("female"), app.user("male"), app.user("female"), app.user("male"));
    let mut declined = Vec::new();
    for _ in 0..3 {
        declined.push(decline(&app, &bob, &alice).await);
    }
    let mut alices = EventStream::connect(&app, &alice).await;
    let response = app
        .http
        .post(app.url("/api/v1/calls"))
        .bearer_auth(&bob.token)
        .json(&json!({"participantIds": [alice.id], "type": "audio"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=600).contains(&wait), "within the ten-minute window: {wait}");
    let body: Value = response.json().await.expect("a problem");
    assert_eq!(body["code"], "ring_cooldown", "{body}");
    // Her stream may still deliver the declined calls' rings, late on a
    // loaded box; no other call rings her.
    let rung = alices.collect(Duration::from_secs(1)).await;
    let other = |e: &&Value| e["callId"].as_str().is_none_or(|id| !declined.iter().any(|d| d == id));
    assert!(!rung.iter().filter(other).any(|e| e["type"] == "call.incoming"), "she never rings: {rung:?}");

    // Only that pair: Bob may call Carol, and Dave may call Alice.
    app.ring(&bob, &[&carol], "audio").await;
    app.ring(&dave, &[&alice], "audio").await;
}

/// What a caller can see of a refusal: status and body, but the call's id.
fn shape(status: StatusCode, body: &Value) -> (StatusCode, Value) {
    let mut body = body.clone();
    if let Some(fields) = body.as_object_mut() {
        fields.remove("instance");
    }
    (status, body)
}

#[tokio::test]
async fn a_blocked_caller_is_answered_exactly_as_for_a_busy_callee() {
    let app = spawn_app().await;
    let (alice, bob, carol, dave) =
        (app.user("female"), app.user("male"), app.user("female"), app.user("male"));
    let (status, _) = app.send(Method::PUT, &format!("/api/v1/blocks/{}", bob.id), Some(&alice), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    app.ring(&carol, &[&dave], "audio").await; // Carol is busy

    let mut alices = EventStream::connect(&app, &alice).await;
    let (blocked_status, blocked) = app.start_call(&bob, &[&alice], "audio").await;
    let (busy_status, busy) = app.start_call(&bob, &[&carol], "audio").await;
    assert_eq!(busy_status, StatusCode::CONFLICT, "{busy}");
    assert_eq!(busy["code"], "callee_busy");
    assert_eq!(shape(blocked_status, &blocked), shape(busy_status, &busy), "a block is not revealed");
    let rung = alices.collect(Duration::from_secs(1)).await;
    assert!(!rung.iter().any(|e| e["type"] == "call.incoming"), "she never rings: {rung:?}");

    // It works both ways: her calls to him do not ring him either.
    let (status, body) = app.start_call(&alice, &[&bob], "audio").await;
    assert_eq!((status, body["code"].clone()), (StatusCode::CONFLICT, json!("callee_busy")));
}

#[tokio::test]
async fn a_user_blocks_lists_and_unblocks_and_only_they_see_their_blocks() {
    let app = spawn_app().await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let path = format!("/api/v1/blocks/{}", bob.id);
    for _ in 0..2 {
        let (status, body) = app.send(Method::PUT, &path, Some(&alice), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "idempotent: {body}");
    }
    let (_, mine) = app.get("/api/v1/blocks", &alice).await;
    let listed: Vec<&Value> = mine["blocks"].as_array().expect("a list").iter().collect();
    assert_eq!(listed.len(), 1, "{mine}");
    assert_eq!(listed[0]["userId"], bob.id);
    let (_, his) = app.get("/api/v1/blocks", &bob).await;
    assert_eq!(his["blocks"], json!([]), "he cannot see that she blocks him");

    let (status, _) = app.send(Method::DELETE, &path, Some(&alice), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, mine) = app.get("/api/v1/blocks", &alice).await;
    assert_eq!(mine["blocks"], json!([]));
    app.ring(&bob, &[&alice], "audio").await; // rings again

    let own = format!("/api/v1/blocks/{}", alice.id);
    let (status, body) = app.send(Method::PUT, &own, Some(&alice), None).await;
    assert_eq!(
        (status, body["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("userId")),
        "{body}"
    );
}
