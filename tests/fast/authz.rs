//! Who may call whom, through the API in-process: the host application's
//! hook (a small server of the test's own on 127.0.0.1) decides before
//! anything rings; our request is signed per Standard Webhooks; a deny
//! reveals nothing; an answer that is no decision is a 503, even when told
//! to fail open; only no answer in time or a failed connection fails open,
//! when told to. Moved down from the real stack: none of it needs LiveKit or
//! Redis. What needs Redis (decisions reused while cached, a refusal not
//! cached) stays in tests/api/authz.rs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::http::{Api, Caller};
use crate::support::World;

#[derive(Clone, Copy)]
enum Decide {
    Allow,
    Deny,
    /// Never answers.
    Silent,
    /// This status and no body.
    Status(u16),
    /// 200 with a body that is not JSON.
    NotJson,
    /// 200 with `{"allow": true}` padded past 4 KB.
    Oversized,
}

/// One question as the hook received it.
#[derive(Clone, Debug)]
struct Asked {
    id: String,
    timestamp: String,
    signature: String,
    raw: Vec<u8>,
    body: Value,
}

type Log = Arc<Mutex<Vec<Asked>>>;

/// The host application's hook: answers every question the same way and
/// records each.
async fn hook(decide: Decide) -> (String, Log) {
    let asked = Log::default();
    let answer = |State((asked, decide)): State<(Log, Decide)>, headers: HeaderMap, raw: Bytes| async move {
        let header =
            |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        asked.lock().expect("log").push(Asked {
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
            Decide::Silent => std::future::pending().await,
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

fn new_secret() -> String {
    let key: [u8; 32] = rand::random();
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(key))
}

/// Verified as a receiver would, with nothing but the secret: the
/// signature, and a timestamp close to now.
fn assert_signed(secret: &str, asked: &Asked) {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("the secret is base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("key");
    mac.update(format!("{}.{}.", asked.id, asked.timestamp).as_bytes());
    mac.update(&asked.raw);
    let expected =
        format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
    assert!(
        asked.signature.split(' ').any(|s| s == expected),
        "bad signature {} on {}",
        asked.signature,
        asked.id
    );
    let sent: i64 = asked.timestamp.parse().expect("webhook-timestamp is unix seconds");
    assert!((chrono::Utc::now().timestamp() - sent).abs() < 300, "a fresh timestamp");
}

/// A world whose calls ask the hook at `url`, decisions never cached.
async fn asking(url: &str, secret: &str, fail_open: bool) -> World {
    // The hook's client is built with the TLS provider the application
    // installs as it starts (`Application::build`).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let signed = callgate::config::AppWebhookConfig::new(url.to_owned(), secret).expect("a valid hook");
    World::configured(move |c| {
        c.call_authz = Some(callgate::config::CallAuthzConfig {
            url: signed.url,
            key: signed.key,
            timeout: Duration::from_millis(300),
            fail_open,
            cache: Duration::ZERO,
        })
    })
    .await
}

async fn start_in_conversation(api: &Api, caller: &Caller, callee: &str) -> (StatusCode, Value) {
    let body = json!({"participantIds": [callee], "type": "video", "conversationId": "conv-7"});
    api.post("/api/v1/calls", caller, body).await
}

/// Calls written in the database, and `call.incoming` events for anyone.
async fn written(world: &World) -> (i64, i64) {
    sqlx::query_as(
        "select (select count(*) from calls), \
         (select count(*) from user_events where type = 'call.incoming')",
    )
    .fetch_one(&world.core.db)
    .await
    .expect("counted")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_call_rings_after_a_signed_question() {
    let (url, asked) = hook(Decide::Allow).await;
    let secret = new_secret();
    let world = asking(&url, &secret, false).await;
    let api = Api::new(&world);
    let (alice, bob) = (api.user("female"), api.user("male"));
    let (status, body) = start_in_conversation(&api, &alice, &bob.id).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let asked = asked.lock().expect("log").clone();
    assert_eq!(asked.len(), 1);
    assert_signed(&secret, &asked[0]);
    assert_eq!(
        asked[0].body,
        json!({"callerId": alice.id, "calleeIds": [bob.id], "conversationId": "conv-7", "type": "video"})
    );
    assert_eq!(written(&world).await, (1, 1), "it rings Bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_call_never_rings_and_the_refusal_says_nothing_of_why() {
    let (url, _) = hook(Decide::Deny).await;
    let world = asking(&url, &new_secret(), false).await;
    let api = Api::new(&world);
    let (alice, bob, carol) = (api.user("female"), api.user("male"), api.user("female"));
    let (status, to_bob) = start_in_conversation(&api, &alice, &bob.id).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{to_bob}");
    assert_eq!(to_bob["code"], "call_not_allowed");
    assert!(!to_bob.to_string().contains("conversation"), "the hook's reason is not passed on: {to_bob}");
    let (_, to_carol) = start_in_conversation(&api, &alice, &carol.id).await;
    assert_eq!(to_bob, to_carol, "the same answer whoever is denied");
    assert_eq!(written(&world).await, (0, 0), "no call, nobody rung");
    let (status, _) = api.get("/api/v1/calls/active", &alice).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_too_slow_to_answer_fails_closed_and_fails_open_when_told_to() {
    let (url, _) = hook(Decide::Silent).await;
    let secret = new_secret();
    let closed = asking(&url, &secret, false).await;
    let api = Api::new(&closed);
    let (alice, bob) = (api.user("female"), api.user("male"));
    let (status, body) = start_in_conversation(&api, &alice, &bob.id).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "unavailable");
    assert_eq!(written(&closed).await, (0, 0), "nothing rings");

    let open = asking(&url, &secret, true).await;
    let api = Api::new(&open);
    let (carol, dave) = (api.user("female"), api.user("male"));
    let (status, body) = start_in_conversation(&api, &carol, &dave.id).await;
    assert_eq!(status, StatusCode::CREATED, "fail open rings: {body}");
    assert_eq!(written(&open).await, (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_is_no_decision_is_refused_even_when_told_to_fail_open() {
    for decide in
        [Decide::Status(500), Decide::Status(503), Decide::Status(307), Decide::NotJson, Decide::Oversized]
    {
        let (url, asked) = hook(decide).await;
        let world = asking(&url, &new_secret(), true).await;
        let api = Api::new(&world);
        let (alice, bob) = (api.user("female"), api.user("male"));
        let (status, body) = start_in_conversation(&api, &alice, &bob.id).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["code"], "unavailable");
        assert_eq!(asked.lock().expect("log").len(), 1, "the hook was asked");
        assert_eq!(written(&world).await, (0, 0), "nothing rings");
        let (status, _) = api.get("/api/v1/calls/active", &alice).await;
        assert_eq!(status, StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_nobody_listens_at_fails_open_when_told_to_and_closed_otherwise() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address");
    let url = format!("http://{closed}/authz");
    let secret = new_secret();
    let open = asking(&url, &secret, true).await;
    let api = Api::new(&open);
    let (alice, bob) = (api.user("female"), api.user("male"));
    let (status, body) = start_in_conversation(&api, &alice, &bob.id).await;
    assert_eq!(status, StatusCode::CREATED, "a failed connection fails open: {body}");
    let shut = asking(&url, &secret, false).await;
    let api = Api::new(&shut);
    let (carol, dave) = (api.user("female"), api.user("male"));
    let (status, body) = start_in_conversation(&api, &carol, &dave.id).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(written(&shut).await, (0, 0), "nothing rings");
}
