//! The consent promise against a modified client: livekit-client in
//! Chromium with its internals patched (tests/e2e/browser.py), against her
//! honest web page and, in groups, a third participant's honest Python
//! client. What the browsers saw is asserted there (decoded frames, not only
//! LiveKit's lists); what callgate recorded is asserted here.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, spawn_app};
use crate::web::in_browsers;

async fn admin_ledger(app: &TestApp, call: &str) -> Vec<Value> {
    let admin = app.user_with_roles("male", &["admin"]);
    let (status, body) = app.get(&format!("/api/v1/calls/{call}/consent"), &admin).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["entries"].as_array().expect("entries").clone()
}

/// The call's state and end reason, as stored.
async fn call_state(app: &TestApp, call: &str) -> (String, Option<String>) {
    sqlx::query_as("select state, end_reason from calls where id = $1::uuid")
        .bind(call)
        .fetch_one(&app.state.db)
        .await
        .expect("the call")
}

/// The status of the participant whose user id starts with `prefix`.
async fn status_of(app: &TestApp, call: &str, prefix: &str) -> String {
    sqlx::query_scalar(
        "select status from call_participants where call_id = $1::uuid and user_id like $2 || '%'",
    )
    .bind(call)
    .bind(prefix)
    .fetch_one(&app.state.db)
    .await
    .expect("the participant")
}

fn violations_by(ledger: &[Value], user: &str) -> Vec<Value> {
    ledger.iter().filter(|e| e["kind"] == "violation" && e["actor"] == user).cloned().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canvas_video_published_under_an_audio_declaration_reaches_nobody_and_puts_him_out() {
    let app = spawn_app().await;
    let results = in_browsers("disguised", app.address.clone()).await;
    let result = results.first().expect("a RESULT");
    let (call, him) = (result["call"].as_str().expect("call"), result["him"].as_str().expect("him"));

    let ledger = admin_ledger(&app, call).await;
    let violations = violations_by(&ledger, him);
    assert_eq!(violations.len(), 1, "the violation is in the ledger: {ledger:?}");
    assert_eq!(call_state(&app, call).await, ("ended".into(), Some("violation".into())));
    assert_eq!(status_of(&app, call, him).await, "removed");
    let reason: String = sqlx::query_scalar(
        "select data->>'reason' from call_events where call_id = $1::uuid and type = 'participant.removed'",
    )
    .bind(call)
    .fetch_one(&app.state.db)
    .await
    .expect("the removal in the timeline");
    assert_eq!(reason, "video_under_another_label");
    let (kind, declared): (String, String) = sqlx::query_as(
        "select detail->>'kind', detail->>'declared' from consent_ledger \
         where call_id = $1::uuid and kind = 'violation'",
    )
    .bind(call)
    .fetch_one(&app.state.db)
    .await
    .expect("the violation's detail");
    assert_eq!((kind.as_str(), declared.as_str()), ("video", "audio"), "judged by its media");
    // LiveKit keeps no live video of his (the call ended; its room goes with it).
    let people =
        crate::helpers::livekit_rooms().list_participants(&app.room_name(call)).await.unwrap_or_default();
    assert!(!people.iter().any(|p| p.identity == him), "he is out of the room: {people:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_livekit_refreshed_while_video_was_on_plays_nothing_after_her_revoke() {
    let app = spawn_app().await;
    let results = in_browsers("stale_camera", app.address.clone()).await;
    let result = results.first().expect("a RESULT");
    let (call, him) = (result["call"].as_str().expect("call"), result["him"].as_str().expect("him"));
    let taken = result["taken"].as_u64().expect("taken");
    eprintln!("LiveKit took his camera {taken} times: {}", result["rounds"]);

    // Each camera LiveKit took is a violation, once its webhook is handled; a
    // second one puts him out. (When callgate's withdrawal on his join wins
    // the race, LiveKit refuses the camera and there is nothing to count.)
    let ledger = admin_ledger(&app, call).await;
    let violations = violations_by(&ledger, him).len() as u64;
    assert!(violations <= taken, "no violation without a camera: {ledger:?}");
    let status = status_of(&app, call, him).await;
    if violations >= 2 {
        assert_eq!(status, "removed", "a second camera while video is off puts him out");
    } else {
        assert_ne!(status, "removed", "one violation does not put him out");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_refreshed_token_reused_after_leaving_or_removal_receives_nothing_and_is_put_out() {
    let app = spawn_app().await;
    let results = in_browsers("stale_rejoin", app.address.clone()).await;
    let result = results.first().expect("a RESULT");
    for (case, call, status) in [("left", "left_call", "left"), ("removed", "removed_call", "removed")] {
        let seen = &result[case];
        match seen["outAfterMs"].as_f64() {
            Some(ms) => eprintln!("{case}: the stale connection was put out {ms:.0} ms after it connected"),
            None => eprintln!("{case}: the stale connection was put out before it connected: {seen}"),
        }
        let call = result[call].as_str().expect("call");
        assert_eq!(status_of(&app, call, "he-").await, status, "{case}");
    }
}
