//! Appointments' durable deadlines with a fake clock: opening at its time
//! and not before, a no-show fired once by racing instances, and a waiting
//! guest kept without rights in LiveKit.

use callgate::calls::appointments::{self, Booking};
use callgate::clock::Clock;
use callgate::domain::consent::{Gender, TrackSource};
use callgate::domain::{AppointmentOutcome, AppointmentState, AuthUser, CallId, CallType};
use callgate::workers::{jobs, reconcile};
use chrono::Duration;
use uuid::Uuid;

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
