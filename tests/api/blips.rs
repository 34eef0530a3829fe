//! Blips are not hang-ups: a real client killed without leaving (its
//! connection just drops) is `reconnecting` for the call's rejoin grace;
//! back in time, nothing ends; past it, they are `left` (a 1:1 call ends).
//! A deliberate leave ends at once. A second device taking the call over
//! (the same identity joining) is no departure at all.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::consent::{call_in_room, group_in_room};
use crate::helpers::events::EventStream;
use crate::helpers::lk_client::LkClient;
use crate::helpers::{TestApp, TestUser, eventually, spawn_app, spawn_app_configured};

/// LiveKit notices a dead client by its silence: give it time.
const NOTICED: Duration = Duration::from_secs(60);

fn is(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |event| event["type"] == kind
}

fn status_of(call: &Value, user: &TestUser) -> Value {
    call["participants"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["userId"] == user.id.as_str()))
        .map(|p| p["status"].clone())
        .unwrap_or(Value::Null)
}

async fn app_with_grace(secs: u64) -> TestApp {
    spawn_app_configured(move |c| c.timeouts.rejoin_grace = Duration::from_secs(secs)).await
}

async fn rejoin_deadlines(app: &TestApp, call: &str) -> i64 {
    app.db_count("select count(*) from jobs where dedupe_key = 'deadline:rejoin:' || $1::text", call).await
}

#[tokio::test]
async fn a_killed_client_back_within_the_grace_finds_its_call_still_going() {
    let app = app_with_grace(20).await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (call, _a, b) = call_in_room(&app, &alice, &bob, "audio", json!(false)).await;
    let mut alices = EventStream::connect(&app, &alice).await;

    b.kill().await.expect("bob's client dies");
    let event = alices.wait_for(NOTICED, "participant.reconnecting", is("participant.reconnecting")).await;
    assert_eq!(event["data"]["userId"], bob.id);
    let now = app.call(&call, &alice).await;
    assert_eq!(now["state"], "active", "{now}");
    assert_eq!(status_of(&now, &bob), "reconnecting");

    // Bob's phone is back on the network: a fresh token, the same room.
    let (status, body) = app.call_action(&call, "token", &bob, json!({})).await;
    assert_eq!(status, StatusCode::OK, "a reconnecting participant gets a token: {body}");
    let url = body["join"]["url"].as_str().expect("url");
    let _back =
        LkClient::connect(url, body["join"]["token"].as_str().expect("token")).await.expect("bob rejoins");
    app.wait_for_call(&call, &alice, Duration::from_secs(15), |c| status_of(c, &bob) == "joined").await;

    // The end of the grace comes and finds nobody still away.
    eventually(Duration::from_secs(40), "the rejoin deadline fires", || async {
        rejoin_deadlines(&app, &call).await == 0
    })
    .await;
    let after = app.call(&call, &alice).await;
    assert_eq!(after["state"], "active", "{after}");
    assert_eq!(status_of(&after, &bob), "joined");
    let left = app
        .db_count("select count(*) from user_events where call_id = $1 and type = 'participant.left'", &call);
    assert_eq!(left.await, 0, "nobody was told bob left");
}

#[tokio::test]
async fn a_killed_client_not_back_within_the_grace_ends_a_one_to_one_call() {
    let app = app_with_grace(2).await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (call, _a, b) = call_in_room(&app, &alice, &bob, "audio", json!(false)).await;
    let mut alices = EventStream::connect(&app, &alice).await;

    b.kill().await.expect("bob's client dies");
    alices.wait_for(NOTICED, "participant.reconnecting", is("participant.reconnecting")).await;
    let ended = alices.wait_for(Duration::from_secs(30), "call.ended", is("call.ended")).await;
    assert_eq!(ended["callId"], call);
    assert_eq!(ended["data"]["call"]["outcome"], "completed");
    assert_eq!(ended["data"]["call"]["endReason"], "hangup");
    assert_eq!(status_of(&ended["data"]["call"], &bob), "left");
}

#[tokio::test]
async fn a_group_participant_not_back_within_the_grace_is_left_and_the_call_goes_on() {
    let app = app_with_grace(2).await;
    let (alice, bob, carol) = (app.user("female"), app.user("male"), app.user("female"));
    let (call, _a, mut clients, _) = group_in_room(&app, &alice, &[&bob, &carol]).await;
    app.wait_for_call(&call, &alice, Duration::from_secs(20), |c| {
        status_of(c, &bob) == "joined" && status_of(c, &carol) == "joined"
    })
    .await;
    let mut alices = EventStream::connect(&app, &alice).await;

    clients.pop().expect("carol's client").kill().await.expect("carol's client dies");
    let away = alices.wait_for(NOTICED, "participant.reconnecting", is("participant.reconnecting")).await;
    assert_eq!(away["data"]["userId"], carol.id);
    let gone = alices.wait_for(Duration::from_secs(30), "participant.left", is("participant.left")).await;
    assert_eq!(gone["data"]["userId"], carol.id);
    let now = app.call(&call, &alice).await;
    assert_eq!(now["state"], "active", "{now}");
    assert_eq!(status_of(&now, &carol), "left");
    assert_eq!(status_of(&now, &bob), "joined");
}

#[tokio::test]
async fn a_client_that_leaves_ends_a_one_to_one_call_at_once() {
    let app = app_with_grace(600).await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (call, _a, b) = call_in_room(&app, &alice, &bob, "audio", json!(false)).await;
    b.disconnect().await.expect("bob leaves");
    // Well before the ten-minute grace.
    app.wait_for_call(&call, &alice, Duration::from_secs(30), |c| c["state"] == "ended").await;
    let reconnecting = app
        .db_count(
            "select count(*) from user_events where call_id = $1 and type = 'participant.reconnecting'",
            &call,
        )
        .await;
    assert_eq!(reconnecting, 0);
}

#[tokio::test]
async fn a_second_device_takes_over_a_live_call_and_the_call_goes_on() {
    let app = spawn_app().await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (call, _a, mut phone) = call_in_room(&app, &alice, &bob, "audio", json!(false)).await;

    // Bob picks the call up on his laptop: a token for the same identity.
    let (status, body) = app.call_action(&call, "token", &bob, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let url = body["join"]["url"].as_str().expect("url");
    let _laptop =
        LkClient::connect(url, body["join"]["token"].as_str().expect("token")).await.expect("joins");

    // LiveKit puts the phone out (a duplicate identity); nothing ends.
    let out =
        phone.wait_for("disconnected", Duration::from_secs(30)).await.expect("the phone is disconnected");
    assert_eq!(out.str("reason"), Some("duplicate_identity"), "{out:?}");
    eventually(Duration::from_secs(20), "the phone's departure is handled", || async {
        app.db_count(
            "select count(*) from call_events where call_id = $1 and type = 'livekit.participant_left'",
            &call,
        )
        .await
            > 0
    })
    .await;
    let now = app.call(&call, &alice).await;
    assert_eq!(now["state"], "active", "{now}");
    assert_eq!(status_of(&now, &bob), "joined");
    let told = app
        .db_count(
            "select count(*) from user_events where call_id = $1 \
             and type in ('participant.left', 'participant.reconnecting', 'call.ended')",
            &call,
        )
        .await;
    assert_eq!(told, 0, "nobody was told bob left");
}
