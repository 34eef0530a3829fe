//! Fast tests: the use cases, the workers and the webhook handling against
//! a fresh PostgreSQL database, with `FakeRooms` for LiveKit and a
//! `FakeClock`, and no sleeps. They need only `DATABASE_URL`.
//!
//! Jobs come due by the clock (`workers::jobs::run_due` runs them), and a
//! ring's end and a drop's grace are compared with the clock too: moving it
//! forward makes them over (some tests still ring with the clock set back
//! and put it forward again, which comes to the same).

#![allow(clippy::disallowed_methods)]

mod appointments;
mod authz;
mod blocks;
mod booking;
mod consent_api;
mod consent_reading;
mod course;
mod hardening;
mod history;
mod http;
mod invitations;
mod media;
mod membership;
mod recorder;
mod recording;
mod ringing;
mod runner;
mod safety;
mod sealed;
mod support;
mod validation;
mod webhooks;

use callgate::clock::Clock;
use callgate::domain::consent::{Gender, TrackKind, TrackSource};
use callgate::domain::{CallState, ParticipantStatus};
use callgate::livekit::{DisconnectReason, Participant, TrackSeen};
use callgate::workers::{jobs, reconcile};
use chrono::{DateTime, Duration, Utc};

use support::{World, in_room, joined, left, person, room_started};

fn seconds(n: i64) -> Duration {
    Duration::seconds(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconciler_ends_a_live_call_whose_room_is_gone_and_deletes_a_room_no_call_owns() {
    let world = World::new().await;
    let (alice, bob) = (person("alice", Gender::Female), person("bob", Gender::Male));
    let call = world.ring(&alice, &[&bob]).await;
    world.rooms.close_room(&world.room_of(call));
    let stray = world.room_of(callgate::domain::CallId::new());
    world.rooms.add_room(&stray, Some(world.clock.now() - Duration::minutes(5)));
    let fresh = world.room_of(callgate::domain::CallId::new());
    world.rooms.add_room(&fresh, Some(world.clock.now()));

    let pass = reconcile::pass(&world.core).await.expect("a pass");

    assert_eq!((pass.calls_ended, pass.rooms_deleted), (1, 1), "{pass:?}");
    let ended = world.call(&alice, call).await;
    assert_eq!(ended.state, CallState::Ended);
    assert_eq!(ended.end_reason, Some(callgate::domain::EndReason::RoomClosed));
    assert_eq!(world.rooms.deleted(), vec![stray], "the old room no call owns is deleted");
    assert!(world.rooms.has_room(&fresh), "a room younger than the grace may belong to a call being started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconciler_puts_drifted_rights_back_and_records_a_camera_published_while_video_is_off() {
    let world = World::new().await;
    let (alice, bob) = (person("alice", Gender::Female), person("bob", Gender::Male));
    let call = world.answered_call(&alice, &[&bob]).await;
    let room = world.room_of(call);
    let session = world.clock.now();
    world.rooms.join(
        &room,
        Participant { publish_sources: Some(vec![TrackSource::Microphone]), ..in_room(&alice, session) },
    );
    // Bob's rights drifted to allow a camera, and he published one.
    let drifted = Some(vec![TrackSource::Microphone, TrackSource::Camera]);
    world.rooms.join(&room, Participant { publish_sources: drifted, ..in_room(&bob, session) });
    let camera = TrackSeen::honest("TR_cam", TrackKind::Video, TrackSource::Camera);
    world.rooms.publish(&room, bob.id.as_str(), camera);
    // Video has been off for longer than LiveKit takes to remove a track.
    world.clock.advance(seconds(5));

    let pass = reconcile::pass(&world.core).await.expect("a pass");

    assert_eq!(pass.violations, 1, "{pass:?}");
    assert!(pass.rights_fixed >= 1, "{pass:?}");
    assert_eq!(world.rooms.publish_sources_of(&room, bob.id.as_str()), Some(vec![TrackSource::Microphone]));
    let bob_now = world.rooms.participant_in(&room, bob.id.as_str()).expect("Bob is still in the room");
    assert!(bob_now.tracks.is_empty(), "LiveKit unpublished the camera once its right was gone");
    let violations: i64 = sqlx::query_scalar(
        "select count(*) from consent_ledger where call_id = $1 and kind = 'violation' and actor = $2",
    )
    .bind(call.0)
    .bind(bob.id.as_str())
    .fetch_one(&world.core.db)
    .await
    .expect("the ledger");
    assert_eq!(violations, 1, "the camera is in the consent ledger once");
    let view = world.call(&alice, call).await;
    assert_eq!(view.state, CallState::Active, "both were found in the room");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ringing_deadline_does_not_fire_before_it_is_due() {
    let world = World::new().await;
    let (alice, bob) = (person("alice", Gender::Female), person("bob", Gender::Male));
    let call = world.ring(&alice, &[&bob]).await;

    assert_eq!(jobs::run_due(&world.core).await.expect("a run").deadlines, 0);

    assert_eq!(world.call(&alice, call).await.state, CallState::Ringing);
    assert!(world.rooms.has_room(&world.room_of(call)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ringing_deadline_fires_once_it_has_passed_and_the_call_ends_missed() {
    let world = World::new().await;
    let (alice, bob) = (person("alice", Gender::Female), person("bob", Gender::Male));
    // Rung longer ago than the ringing timeout.
    let ringing = Duration::from_std(world.core.config.timeouts.ringing).expect("a duration");
    world.clock.advance(-(ringing + seconds(1)));
    let call = world.ring(&alice, &[&bob]).await;
    world.clock.advance(ringing + seconds(1));

    assert_eq!(jobs::run_due(&world.core).await.expect("a run").deadlines, 1);
    assert_eq!(jobs::run_due(&world.core).await.expect("a run").deadlines, 0, "it fires once");

    let ended = world.call(&alice, call).await;
    assert_eq!(ended.state, CallState::Ended);
    assert_eq!(ended.outcome, Some(callgate::domain::Outcome::Missed));
    assert_eq!(world.rooms.deleted(), vec![world.room_of(call)], "and its room is deleted");
}

fn at(base: DateTime<Utc>, secs: i64) -> DateTime<Utc> {
    base + seconds(secs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_events_handled_in_reverse_order_leave_the_same_state_as_in_order() {
    let world = World::new().await;
    let mut finals = Vec::new();
    for reversed in [false, true] {
        let alice = person("alice", Gender::Female);
        let (bob, carol) = (person("bob", Gender::Male), person("carol", Gender::Female));
        let call = world.answered_call(&alice, &[&bob, &carol]).await;
        let room = world.room_of(call);
        // Everyone joins, Alice's client reconnects (LiveKit closes her
        // first session as a duplicate identity), Carol hangs up.
        let t = world.clock.now() - seconds(30);
        // LiveKit's room as the story leaves it: Alice's second session and Bob.
        world.rooms.join(&room, in_room(&alice, at(t, 10)));
        world.rooms.join(&room, in_room(&bob, at(t, 2)));
        let mut story = vec![
            room_started(&room, t),
            joined(&room, &alice, at(t, 1), at(t, 1)),
            joined(&room, &bob, at(t, 2), at(t, 2)),
            joined(&room, &carol, at(t, 3), at(t, 3)),
            left(&room, &alice, at(t, 1), at(t, 10), DisconnectReason::DuplicateIdentity),
            joined(&room, &alice, at(t, 10), at(t, 10)),
            left(&room, &carol, at(t, 3), at(t, 20), DisconnectReason::ClientInitiated),
        ];
        if reversed {
            story.reverse();
        }
        for event in &story {
            world.deliver(event).await;
        }
        let view = world.call(&alice, call).await;
        let status = |who: &callgate::domain::AuthUser| {
            view.participants.iter().find(|p| p.user_id == who.id.as_str()).map(|p| p.status)
        };
        finals.push((view.state, status(&alice), status(&bob), status(&carol)));
    }
    let expected = (
        CallState::Active,
        Some(ParticipantStatus::Joined),
        Some(ParticipantStatus::Joined),
        Some(ParticipantStatus::Left),
    );
    assert_eq!(finals[0], expected, "in order");
    assert_eq!(finals[1], expected, "in reverse order");
}

/// A participant_joined webhook body as LiveKit sends it, and its event.
fn joined_webhook(room: &str, who: &callgate::domain::AuthUser) -> (callgate::livekit::Event, String) {
    let body = serde_json::json!({
        "event": "participant_joined",
        "id": format!("EV_{}", uuid::Uuid::new_v4().simple()),
        "createdAt": Utc::now().timestamp().to_string(),
        "room": {"sid": "RM_bound", "name": room},
        "participant": {"sid": "PA_bound", "identity": who.id.as_str()},
    })
    .to_string();
    let event =
        callgate::livekit::decode_event(serde_json::from_str(&body).expect("json")).expect("an event");
    (event, body)
}

/// Hands `events` to the webhook inbox (its writer running as the
/// application runs it) while the call's row is held, so that one batch
/// takes them all, and returns once they are handled.
async fn handled_in_one_batch(
    world: &World,
    call: callgate::domain::CallId,
    events: Vec<(callgate::livekit::Event, String)>,
) {
    use callgate::ingest::inbox::{self, Inbox};
    use std::sync::Arc;
    let inbox = Arc::new(Inbox::new(world.core.clone()));
    let stop = tokio_util::sync::CancellationToken::new();
    let writer = tokio::spawn(inbox::run(inbox.clone(), stop.clone()));
    let mut holder = world.core.db.begin().await.expect("a transaction");
    callgate::store::lock_call(&mut holder, call).await.expect("the lock");
    for (event, body) in events {
        inbox::ingest(&inbox, &event, &body).await.expect("stored");
    }
    holder.rollback().await.expect("the lock released");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while inbox.backlog() > 0 {
        assert!(std::time::Instant::now() < deadline, "the events are handled");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    world.core.quiesce().await;
    stop.cancel();
    writer.await.expect("the writer stops");
}

/// `who` hangs up: LiveKit's `participant_left` of the session `joined_webhook` reports.
fn left_webhook(room: &str, who: &callgate::domain::AuthUser) -> (callgate::livekit::Event, String) {
    let (_, body) = joined_webhook(room, who);
    let mut value: serde_json::Value = serde_json::from_str(&body).expect("json");
    value["event"] = serde_json::json!("participant_left");
    value["id"] = serde_json::json!(format!("EV_{}", uuid::Uuid::new_v4().simple()));
    value["participant"]["disconnectReason"] = serde_json::json!("CLIENT_INITIATED");
    let body = value.to_string();
    (callgate::livekit::decode_event(value).expect("an event"), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_one_batch_an_event_after_the_join_that_connects_the_call_sees_it_active() {
    let world = World::new().await;
    let (alice, bob) = (person("alice", Gender::Female), person("bob", Gender::Male));
    let call = world.answered_call(&alice, &[&bob]).await;
    let room = world.room_of(call);

    // Both join (the second connects the call), then he hangs up.
    let events = vec![joined_webhook(&room, &alice), joined_webhook(&room, &bob), left_webhook(&room, &bob)];
    handled_in_one_batch(&world, call, events).await;

    let ended = world.call(&alice, call).await;
    assert_eq!(ended.state, CallState::Ended, "{ended:?}");
    assert_eq!(
        ended.outcome,
        Some(callgate::domain::Outcome::Completed),
        "his leave was handled with the call active, as the join before it made it: {ended:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_handled_in_one_batch_are_each_in_the_timeline_in_the_order_they_arrived() {
    let world = World::new().await;
    let (alice, bob) = (person("alice", Gender::Female), person("bob", Gender::Male));
    let call = world.answered_call(&alice, &[&bob]).await;
    let room = world.room_of(call);

    let events: Vec<_> = [&bob, &alice, &bob].into_iter().map(|who| joined_webhook(&room, who)).collect();
    let sent: Vec<String> = events.iter().map(|(event, _)| event.id.clone()).collect();
    handled_in_one_batch(&world, call, events).await;

    let recorded: Vec<(String, String, bool)> = sqlx::query_as(
        "select data->>'livekitEventId', actor, (data->>'applied')::bool from call_events \
         where call_id = $1 and type = 'livekit.participant_joined' order by id",
    )
    .bind(call.0)
    .fetch_all(&world.core.db)
    .await
    .expect("the timeline");
    let ids: Vec<&str> = recorded.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids, sent, "each event once, in the order they arrived");
    let actors: Vec<&str> = recorded.iter().map(|(_, actor, _)| actor.as_str()).collect();
    assert_eq!(actors, [bob.id.as_str(), alice.id.as_str(), bob.id.as_str()]);
    assert!(recorded[0].2 && recorded[1].2, "the first joins changed the call: {recorded:?}");
    let view = world.call(&alice, call).await;
    assert!(view.participants.iter().all(|p| p.status == ParticipantStatus::Joined), "both joined: {view:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_inbox_refuses_events_beyond_its_backlog_and_takes_them_again_once_it_drains() {
    use callgate::ingest::inbox::{self, Inbox};
    use std::sync::Arc;
    let world = World::new().await;
    let (alice, bob) = (person("alice", Gender::Female), person("bob", Gender::Male));
    let call = world.answered_call(&alice, &[&bob]).await;
    let room = world.room_of(call);
    let inbox = Arc::new(Inbox::with_max_backlog(world.core.clone(), 3));
    let stop = tokio_util::sync::CancellationToken::new();
    let writer = tokio::spawn(inbox::run(inbox.clone(), stop.clone()));

    // The call's row is held: its events are stored but wait to be handled.
    let mut holder = world.core.db.begin().await.expect("a transaction");
    callgate::store::lock_call(&mut holder, call).await.expect("the lock");
    for _ in 0..3 {
        let (event, body) = joined_webhook(&room, &bob);
        inbox::ingest(&inbox, &event, &body).await.expect("stored while the backlog has room");
    }
    let (event, body) = joined_webhook(&room, &alice);
    let refused = inbox::ingest(&inbox, &event, &body).await;
    assert!(
        matches!(refused, Err(callgate::calls::CallError::Unavailable(_))),
        "the fourth is refused (503, LiveKit sends it again): {refused:?}"
    );
    assert_eq!(inbox.backlog(), 3);

    holder.rollback().await.expect("the lock released");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while inbox.backlog() > 0 {
        assert!(std::time::Instant::now() < deadline, "the backlog drains");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    inbox::ingest(&inbox, &event, &body).await.expect("taken again once the backlog drained");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let view = world.call(&alice, call).await;
        let joined = view.participants.iter().filter(|p| p.status == ParticipantStatus::Joined).count();
        if joined == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "both joins are handled: {view:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.cancel();
    writer.await.expect("the writer stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_reconciler_pass_compares_every_live_call_and_repairs_a_drifted_one_beyond_the_rotation() {
    let world = World::new().await;
    let mut calls = Vec::new();
    for i in 0..reconcile::BATCH + 5 {
        let (alice, bob) = (person(&format!("a{i}"), Gender::Female), person(&format!("b{i}"), Gender::Male));
        calls.push(world.answered_call(&alice, &[&bob]).await);
    }
    // Someone who is in none of the calls sits in the last call's room.
    let stranger = person("mallory", Gender::Male);
    let last = *calls.last().expect("a call");
    world.rooms.join(&world.room_of(last), in_room(&stranger, world.clock.now()));

    let pass = reconcile::pass(&world.core).await.expect("a pass");

    assert_eq!(pass.calls_checked, calls.len(), "every live call compared with ListRooms: {pass:?}");
    assert_eq!(pass.calls_disagreeing, 1, "only the drifted room disagrees: {pass:?}");
    assert_eq!(pass.presence_fixed, 1, "the stranger is put out in this pass: {pass:?}");
    assert!(pass.calls_full_checks <= reconcile::BATCH + 1, "{pass:?}");
}
