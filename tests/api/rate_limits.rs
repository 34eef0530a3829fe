//! Rate limits are shared by every instance (they live in Redis), answer
//! 429 with Retry-After, and a Redis outage does not take the service down.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::events::{events_url, refusal_status, try_connect};
use crate::helpers::{TestApp, TestUser, spawn_app_configured};

/// Status, body and Retry-After (seconds) of a request.
async fn send(
    app: &TestApp,
    path: &str,
    user: &TestUser,
    body: Option<Value>,
) -> (StatusCode, Value, Option<u64>) {
    let mut request = match body {
        Some(body) => app.http.post(app.url(path)).json(&body),
        None => app.http.get(app.url(path)),
    };
    request = request.bearer_auth(&user.token);
    let response = request.send().await.expect("sent");
    let retry_after =
        response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, retry_after)
}

async fn start(app: &TestApp, caller: &TestUser, callee: &TestUser) -> (StatusCode, Value, Option<u64>) {
    send(app, "/api/v1/calls", caller, Some(json!({"participantIds": [callee.id], "type": "audio"}))).await
}

#[tokio::test]
async fn the_call_start_over_the_limit_is_refused_on_every_instance() {
    let limit = |c: &mut callgate::config::Config| c.rate_limits.call_starts_per_minute = 3;
    let (one, two) = (spawn_app_configured(limit).await, spawn_app_configured(limit).await);
    let alice = one.user("female");
    for app in [&one, &two, &one] {
        let callee = app.user("male");
        let (status, body, _) = start(app, &alice, &callee).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let call = body["call"]["id"].as_str().expect("call id");
        app.call_action(call, "end", &alice, json!({})).await;
    }
    for app in [&two, &one] {
        let (status, body, retry_after) = start(app, &alice, &app.user("male")).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_eq!(body["code"], "rate_limited");
        assert!(retry_after.is_some_and(|s| (1..=60).contains(&s)), "Retry-After {retry_after:?}");
    }
    let (status, body, _) = start(&two, &one.user("male"), &one.user("female")).await;
    assert_eq!(status, StatusCode::CREATED, "another caller is not limited: {body}");
}

#[tokio::test]
async fn requests_over_the_per_user_limit_are_refused_with_retry_after() {
    let limit = |c: &mut callgate::config::Config| c.rate_limits.requests_per_minute = 5;
    let (one, two) = (spawn_app_configured(limit).await, spawn_app_configured(limit).await);
    let bob = one.user("male");
    for app in [&one, &two, &one, &two, &one] {
        let (status, body, _) = send(app, "/api/v1/calls/active", &bob, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body, retry_after) = send(&two, "/api/v1/calls/active", &bob, None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["code"], "rate_limited");
    // Five a minute: one more every twelve seconds.
    assert!(retry_after.is_some_and(|s| (1..=12).contains(&s)), "Retry-After {retry_after:?}");
    let (status, _, _) = send(&two, "/api/v1/calls/active", &one.user("female"), None).await;
    assert_eq!(status, StatusCode::OK, "another user is not limited");
}

#[tokio::test]
async fn video_requests_over_the_per_call_limit_are_refused() {
    let app = spawn_app_configured(|c| c.rate_limits.video_requests_per_call = 2).await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (call, _) = app.ring(&alice, &[&bob], "audio").await;
    app.call_action(&call, "accept", &bob, json!({})).await;
    let request = format!("/api/v1/calls/{call}/video/requests");
    for _ in 0..2 {
        // Her request is her consent: video turns on; she turns it off again.
        let (status, body, _) = send(&app, &request, &alice, Some(json!({}))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = app.post(&format!("/api/v1/calls/{call}/video/revoke"), &alice, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body, retry_after) = send(&app, &request, &alice, Some(json!({}))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["code"], "rate_limited");
    assert!(retry_after.is_some());
}

#[tokio::test]
async fn with_redis_down_calls_go_on_and_the_documented_limits_fail_closed() {
    let app =
        spawn_app_configured(|c| c.redis_url = secrecy::SecretString::from("redis://127.0.0.1:1")).await;
    let (alice, bob) = (app.user("female"), app.user("male"));

    // Fail open: requests and call starts.
    let (status, body, _) = send(&app, "/api/v1/calls/active", &alice, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body, _) = start(&app, &alice, &bob).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let call = body["call"]["id"].as_str().expect("call id").to_owned();
    let (status, body) = app.call_action(&call, "accept", &bob, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Fail closed: video requests (the call itself goes on).
    let (status, body, _) =
        send(&app, &format!("/api/v1/calls/{call}/video/requests"), &alice, Some(json!({}))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    // No event stream without the fan-out; the client retries.
    assert_eq!(refusal_status(try_connect(&events_url(&app), Some(&alice.token)).await), 503);
    let (status, _) = app.call_action(&call, "end", &alice, json!({})).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_request_limit_too_high_to_count_still_answers_from_redis() {
    let app = crate::helpers::spawn_app().await;
    let key = format!("callgate:rl:req:test-{}", uuid::Uuid::new_v4().simple());
    for _ in 0..3 {
        let minute = std::time::Duration::from_secs(60);
        let checked = callgate::infra::rate_limit::check(
            &app.state.redis,
            callgate::infra::rate_limit::Algorithm::Bucket,
            key.clone(),
            (1_000_000_000, minute),
            app.config.rate_limits.redis_timeout,
        )
        .await;
        assert!(matches!(checked, Ok(None)), "allowed, and Redis accepted the script: {checked:?}");
    }
}

#[tokio::test]
async fn one_participant_cannot_spend_the_calls_video_requests_by_asking_and_withdrawing() {
    let app = spawn_app_configured(|c| {
        c.rate_limits.video_requests_per_call = 4;
        c.rate_limits.video_requests_per_participant = 2;
    })
    .await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (call, _) = app.ring(&alice, &[&bob], "audio").await;
    app.call_action(&call, "accept", &bob, json!({})).await;
    let request = format!("/api/v1/calls/{call}/video/requests");
    for _ in 0..2 {
        // He is no consenter: his request waits for her; he withdraws it.
        let (status, body, _) = send(&app, &request, &bob, Some(json!({}))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = app.post(&format!("/api/v1/calls/{call}/video/revoke"), &bob, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body, retry_after) = send(&app, &request, &bob, Some(json!({}))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "his own budget is spent: {body}");
    assert_eq!(body["code"], "rate_limited");
    assert!(retry_after.is_some());
    let (status, body, _) = send(&app, &request, &alice, Some(json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "hers is left, and so is the call's: {body}");
}

#[tokio::test]
async fn junk_from_an_address_does_not_lock_the_browsers_there_out_of_their_event_streams() {
    let app = spawn_app_configured(|c| c.limits.unauthenticated_per_minute = 3).await;
    let alice = app.user("female");
    // From 127.0.0.1, as the browsers below: forged tokens until refused.
    let junk = TestUser { id: "nobody".into(), token: "not-a-token".into() };
    let mut last = StatusCode::OK;
    for _ in 0..5 {
        last = send(&app, "/api/v1/calls/active", &junk, None).await.0;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS, "the address's budget for bad credentials is spent");
    // Made-up tickets spend a budget of their own.
    let made_up = format!("{}?ticket=made-up", events_url(&app));
    let refusals: Vec<u16> = futures::future::join_all((0..5).map(|_| try_connect(&made_up, None)))
        .await
        .into_iter()
        .map(refusal_status)
        .collect();
    assert!(refusals.contains(&401) && refusals.contains(&429), "{refusals:?}");
    // A browser there buys a ticket with its user's token and opens its stream.
    let (status, body, _) = send(&app, "/api/v1/events/ticket", &alice, Some(json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let url = format!("{}?ticket={}", events_url(&app), body["ticket"].as_str().expect("a ticket"));
    let opened = try_connect(&url, None).await;
    assert!(opened.is_ok(), "its stream opens: {:?}", opened.err());
}
