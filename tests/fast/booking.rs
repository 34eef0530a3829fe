//! Booking appointments through the API in-process: who may book, what is
//! refused, idempotency, rescheduling, listing, whose `externalRef` it is,
//! and that a booking makes nobody busy. None of it needs LiveKit; the
//! meeting itself (rooms, the waiting room, media) is proved on the real
//! stack in tests/api/appointments.rs.

use chrono::{Duration, SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::http::{Api as TestApp, Caller as TestUser};
use crate::support::World;

fn later(minutes: i64) -> String {
    (Utc::now() + Duration::minutes(minutes)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn soon(seconds: i64) -> String {
    (Utc::now() + Duration::seconds(seconds)).to_rfc3339_opts(SecondsFormat::Millis, true)
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

async fn with_practitioners() -> World {
    World::configured(|c| c.scheduler_roles = vec!["practitioner".into()]).await
}

fn reference() -> String {
    format!("appt-{}", uuid::Uuid::new_v4().simple())
}

async fn count(world: &World, reference: &str) -> i64 {
    sqlx::query_scalar("select count(*) from appointments where external_ref = $1")
        .bind(reference)
        .fetch_one(&world.core.db)
        .await
        .expect("counted")
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

async fn join(app: &TestApp, id: &str, user: &TestUser) -> (StatusCode, Value) {
    app.post(&format!("/api/v1/appointments/{id}/join"), user, json!({})).await
}

/// What a case does to a good booking.
type Spoil = Box<dyn Fn(&mut Value)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_application_and_a_practitioner_book_and_a_plain_user_may_not() {
    let world = with_practitioners().await;
    let app = TestApp::new(&world);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_booking_is_refused_naming_its_field_and_writes_nothing() {
    let world = with_practitioners().await;
    let app = TestApp::new(&world);
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
        let written = count(&world, body["externalRef"].as_str().unwrap_or_default()).await;
        assert_eq!(written, 0, "a refused booking writes nothing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_booking_twice_is_the_same_appointment_and_a_different_one_is_a_conflict() {
    let world = with_practitioners().await;
    let app = TestApp::new(&world);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_identical_bookings_at_once_make_one_appointment() {
    let world = with_practitioners().await;
    let app = TestApp::new(&world);
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
    assert_eq!(count(&world, &reference).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_with_three_future_appointments_can_still_call_and_be_called() {
    let world = with_practitioners().await;
    let app = TestApp::new(&world);
    let service = app.user_with_roles("other", &["service"]);
    let (practitioner, patient, friend) = (app.user("female"), app.user("female"), app.user("male"));
    for _ in 0..3 {
        let (status, body) =
            app.post("/api/v1/appointments", &service, booking(&reference(), &practitioner, &patient)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) =
        app.post("/api/v1/calls", &friend, json!({"participantIds": [patient.id], "type": "audio"})).await;
    assert_eq!(status, StatusCode::CREATED, "she is not busy: {body}");
    let call = body["call"]["id"].as_str().expect("id").to_owned();
    let (status, body) = app.act(&call, "end", &friend, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) =
        app.post("/api/v1/calls", &patient, json!({"participantIds": [friend.id], "type": "audio"})).await;
    assert_eq!(status, StatusCode::CREATED, "she can call: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appointment_is_cancelled_by_its_host_and_not_by_its_guest() {
    let world = with_practitioners().await;
    let app = TestApp::new(&world);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_appointment_cannot_be_joined() {
    let world = World::new().await;
    let app = TestApp::new(&world);
    let (host, guest) = (app.user("female"), app.user("male"));
    let id = book_for(&app, &host, &guest, "audio", 30, 600).await;
    let (status, body) = app.post(&format!("/api/v1/appointments/{id}/cancel"), &host, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = join(&app, &id, &guest).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("appointment_ended")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reschedule_moves_the_window_and_a_join_outside_it_says_when_it_opens() {
    let world = with_practitioners().await;
    let app = TestApp::new(&world);
    let (host, guest) = (app.user("female"), app.user("male"));
    let id = book_for(&app, &host, &guest, "audio", 3600, 5400).await;
    let path = format!("/api/v1/appointments/{id}");
    let moved = json!({"startsAt": later(180), "endsAt": later(210)});
    let (status, body) = app.request("PATCH", &path, Some(&guest), Some(moved.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a guest moves nothing: {body}");
    let (status, body) = app.request("PATCH", &path, Some(&host), Some(moved.clone())).await;
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
    let (status, body) = app.request("PATCH", &path, Some(&host), Some(json!({"startsAt": later(-1)}))).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("startsAt")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn my_appointments_are_listed_soonest_first_and_nobody_elses() {
    let world = World::new().await;
    let app = TestApp::new(&world);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_ref_is_its_bookers_and_no_other_booker_can_take_probe_move_or_cancel_it() {
    let world = with_practitioners().await;
    let app = TestApp::new(&world);
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
    let (status, _) =
        app.request("PATCH", &format!("/api/v1/appointments/{id}"), Some(&dr_b), Some(moved)).await;
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
