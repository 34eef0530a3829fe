//! Who may call whom, where it takes Redis: the host application's
//! decisions are reused while cached there, and the hook's own 4xx is a no
//! (even when told to fail open) that is not cached as a decision. The rest
//! of the hook (signed questions, denies, answers that are no decision,
//! failing open or closed) is proved in-process, in tests/fast/authz.rs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::app_webhooks::{Delivery, new_secret};
use crate::helpers::events::EventStream;
use crate::helpers::{TestApp, spawn_app_configured};

#[derive(Clone, Copy)]
enum Decide {
    Allow,
    /// This status and no body.
    Status(u16),
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
            Decide::Status(status) => {
                axum::response::IntoResponse::into_response(StatusCode::from_u16(status).expect("a status"))
            }
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
