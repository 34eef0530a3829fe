//! A call's course through the API in-process: declining, cancelling,
//! leaving a group, busy callers, history pages and calls booked ahead.
//! LiveKit is `FakeRooms`: its rooms are checked there. What only a real
//! SFU proves (tokens, media, rooms LiveKit closes) stays in
//! tests/api/calls.rs.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::http::{Api as TestApp, Caller as TestUser};
use crate::support::World;

async fn start(app: &TestApp, caller: &TestUser, callee: &TestUser) -> (StatusCode, Value) {
    app.post("/api/v1/calls", caller, json!({"participantIds": [callee.id], "type": "audio"})).await
}

fn has_room(world: &World, call: &str) -> bool {
    let id = callgate::domain::CallId(uuid::Uuid::parse_str(call).expect("a call id"));
    world.rooms.has_room(&world.room_of(id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declining_tears_down_the_room_with_outcome_declined() {
    let world = World::new().await;
    let app = TestApp::new(&world);
    let (alice, bob) = (app.user("female"), app.user("male"));
    let call = app.ring(&alice, &[&bob], "audio").await;
    let (status, body) = app.act(&call, "decline", &bob, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["call"]["state"], "ended");
    assert_eq!(body["call"]["outcome"], "declined");
    assert!(!has_room(&world, &call), "the room is gone");
    // Both are free again.
    let (status, _) = start(&app, &bob, &alice).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_can_cancel_a_ringing_call_but_the_callee_cannot() {
    let world = World::new().await;
    let app = TestApp::new(&world);
    let (alice, bob) = (app.user("female"), app.user("male"));
    let call = app.ring(&alice, &[&bob], "audio").await;
    let (status, body) = app.act(&call, "end", &bob, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "not_initiator");
    let (status, body) = app.act(&call, "end", &alice, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["call"]["outcome"], "cancelled");
    assert!(!has_room(&world, &call), "the room is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_already_in_a_call_cannot_start_another() {
    let world = World::new().await;
    let app = TestApp::new(&world);
    let (alice, bob, carol) = (app.user("female"), app.user("male"), app.user("female"));
    app.ring(&alice, &[&bob], "audio").await;
    let (status, body) = start(&app, &alice, &carol).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["code"], "caller_busy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_group_leaving_leaves_and_the_call_ends_below_two() {
    let world = World::new().await;
    let app = TestApp::new(&world);
    let (a, b, c) = (app.user("female"), app.user("male"), app.user("male"));
    let call = app.ring(&a, &[&b, &c], "audio").await;
    for u in [&b, &c] {
        let (status, body) = app.act(&call, "accept", u, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = app.act(&call, "leave", &b, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["call"]["state"], "connecting");
    let left = body["call"]["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .find(|p| p["userId"] == b.id.as_str())
        .cloned();
    assert_eq!(left.expect("b")["status"], "left");
    let (status, body) = app.act(&call, "leave", &c, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["call"]["state"], "ended");
    assert!(!has_room(&world, &call), "the room is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_call_rings_on_when_one_invitee_declines() {
    let world = World::new().await;
    let app = TestApp::new(&world);
    let (a, b, c) = (app.user("female"), app.user("male"), app.user("male"));
    let call = app.ring(&a, &[&b, &c], "audio").await;
    let (_, body) = app.act(&call, "decline", &b, json!({})).await;
    assert_eq!(body["call"]["state"], "ringing");
    let (_, body) = app.act(&call, "decline", &c, json!({})).await;
    assert_eq!(body["call"]["state"], "ended");
    assert_eq!(body["call"]["outcome"], "declined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_newest_first_and_paginated_by_cursor() {
    let world = World::new().await;
    let app = TestApp::new(&world);
    let (alice, bob) = (app.user("female"), app.user("male"));
    let mut ids = Vec::new();
    for _ in 0..3 {
        let call = app.ring(&alice, &[&bob], "audio").await;
        app.act(&call, "end", &alice, json!({})).await;
        ids.push(call);
    }
    let (status, page1) = app.get("/api/v1/calls/history?limit=2", &bob).await;
    assert_eq!(status, StatusCode::OK);
    let first: Vec<&str> =
        page1["calls"].as_array().expect("calls").iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(first, vec![ids[2].as_str(), ids[1].as_str()]);
    let cursor = page1["nextCursor"].as_str().expect("a next cursor");
    let (_, page2) = app.get(&format!("/api/v1/calls/history?limit=2&cursor={cursor}"), &bob).await;
    let second: Vec<&str> =
        page2["calls"].as_array().expect("calls").iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(second, vec![ids[0].as_str()]);
    assert!(page2.get("nextCursor").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_booked_ahead_is_an_appointment_and_scheduled_true_is_refused_naming_it() {
    let world = World::configured(|c| c.scheduler_roles = vec!["clinician".into()]).await;
    let app = TestApp::new(&world);
    let (doctor, patient) = (app.user_with_roles("female", &["clinician"]), app.user("male"));
    let body = json!({"participantIds": [patient.id], "type": "video", "scheduled": true});
    let (status, problem) = app.post("/api/v1/calls", &doctor, body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["field"], "scheduled");
    let (_, active) = app.get("/api/v1/calls/active", &patient).await;
    assert_eq!(active["calls"], json!([]), "nobody is made busy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitee_still_ringing_cannot_end_a_connected_group_call_but_may_decline() {
    let world = World::new().await;
    let app = TestApp::new(&world);
    let (a, b, c) = (app.user("female"), app.user("male"), app.user("male"));
    let call = app.ring(&a, &[&b, &c], "audio").await;
    let (status, body) = app.act(&call, "accept", &b, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = app.act(&call, "end", &c, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "not_answered");
    assert_eq!(
        app.get(&format!("/api/v1/calls/{call}"), &a).await.1["state"],
        "connecting",
        "the call goes on for those in it"
    );

    let (status, body) = app.act(&call, "decline", &c, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["call"]["state"], "connecting");
    let (status, body) = app.act(&call, "end", &b, json!({})).await;
    assert_eq!(status, StatusCode::OK, "one who answered ends it: {body}");
    assert_eq!(body["call"]["state"], "ended");
}
