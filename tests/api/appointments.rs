//! Appointments' meetings on the real stack: their rooms in LiveKit, the
//! waiting room and media. Booking itself (who may, what is refused,
//! idempotency, rescheduling, listing) is in the fast tier,
//! tests/fast/booking.rs; what a guest may not skip, who is busy and the
//! no-show across a restart are in tests/fast/appointments.rs.

use chrono::{Duration, SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::consent::{participants, turn_video_on};
use crate::helpers::events::EventStream;
use crate::helpers::lk_client::LkClient;
use crate::helpers::{TestApp, TestUser, eventually, room_exists, spawn_app, spawn_app_configured};

fn reference() -> String {
    format!("appt-{}", uuid::Uuid::new_v4().simple())
}

fn soon(seconds: i64) -> String {
    (Utc::now() + Duration::seconds(seconds)).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Books `host` and `guest` (audio or video) from `starts` to `ends`
/// seconds from now; returns its id.
async fn book_for(
    app: &TestApp,
    host: &TestUser,
    guest: &TestUser,
    kind: &str,
    starts: i64,
    ends: i64,
) -> String {
    let service = app.user_with_roles("other", &["service"]);
    let body = json!({
        "externalRef": reference(), "type": kind, "startsAt": soon(starts), "endsAt": soon(ends),
        "hosts": [host.id], "guests": [guest.id],
    });
    let (status, booked) = app.post("/api/v1/appointments", &service, body).await;
    assert_eq!(status, StatusCode::CREATED, "{booked}");
    booked["id"].as_str().expect("id").to_owned()
}

async fn appointment(app: &TestApp, id: &str, user: &TestUser) -> Value {
    let (status, body) = app.get(&format!("/api/v1/appointments/{id}"), user).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn wait_for_state(app: &TestApp, id: &str, user: &TestUser, state: &str) -> Value {
    let within = std::time::Duration::from_secs(20);
    let at = std::time::Instant::now();
    loop {
        let body = appointment(app, id, user).await;
        if body["state"] == state {
            return body;
        }
        assert!(at.elapsed() < within, "not {state} within {within:?}: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn join(app: &TestApp, id: &str, user: &TestUser) -> (StatusCode, Value) {
    app.post(&format!("/api/v1/appointments/{id}/join"), user, json!({})).await
}

async fn joined(app: &TestApp, id: &str, user: &TestUser) -> Value {
    let (status, body) = join(app, id, user).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn connect(body: &Value) -> LkClient {
    let url = body["join"]["url"].as_str().expect("url");
    LkClient::connect(url, body["join"]["token"].as_str().expect("token")).await.expect("in the room")
}

/// The host's client receives the guest's audio within 20 s.
async fn hears(host: &mut LkClient, guest: &TestUser) {
    let mut frames = 0;
    for _ in 0..100 {
        frames = host.received_frames(guest.id.as_str(), "microphone").await.expect("alive");
        if frames > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(frames > 0, "the host receives the guest's audio");
}

fn room_of(app: &TestApp, joined: &Value) -> String {
    app.room_name(joined["call"]["id"].as_str().expect("call id"))
}

#[tokio::test]
async fn no_room_exists_before_it_opens_one_does_once_it_opens_and_it_is_gone_after_it_ends() {
    let app = spawn_app_configured(|c| c.appointments.early_join = std::time::Duration::from_secs(3)).await;
    let (host, guest) = (app.user("female"), app.user("male"));
    // It opens 3 s before it starts, 12 s from now.
    let id = book_for(&app, &host, &guest, "audio", 15, 60).await;
    let calls: i64 = sqlx::query_scalar("select count(*) from calls where appointment_id = $1")
        .bind(uuid::Uuid::parse_str(&id).expect("uuid"))
        .fetch_one(&app.state.db)
        .await
        .expect("counted");
    assert_eq!(calls, 0, "no call, so no room, before it opens");
    let (status, early) = join(&app, &id, &guest).await;
    assert_eq!(status, StatusCode::CONFLICT, "{early}");
    assert_eq!(early["code"], "appointment_not_open");
    assert_eq!(early["opensAt"], appointment(&app, &id, &host).await["opensAt"], "it says when it opens");

    wait_for_state(&app, &id, &host, "open").await;
    let entered = joined(&app, &id, &host).await;
    let room = room_of(&app, &entered);
    assert!(room_exists(&room).await, "its room exists once it opens");

    let (status, body) = app.post(&format!("/api/v1/appointments/{id}/end"), &host, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["state"].as_str(), body["outcome"].as_str()), (Some("ended"), Some("cancelled")));
    eventually(std::time::Duration::from_secs(10), "its room is gone", || {
        let room = room.clone();
        async move { !room_exists(&room).await }
    })
    .await;
}

#[tokio::test]
async fn the_guest_who_comes_first_waits_outside_the_meeting_until_the_host_admits_them_then_is_heard() {
    let app = spawn_app().await;
    let (host, guest) = (app.user("female"), app.user("male"));
    let id = book_for(&app, &host, &guest, "audio", 30, 600).await;
    let mut host_events = EventStream::connect(&app, &host).await;
    let mut guest_events = EventStream::connect(&app, &guest).await;

    let waiting = joined(&app, &id, &guest).await;
    assert_eq!(waiting["waiting"], true, "{waiting}");
    assert!(waiting.get("join").is_none(), "no token for the room while waiting: {waiting}");
    let event = host_events
        .wait_for(std::time::Duration::from_secs(10), "appointment.waiting", |e| {
            e["type"] == "appointment.waiting"
        })
        .await;
    assert_eq!(event["data"]["userId"], guest.id.as_str());
    assert!(event.to_string().find("\"male\"").is_none(), "no gender in the event: {event}");

    let entered = joined(&app, &id, &host).await;
    assert_eq!(entered["waiting"], false, "a host never waits");
    let mut host_client = connect(&entered).await;
    host_client.publish_audio().await.expect("the host speaks");
    // Nothing of the meeting reached the waiting guest: he is not in the room.
    let room = room_of(&app, &entered);
    assert!(!participants(&room).await.iter().any(|p| p.identity == guest.id.as_str()));
    let (status, admitted) =
        app.post(&format!("/api/v1/appointments/{id}/admit"), &host, json!({"userId": guest.id})).await;
    assert_eq!(status, StatusCode::OK, "{admitted}");
    guest_events
        .wait_for(std::time::Duration::from_secs(10), "appointment.admitted", |e| {
            e["type"] == "appointment.admitted"
        })
        .await;
    let inside = joined(&app, &id, &guest).await;
    assert_eq!(inside["waiting"], false, "{inside}");
    let mut guest_client = connect(&inside).await;
    guest_client.publish_audio().await.expect("admitted, the guest publishes audio");
    hears(&mut host_client, &guest).await;
    wait_for_state(&app, &id, &host, "active").await;
}

#[tokio::test]
async fn one_who_comes_and_goes_before_they_meet_neither_closes_the_room_nor_ends_the_appointment() {
    let app = spawn_app().await;
    let (host, guest) = (app.user("female"), app.user("male"));
    let id = book_for(&app, &host, &guest, "audio", 30, 600).await;
    let waiting = joined(&app, &id, &guest).await;
    assert_eq!(waiting["waiting"], true, "{waiting}");

    // The host comes into the room and leaves it before admitting anyone:
    // LiveKit's room is empty again (a room's default departure timeout is
    // 20 s; an appointment's room is held until its no-show).
    let entered = joined(&app, &id, &host).await;
    let room = room_of(&app, &entered);
    let client = connect(&entered).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    client.disconnect().await.expect("the host leaves the room");
    tokio::time::sleep(std::time::Duration::from_secs(25)).await;

    assert!(room_exists(&room).await, "its room is still there 25 s after it emptied");
    let open = appointment(&app, &id, &host).await;
    assert_eq!(open["state"], "open", "not ended by a coming and going: {open}");
    // They still meet: the host is back, admits the guest, and hears him.
    let back = joined(&app, &id, &host).await;
    assert_eq!(room_of(&app, &back), room, "the same room");
    let mut host_client = connect(&back).await;
    let (status, admitted) =
        app.post(&format!("/api/v1/appointments/{id}/admit"), &host, json!({"userId": guest.id})).await;
    assert_eq!(status, StatusCode::OK, "{admitted}");
    let inside = joined(&app, &id, &guest).await;
    let mut guest_client = connect(&inside).await;
    guest_client.publish_audio().await.expect("the guest speaks");
    hears(&mut host_client, &guest).await;
    wait_for_state(&app, &id, &host, "active").await;
}

#[tokio::test]
async fn a_guests_screen_share_is_refused_and_the_hosts_succeeds_once_video_is_on() {
    let app = spawn_app_configured(|c| c.appointments.auto_admit = true).await;
    let (host, guest) = (app.user("male"), app.user("female"));
    let id = book_for(&app, &host, &guest, "video", 30, 600).await;
    let entered = joined(&app, &id, &host).await;
    let mut host_client = connect(&entered).await;
    let admitted = joined(&app, &id, &guest).await;
    assert_eq!(admitted["waiting"], false, "APPOINTMENT_AUTO_ADMIT: a host is there");
    let mut guest_client = connect(&admitted).await;
    let call = entered["call"]["id"].as_str().expect("call").to_owned();
    wait_for_state(&app, &id, &host, "active").await;
    turn_video_on(&app, &call, &host, &guest).await;

    let theirs = guest_client.publish_screen_share_expecting_refusal().await.expect("alive");
    assert!(theirs.is_err(), "a guest may not share their screen: {theirs:?}");
    let mut shared = Err(String::new());
    for _ in 0..3 {
        shared = host_client.publish_screen_share().await.expect("alive");
        if shared.is_ok() {
            break;
        }
    }
    assert!(shared.is_ok(), "the host shares their screen once video is on: {shared:?}");
}
