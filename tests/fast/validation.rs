use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::http::{Api as TestApp, Caller as TestUser};
use crate::support::World;

async fn calls_of(app: &TestApp, user: &TestUser) -> usize {
    let (_, history) = app.get("/api/v1/calls/history", user).await;
    history["calls"].as_array().map_or(0, Vec::len)
}

async fn refused(app: &TestApp, caller: &TestUser, body: Value, status: StatusCode, field: &str) -> Value {
    let (got, problem) = app.raw_post("/api/v1/calls", caller, "application/json", &body.to_string()).await;
    assert_eq!(got, status, "body {body}");
    assert_eq!(problem["field"], field, "{problem}");
    problem
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_call_starts_are_refused_naming_the_field_and_write_nothing() {
    let world = World::new().await;
    let app = TestApp::new(&world);
    let (alice, bob) = (app.user("female"), app.user("male"));
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    refused(&app, &alice, json!({"type": "audio"}), unprocessable, "participantIds").await;
    refused(
        &app,
        &alice,
        json!({"participantIds": bob.id, "type": "audio"}),
        unprocessable,
        "participantIds",
    )
    .await;
    refused(
        &app,
        &alice,
        json!({"participantIds": [42], "type": "audio"}),
        unprocessable,
        "participantIds[0]",
    )
    .await;
    refused(
        &app,
        &alice,
        json!({"participantIds": [""], "type": "audio"}),
        unprocessable,
        "participantIds[0]",
    )
    .await;
    refused(&app, &alice, json!({"participantIds": [], "type": "audio"}), unprocessable, "participantIds")
        .await;
    refused(&app, &alice, json!({"participantIds": [bob.id], "type": "hologram"}), unprocessable, "type")
        .await;
    refused(&app, &alice, json!({"participantIds": [bob.id]}), unprocessable, "type").await;
    refused(&app, &alice, json!({"participantIds": [bob.id], "type": 3}), unprocessable, "type").await;
    refused(
        &app,
        &alice,
        json!({"participantIds": [bob.id], "type": "audio", "conversationId": 7}),
        unprocessable,
        "conversationId",
    )
    .await;
    let dup = refused(
        &app,
        &alice,
        json!({"participantIds": [bob.id, bob.id], "type": "audio"}),
        unprocessable,
        "participantIds",
    )
    .await;
    assert_eq!(dup["code"], "duplicate_participants");
    let me = refused(
        &app,
        &alice,
        json!({"participantIds": [alice.id], "type": "audio"}),
        unprocessable,
        "participantIds",
    )
    .await;
    assert_eq!(me["code"], "cannot_call_yourself");
    let crowd: Vec<String> =
        (0..app.config().max_call_participants).map(|i| format!("crowd-{i}-{}", alice.id)).collect();
    let many = refused(
        &app,
        &alice,
        json!({"participantIds": crowd, "type": "audio"}),
        unprocessable,
        "participantIds",
    )
    .await;
    assert_eq!(many["code"], "too_many_participants");
    assert_eq!(calls_of(&app, &alice).await, 0, "nothing was written");
    assert_eq!(calls_of(&app, &bob).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_json_and_wrong_content_types_are_bad_requests() {
    let world = World::new().await;
    let app = TestApp::new(&world);
    let alice = app.user("female");
    for (content_type, body) in [
        ("application/json", "{\"participantIds\": ["),
        ("application/json", "{\"type\": \"audio\",,}"),
        ("text/plain", "{}"),
    ] {
        let (status, _) = app.raw_post("/api/v1/calls", &alice, content_type, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{content_type} {body}");
    }
    assert_eq!(calls_of(&app, &alice).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_history_cursor_or_limit_is_refused() {
    let world = World::new().await;
    let app = TestApp::new(&world);
    let alice = app.user("female");
    let (status, body) = app.get("/api/v1/calls/history?cursor=zzz", &alice).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = app.get("/api/v1/calls/history?limit=0", &alice).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "limit");
}

/// issue 16 A: a history cursor holding a time PostgreSQL cannot store used
/// to answer 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_cursor_with_an_extreme_time_is_a_bad_cursor() {
    use base64::Engine;
    let world = World::new().await;
    let app = TestApp::new(&world);
    let alice = app.user("female");
    for micros in [i64::MIN, -8_210_298_412_800_000_000, i64::MAX, -1] {
        let raw = format!("{micros}|{}", uuid::Uuid::new_v4());
        let cursor = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let (status, body) = app.get(&format!("/api/v1/calls/history?cursor={cursor}"), &alice).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{micros}: {body}");
        assert_eq!((body["code"].clone(), body["field"].clone()), (json!("invalid_cursor"), json!("cursor")));
    }
}
