use std::time::Duration;

use livekit_api::access_token::TokenVerifier;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::helpers::{
    Options, base_config, eventually, isolated_database, room_exists, spawn_app, spawn_app_configured,
    spawn_app_with, spawn_on,
};

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
async fn an_unanswered_call_is_missed_when_ringing_times_out() {
    let app = spawn_app_configured(|c| c.timeouts.ringing = Duration::from_secs(1)).await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (call, _) = app.ring(&alice, &[&bob], "audio").await;
    let body = app.wait_for_call(&call, &alice, Duration::from_secs(10), |c| c["state"] == "ended").await;
    assert_eq!(body["outcome"], "missed");
    assert_eq!(body["endReason"], "timeout");
    // The room is deleted once the end has committed, a moment after it reads "ended".
    let room = app.room_name(&call);
    eventually(Duration::from_secs(5), "the room is gone", || {
        let room = room.clone();
        async move { !room_exists(&room).await }
    })
    .await;
    let missed = app
        .db_count("select count(*) from user_events where call_id = $1 and type = 'call.missed' and user_id = (select initiator_id from calls where id = $1)", &call)
        .await;
    assert_eq!(missed, 1);
}

#[tokio::test]
async fn fifty_concurrent_calls_to_one_callee_ring_once() {
    // A connection for each request, however slowly PostgreSQL logs them in
    // on a loaded machine: the race is decided in PostgreSQL.
    let app = spawn_app_configured(|c| {
        c.database_pool_size = 56;
        c.database_acquire_timeout = Duration::from_secs(60);
        // Fifty logins can take half a minute on a loaded machine: the call
        // that rings must still be ringing when the test looks.
        c.timeouts.ringing = Duration::from_secs(600);
    })
    .await;
    let callee = app.user("female");
    let callers: Vec<_> = (0..50).map(|_| app.user("male")).collect();
    let callee_ref = [&callee];
    let attempts = callers.iter().map(|caller| app.start_call(caller, &callee_ref, "audio"));
    let results = futures::future::join_all(attempts).await;
    let rung = results.iter().filter(|(s, _)| *s == StatusCode::CREATED).count();
    let busy: Vec<_> = results.iter().filter(|(s, _)| *s == StatusCode::CONFLICT).collect();
    let statuses: Vec<StatusCode> = results.iter().map(|(s, _)| *s).collect();
    assert_eq!(rung, 1, "exactly one call rings: {statuses:?}");
    assert_eq!(
        busy.len(),
        49,
        "{:?}",
        results.iter().find(|(s, _)| *s != StatusCode::CONFLICT && *s != StatusCode::CREATED)
    );
    assert!(busy.iter().all(|(_, b)| b["code"] == "callee_busy"));
    let (_, active) = app.get("/api/v1/calls/active", &callee).await;
    assert_eq!(active["calls"].as_array().map(Vec::len), Some(1));
    // The busy calls are recorded, for their callers: someone written busy
    // never took part in a call, and does not see it.
    let (_, history) = app.get("/api/v1/calls/history?limit=100", &callee).await;
    assert_eq!(history["calls"].as_array().map(Vec::len), Some(1), "only the call that rang her: {history}");
    let mut busy_outcomes = 0;
    for caller in &callers {
        let (_, history) = app.get("/api/v1/calls/history?limit=10", caller).await;
        let calls = history["calls"].as_array().expect("calls");
        busy_outcomes += calls.iter().filter(|c| c["outcome"] == "busy").count();
    }
    assert_eq!(busy_outcomes, 49, "busy calls are recorded");
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

#[tokio::test]
async fn the_connect_timeout_fails_a_call_nobody_joins() {
    let app = spawn_app_configured(|c| c.timeouts.connect = Duration::from_secs(1)).await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (call, _) = app.ring(&alice, &[&bob], "audio").await;
    app.call_action(&call, "accept", &bob, json!({})).await;
    let body = app.wait_for_call(&call, &alice, Duration::from_secs(10), |c| c["state"] == "ended").await;
    assert_eq!(body["outcome"], "failed");
    assert_eq!(body["endReason"], "timeout");
    let name = app.room_name(&call);
    eventually(Duration::from_secs(5), "room deleted", || {
        let n = name.clone();
        async move { !room_exists(&n).await }
    })
    .await;
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

#[tokio::test]
async fn a_deadline_that_cannot_be_handled_does_not_hold_back_the_others() {
    // A database of its own: the broken deadlines are due before any other.
    let database = isolated_database(&base_config()).await;
    let app = spawn_on(&database, |c| c.timeouts.ringing = Duration::from_secs(1)).await;
    // Calls whose rows the service cannot read (a consent state it never
    // writes), each with a ringing deadline long due: handling them fails
    // every time.
    let mut broken = Vec::new();
    for _ in 0..3 {
        let id = uuid::Uuid::new_v4();
        sqlx::query(
            "insert into calls (id, room_name, type, state, initiator_id, video_session) \
             values ($1, $2, 'audio', 'ringing', 'u-broken', '\"not a session\"')",
        )
        .bind(id)
        .bind(format!("{}{id}", app.config.room_prefix))
        .execute(&app.state.db)
        .await
        .expect("insert a broken call");
        sqlx::query(
            "insert into jobs (kind, lane, dedupe_key, payload, run_at) \
             values ('deadline', 'call:' || $1::text, 'deadline:ringing:' || $1::text, \
                     jsonb_build_object('kind', 'deadline', 'call', $1, 'deadline', 'ringing'), \
                     now() - interval '1 hour')",
        )
        .bind(id)
        .execute(&app.state.db)
        .await
        .expect("insert its deadline");
        broken.push(id);
    }

    let (alice, bob) = (app.user("female"), app.user("male"));
    let (call, _) = app.ring(&alice, &[&bob], "audio").await;
    let body = app.wait_for_call(&call, &alice, Duration::from_secs(15), |c| c["state"] == "ended").await;
    assert_eq!(body["outcome"], "missed", "the good deadline fired behind the broken ones");

    let kept: i64 = sqlx::query_scalar("select count(*) from jobs where lane = any($1)")
        .bind(broken.iter().map(|id| format!("call:{id}")).collect::<Vec<_>>())
        .fetch_one(&app.state.db)
        .await
        .expect("count");
    assert_eq!(kept, 3, "a failing deadline is kept, to be tried again");
}
