//! Sealed answers as the service keeps them: a request made while someone
//! is still being rung waits for their ring, and is decided when it ends,
//! whoever answered what before.

use callgate::calls::{consent, lifecycle};
use callgate::domain::consent::{Gender, VideoState};
use callgate::domain::{AuthUser, CallId, CallType, ParticipantStatus};
use callgate::workers::jobs;
use chrono::Duration;

use crate::support::{World, person};

/// Max rings Wanda and Vera for a video call, rung longer ago than the
/// ringing timeout; Wanda accepts with `video: wanda_says`. Returns the
/// call, Max and Vera.
async fn video_call_vera_misses(world: &World, wanda_says: bool) -> (CallId, AuthUser, AuthUser) {
    let (max, wanda, vera) =
        (person("max", Gender::Male), person("wanda", Gender::Female), person("vera", Gender::Female));
    let ringing = Duration::from_std(world.core.config.timeouts.ringing).expect("a duration");
    world.clock.advance(-(ringing + Duration::seconds(1)));
    let start = lifecycle::StartCall {
        invitees: vec![wanda.id.clone(), vera.id.clone()],
        call_type: CallType::Video,
        conversation_id: None,
        external_ref: None,
    };
    let started = lifecycle::start(&world.core, &max, start).await.expect("the call starts");
    let call = CallId(started.call.id);
    // Back to now: the ring is overdue, the request Wanda's answer puts is not.
    world.clock.advance(ringing + Duration::seconds(1));
    let answered = lifecycle::accept(&world.core, &wanda, call, Some(wanda_says)).await.expect("she answers");
    assert_eq!(answered.call.video, VideoState::Requested, "sealed: Vera is still being rung");
    (call, max, vera)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_that_ends_unanswered_decides_the_request_it_was_awaited_for() {
    let world = World::new().await;
    for (wanda_says, outcome) in [(true, VideoState::On), (false, VideoState::Off)] {
        let (call, max, vera) = video_call_vera_misses(&world, wanda_says).await;

        assert!(jobs::run_due(&world.core).await.expect("a run").deadlines >= 1, "the ring is over");

        let view = world.call(&max, call).await;
        let rung = view.participants.iter().find(|p| p.user_id == vera.id.as_str()).expect("vera");
        assert_eq!(rung.status, ParticipantStatus::Missed);
        assert_eq!(view.video, outcome, "Wanda said {wanda_says}, and nobody else was awaited");
        let video = consent::view(&world.core, &max, call).await.expect("his view");
        assert_eq!(video.cooldown_until.is_some(), !wanda_says, "a decline cools down from the outcome");
    }
}
