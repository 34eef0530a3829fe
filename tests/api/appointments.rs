//! Booking appointments: who may, what is refused, idempotency, and that a
//! booking makes nobody busy.

use chrono::{Duration, SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, spawn_app_configured};

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
