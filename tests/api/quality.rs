//! Call quality: samples checked at the edge, summaries and scores against
//! hand-computed values, and ratings of ended calls.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, spawn_app, spawn_app_configured};

async fn answered(app: &TestApp) -> (String, TestUser, TestUser) {
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (call, _) = app.ring(&alice, &[&bob], "audio").await;
    let (status, body) = app.call_action(&call, "accept", &bob, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (call, alice, bob)
}

async fn report(app: &TestApp, call: &str, user: &TestUser, sample: Value) -> (StatusCode, Value) {
    app.post(&format!("/api/v1/calls/{call}/quality"), user, sample).await
}

async fn rate(app: &TestApp, call: &str, user: &TestUser, body: Value) -> (StatusCode, Value) {
    app.send(Method::PUT, &format!("/api/v1/calls/{call}/rating"), Some(user), Some(body)).await
}

#[tokio::test]
async fn out_of_range_values_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let (call, alice, _) = answered(&app).await;
    let good = json!({"jitterMs": 12.5, "packetLossPct": 0.4, "rttMs": 80});
    let cases = [
        ("jitterMs", json!(-1)),
        ("jitterMs", json!(10_001)),
        ("packetLossPct", json!(100.5)),
        ("rttMs", json!(60_001)),
        ("rttMs", json!("fast")),
        ("bitrateKbps", json!(-5)),
        ("fps", json!(500)),
        ("resolution", json!("big")),
        ("codec", json!("")),
        ("networkType", json!("carrier-pigeon")),
    ];
    for (field, value) in cases {
        let mut sample = good.clone();
        sample[field] = value.clone();
        let (status, body) = report(&app, &call, &alice, sample).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field} = {value}: {body}");
        assert_eq!(body["field"], field, "{body}");
    }
    let (status, body) = report(&app, &call, &alice, json!({"jitterMs": 1, "rttMs": 1})).await;
    assert_eq!((status, body["field"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!("packetLossPct")));
    let (status, body) = report(&app, &call, &alice, good).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let samples = app.db_count("select count(*) from quality_samples where call_id = $1", &call).await;
    assert_eq!(samples, 1, "only the valid sample is kept");
}

#[tokio::test]
async fn summaries_and_scores_match_a_hand_computation() {
    // Five samples from her in a row.
    let app = spawn_app_configured(|c| c.limits.quality_sample_interval = Duration::ZERO).await;
    let (call, alice, bob) = answered(&app).await;
    for (jitter, loss, rtt, bitrate) in
        [(10, 0, 100, 500), (20, 0, 120, 600), (30, 1, 140, 700), (40, 1, 160, 800), (50, 2, 180, 900)]
    {
        let sample = json!({"jitterMs": jitter, "packetLossPct": loss, "rttMs": rtt, "bitrateKbps": bitrate,
                            "fps": 30, "resolution": "640x480", "codec": "opus", "networkType": "wifi"});
        let (status, body) = report(&app, &call, &alice, sample).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) =
        report(&app, &call, &bob, json!({"jitterMs": 5, "packetLossPct": 0, "rttMs": 40})).await;
    assert_eq!(status, StatusCode::CREATED);
    // d = 40/2 + 2*5 + 10 = 40; R = 93.2 - 40/40 = 92.2; MOS = 1 + 3.227 + 0.000007*92.2*32.2*7.8 = 4.389
    assert_eq!(body["score"], json!({"mos": 4.39, "bucket": "excellent"}));

    let (status, q) = app.get(&format!("/api/v1/calls/{call}/quality"), &bob).await;
    assert_eq!(status, StatusCode::OK, "{q}");
    let people = q["participants"].as_array().expect("participants");
    let hers = people.iter().find(|p| p["userId"] == alice.id.as_str()).expect("alice's summary");
    // Five samples: p50 is the middle one; p95 sits 0.8 of the way from the 4th to the 5th.
    assert_eq!(hers["samples"], 5);
    assert_eq!(hers["jitterMs"], json!({"p50": 30.0, "p95": 48.0}));
    assert_eq!(hers["packetLossPct"], json!({"p50": 1.0, "p95": 1.8}));
    assert_eq!(hers["rttMs"], json!({"p50": 140.0, "p95": 176.0}));
    assert_eq!(hers["bitrateKbps"], json!({"p50": 700.0, "p95": 880.0}));
    // d = 70 + 60 + 10 = 140; R = 93.2 - 3.5 - 2.5 = 87.2; MOS = 1 + 3.052 + 0.000007*87.2*27.2*12.8 = 4.2645
    assert_eq!(hers["score"], json!({"mos": 4.26, "bucket": "good"}));
    let his = people.iter().find(|p| p["userId"] == bob.id.as_str()).expect("bob's summary");
    assert_eq!(his["jitterMs"], json!({"p50": 5.0, "p95": 5.0}));
    assert!(his.get("bitrateKbps").is_none(), "he sent no bitrate: {his}");

    // All six: 5 10 20 30 40 50 -> p50 25, p95 40 + 0.75*10.
    let whole = &q["call"];
    assert_eq!(whole["samples"], 6);
    assert_eq!(whole["jitterMs"], json!({"p50": 25.0, "p95": 47.5}));
    assert_eq!(whole["packetLossPct"], json!({"p50": 0.5, "p95": 1.75}));
    assert_eq!(whole["rttMs"], json!({"p50": 130.0, "p95": 175.0}));
    // d = 65 + 50 + 10 = 125; R = 93.2 - 3.125 - 1.25 = 88.825; MOS = 4.3092
    assert_eq!(whole["score"], json!({"mos": 4.31, "bucket": "excellent"}));

    let stranger = app.user("male");
    let (status, _) = app.get(&format!("/api/v1/calls/{call}/quality"), &stranger).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) =
        report(&app, &call, &stranger, json!({"jitterMs": 1, "packetLossPct": 0, "rttMs": 1})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn participants_rate_a_call_once_it_has_ended() {
    let app = spawn_app().await;
    let (call, alice, bob) = answered(&app).await;
    let (status, body) = rate(&app, &call, &alice, json!({"score": 4})).await;
    assert_eq!((status, body["code"].clone()), (StatusCode::CONFLICT, json!("call_not_ended")));
    app.call_action(&call, "end", &alice, json!({})).await;

    for bad in [json!({"score": 0}), json!({"score": 6}), json!({"score": 3.5}), json!({})] {
        let (status, body) = rate(&app, &call, &alice, bad.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_eq!(body["field"], "score", "{body}");
    }
    let (status, body) = rate(&app, &call, &alice, json!({"score": 2, "comment": "echo"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = rate(&app, &call, &alice, json!({"score": 5, "comment": "fine after all"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["rating"]["score"], 5);
    let (status, _) = rate(&app, &call, &bob, json!({"score": 3})).await;
    assert_eq!(status, StatusCode::OK);
    let ratings: Vec<(String, i16)> =
        sqlx::query_as("select user_id, score from call_ratings where call_id = $1 order by score")
            .bind(uuid::Uuid::parse_str(&call).expect("uuid"))
            .fetch_all(&app.state.db)
            .await
            .expect("ratings");
    assert_eq!(
        ratings,
        vec![(bob.id.clone(), 3), (alice.id.clone(), 5)],
        "a second rating replaces the first"
    );
    let stranger = app.user("female");
    let (status, _) = rate(&app, &call, &stranger, json!({"score": 1})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn only_those_who_answered_rate_the_call() {
    let app = spawn_app().await;
    let (alice, bob, carol) = (app.user("female"), app.user("male"), app.user("male"));
    let (call, _) = app.ring(&alice, &[&bob, &carol], "audio").await;
    app.call_action(&call, "decline", &carol, json!({})).await;
    app.call_action(&call, "accept", &bob, json!({})).await;
    app.call_action(&call, "end", &alice, json!({})).await;
    let (status, body) = rate(&app, &call, &carol, json!({"score": 1})).await;
    assert_eq!((status, body["code"].clone()), (StatusCode::FORBIDDEN, json!("did_not_take_part")));
}

/// Status, code and Retry-After (seconds) of a sample.
async fn report_limited(app: &TestApp, call: &str, user: &TestUser) -> (StatusCode, Value, Option<u64>) {
    let sample = json!({"jitterMs": 5, "packetLossPct": 0, "rttMs": 40});
    let response = app
        .http
        .post(app.url(&format!("/api/v1/calls/{call}/quality")))
        .bearer_auth(&user.token)
        .json(&sample)
        .send()
        .await
        .expect("sent");
    let retry_after =
        response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["code"].clone(), retry_after)
}

#[tokio::test]
async fn a_participant_reports_at_most_one_sample_per_interval() {
    let app = spawn_app_configured(|c| c.limits.quality_sample_interval = Duration::from_secs(600)).await;
    let (call, alice, bob) = answered(&app).await;
    let (status, ..) = report_limited(&app, &call, &alice).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, code, retry_after) = report_limited(&app, &call, &alice).await;
    assert_eq!((status, code), (StatusCode::TOO_MANY_REQUESTS, json!("rate_limited")));
    assert!(retry_after.is_some_and(|s| (1..=600).contains(&s)), "Retry-After: {retry_after:?}");
    let (status, ..) = report_limited(&app, &call, &bob).await;
    assert_eq!(status, StatusCode::CREATED, "the limit is per participant");
    let samples = app.db_count("select count(*) from quality_samples where call_id = $1", &call).await;
    assert_eq!(samples, 2);
}

#[tokio::test]
async fn a_call_keeps_at_most_its_maximum_of_samples() {
    let app = spawn_app_configured(|c| {
        c.limits.quality_sample_interval = Duration::ZERO;
        c.limits.quality_max_samples_per_call = 3;
    })
    .await;
    let (call, alice, bob) = answered(&app).await;
    for user in [&alice, &bob, &alice] {
        let (status, ..) = report_limited(&app, &call, user).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    for user in [&alice, &bob] {
        let (status, code, retry_after) = report_limited(&app, &call, user).await;
        assert_eq!((status, code), (StatusCode::TOO_MANY_REQUESTS, json!("rate_limited")));
        assert!(retry_after.is_some(), "with Retry-After");
    }
    let samples = app.db_count("select count(*) from quality_samples where call_id = $1", &call).await;
    assert_eq!(samples, 3);
    let (other, carol, _) = answered(&app).await;
    let (status, ..) = report_limited(&app, &other, &carol).await;
    assert_eq!(status, StatusCode::CREATED, "another call has its own maximum");
}
