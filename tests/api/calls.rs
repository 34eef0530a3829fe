use livekit_api::access_token::TokenVerifier;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::helpers::{Options, room_exists, spawn_app, spawn_app_configured, spawn_app_with};

fn decode(app: &crate::helpers::TestApp, join: &Value) -> livekit_api::access_token::Claims {
    let lk = &app.config.livekit;
    TokenVerifier::with_api_key(&lk.api_key, lk.api_secret.expose_secret())
        .verify(join["token"].as_str().expect("token"))
        .expect("a LiveKit token signed with our key")
}

#[tokio::test]
async fn starting_a_call_creates_its_room_and_a_microphone_only_token() {
    let app = spawn_app().await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (call, body) = app.ring(&alice, &[&bob], "audio").await;
    assert_eq!(body["call"]["state"], "ringing");
    assert_eq!(body["call"]["video"], "off");
    assert!(room_exists(&app.room_name(&call)).await, "the room exists in LiveKit");

    let claims = decode(&app, &body["join"]);
    assert_eq!(claims.sub, alice.id);
    assert_eq!(claims.video.room, app.room_name(&call));
    assert!(claims.video.room_join);
    assert_eq!(claims.video.can_publish_sources, vec!["microphone"]);
    assert!(!claims.video.room_admin && !claims.video.room_create && !claims.video.room_list);
    assert_eq!(body["join"]["identity"], alice.id.as_str());
    assert_eq!(body["join"]["url"], app.config.livekit.url.as_str());
    assert!(body["iceServers"].as_array().is_some_and(|s| !s.is_empty()));
    let shown = body.to_string();
    assert!(!shown.contains("female") && !shown.contains("gender"), "gender never leaves: {shown}");
}

#[tokio::test]
async fn the_callee_is_told_and_accepting_returns_its_own_token() {
    let app = spawn_app().await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (call, _) = app.ring(&alice, &[&bob], "audio").await;
    let (status, active) = app.get("/api/v1/calls/active", &bob).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(active["calls"][0]["id"], call.as_str());

    let (status, body) = app.call_action(&call, "accept", &bob, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["call"]["state"], "connecting");
    let claims = decode(&app, &body["join"]);
    assert_eq!(claims.sub, bob.id);
    assert_eq!(claims.video.room, app.room_name(&call));
    assert_eq!(claims.video.can_publish_sources, vec!["microphone"]);

    let incoming = app
        .db_count("select count(*) from user_events where call_id = $1 and type = 'call.incoming'", &call)
        .await;
    assert_eq!(incoming, 1, "one call.incoming, for the callee");
}

#[tokio::test]
async fn when_livekit_is_unreachable_no_call_is_left_live() {
    let app = spawn_app_with(Options {
        isolated: false,
        configure: Box::new(|c| c.livekit.api_url = "http://127.0.0.1:9".into()),
    })
    .await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (status, body) = app.start_call(&alice, &[&bob], "audio").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "livekit_unavailable");
    for user in [&alice, &bob] {
        let (_, active) = app.get("/api/v1/calls/active", user).await;
        assert_eq!(active["calls"], json!([]));
        let (_, history) = app.get("/api/v1/calls/history", user).await;
        assert_eq!(history["calls"], json!([]));
    }
}

#[tokio::test]
async fn ready_reports_every_dependency() {
    let app = spawn_app().await;
    let resp = app.http.get(app.admin_url("/ready")).send().await.expect("sent");
    let status = resp.status();
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["checks"], json!({"postgres": "ok", "redis": "ok", "livekit": "ok"}));
    assert_eq!(status, StatusCode::OK);
    let resp = app.http.get(app.url("/health")).send().await.expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn ready_says_which_dependency_is_down() {
    let app =
        spawn_app_configured(|c| c.redis_url = secrecy::SecretString::from("redis://127.0.0.1:9")).await;
    let resp = app.http.get(app.url("/ready")).send().await.expect("sent");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "in public, only that it is not ready");
    let resp = app.http.get(app.admin_url("/ready")).send().await.expect("sent");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["checks"]["redis"], "unavailable");
    assert_eq!(body["checks"]["postgres"], "ok");
}

/// Each read takes one pooled connection at a time: many more readers than
/// connections queue for them instead of each holding one and waiting for
/// a second (which deadlocks the pool until the acquire timeout).
#[tokio::test]
async fn many_more_concurrent_reads_of_a_call_than_pooled_connections_all_succeed() {
    let app = crate::helpers::spawn_app_configured(|c| {
        c.database_pool_size = 3;
        c.database_acquire_timeout = std::time::Duration::from_secs(3);
    })
    .await;
    let (caller, callee) = (app.user("male"), app.user("female"));
    let (call, _) = app.ring(&caller, &[&callee], "audio").await;
    let (status, body) = app.call_action(&call, "accept", &callee, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let reads = (0..24).map(|n| {
        let (app, call, who) = (&app, call.clone(), if n % 2 == 0 { &caller } else { &callee });
        async move {
            match n % 4 {
                0 | 1 => app.call_action(&call, "token", who, json!({})).await,
                2 => app.get(&format!("/api/v1/calls/{call}"), who).await,
                _ => app.get(&format!("/api/v1/calls/{call}/video"), who).await,
            }
        }
    });
    for (status, body) in futures::future::join_all(reads).await {
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}
