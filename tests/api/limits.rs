//! Per-user bounds, enforced across instances: event streams per user and
//! their lifetime, and requests without valid credentials per address.
//! (Quality samples: tests/api/quality.rs.)

use std::time::Duration;

use callgate::infra::auth::{DevToken, mint_dev_token};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use crate::helpers::events::{EventStream, events_url, try_connect};
use crate::helpers::{TestApp, jwt_secret, spawn_app, spawn_app_configured};

fn is_incoming(event: &Value) -> bool {
    event["type"] == "call.incoming"
}

fn code_of(frame: &Option<CloseFrame>) -> Option<u16> {
    frame.as_ref().map(|f| u16::from(f.code))
}

/// A token for a new user that expires `ttl` from now.
fn short_token(app: &TestApp, ttl: Duration) -> (String, String) {
    let id = format!("u-{}", uuid::Uuid::new_v4().simple());
    let token = DevToken { user: &id, name: None, gender: Some("male"), roles: &[], ttl };
    let token = mint_dev_token(&jwt_secret(), &app.config.jwt, &token).expect("mint");
    (id, token)
}

#[tokio::test]
async fn one_stream_too_many_closes_the_oldest_on_whichever_instance_holds_it() {
    let two_streams = |c: &mut callgate::config::Config| c.limits.max_streams_per_user = 2;
    let (one, two) = (spawn_app_configured(two_streams).await, spawn_app_configured(two_streams).await);
    let (alice, bob) = (one.user("female"), one.user("male"));
    let mut oldest = EventStream::connect(&one, &bob).await;
    let mut second = EventStream::connect(&two, &bob).await;
    let mut newest = EventStream::connect(&two, &bob).await;

    let frame = oldest.closed(Duration::from_secs(10)).await;
    assert_eq!(code_of(&frame), Some(4008), "{frame:?}");
    assert!(frame.is_some_and(|f| f.reason.contains("too many streams")));

    let (call, _) = one.ring(&alice, &[&bob], "audio").await;
    for stream in [&mut second, &mut newest] {
        let incoming = stream.wait_for(Duration::from_secs(5), "call.incoming", is_incoming).await;
        assert_eq!(incoming["callId"], call, "the newer streams stay open");
    }
}

#[tokio::test]
async fn a_stream_closes_when_the_token_that_opened_it_expires() {
    let app = spawn_app().await;
    let (_, token) = short_token(&app, Duration::from_secs(2));
    let socket = try_connect(&events_url(&app), Some(&token)).await.expect("the stream opens");
    let frame = EventStream::from_socket(socket).closed(Duration::from_secs(15)).await;
    assert_eq!(code_of(&frame), Some(4001), "{frame:?}");
}

#[tokio::test]
async fn a_ticket_stream_closes_when_the_token_that_bought_the_ticket_expires() {
    let app = spawn_app().await;
    let (_, token) = short_token(&app, Duration::from_secs(3));
    let response = app
        .http
        .post(app.url("/api/v1/events/ticket"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::CREATED);
    let issued: Value = response.json().await.expect("json");
    let url = format!("{}?ticket={}", events_url(&app), issued["ticket"].as_str().expect("ticket"));
    let socket = try_connect(&url, None).await.expect("the ticket opens the stream");
    let frame = EventStream::from_socket(socket).closed(Duration::from_secs(15)).await;
    assert_eq!(code_of(&frame), Some(4001), "{frame:?}");
}

/// An address of the benchmarking range (198.18.0.0/15), new on every run.
fn an_address() -> String {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    format!("198.18.{}.{}", bytes[0], bytes[1])
}

async fn from(app: &TestApp, address: &str, bearer: &str) -> (StatusCode, Option<String>) {
    let response = app
        .http
        .get(app.url("/api/v1/calls/active"))
        .bearer_auth(bearer)
        // The left entry is what the client claims; the right one is the proxy's.
        .header("x-forwarded-for", format!("203.0.113.9, {address}"))
        .send()
        .await
        .expect("sent");
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (response.status(), retry_after)
}

#[tokio::test]
async fn a_flood_without_valid_credentials_is_refused_per_address_while_a_valid_user_gets_through() {
    let app = spawn_app_configured(|c| {
        c.limits.unauthenticated_per_minute = 3;
        c.limits.trusted_proxy_header = Some(axum::http::HeaderName::from_static("x-forwarded-for"));
    })
    .await;
    let (flooder, neighbour) = (an_address(), an_address());
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(from(&app, &flooder, "not-a-valid-token").await);
    }
    let (first, rest) = statuses.split_at(3);
    assert!(first.iter().all(|(s, _)| *s == StatusCode::UNAUTHORIZED), "{statuses:?}");
    assert!(rest.iter().all(|(s, r)| *s == StatusCode::TOO_MANY_REQUESTS && r.is_some()), "{statuses:?}");

    let user = app.user("female");
    let (status, _) = from(&app, &flooder, &user.token).await;
    assert_eq!(status, StatusCode::OK, "a valid user at the same address gets through");
    let (status, _) = from(&app, &neighbour, "not-a-valid-token").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "another address has its own allowance");
}
