//! Appointments' durable deadlines with a fake clock: opening at its time
//! and not before, a no-show fired once by racing instances and across a
//! restart, and a waiting guest kept without rights in LiveKit; and, through
//! the API in-process, what a guest may not skip and who is busy. Moved down
//! from the real stack where none of it needs a real SFU (rooms seen by
//! LiveKit, the waiting room's media and a coming and going stay in
//! tests/api/appointments.rs).

use callgate::calls::appointments::{self, Booking};
use callgate::clock::Clock;
use callgate::domain::consent::{Gender, TrackSource};
use callgate::domain::{AppointmentOutcome, AppointmentState, AuthUser, CallId, CallType};
use callgate::workers::{jobs, reconcile};
use chrono::{Duration, SecondsFormat};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::http::{Api, Caller};
use crate::support::{World, in_room, joined, person};

fn service() -> AuthUser {
    AuthUser { roles: ["service".to_owned()].into_iter().collect(), ..person("booking", Gender::Other) }
}

/// Books `host` and `guest` from one hour from now, for half an hour.
async fn book(world: &World, host: &AuthUser, guest: &AuthUser) -> Uuid {
    let starts_at = world.clock.now() + Duration::hours(1);
    let booking = Booking {
        external_ref: format!("ref-{}", Uuid::new_v4().simple()),
        call_type: CallType::Audio,
        title: None,
        starts_at,
        ends_at: starts_at + Duration::minutes(30),
        hosts: vec![host.id.clone()],
        guests: vec![guest.id.clone()],
    };
    let (view, created) = appointments::book(&world.core, &service(), booking).await.expect("booked");
    assert!(created);
    view.id
}

async fn state(world: &World, id: Uuid) -> (AppointmentState, Option<AppointmentOutcome>) {
    let view = appointments::get(&world.core, &service(), id).await.expect("the appointment");
    (view.state, view.outcome)
}

async fn call_of(world: &World, id: Uuid) -> Option<CallId> {
    let mut conn = world.core.db.acquire().await.expect("a connection");
    callgate::store::calls::call_of_appointment(&mut conn, id).await.expect("read")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appointment_opens_at_its_time_and_not_before_and_its_room_appears_then() {
    let world = World::new().await;
    let (host, guest) = (person("dr", Gender::Female), person("pat", Gender::Male));
    let id = book(&world, &host, &guest).await;
    world.clock.advance(Duration::minutes(49));
    jobs::run_due(&world.core).await.expect("a run");
    assert_eq!(state(&world, id).await.0, AppointmentState::Scheduled, "11 minutes before: not yet");
    assert!(world.rooms.room_names().is_empty(), "no room before it opens");

    world.clock.advance(Duration::minutes(2));
    jobs::run_due(&world.core).await.expect("a run");
    assert_eq!(state(&world, id).await.0, AppointmentState::Open, "open 10 minutes before it starts");
    let call = call_of(&world, id).await.expect("its call");
    assert!(world.rooms.has_room(&world.room_of(call)), "its room exists once it opens");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_comes_and_two_runners_at_once_end_it_a_no_show_once() {
    let world = World::new().await;
    let (host, guest) = (person("dr", Gender::Female), person("pat", Gender::Male));
    let id = book(&world, &host, &guest).await;
    world.clock.advance(Duration::minutes(55));
    jobs::run_due(&world.core).await.expect("a run");
    let call = call_of(&world, id).await.expect("opened");
    // Past the end and the grace (15 minutes).
    world.clock.advance(Duration::minutes(5 + 30 + 16));
    let (a, b) = tokio::join!(jobs::run_due(&world.core), jobs::run_due(&world.core));
    a.expect("one poll");
    b.expect("the other");
    assert_eq!(state(&world, id).await, (AppointmentState::Ended, Some(AppointmentOutcome::NoShow)));
    let no_shows: i64 = sqlx::query_scalar(
        "select count(*) from app_webhook_outbox where call_id = $1 and type = 'appointment.no_show'",
    )
    .bind(id)
    .fetch_one(&world.core.db)
    .await
    .expect("counted");
    assert_eq!(no_shows, 1, "one no-show webhook");
    assert!(world.rooms.deleted().contains(&world.room_of(call)), "its room is deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_guest_gets_no_room_and_is_put_out_of_it_until_admitted() {
    let world = World::new().await;
    let (host, guest) = (person("dr", Gender::Female), person("pat", Gender::Male));
    let id = book(&world, &host, &guest).await;
    world.clock.advance(Duration::minutes(55));
    let entered = appointments::join(&world.core, &guest, id).await.expect("the guest joins");
    assert!(entered.waiting);
    assert!(entered.join.is_none(), "the waiting room is outside the meeting: no token for its room");
    let call = CallId(entered.call.id);
    let room = world.room_of(call);
    let meta: serde_json::Value =
        serde_json::from_str(&world.rooms.metadata_of(&room).expect("metadata")).expect("json");
    assert!(!meta["live"].to_string().contains(guest.id.as_str()), "not live in the meeting: {meta}");
    // In the room anyway (a token from elsewhere): out of it at once.
    let now = world.clock.now();
    world.rooms.join(&room, in_room(&guest, now));
    world.deliver(&joined(&room, &guest, now, now)).await;
    assert!(world.rooms.participant_in(&room, guest.id.as_str()).is_none(), "put out of the room");
    // And the reconciler does the same.
    world.rooms.join(&room, in_room(&guest, now + Duration::seconds(1)));
    reconcile::pass(&world.core).await.expect("a pass");
    assert!(world.rooms.participant_in(&room, guest.id.as_str()).is_none(), "put out by the reconciler");

    appointments::join(&world.core, &host, id).await.expect("the host joins");
    let admitted = appointments::admit(&world.core, &host, id, &guest.id).await.expect("admitted");
    assert!(admitted.sfu_confirmed);
    let again = appointments::join(&world.core, &guest, id).await.expect("the guest joins again");
    assert!(!again.waiting);
    assert!(again.join.is_some(), "admitted: a token for the room");
    let later = world.clock.now() + Duration::seconds(2);
    world.rooms.join(&room, in_room(&guest, later));
    world.deliver(&joined(&room, &guest, later, later)).await;
    assert_eq!(
        world.rooms.publish_sources_of(&room, guest.id.as_str()),
        Some(vec![TrackSource::Microphone]),
        "admitted: the rights of the call"
    );
}

/// Through the API: `host` and `guest` booked by the host application from
/// `starts` to `ends` seconds from now; its id.
async fn book_through(
    api: &Api,
    world: &World,
    host: &Caller,
    guest: &Caller,
    starts: i64,
    ends: i64,
) -> String {
    let at = |s: i64| (world.clock.now() + Duration::seconds(s)).to_rfc3339_opts(SecondsFormat::Millis, true);
    let service = api.user_with_roles("other", &["service"]);
    let body = json!({
        "externalRef": format!("appt-{}", Uuid::new_v4().simple()), "type": "audio",
        "startsAt": at(starts), "endsAt": at(ends), "hosts": [host.id], "guests": [guest.id],
    });
    let (status, booked) = api.post("/api/v1/appointments", &service, body).await;
    assert_eq!(status, StatusCode::CREATED, "{booked}");
    booked["id"].as_str().expect("id").to_owned()
}

async fn join_through(api: &Api, id: &str, user: &Caller) -> (StatusCode, Value) {
    api.post(&format!("/api/v1/appointments/{id}/join"), user, json!({})).await
}

async fn joined_through(api: &Api, id: &str, user: &Caller) -> Value {
    let (status, body) = join_through(api, id, user).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_cannot_skip_the_waiting_room_through_the_call_routes() {
    let world = World::new().await;
    let api = Api::new(&world);
    let (host, guest) = (api.user("female"), api.user("male"));
    let id = book_through(&api, &world, &host, &guest, 30, 600).await;
    let entered = joined_through(&api, &id, &host).await;
    let call = entered["call"]["id"].as_str().expect("call").to_owned();
    for action in ["accept", "token"] {
        let (status, body) = api.act(&call, action, &guest, json!({})).await;
        assert_eq!(status, StatusCode::CONFLICT, "{action}: {body}");
        assert_eq!(body["code"], "join_through_appointment", "{action}: {body}");
    }
    let waiting = joined_through(&api, &id, &guest).await;
    let (status, again) = api.act(&call, "token", &guest, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "no token for the room while waiting: {again}");
    assert_eq!(again["code"], "in_waiting_room", "{again}");
    assert_eq!(waiting["waiting"], true);
    let (status, body) =
        api.post(&format!("/api/v1/appointments/{id}/admit"), &guest, json!({"userId": guest.id})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a guest admits nobody: {body}");
    assert_eq!(body["code"], "not_a_host");
    let stranger = api.user("female");
    for action in ["join", "end"] {
        let (status, body) =
            api.post(&format!("/api/v1/appointments/{id}/{action}"), &stranger, json!({})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "a stranger is told it does not exist: {action} {body}");
    }
    let (status, _) =
        api.post(&format!("/api/v1/appointments/{id}/admit"), &stranger, json!({"userId": guest.id})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_in_an_appointment_is_busy_for_calls_and_one_who_is_not_there_yet_is_not() {
    let world = World::new().await;
    let api = Api::new(&world);
    let (host, guest, friend) = (api.user("female"), api.user("male"), api.user("male"));
    let id = book_through(&api, &world, &host, &guest, 30, 600).await;
    joined_through(&api, &id, &host).await;
    let start = |callee: &Caller| json!({"participantIds": [callee.id], "type": "audio"});
    let (status, body) = api.post("/api/v1/calls", &friend, start(&host)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "callee_busy");
    let (status, body) = api.post("/api/v1/calls", &friend, start(&guest)).await;
    assert_eq!(status, StatusCode::CREATED, "the guest has not joined: not busy: {body}");
    let (status, body) = join_through(&api, &id, &guest).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "caller_busy", "busy in a call, they cannot join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_comes_and_it_ends_a_no_show_once_with_its_webhook_across_a_restart() {
    let mut world = World::new().await;
    let api = Api::new(&world);
    let (host, guest) = (api.user("female"), api.user("male"));
    // An hour from now, for half an hour; it opens ten minutes before.
    let id = book_through(&api, &world, &host, &guest, 3600, 5400).await;
    let path = format!("/api/v1/appointments/{id}");
    world.clock.advance(Duration::minutes(55));
    jobs::run_due(&world.core).await.expect("a run");
    assert_eq!(api.get(&path, &host).await.1["state"], "open");
    let room = world.room_of(call_of(&world, Uuid::parse_str(&id).expect("uuid")).await.expect("opened"));
    // Stopped between its opening and its no-show deadline.
    drop(api);
    world.restart().await;
    let api = Api::new(&world);
    // Past the end and the grace.
    let grace = Duration::from_std(world.core.config.appointments.grace).expect("a duration");
    world.clock.advance(Duration::minutes(5 + 30) + grace + Duration::seconds(1));
    let (a, b) = tokio::join!(jobs::run_due(&world.core), jobs::run_due(&world.core));
    a.expect("one run");
    b.expect("another");
    jobs::run_due(&world.core).await.expect("a later run");
    let (status, ended) = api.get(&path, &host).await;
    assert_eq!(status, StatusCode::OK, "{ended}");
    assert_eq!(
        (ended["state"].as_str(), ended["outcome"].as_str()),
        (Some("ended"), Some("no_show")),
        "{ended}"
    );
    let webhooks: Vec<Value> =
        sqlx::query_scalar("select payload from app_webhook_outbox where type = 'appointment.no_show'")
            .fetch_all(&world.core.db)
            .await
            .expect("the outbox");
    assert_eq!(webhooks.len(), 1, "one no-show webhook, not repeated: {webhooks:?}");
    assert_eq!(webhooks[0]["data"]["appointment"]["id"], id.as_str());
    assert!(world.rooms.deleted().contains(&room), "its room is deleted");
    let (status, body) = join_through(&api, &id, &guest).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("appointment_ended")), "{body}");
}
