//! Who is in a call, decided in one place (`calls::participants` over the
//! pure `domain::membership`): each hole an outside review found, closed.

use callgate::calls::appointments::{self, Booking};
use callgate::calls::{CallError, blocks, consent, growth, lifecycle};
use callgate::clock::Clock;
use callgate::domain::consent::{Gender, TrackKind, TrackSource, VideoState};
use callgate::domain::{AuthUser, CallId, CallType, Code, ParticipantStatus};
use callgate::livekit::{DisconnectReason, TrackSeen};
use chrono::Duration;
use uuid::Uuid;

use crate::support::{World, in_room, joined, left, person, published};

async fn status_of(world: &World, call: CallId, who: &AuthUser) -> ParticipantStatus {
    let status: String =
        sqlx::query_scalar("select status from call_participants where call_id = $1 and user_id = $2")
            .bind(call.0)
            .bind(who.id.as_str())
            .fetch_one(&world.core.db)
            .await
            .expect("a participant");
    status.parse().expect("a status")
}

fn code_of(err: &CallError) -> Option<Code> {
    match err {
        CallError::Conflict { code, .. }
        | CallError::Forbidden { code, .. }
        | CallError::Invalid { code, .. } => Some(*code),
        _ => None,
    }
}

/// Client events `who` was sent about the call.
async fn events_of(world: &World, call: CallId, who: &AuthUser) -> i64 {
    sqlx::query_scalar("select count(*) from user_events where call_id = $1 and user_id = $2")
        .bind(call.0)
        .bind(who.id.as_str())
        .fetch_one(&world.core.db)
        .await
        .expect("counted")
}

/// A group call of `alice` with `others`, everyone in the room.
async fn group(world: &World, alice: &AuthUser, others: &[&AuthUser]) -> CallId {
    let call = world.answered_call(alice, others).await;
    let room = world.room_of(call);
    let now = world.clock.now();
    for who in std::iter::once(alice).chain(others.iter().copied()) {
        world.rooms.join(&room, in_room(who, now));
        world.deliver(&joined(&room, who, now, now)).await;
    }
    call
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_violator_invited_again_is_answered_busy_and_stays_removed() {
    let world = World::new().await;
    let (alice, mallory, carol) =
        (person("alice", Gender::Female), person("mallory", Gender::Male), person("carol", Gender::Female));
    let call = group(&world, &alice, &[&mallory, &carol]).await;
    let room = world.room_of(call);
    let disguised = TrackSeen {
        media: Some(TrackKind::Video),
        ..TrackSeen::honest("TR_x", TrackKind::Audio, TrackSource::Microphone)
    };
    let now = world.clock.now();
    world.deliver(&published(&room, &mallory, now, now, disguised)).await;
    assert_eq!(status_of(&world, call, &mallory).await, ParticipantStatus::Removed);

    for _ in 0..2 {
        let invited =
            growth::invite(&world.core, &alice, call, vec![mallory.id.clone()]).await.expect("answered");
        assert!(invited.rung.is_empty() && invited.busy == vec![mallory.id.clone()], "{invited:?}");
        assert_eq!(status_of(&world, call, &mallory).await, ParticipantStatus::Removed, "never rewritten");
    }
    let answer = lifecycle::accept(&world.core, &mallory, call, None).await;
    assert!(answer.is_err(), "he cannot answer a call that does not ring him");
    assert!(lifecycle::token(&world.core, &mallory, call).await.is_err(), "and gets no token");
}

/// Alice's group call with Bob and Carol, whose connection Bob's client
/// just lost: he is `reconnecting`.
async fn bob_reconnecting_in_a_group() -> (World, CallId, [AuthUser; 3]) {
    let world = World::new().await;
    let (alice, bob, carol) =
        (person("alice", Gender::Female), person("bob", Gender::Male), person("carol", Gender::Female));
    let call = group(&world, &alice, &[&bob, &carol]).await;
    let room = world.room_of(call);
    let now = world.clock.now();
    world.deliver(&left(&room, &bob, now, now, DisconnectReason::Other)).await;
    assert_eq!(status_of(&world, call, &bob).await, ParticipantStatus::Reconnecting);
    (world, call, [alice, bob, carol])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inviting_someone_reconnecting_is_refused_and_leaves_them_in_the_call() {
    let (world, call, [alice, bob, _]) = bob_reconnecting_in_a_group().await;

    let invited = growth::invite(&world.core, &alice, call, vec![bob.id.clone()]).await;
    assert_eq!(invited.as_ref().err().and_then(code_of), Some(Code::DuplicateParticipants), "{invited:?}");
    assert_eq!(status_of(&world, call, &bob).await, ParticipantStatus::Reconnecting, "still in the call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_initiator_who_left_and_is_rung_again_can_decline_answer_or_leave() {
    let world = World::new().await;
    let (alice, bob, carol) =
        (person("alice", Gender::Female), person("bob", Gender::Male), person("carol", Gender::Female));
    let call = group(&world, &alice, &[&bob, &carol]).await;
    lifecycle::leave(&world.core, &alice, call).await.expect("she leaves");
    for how in ["decline", "leave", "accept"] {
        let invited = growth::invite(&world.core, &bob, call, vec![alice.id.clone()]).await.expect("rung");
        assert_eq!(invited.rung, vec![alice.id.clone()], "{how}");
        match how {
            "decline" => {
                lifecycle::decline(&world.core, &alice, call).await.expect("she declines");
                assert_eq!(status_of(&world, call, &alice).await, ParticipantStatus::Declined);
            }
            "leave" => {
                lifecycle::leave(&world.core, &alice, call).await.expect("her leave declines");
                assert_eq!(status_of(&world, call, &alice).await, ParticipantStatus::Declined);
            }
            _ => {
                lifecycle::accept(&world.core, &alice, call, None).await.expect("she answers");
                assert_eq!(status_of(&world, call, &alice).await, ParticipantStatus::Accepted);
            }
        }
    }
    // Free for other calls whenever she is not in this one.
    lifecycle::leave(&world.core, &alice, call).await.expect("she leaves again");
    let dave = person("dave", Gender::Male);
    world.ring(&alice, &[&dave]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_ring_someone_who_blocked_anyone_in_the_call_and_busy_and_blocked_read_alike() {
    let world = World::new().await;
    let (alice, bob) = (person("alice", Gender::Female), person("bob", Gender::Male));
    let (eve, busy) = (person("eve", Gender::Female), person("busy", Gender::Male));
    let call = group(&world, &alice, &[&bob]).await;
    // Eve blocked Alice, the caller; Bob invites Eve into Alice's call.
    blocks::block(&world.core, &eve.id, &alice.id).await.expect("blocked");
    // Busy is ringing someone in another call.
    world.ring(&busy, &[&person("x", Gender::Male)]).await;

    let invited = growth::invite(&world.core, &bob, call, vec![eve.id.clone(), busy.id.clone()])
        .await
        .expect("answered");
    assert!(invited.rung.is_empty(), "{invited:?}");
    assert_eq!(invited.busy, vec![eve.id.clone(), busy.id.clone()], "both answered as busy");
    // Both written alike: never having taken part.
    assert_eq!(status_of(&world, call, &eve).await, ParticipantStatus::Busy);
    assert_eq!(status_of(&world, call, &busy).await, ParticipantStatus::Busy);
    assert_eq!(events_of(&world, call, &eve).await, 0, "nothing of the call reaches her");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_invitations_at_once_never_bring_together_two_who_blocked_each_other() {
    let world = World::new().await;
    for round in 0..8 {
        let (alice, bob) =
            (person(&format!("alice{round}"), Gender::Female), person(&format!("bob{round}"), Gender::Male));
        let (xena, yann) =
            (person(&format!("xena{round}"), Gender::Female), person(&format!("yann{round}"), Gender::Male));
        let call = group(&world, &alice, &[&bob]).await;
        // Xena blocked Yann; Alice invites her while Bob invites him.
        blocks::block(&world.core, &xena.id, &yann.id).await.expect("blocked");
        let (by_alice, by_bob) = tokio::join!(
            growth::invite(&world.core, &alice, call, vec![xena.id.clone()]),
            growth::invite(&world.core, &bob, call, vec![yann.id.clone()]),
        );
        let rung = by_alice.expect("answered").rung.len() + by_bob.expect("answered").rung.len();
        assert_eq!(rung, 1, "round {round}: one of the two rings, the other is answered busy");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_join_checks_blocks_against_everyone_in_the_call_and_the_size_of_the_call() {
    let world = World::new().await;
    let (alice, bob, carol) =
        (person("alice", Gender::Female), person("bob", Gender::Male), person("carol", Gender::Female));
    let call = group(&world, &alice, &[&bob]).await;
    // Carol was rung and declined, then blocked Bob.
    growth::invite(&world.core, &alice, call, vec![carol.id.clone()]).await.expect("rung");
    lifecycle::decline(&world.core, &carol, call).await.expect("declined");
    blocks::block(&world.core, &carol.id, &bob.id).await.expect("blocked");
    let joined = growth::join(&world.core, &carol, call, None).await;
    assert_eq!(joined.as_ref().err().and_then(code_of), Some(Code::NotInCall), "as one no longer in it");
    assert_eq!(status_of(&world, call, &carol).await, ParticipantStatus::Declined);

    blocks::unblock(&world.core, &carol.id, &bob.id).await.expect("unblocked");
    growth::join(&world.core, &carol, call, None).await.expect("now she may");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_join_into_a_full_call_is_refused() {
    let world = World::new().await;
    let max = world.core.config.max_call_participants;
    let alice = person("alice", Gender::Female);
    let others: Vec<AuthUser> = (1..max).map(|i| person(&format!("p{i}"), Gender::Male)).collect();
    let refs: Vec<&AuthUser> = others.iter().collect();
    let call = world.answered_call(&alice, &refs[..refs.len() - 1]).await;
    let last = refs[refs.len() - 1];
    growth::invite(&world.core, &alice, call, vec![last.id.clone()]).await.expect("rung");
    lifecycle::decline(&world.core, last, call).await.expect("declined");
    let extra = person("extra", Gender::Male);
    growth::invite(&world.core, &alice, call, vec![extra.id.clone()]).await.expect("the last place taken");
    lifecycle::accept(&world.core, &extra, call, None).await.expect("answers");
    let joined = growth::join(&world.core, last, call, None).await;
    assert_eq!(
        joined.as_ref().err().and_then(code_of),
        Some(Code::TooManyParticipants),
        "{:?}",
        joined.err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_inviting_inside_one_call_is_cooled_down_after_repeated_declines() {
    let world = World::new().await;
    let (alice, bob, carol) =
        (person("alice", Gender::Female), person("bob", Gender::Male), person("carol", Gender::Female));
    let call = group(&world, &alice, &[&bob]).await;
    let limit = world.core.config.limits.ring_declines_limit;
    for _ in 0..limit {
        growth::invite(&world.core, &bob, call, vec![carol.id.clone()]).await.expect("rung");
        lifecycle::decline(&world.core, &carol, call).await.expect("declined");
    }
    let again = growth::invite(&world.core, &bob, call, vec![carol.id.clone()]).await;
    assert!(
        matches!(&again, Err(CallError::TooManyRequests { code: Code::RingCooldown, .. })),
        "cooled down: {again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_does_not_restart_the_ringing_of_those_rung_before() {
    let world = World::new().await;
    let (alice, bob, carol, dave) = (
        person("alice", Gender::Female),
        person("bob", Gender::Male),
        person("carol", Gender::Female),
        person("dave", Gender::Male),
    );
    let call = group(&world, &alice, &[&bob]).await;
    let ringing = Duration::from_std(world.core.config.timeouts.ringing).expect("a duration");
    // Carol was rung a ringing timeout ago; Dave is rung now.
    world.clock.advance(-(ringing + Duration::seconds(1)));
    growth::invite(&world.core, &alice, call, vec![carol.id.clone()]).await.expect("rung");
    world.clock.advance(ringing + Duration::seconds(1));
    growth::invite(&world.core, &alice, call, vec![dave.id.clone()]).await.expect("rung");

    assert!(world.fire_some_deadlines().await >= 1);
    assert_eq!(status_of(&world, call, &carol).await, ParticipantStatus::Missed, "her ring is over");
    assert_eq!(status_of(&world, call, &dave).await, ParticipantStatus::Invited, "his goes on");
}

fn service() -> AuthUser {
    AuthUser { roles: ["service".to_owned()].into_iter().collect(), ..person("booking", Gender::Other) }
}

async fn open_appointment(world: &World, host: &AuthUser, guests: &[&AuthUser]) -> Uuid {
    let starts_at = world.clock.now() + Duration::minutes(5);
    let booking = Booking {
        external_ref: format!("ref-{}", Uuid::new_v4().simple()),
        call_type: CallType::Audio,
        title: None,
        starts_at,
        ends_at: starts_at + Duration::minutes(30),
        hosts: vec![host.id.clone()],
        guests: guests.iter().map(|g| g.id.clone()).collect(),
    };
    let (view, _) = appointments::book(&world.core, &service(), booking).await.expect("booked");
    view.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_guest_is_outside_the_meeting_and_a_host_can_turn_them_away() {
    let world = World::new().await;
    let (host, guest, man) =
        (person("dr", Gender::Female), person("pat", Gender::Female), person("m", Gender::Male));
    let id = open_appointment(&world, &host, &[&guest, &man]).await;
    let hosted = appointments::join(&world.core, &host, id).await.expect("the host joins");
    let call = CallId(hosted.call.id);
    appointments::admit(&world.core, &host, id, &man.id).await.expect("admitted before he comes");
    appointments::join(&world.core, &man, id).await.expect("he joins");
    // He asks, the host (a woman) accepts: video is on between the two.
    let request = consent::request(&world.core, &man, call).await.expect("he asks");
    let on = consent::answer(&world.core, &host, call, request.id, true).await.expect("she accepts");
    assert_eq!(on.state, VideoState::On);

    let waiting = appointments::join(&world.core, &guest, id).await.expect("she waits");
    assert!(waiting.waiting && waiting.join.is_none());
    let video = consent::view(&world.core, &host, call).await.expect("the video state");
    assert_eq!(video.state, VideoState::On, "joining the waiting room does not turn video off");
    let revoke = consent::revoke(&world.core, &guest, call).await;
    assert_eq!(
        revoke.as_ref().err().and_then(code_of),
        Some(Code::NotInCall),
        "a waiting guest cannot revoke"
    );
    assert_eq!(
        lifecycle::token(&world.core, &guest, call).await.err().as_ref().and_then(code_of),
        Some(Code::InWaitingRoom)
    );

    appointments::turn_away(&world.core, &host, id, &guest.id).await.expect("turned away");
    assert_eq!(status_of(&world, call, &guest).await, ParticipantStatus::Removed);
    let back = appointments::join(&world.core, &guest, id).await;
    assert!(back.is_err(), "turned away for good: {:?}", back.map(|j| j.waiting));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appointment_that_has_not_met_is_not_ended_when_its_room_closes() {
    let world = World::new().await;
    let (host, guest) = (person("dr", Gender::Female), person("pat", Gender::Male));
    let id = open_appointment(&world, &host, &[&guest]).await;
    let waiting = appointments::join(&world.core, &guest, id).await.expect("the guest comes first");
    let call = CallId(waiting.call.id);
    let room = world.room_of(call);
    // LiveKit closes the empty room (a guest came and went).
    world.rooms.close_room(&room);
    let finished = callgate::livekit::Event {
        id: format!("EV_{}", Uuid::new_v4().simple()),
        kind: callgate::livekit::EventKind::RoomFinished,
        room: Some(room.clone()),
        created_at: Some(world.clock.now()),
        participant: None,
        track: None,
        egress: None,
    };
    world.deliver(&finished).await;
    let view = appointments::get(&world.core, &service(), id).await.expect("the appointment");
    assert_ne!(view.state, callgate::domain::AppointmentState::Ended, "{view:?}");

    let hosted = appointments::join(&world.core, &host, id).await.expect("the host comes");
    assert_eq!(hosted.call.id, call.0, "the same call");
    assert!(world.rooms.has_room(&room), "its room is open again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_written_busy_is_told_nothing_of_the_call_and_cannot_read_it() {
    let world = World::new().await;
    let (alice, bob, carol, dave) = (
        person("alice", Gender::Female),
        person("bob", Gender::Male),
        person("carol", Gender::Female),
        person("dave", Gender::Male),
    );
    world.ring(&dave, &[&person("z", Gender::Male)]).await;
    // Dave is in another call: written busy in this one.
    let call = world.ring(&alice, &[&bob, &dave]).await;
    assert_eq!(status_of(&world, call, &dave).await, ParticipantStatus::Busy);
    lifecycle::accept(&world.core, &bob, call, None).await.expect("bob answers");
    growth::invite(&world.core, &bob, call, vec![carol.id.clone()]).await.expect("carol rung");
    lifecycle::leave(&world.core, &bob, call).await.expect("bob leaves");
    lifecycle::end(&world.core, &alice, call).await.expect("she hangs up");

    assert_eq!(events_of(&world, call, &dave).await, 0, "no event of the call reached him, not even its end");
    let read = lifecycle::get(&world.core, &dave, call).await;
    assert!(matches!(read, Err(CallError::NotFound)), "404 for him");
    let ledger = consent::ledger(&world.core, &dave, call).await;
    assert!(matches!(ledger, Err(CallError::NotFound)));
    let timeline = callgate::calls::reports::timeline(&world.core, &dave, call, None, 50).await;
    assert!(matches!(timeline, Err(CallError::NotFound)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_dropped_is_left_once_the_rejoin_grace_has_passed_by_the_clock_and_not_before() {
    let (world, call, [_, bob, carol]) = bob_reconnecting_in_a_group().await;
    let grace = Duration::from_std(world.core.config.timeouts.rejoin_grace).expect("a duration");

    world.clock.advance(grace - Duration::seconds(1));
    callgate::workers::jobs::run_due(&world.core).await.expect("a run");
    assert_eq!(status_of(&world, call, &bob).await, ParticipantStatus::Reconnecting, "not yet");

    world.clock.advance(Duration::seconds(1));
    callgate::workers::jobs::run_due(&world.core).await.expect("a run");
    assert_eq!(status_of(&world, call, &bob).await, ParticipantStatus::Left, "his grace is over");
    assert_eq!(status_of(&world, call, &carol).await, ParticipantStatus::Joined, "the others stay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_is_over_once_the_clock_passes_its_end() {
    let world = World::new().await;
    let (alice, bob, carol) =
        (person("alice", Gender::Female), person("bob", Gender::Male), person("carol", Gender::Female));
    let call = group(&world, &alice, &[&bob]).await;
    growth::invite(&world.core, &alice, call, vec![carol.id.clone()]).await.expect("rung");
    assert_eq!(status_of(&world, call, &carol).await, ParticipantStatus::Invited);
    let ringing = Duration::from_std(world.core.config.timeouts.ringing).expect("a duration");

    world.clock.advance(ringing - Duration::seconds(1));
    callgate::workers::jobs::run_due(&world.core).await.expect("a run");
    assert_eq!(status_of(&world, call, &carol).await, ParticipantStatus::Invited, "still ringing");

    world.clock.advance(Duration::seconds(1));
    let ran = callgate::workers::jobs::run_due(&world.core).await.expect("a run");
    assert_eq!(status_of(&world, call, &carol).await, ParticipantStatus::Missed, "her ring is over");
    assert_eq!(
        ran.deadlines, 1,
        "at once, by the clock (not again and again until the database's time is there)"
    );
}
