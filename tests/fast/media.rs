//! What LiveKit is told, and in what order, so that a modified client gets
//! nothing played: a track is judged by its media, not only by its label; a
//! camera while video is off twice puts its publisher out; the room's
//! metadata (what honest clients go by) says who is live and whether video
//! is on, and changes before any right is withdrawn or anyone put out.

use callgate::calls::consent;
use callgate::clock::Clock;
use callgate::domain::consent::{Gender, TrackKind, TrackSource, VideoState};
use callgate::domain::{AuthUser, CallId, ParticipantStatus};
use callgate::livekit::TrackSeen;
use callgate::livekit::fake::Asked;
use callgate::workers::reconcile;
use chrono::Duration;
use serde_json::Value;

use crate::support::{World, in_room, joined, person, published};

/// What the room's metadata says, as a client reads it.
fn metadata(world: &World, call: CallId) -> Value {
    let raw = world.rooms.metadata_of(&world.room_of(call)).expect("the room");
    serde_json::from_str(&raw).expect("JSON")
}

fn live(meta: &Value) -> Vec<String> {
    meta["live"].as_array().expect("live").iter().map(|v| v.as_str().expect("id").to_owned()).collect()
}

fn sorted(users: &[&AuthUser]) -> Vec<String> {
    let mut ids: Vec<String> = users.iter().map(|u| u.id.to_string()).collect();
    ids.sort();
    ids
}

/// `him` asks, `her` accepts: video is on and LiveKit has been told.
async fn video_on(world: &World, call: CallId, him: &AuthUser, her: &AuthUser) {
    let request = consent::request(&world.core, him, call).await.expect("he asks");
    let view = consent::answer(&world.core, her, call, request.id, true).await.expect("she accepts");
    assert_eq!(view.state, VideoState::On);
    world.settle(call).await;
}

fn video_track(sid: &str, declared: TrackKind, source: TrackSource) -> TrackSeen {
    TrackSeen { media: Some(TrackKind::Video), ..TrackSeen::honest(sid, declared, source) }
}

async fn status_of(world: &World, reader: &AuthUser, call: CallId, who: &AuthUser) -> ParticipantStatus {
    let view = world.call(reader, call).await;
    view.participants.iter().find(|p| p.user_id == who.id.as_str()).expect("a participant").status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_metadata_lists_who_is_live_from_the_start_and_after_every_answer() {
    let world = World::new().await;
    let (alice, bob, carol) =
        (person("alice", Gender::Female), person("bob", Gender::Male), person("carol", Gender::Female));
    let call = world.ring(&alice, &[&bob, &carol]).await;
    let meta = metadata(&world, call);
    assert_eq!(live(&meta), sorted(&[&alice]), "ringing: only the initiator is live: {meta}");
    assert_eq!(meta["video"], "off");

    callgate::calls::lifecycle::accept(&world.core, &bob, call, None).await.expect("bob answers");
    world.settle(call).await;
    assert_eq!(live(&metadata(&world, call)), sorted(&[&alice, &bob]), "carol has not answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_tells_the_room_video_is_off_before_livekit_withdraws_anyones_camera() {
    let world = World::new().await;
    let (her, him) = (person("her", Gender::Female), person("him", Gender::Male));
    let call = world.answered_call(&her, &[&him]).await;
    let room = world.room_of(call);
    for who in [&her, &him] {
        world.rooms.join(&room, in_room(who, world.clock.now()));
    }
    video_on(&world, call, &him, &her).await;
    assert_eq!(metadata(&world, call)["video"], "on");
    let before = world.rooms.asked().len();

    consent::revoke(&world.core, &her, call).await.expect("she revokes");
    world.settle(call).await;

    let asked = &world.rooms.asked()[before..];
    let told_off = asked
        .iter()
        .position(|a| matches!(a, Asked::Metadata { metadata, .. } if metadata.contains(r#""video":"off""#)))
        .unwrap_or_else(|| panic!("the room is told video is off: {asked:?}"));
    let first_withdrawal = asked
        .iter()
        .position(|a| matches!(a, Asked::Rights { sources, .. } if !sources.contains(&TrackSource::Camera)))
        .unwrap_or_else(|| panic!("the cameras are withdrawn: {asked:?}"));
    assert!(told_off < first_withdrawal, "metadata first, then rights: {asked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_who_leaves_is_off_the_live_list_before_he_is_put_out_of_the_room() {
    let world = World::new().await;
    let (her, him, w2) =
        (person("her", Gender::Female), person("him", Gender::Male), person("w2", Gender::Female));
    let call = world.answered_call(&her, &[&him, &w2]).await;
    let before = world.rooms.asked().len();

    callgate::calls::lifecycle::leave(&world.core, &him, call).await.expect("he leaves");
    world.settle(call).await;
    // The leave's own settling runs after its commit: waited for, not slept on.
    world.core.quiesce().await;
    assert!(world.rooms.removed().iter().any(|(_, who)| who == him.id.as_str()), "he is put out of the room");

    let asked = &world.rooms.asked()[before..];
    let off_the_list = asked
        .iter()
        .position(|a| matches!(a, Asked::Metadata { metadata, .. } if !metadata.contains(him.id.as_str())))
        .unwrap_or_else(|| panic!("the metadata drops him: {asked:?}"));
    let put_out = asked
        .iter()
        .position(|a| matches!(a, Asked::Removed { identity, .. } if identity == him.id.as_str()))
        .expect("he is put out");
    assert!(off_the_list < put_out, "off the live list first, then out of the room: {asked:?}");
    assert_eq!(live(&metadata(&world, call)), sorted(&[&her, &w2]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_track_declared_as_audio_puts_its_publisher_out_of_the_call_in_the_webhook_path() {
    let world = World::new().await;
    let (her, him, w2) =
        (person("her", Gender::Female), person("him", Gender::Male), person("w2", Gender::Female));
    let call = world.answered_call(&her, &[&him, &w2]).await;
    let room = world.room_of(call);
    let session = world.clock.now();
    world.rooms.join(&room, in_room(&him, session));
    // Declared an audio microphone (what LiveKit checks), VP8 on the wire.
    let disguised = video_track("TR_disguised", TrackKind::Audio, TrackSource::Microphone);
    world.rooms.publish(&room, him.id.as_str(), disguised.clone());

    world.deliver(&published(&room, &him, session, world.clock.now(), disguised)).await;

    assert_eq!(status_of(&world, &her, call, &him).await, ParticipantStatus::Removed);
    assert!(world.rooms.participant_in(&room, him.id.as_str()).is_none(), "out of the room");
    assert!(!live(&metadata(&world, call)).contains(&him.id.to_string()));
    let (kind, declared): (String, String) = sqlx::query_as(
        "select detail->>'kind', detail->>'declared' from consent_ledger \
         where call_id = $1 and kind = 'violation' and actor = $2",
    )
    .bind(call.0)
    .bind(him.id.as_str())
    .fetch_one(&world.core.db)
    .await
    .expect("the violation in the ledger");
    assert_eq!((kind.as_str(), declared.as_str()), ("video", "audio"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_track_declared_as_audio_found_by_the_reconciler_puts_its_publisher_out() {
    let world = World::new().await;
    let (her, him, w2) =
        (person("her", Gender::Female), person("him", Gender::Male), person("w2", Gender::Female));
    let call = world.answered_call(&her, &[&him, &w2]).await;
    let room = world.room_of(call);
    for who in [&her, &him, &w2] {
        world.rooms.join(&room, in_room(who, world.clock.now()));
    }
    let disguised = video_track("TR_disguised", TrackKind::Audio, TrackSource::Microphone);
    world.rooms.publish(&room, him.id.as_str(), disguised);

    let pass = reconcile::pass(&world.core).await.expect("a pass");

    assert!(pass.violations >= 1, "{pass:?}");
    assert_eq!(status_of(&world, &her, call, &him).await, ParticipantStatus::Removed);
    assert!(world.rooms.participant_in(&room, him.id.as_str()).is_none(), "out of the room");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_while_video_is_off_is_withdrawn_once_and_puts_its_publisher_out_the_second_time() {
    let world = World::new().await;
    let (her, him, w2) =
        (person("her", Gender::Female), person("him", Gender::Male), person("w2", Gender::Female));
    let call = world.answered_call(&her, &[&him, &w2]).await;
    let room = world.room_of(call);
    // As with a token LiveKit refreshed while video was on: he has the camera right.
    let session = world.clock.now();
    world.rooms.join(&room, in_room(&him, session));
    world.deliver(&joined(&room, &him, session, session)).await;
    let later = world.clock.now() + Duration::seconds(2);

    let first = TrackSeen::honest("TR_cam1", TrackKind::Video, TrackSource::Camera);
    world.rooms.publish(&room, him.id.as_str(), first.clone());
    world.deliver(&published(&room, &him, session, later, first)).await;
    assert_eq!(status_of(&world, &her, call, &him).await, ParticipantStatus::Joined, "once: withdrawn");
    assert!(
        world
            .rooms
            .publish_sources_of(&room, him.id.as_str())
            .is_some_and(|s| !s.contains(&TrackSource::Camera)),
        "his camera right is withdrawn"
    );

    let second = TrackSeen::honest("TR_cam2", TrackKind::Video, TrackSource::Camera);
    world.rooms.publish(&room, him.id.as_str(), second.clone());
    world.deliver(&published(&room, &him, session, later, second)).await;
    assert_eq!(status_of(&world, &her, call, &him).await, ParticipantStatus::Removed, "twice: out");
    assert!(world.rooms.participant_in(&room, him.id.as_str()).is_none(), "out of the room");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_metadata_changed_behind_callgates_back_is_put_back_by_the_reconciler() {
    let world = World::new().await;
    let (her, him) = (person("her", Gender::Female), person("him", Gender::Male));
    let call = world.answered_call(&her, &[&him]).await;
    let room = world.room_of(call);
    for who in [&her, &him] {
        world.rooms.join(&room, in_room(who, world.clock.now()));
    }
    let good = world.rooms.metadata_of(&room).expect("metadata");
    // As if LiveKit lost it (a restart) while callgate's record says it holds it.
    callgate::livekit::RoomService::update_room_metadata(&*world.rooms, &room, "{}".into())
        .await
        .expect("set");

    let pass = reconcile::pass(&world.core).await.expect("a pass");

    assert_eq!(pass.calls_disagreeing, 1, "{pass:?}");
    assert_eq!(world.rooms.metadata_of(&room), Some(good));
}
