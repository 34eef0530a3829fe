//! Booking appointments: who may, what is refused, idempotency, and that a
//! booking makes nobody busy.

use chrono::{Duration, SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::app_webhooks::{Receiver, configure_hook, new_secret};
use crate::consent::{participants, turn_video_on};
use crate::helpers::events::EventStream;
use crate::helpers::lk_client::LkClient;
use crate::helpers::{
    TestApp, TestUser, base_config, eventually, isolated_database, room_exists, spawn_app,
    spawn_app_configured, spawn_on,
};

fn later(minutes: i64) -> String {
    (Utc::now() + Duration::minutes(minutes)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn booking(reference: &str, host: &TestUser, guest: &TestUser) -> Value {
    json!({
        "externalRef": reference,
        "type": "video",
        "startsAt": later(60),
        "endsAt": later(90),
        "hosts": [host.id],
        "guests": [guest.id],
        "title": "Follow-up",
    })
}

async fn app_with_practitioners() -> TestApp {
    spawn_app_configured(|c| c.scheduler_roles = vec!["practitioner".into()]).await
}

fn reference() -> String {
    format!("appt-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn the_host_application_and_a_practitioner_book_and_a_plain_user_may_not() {
    let app = app_with_practitioners().await;
    let service = app.user_with_roles("other", &["service"]);
    let practitioner = app.user_with_roles("female", &["practitioner"]);
    let (patient, someone) = (app.user("male"), app.user("female"));

    let (status, body) =
        app.post("/api/v1/appointments", &service, booking(&reference(), &practitioner, &patient)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["state"], "scheduled");
    assert_eq!(body["hosts"], json!([practitioner.id]));
    assert_eq!(body["guests"], json!([patient.id]));
    let (status, body) =
        app.post("/api/v1/appointments", &practitioner, booking(&reference(), &practitioner, &patient)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) =
        app.post("/api/v1/appointments", &someone, booking(&reference(), &practitioner, &patient)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "scheduling_not_allowed");
}

/// What a case does to a good booking.
type Spoil = Box<dyn Fn(&mut Value)>;

#[tokio::test]
async fn a_bad_booking_is_refused_naming_its_field_and_writes_nothing() {
    let app = app_with_practitioners().await;
    let service = app.user_with_roles("other", &["service"]);
    let (host, guest) = (app.user("female"), app.user("male"));
    let cases: Vec<(&str, Spoil)> = vec![
        ("externalRef", Box::new(|b| b["externalRef"] = json!(""))),
        ("externalRef", Box::new(|b| b["externalRef"] = json!("x".repeat(129)))),
        ("startsAt", Box::new(|b| b["startsAt"] = json!(later(-5)))),
        ("endsAt", Box::new(|b| b["endsAt"] = json!(later(30)))),
        ("endsAt", Box::new(|b| b["endsAt"] = json!(later(60 + 5 * 60)))),
        ("guests", Box::new(|b| b["guests"] = json!([]))),
        ("hosts", Box::new(|b| b["hosts"] = json!([]))),
        ("title", Box::new(|b| b["title"] = json!("t".repeat(201)))),
    ];
    for (field, spoil) in cases {
        let reference = reference();
        let mut body = booking(&reference, &host, &guest);
        spoil(&mut body);
        let (status, answer) = app.post("/api/v1/appointments", &service, body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} -> {answer}");
        assert_eq!(answer["field"], field, "{body} -> {answer}");
        let written = count(&app, body["externalRef"].as_str().unwrap_or_default()).await;
        assert_eq!(written, 0, "a refused booking writes nothing");
    }
}

async fn count(app: &TestApp, reference: &str) -> i64 {
    sqlx::query_scalar("select count(*) from appointments where external_ref = $1")
        .bind(reference)
        .fetch_one(&app.state.db)
        .await
        .expect("counted")
}

#[tokio::test]
async fn the_same_booking_twice_is_the_same_appointment_and_a_different_one_is_a_conflict() {
    let app = app_with_practitioners().await;
    let service = app.user_with_roles("other", &["service"]);
    let (host, guest) = (app.user("female"), app.user("male"));
    let reference = reference();
    let body = booking(&reference, &host, &guest);
    let (status, first) = app.post("/api/v1/appointments", &service, body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, again) = app.post("/api/v1/appointments", &service, body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], first["id"]);
    let mut other = body.clone();
    other["endsAt"] = json!(later(100));
    let (status, answer) = app.post("/api/v1/appointments", &service, other).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["code"], "appointment_differs");
    let id = first["id"].as_str().expect("id");
    let (status, by_ref) = app.get(&format!("/api/v1/appointments/by-ref/{reference}"), &host).await;
    assert_eq!((status, by_ref["id"].as_str()), (StatusCode::OK, Some(id)));
    let stranger = app.user("female");
    let (status, _) = app.get(&format!("/api/v1/appointments/{id}"), &stranger).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a stranger is told it does not exist");
    let (status, _) = app.get(&format!("/api/v1/appointments/by-ref/{reference}"), &stranger).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nor by its reference");
    let (status, _) = app.post(&format!("/api/v1/appointments/{id}/cancel"), &stranger, json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "and cannot cancel it");
}

#[tokio::test]
async fn fifty_identical_bookings_at_once_make_one_appointment() {
    let app = app_with_practitioners().await;
    let service = app.user_with_roles("other", &["service"]);
    let (host, guest) = (app.user("female"), app.user("male"));
    let reference = reference();
    let body = booking(&reference, &host, &guest);
    let answers =
        futures::future::join_all((0..50).map(|_| app.post("/api/v1/appointments", &service, body.clone())))
            .await;
    let ids: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|(status, answer)| {
            assert!(matches!(*status, StatusCode::CREATED | StatusCode::OK), "{status} {answer}");
            answer["id"].as_str().expect("id").to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "one appointment: {ids:?}");
    let created = answers.iter().filter(|(status, _)| *status == StatusCode::CREATED).count();
    assert_eq!(created, 1);
    assert_eq!(count(&app, &reference).await, 1);
}

#[tokio::test]
async fn a_patient_with_three_future_appointments_can_still_call_and_be_called() {
    let app = app_with_practitioners().await;
    let service = app.user_with_roles("other", &["service"]);
    let (practitioner, patient, friend) = (app.user("female"), app.user("female"), app.user("male"));
    for _ in 0..3 {
        let (status, body) =
            app.post("/api/v1/appointments", &service, booking(&reference(), &practitioner, &patient)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = app.start_call(&friend, &[&patient], "audio").await;
    assert_eq!(status, StatusCode::CREATED, "she is not busy: {body}");
    let call = body["call"]["id"].as_str().expect("id").to_owned();
    let (status, body) = app.call_action(&call, "end", &friend, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.start_call(&patient, &[&friend], "audio").await;
    assert_eq!(status, StatusCode::CREATED, "she can call: {body}");
}

#[tokio::test]
async fn an_appointment_is_cancelled_by_its_host_and_not_by_its_guest() {
    let app = app_with_practitioners().await;
    let service = app.user_with_roles("other", &["service"]);
    let (host, guest) = (app.user("female"), app.user("male"));
    let (_, booked) = app.post("/api/v1/appointments", &service, booking(&reference(), &host, &guest)).await;
    let id = booked["id"].as_str().expect("id");
    let (status, body) = app.post(&format!("/api/v1/appointments/{id}/cancel"), &guest, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = app.post(&format!("/api/v1/appointments/{id}/cancel"), &host, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["state"].as_str(), body["outcome"].as_str()), (Some("ended"), Some("cancelled")));
    let (status, body) = app.post(&format!("/api/v1/appointments/{id}/cancel"), &host, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "appointment_ended");
}

// ---------------------------------------------------------------- the meeting

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
    let mut frames = 0;
    for _ in 0..100 {
        frames = host_client.received_frames(guest.id.as_str(), "microphone").await.expect("alive");
        if frames > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(frames > 0, "the host receives the guest's audio");
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

#[tokio::test]
async fn a_guest_cannot_skip_the_waiting_room_through_the_call_routes() {
    let app = spawn_app().await;
    let (host, guest) = (app.user("female"), app.user("male"));
    let id = book_for(&app, &host, &guest, "audio", 30, 600).await;
    let entered = joined(&app, &id, &host).await;
    let call = entered["call"]["id"].as_str().expect("call").to_owned();
    for action in ["accept", "token"] {
        let (status, body) = app.call_action(&call, action, &guest, json!({})).await;
        assert_eq!(status, StatusCode::CONFLICT, "{action}: {body}");
        assert_eq!(body["code"], "join_through_appointment", "{action}: {body}");
    }
    let waiting = joined(&app, &id, &guest).await;
    let (status, again) = app.call_action(&call, "token", &guest, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "no token for the room while waiting: {again}");
    assert_eq!(again["code"], "in_waiting_room", "{again}");
    assert_eq!(waiting["waiting"], true);
    let (status, body) =
        app.post(&format!("/api/v1/appointments/{id}/admit"), &guest, json!({"userId": guest.id})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a guest admits nobody: {body}");
    assert_eq!(body["code"], "not_a_host");
    let stranger = app.user("female");
    for action in ["join", "end"] {
        let (status, body) =
            app.post(&format!("/api/v1/appointments/{id}/{action}"), &stranger, json!({})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "a stranger is told it does not exist: {action} {body}");
    }
    let (status, _) =
        app.post(&format!("/api/v1/appointments/{id}/admit"), &stranger, json!({"userId": guest.id})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn one_in_an_appointment_is_busy_for_calls_and_one_who_is_not_there_yet_is_not() {
    let app = spawn_app().await;
    let (host, guest, friend) = (app.user("female"), app.user("male"), app.user("male"));
    let id = book_for(&app, &host, &guest, "audio", 30, 600).await;
    joined(&app, &id, &host).await;
    let (status, body) = app.start_call(&friend, &[&host], "audio").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "callee_busy");
    let (status, body) = app.start_call(&friend, &[&guest], "audio").await;
    assert_eq!(status, StatusCode::CREATED, "the guest has not joined: not busy: {body}");
    let (status, body) = join(&app, &id, &guest).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "caller_busy", "busy in a call, they cannot join");
}

#[tokio::test]
async fn nobody_comes_and_it_ends_a_no_show_once_with_its_webhook_across_a_restart() {
    let receiver = Receiver::start(&[]).await;
    let secret = new_secret();
    let database = isolated_database(&base_config()).await;
    let grace = std::time::Duration::from_secs(2);
    fn configure(
        receiver: &Receiver,
        secret: &str,
        grace: std::time::Duration,
    ) -> impl FnOnce(&mut callgate::config::Config) + Send + 'static {
        let hook = configure_hook(&receiver.url, secret);
        move |c| {
            hook(c);
            c.appointments.grace = grace;
        }
    }
    let first = spawn_on(&database, configure(&receiver, &secret, grace)).await;
    let (host, guest) = (first.user("female"), first.user("male"));
    let service = first.user_with_roles("other", &["service"]);
    let body = json!({
        "externalRef": reference(), "type": "audio", "startsAt": soon(2), "endsAt": soon(4),
        "hosts": [host.id], "guests": [guest.id],
    });
    let (status, booked) = first.post("/api/v1/appointments", &service, body).await;
    assert_eq!(status, StatusCode::CREATED, "{booked}");
    let id = booked["id"].as_str().expect("id").to_owned();
    wait_for_state(&first, &id, &host, "open").await;
    // Stopped between its opening and its no-show deadline.
    drop(first);
    let second = spawn_on(&database, configure(&receiver, &secret, grace)).await;
    let ended = wait_for_state(&second, &id, &host, "ended").await;
    assert_eq!(ended["outcome"], "no_show", "{ended}");
    let deliveries = receiver.wait_for("appointment.no_show", 1, std::time::Duration::from_secs(20)).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let ids: std::collections::BTreeSet<String> =
        receiver.of("appointment.no_show").iter().map(|d| d.id.clone()).collect();
    assert_eq!(ids.len(), 1, "one no-show, not repeated: {deliveries:?}");
    assert_eq!(deliveries[0].body["data"]["appointment"]["id"], id.as_str());
    let (status, body) = join(&second, &id, &guest).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("appointment_ended")), "{body}");
}

#[tokio::test]
async fn a_cancelled_appointment_cannot_be_joined() {
    let app = spawn_app().await;
    let (host, guest) = (app.user("female"), app.user("male"));
    let id = book_for(&app, &host, &guest, "audio", 30, 600).await;
    let (status, body) = app.post(&format!("/api/v1/appointments/{id}/cancel"), &host, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = join(&app, &id, &guest).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("appointment_ended")), "{body}");
}

#[tokio::test]
async fn a_reschedule_moves_the_window_and_a_join_outside_it_says_when_it_opens() {
    let app = app_with_practitioners().await;
    let (host, guest) = (app.user("female"), app.user("male"));
    let id = book_for(&app, &host, &guest, "audio", 3600, 5400).await;
    let path = format!("/api/v1/appointments/{id}");
    let moved = json!({"startsAt": later(180), "endsAt": later(210)});
    let (status, body) = app.send(reqwest::Method::PATCH, &path, Some(&guest), Some(moved.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a guest moves nothing: {body}");
    let (status, body) = app.send(reqwest::Method::PATCH, &path, Some(&host), Some(moved.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["startsAt"], moved["startsAt"]);
    let time =
        |field: &str| chrono::DateTime::parse_from_rfc3339(body[field].as_str().expect(field)).expect("time");
    assert_eq!(
        (time("startsAt") - time("opensAt")).num_seconds(),
        600,
        "opens APPOINTMENT_EARLY_JOIN before: {body}"
    );
    let (status, body) = join(&app, &id, &guest).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("appointment_not_open")),
        "{body}"
    );
    assert_eq!(body["opensAt"].as_str().map(|s| !s.is_empty()), Some(true), "{body}");
    let (status, body) =
        app.send(reqwest::Method::PATCH, &path, Some(&host), Some(json!({"startsAt": later(-1)}))).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("startsAt")),
        "{body}"
    );
}

#[tokio::test]
async fn my_appointments_are_listed_soonest_first_and_nobody_elses() {
    let app = spawn_app().await;
    let (host, guest, stranger) = (app.user("female"), app.user("male"), app.user("male"));
    let late = book_for(&app, &host, &guest, "audio", 7200, 9000).await;
    let early = book_for(&app, &host, &guest, "audio", 3600, 5400).await;
    let (status, body) = app.get("/api/v1/appointments?limit=1", &guest).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["appointments"][0]["id"], early.as_str());
    let cursor = body["nextCursor"].as_str().expect("a next page").to_owned();
    let (_, body) = app.get(&format!("/api/v1/appointments?limit=1&cursor={cursor}"), &guest).await;
    assert_eq!(body["appointments"][0]["id"], late.as_str());
    let (_, body) = app.get("/api/v1/appointments", &stranger).await;
    assert_eq!(body["appointments"], json!([]));
    let (status, body) = app.get("/api/v1/appointments?from=yesterday", &guest).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("from")), "{body}");
}

#[tokio::test]
async fn an_external_ref_is_its_bookers_and_no_other_booker_can_take_probe_move_or_cancel_it() {
    let app = app_with_practitioners().await;
    let service = app.user_with_roles("other", &["service"]);
    let practitioner = |gender| app.user_with_roles(gender, &["practitioner"]);
    let (dr_a, dr_b, dr_c) = (practitioner("female"), practitioner("male"), practitioner("female"));
    let patient = app.user("male");
    let reference = reference();
    let hers = booking(&reference, &dr_a, &patient);
    let (status, mine) = app.post("/api/v1/appointments", &dr_a, hers.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{mine}");
    let id = mine["id"].as_str().expect("id").to_owned();

    // Another scheduler booking the very same thing books an appointment of his own.
    let (status, his) = app.post("/api/v1/appointments", &dr_b, hers.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "not hers given back: {his}");
    assert_ne!(his["id"], mine["id"]);
    // Nor can a third learn the ref is taken by booking it otherwise.
    let (status, probe) = app.post("/api/v1/appointments", &dr_c, booking(&reference, &dr_c, &patient)).await;
    assert_eq!(status, StatusCode::CREATED, "no appointment_differs for another booker's ref: {probe}");
    // By its ref each finds their own.
    for (who, wanted) in [(&dr_a, &mine), (&dr_b, &his), (&dr_c, &probe)] {
        let (status, found) = app.get(&format!("/api/v1/appointments/by-ref/{reference}"), who).await;
        assert_eq!((status, &found["id"]), (StatusCode::OK, &wanted["id"]));
    }
    // Hers stays hers: he can neither move nor cancel it.
    let moved = json!({"startsAt": later(120), "endsAt": later(150)});
    let (status, _) = app
        .send(reqwest::Method::PATCH, &format!("/api/v1/appointments/{id}"), Some(&dr_b), Some(moved))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.post(&format!("/api/v1/appointments/{id}/cancel"), &dr_b, json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // And booking it again is idempotent for her alone.
    let (status, again) = app.post("/api/v1/appointments", &dr_a, hers.clone()).await;
    assert_eq!((status, &again["id"]), (StatusCode::OK, &mine["id"]));

    // The host application books under its own refs; a participant finds its booking by the host's ref.
    let (status, hosts) = app.post("/api/v1/appointments", &service, hers).await;
    assert_eq!(status, StatusCode::CREATED, "{hosts}");
    let stranger = app.user("female");
    let (status, _) = app.get(&format!("/api/v1/appointments/by-ref/{reference}"), &stranger).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nobody else finds any of them");
}
