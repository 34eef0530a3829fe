//! Who may call whom: the host application's hook decides before anything
//! rings; our request is signed per Standard Webhooks; a deny reveals
//! nothing; the hook's own 4xx is a no and an answer that is no decision a
//! 503, even when told to fail open; only no answer in time or a failed
//! connection fails open, when told to; decisions are reused while cached.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::app_webhooks::{Delivery, assert_signed, new_secret};
use crate::helpers::events::EventStream;
use crate::helpers::{TestApp, spawn_app_configured};

#[derive(Clone, Copy)]
enum Decide {
    Allow,
    Deny,
    Slow,
    /// This status and no body.
    Status(u16),
    /// 200 with a body that is not JSON.
    NotJson,
    /// 200 with `{"allow": true}` padded past 4 KB.
    Oversized,
}

type Asked = Arc<Mutex<Vec<Delivery>>>;

/// The host application's hook: answers every question the same way and
/// records each.
async fn hook(decide: Decide) -> (String, Asked) {
    let asked = Asked::default();
    let answer = |State((asked, decide)): State<(Asked, Decide)>, headers: HeaderMap, raw: Bytes| async move {
        let header =
            |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        asked.lock().expect("log").push(Delivery {
            id: header("webhook-id"),
            timestamp: header("webhook-timestamp"),
            signature: header("webhook-signature"),
            body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
            raw: raw.to_vec(),
        });
        let json = |v: Value| axum::response::IntoResponse::into_response(axum::Json(v));
        match decide {
            Decide::Allow => json(json!({"allow": true})),
            Decide::Deny => json(json!({"allow": false, "reason": "not in the conversation"})),
            Decide::Slow => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                json(json!({"allow": true}))
            }
            Decide::Status(status) => {
                axum::response::IntoResponse::into_response(StatusCode::from_u16(status).expect("a status"))
            }
            Decide::NotJson => axum::response::IntoResponse::into_response("allow"),
            Decide::Oversized => json(json!({"allow": true, "padding": "x".repeat(5000)})),
        }
    };
    let app = Router::new().route("/authz", post(answer)).with_state((asked.clone(), decide));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/authz", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, asked)
}

async fn app_asking(url: &str, secret: &str, fail_open: bool, cache_secs: u64) -> TestApp {
    let signed = callgate::config::AppWebhookConfig::new(url.to_owned(), secret).expect("a valid hook");
    spawn_app_configured(move |c| {
        c.call_authz = Some(callgate::config::CallAuthzConfig {
            url: signed.url,
            key: signed.key,
            timeout: Duration::from_millis(300),
            fail_open,
            cache: Duration::from_secs(cache_secs),
        })
    })
    .await
}

async fn start_in_conversation(
    app: &TestApp,
    caller: &crate::helpers::TestUser,
    callee: &str,
) -> (StatusCode, Value) {
    let body = json!({"participantIds": [callee], "type": "video", "conversationId": "conv-7"});
    app.post("/api/v1/calls", caller, body).await
}

#[tokio::test]
async fn an_allowed_call_rings_after_a_signed_question() {
    let (url, asked) = hook(Decide::Allow).await;
    let secret = new_secret();
    let app = app_asking(&url, &secret, false, 0).await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (status, body) = start_in_conversation(&app, &alice, &bob.id).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let asked = asked.lock().expect("log").clone();
    assert_eq!(asked.len(), 1);
    assert_signed(&secret, &asked[0]);
    assert_eq!(
        asked[0].body,
        json!({"callerId": alice.id, "calleeIds": [bob.id], "conversationId": "conv-7", "type": "video"})
    );
}

#[tokio::test]
async fn a_denied_call_never_rings_and_the_refusal_says_nothing_of_why() {
    let (url, _) = hook(Decide::Deny).await;
    let app = app_asking(&url, &new_secret(), false, 0).await;
    let (alice, bob, carol) = (app.user("female"), app.user("male"), app.user("female"));
    let mut bobs = EventStream::connect(&app, &bob).await;
    let (status, to_bob) = start_in_conversation(&app, &alice, &bob.id).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{to_bob}");
    assert_eq!(to_bob["code"], "call_not_allowed");
    assert!(!to_bob.to_string().contains("conversation"), "the hook's reason is not passed on: {to_bob}");
    let (_, to_carol) = start_in_conversation(&app, &alice, &carol.id).await;
    assert_eq!(to_bob, to_carol, "the same answer whoever is denied");
    let rung = bobs.collect(Duration::from_secs(1)).await;
    assert!(!rung.iter().any(|e| e["type"] == "call.incoming"), "{rung:?}");
    let (status, _) = app.get("/api/v1/calls/active", &alice).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_hook_too_slow_to_answer_fails_closed_and_fails_open_when_told_to() {
    let (url, _) = hook(Decide::Slow).await;
    let secret = new_secret();
    let closed = app_asking(&url, &secret, false, 0).await;
    let (alice, bob) = (closed.user("female"), closed.user("male"));
    let (status, body) = start_in_conversation(&closed, &alice, &bob.id).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "unavailable");

    let open = app_asking(&url, &secret, true, 0).await;
    let (carol, dave) = (open.user("female"), open.user("male"));
    let (status, body) = start_in_conversation(&open, &carol, &dave.id).await;
    assert_eq!(status, StatusCode::CREATED, "fail open rings: {body}");
}

#[tokio::test]
async fn a_cached_decision_is_reused_without_asking_again() {
    let (url, asked) = hook(Decide::Allow).await;
    let app = app_asking(&url, &new_secret(), false, 60).await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    for _ in 0..2 {
        let (status, body) = start_in_conversation(&app, &alice, &bob.id).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let call = body["call"]["id"].as_str().expect("id").to_owned();
        app.call_action(&call, "end", &alice, json!({})).await;
    }
    assert_eq!(asked.lock().expect("log").len(), 1, "asked once, then cached");

    // Another conversation is another question.
    let body = json!({"participantIds": [bob.id], "type": "video", "conversationId": "conv-8"});
    let (status, _) = app.post("/api/v1/calls", &alice, body).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(asked.lock().expect("log").len(), 2);
}

#[tokio::test]
async fn the_hooks_own_4xx_is_a_no_even_when_told_to_fail_open() {
    for status in [403, 404, 401, 429] {
        let (url, asked) = hook(Decide::Status(status)).await;
        let app = app_asking(&url, &new_secret(), true, 60).await;
        let (alice, bob) = (app.user("female"), app.user("male"));
        let mut bobs = EventStream::connect(&app, &bob).await;
        let (status_now, body) = start_in_conversation(&app, &alice, &bob.id).await;
        assert_eq!(status_now, StatusCode::FORBIDDEN, "the hook said {status}: {body}");
        assert_eq!(body["code"], "call_not_allowed", "{status}");
        let rung = bobs.collect(Duration::from_millis(300)).await;
        assert!(!rung.iter().any(|e| e["type"] == "call.incoming"), "{status}: {rung:?}");
        start_in_conversation(&app, &alice, &bob.id).await;
        assert_eq!(asked.lock().expect("log").len(), 2, "{status}: a refusal is not cached as a decision");
    }
}

#[tokio::test]
async fn an_answer_that_is_no_decision_is_refused_even_when_told_to_fail_open() {
    for decide in
        [Decide::Status(500), Decide::Status(503), Decide::Status(307), Decide::NotJson, Decide::Oversized]
    {
        let (url, _) = hook(decide).await;
        let app = app_asking(&url, &new_secret(), true, 0).await;
        let (alice, bob) = (app.user("female"), app.user("male"));
        let (status, body) = start_in_conversation(&app, &alice, &bob.id).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["code"], "unavailable");
        let (status, _) = app.get("/api/v1/calls/active", &alice).await;
        assert_eq!(status, StatusCode::OK);
    }
}

#[tokio::test]
async fn a_hook_nobody_listens_at_fails_open_when_told_to_and_closed_otherwise() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address");
    let url = format!("http://{closed}/authz");
    let secret = new_secret();
    let open = app_asking(&url, &secret, true, 0).await;
    let (alice, bob) = (open.user("female"), open.user("male"));
    let (status, body) = start_in_conversation(&open, &alice, &bob.id).await;
    assert_eq!(status, StatusCode::CREATED, "a failed connection fails open: {body}");
    let shut = app_asking(&url, &secret, false, 0).await;
    let (carol, dave) = (shut.user("female"), shut.user("male"));
    let (status, body) = start_in_conversation(&shut, &carol, &dave.id).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
}
