//! The consent rules through the API, in-process (`http::Api`): requests,
//! answers, revokes, cooldowns and expiry, as a client sees them. Moved
//! down from the real stack: none of it needs a real SFU (what LiveKit
//! enforces stays in tests/api/consent.rs).

use chrono::Duration;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::http::{Api, Caller};
use crate::support::World;

pub async fn request_video(api: &Api, call: &str, who: &Caller) -> (StatusCode, Value) {
    api.post(&format!("/api/v1/calls/{call}/video/requests"), who, json!({})).await
}

pub async fn answer(api: &Api, call: &str, request: &str, who: &Caller, verb: &str) -> (StatusCode, Value) {
    api.post(&format!("/api/v1/calls/{call}/video/requests/{request}/{verb}"), who, json!({})).await
}

pub async fn revoke(api: &Api, call: &str, who: &Caller) -> (StatusCode, Value) {
    api.post(&format!("/api/v1/calls/{call}/video/revoke"), who, json!({})).await
}

pub async fn video(api: &Api, call: &str, who: &Caller) -> Value {
    let (status, body) = api.get(&format!("/api/v1/calls/{call}/video"), who).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

pub async fn ledger_kinds(api: &Api, call: &str, who: &Caller) -> Vec<String> {
    let (status, body) = api.get(&format!("/api/v1/calls/{call}/consent"), who).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["kind"].as_str().map(str::to_owned))
        .collect()
}

/// The sources a join token lets its holder publish.
pub fn sources_of(world: &World, join: &Value) -> Vec<String> {
    let lk = &world.core.config.livekit;
    livekit_api::access_token::TokenVerifier::with_api_key(&lk.api_key, lk.api_secret.expose_secret())
        .verify(join["token"].as_str().expect("token"))
        .expect("token")
        .video
        .can_publish_sources
}

async fn count(world: &World, sql: &'static str, call: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(uuid::Uuid::parse_str(call).expect("uuid"))
        .fetch_one(&world.core.db)
        .await
        .expect("counted")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_reject_the_requester_must_wait_out_the_cooldown() {
    let world = World::new().await;
    let api = Api::new(&world);
    let (him, her) = (api.user("male"), api.user("female"));
    let call = api.ring(&him, &[&her], "audio").await;
    api.act(&call, "accept", &her, json!({})).await;
    let (_, body) = request_video(&api, &call, &him).await;
    let request = body["request"]["id"].as_str().expect("request id").to_owned();
    let (status, body) = answer(&api, &call, &request, &him, "reject").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "own_request");
    let (status, body) = answer(&api, &call, &request, &her, "reject").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "off");

    let (status, body) = request_video(&api, &call, &him).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["code"], "video_request_cooldown");
    assert!(video(&api, &call, &him).await["cooldownUntil"].is_string());
    let declined = count(
        &world,
        "select count(*) from user_events where call_id = $1 and type = 'video.declined'",
        &call,
    )
    .await;
    assert_eq!(declined, 1, "the requester learns only that it was declined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_request_expires_once_its_deadline_is_due_and_leaves_no_cooldown() {
    let world = World::new().await;
    let api = Api::new(&world);
    let (him, her) = (api.user("male"), api.user("female"));
    let call = api.ring(&him, &[&her], "audio").await;
    api.act(&call, "accept", &her, json!({})).await;
    // Asked longer ago than a request lives.
    let timeout = Duration::from_std(world.core.config.timeouts.video_request).expect("a duration");
    world.clock.advance(-(timeout + Duration::seconds(1)));
    let (status, body) = request_video(&api, &call, &him).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body["request"]["expiresAt"].is_string());
    world.clock.advance(timeout + Duration::seconds(1));

    assert!(world.fire_some_deadlines().await >= 1);
    assert_eq!(video(&api, &call, &her).await["state"], "off");
    let kinds = ledger_kinds(&api, &call, &him).await;
    assert_eq!(kinds.last().map(String::as_str), Some("expire"), "{kinds:?}");
    let expired = count(&world, "select count(*) from user_events where call_id = $1 and type = 'video.expired' and user_id = (select initiator_id from calls where id = $1)", &call).await;
    assert_eq!(expired, 1);
    let (status, _) = request_video(&api, &call, &him).await;
    assert_eq!(status, StatusCode::CREATED, "no cooldown after an expiry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn her_video_call_accepted_by_him_with_video_turns_video_on_and_his_token_has_no_camera() {
    let world = World::new().await;
    let api = Api::new(&world);
    let (her, him) = (api.user("female"), api.user("male"));
    let call = api.ring(&her, &[&him], "video").await;
    let (status, body) = api.act(&call, "accept", &him, json!({"video": true})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["call"]["video"], "on");
    assert_eq!(sources_of(&world, &body["join"]), vec!["microphone"], "the camera comes once he has joined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn his_video_call_answered_by_her_with_video_turns_video_on() {
    let world = World::new().await;
    let api = Api::new(&world);
    let (him, her) = (api.user("male"), api.user("female"));
    let call = api.ring(&him, &[&her], "video").await;
    let (_, body) = api.act(&call, "accept", &her, json!({"video": true})).await;
    assert_eq!(body["call"]["video"], "on");
    let kinds = ledger_kinds(&api, &call, &her).await;
    assert_eq!(kinds.first().map(String::as_str), Some("request"), "{kinds:?}");
    assert_eq!(kinds.last().map(String::as_str), Some("on"), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_men_need_each_others_consent() {
    let world = World::new().await;
    let api = Api::new(&world);
    let (m1, m2) = (api.user("male"), api.user("male"));
    let call = api.ring(&m1, &[&m2], "audio").await;
    api.act(&call, "accept", &m2, json!({})).await;
    let (_, body) = request_video(&api, &call, &m1).await;
    assert_eq!(video(&api, &call, &m1).await["state"], "requested", "his own request is not enough");
    let request = body["request"]["id"].as_str().expect("id").to_owned();
    let (status, body) = answer(&api, &call, &request, &m2, "accept").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "on");
    let (status, body) = revoke(&api, &call, &m1).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_women_video_needs_both_and_either_can_turn_it_off() {
    let world = World::new().await;
    let api = Api::new(&world);
    let (him, w1, w2) = (api.user("male"), api.user("female"), api.user("female"));
    let call = api.ring(&him, &[&w1, &w2], "audio").await;
    for w in [&w1, &w2] {
        api.act(&call, "accept", w, json!({})).await;
    }
    let (_, body) = request_video(&api, &call, &him).await;
    let request = body["request"]["id"].as_str().expect("id").to_owned();
    let (_, body) = answer(&api, &call, &request, &w1, "accept").await;
    assert_eq!(body["state"], "requested", "one of two consents");
    let (_, body) = answer(&api, &call, &request, &w2, "accept").await;
    assert_eq!(body["state"], "on");
    let (status, body) = revoke(&api, &call, &him).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "he is not a consenter: {body}");
    assert_eq!(body["code"], "not_a_consenter");
    let (_, token) = api.act(&call, "token", &him, json!({})).await;
    assert_eq!(sources_of(&world, &token["join"]), vec!["microphone"], "join tokens never carry the camera");
    let (_, body) = revoke(&api, &call, &w2).await;
    assert_eq!(body["state"], "off");
    let (_, token) = api.act(&call, "token", &w1, json!({})).await;
    assert_eq!(sources_of(&world, &token["join"]), vec!["microphone"], "off for everybody");
}
