//! A recorder (LiveKit Egress) in a call's room is no person: judged by the
//! kind LiveKit reports, not by its identity. Its join, tracks and departure
//! change nothing, the reconciler leaves it in the room, and egress's own
//! webhooks are handled (kept in the timeline) without an error. A person
//! whose id looks like a recorder's is a person all the same.

use callgate::clock::Clock;
use callgate::domain::consent::{Gender, TrackKind, TrackSource};
use callgate::domain::{CallId, CallState, ParticipantStatus, UserId};
use callgate::ingest::handle;
use callgate::livekit::{Event, EventKind, Participant, TrackSeen};
use callgate::workers::reconcile;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::support::{World, in_room, joined, person};

/// A recorder as LiveKit reports it: kind EGRESS, identity `EG_...`.
fn recorder(identity: &str, session: DateTime<Utc>) -> Participant {
    Participant { is_person: false, session: Some(session), ..Participant::person(identity) }
}

fn event(kind: EventKind, room: &str, at: DateTime<Utc>, who: Option<Participant>) -> Event {
    Event {
        id: format!("EV_{}", Uuid::new_v4().simple()),
        kind,
        room: Some(room.to_owned()),
        created_at: Some(at),
        participant: who,
        track: None,
        egress: None,
    }
}

async fn count(world: &World, sql: &'static str, call: CallId) -> i64 {
    sqlx::query_scalar(sql).bind(call.0).fetch_one(&world.core.db).await.expect("counted")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_in_the_room_changes_nothing_and_is_left_in_it() {
    let world = World::new().await;
    let (alice, bob) = (person("alice", Gender::Female), person("bob", Gender::Male));
    let call = world.answered_call(&alice, &[&bob]).await;
    let room = world.room_of(call);
    let now = world.clock.now();
    for who in [&alice, &bob] {
        world.rooms.join(&room, in_room(who, now));
        world.deliver(&joined(&room, who, now, now)).await;
    }
    assert_eq!(world.call(&alice, call).await.state, CallState::Active);

    // The recorder joins, publishes a camera track while video is off (which
    // would put a person out), and egress reports on its recording.
    let eg = "EG_r3c0rd3r";
    world.rooms.join(&room, recorder(eg, now));
    world.deliver(&event(EventKind::ParticipantJoined, &room, now, Some(recorder(eg, now)))).await;
    let camera = TrackSeen::honest("TR_eg", TrackKind::Video, TrackSource::Camera);
    world.rooms.publish(&room, eg, camera.clone());
    let published = Event {
        track: Some(camera),
        ..event(EventKind::TrackPublished, &room, now, Some(recorder(eg, now)))
    };
    world.deliver(&published).await;
    for name in ["egress_started", "egress_updated"] {
        world.deliver(&event(EventKind::Other(name.into()), &room, now, None)).await;
    }
    reconcile::pass(&world.core).await.expect("a pass");

    let view = world.call(&alice, call).await;
    assert_eq!(view.state, CallState::Active);
    let people: Vec<(&str, ParticipantStatus)> =
        view.participants.iter().map(|p| (p.user_id.as_str(), p.status)).collect();
    assert_eq!(people.len(), 2, "{people:?}");
    assert!(people.iter().all(|(_, s)| *s == ParticipantStatus::Joined), "{people:?}");
    assert!(people.iter().all(|(id, _)| !id.starts_with("EG_")), "{people:?}");
    assert!(world.rooms.removed().is_empty(), "nobody put out: {:?}", world.rooms.removed());
    assert!(world.rooms.participant_in(&room, eg).is_some(), "the recorder is still in the room");
    assert!(
        world.rooms.rights_pushed().iter().all(|(_, who, _)| who != eg),
        "no rights pushed to the recorder"
    );
    let violations = "select count(*) from consent_ledger where call_id = $1 and kind = 'violation'";
    assert_eq!(count(&world, violations, call).await, 0);
    // What the handler makes of its join for the timeline: no actor, not applied.
    let mut tx = world.core.db.begin().await.expect("a transaction");
    let row = callgate::store::lock_call(&mut tx, call).await.expect("the row").expect("the call");
    let again = event(EventKind::ParticipantJoined, &room, now, Some(recorder(eg, now)));
    let handled = handle::handle(&world.core, &mut tx, &row, &again).await.expect("handled");
    assert_eq!(handled.timeline.kind, "livekit.participant_joined");
    assert_eq!(handled.timeline.actor, None);
    assert_eq!(handled.timeline.data["applied"], false);
    assert_eq!(handled.timeline.data["person"], false);
    assert_eq!(handled.timeline.data["identity"], eg);
    assert!(handled.ended.is_none());
    let egress_ended = event(EventKind::Other("egress_ended".into()), &room, now, None);
    let handled = handle::handle(&world.core, &mut tx, &row, &egress_ended).await.expect("handled");
    assert_eq!(handled.timeline.kind, "livekit.egress_ended");
    drop(tx);

    // It leaves: nobody else does.
    world.rooms.leave(&room, eg);
    world.deliver(&event(EventKind::ParticipantLeft, &room, now, Some(recorder(eg, now)))).await;
    world.deliver(&event(EventKind::Other("egress_ended".into()), &room, now, None)).await;
    let view = world.call(&alice, call).await;
    assert_eq!(view.state, CallState::Active);
    assert!(view.participants.iter().all(|p| p.status == ParticipantStatus::Joined));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_whose_id_looks_like_a_recorders_is_put_out_as_a_person() {
    let world = World::new().await;
    let (alice, bob) = (person("alice", Gender::Female), person("bob", Gender::Male));
    let call = world.answered_call(&alice, &[&bob]).await;
    let room = world.room_of(call);
    let now = world.clock.now();
    let mallory = UserId::parse("EG_mallory").expect("a user id");
    let posing = Participant { session: Some(now), ..Participant::person(mallory.as_str()) };
    world.rooms.join(&room, posing.clone());
    world.deliver(&event(EventKind::ParticipantJoined, &room, now, Some(posing))).await;
    assert!(
        world.rooms.removed().iter().any(|(_, who)| who == "EG_mallory"),
        "a person not in the call is put out whatever their id: {:?}",
        world.rooms.removed()
    );
}
