//! Recording a call everyone agreed to, over `FakeRooms` (egress as the
//! fake records what it was asked) and the job runner: who must consent,
//! what starts and stops egress, what egress's events do to a recording,
//! its file checked on disk and kept (on the disk, or uploaded to a fake
//! bucket and then deleted from the disk), who reaches it, and its deletion.

use std::path::PathBuf;
use std::sync::Arc;

use callgate::calls::participants::Consents;
use callgate::calls::{CallError, growth, lifecycle, recording};
use callgate::clock::Clock;
use callgate::domain::consent::{Gender, RecordingPolicy, VideoState};
use callgate::domain::{AuthUser, CallId, Code};
use callgate::livekit::{
    Egress, EgressFile, EgressStatus, Event, EventKind, RecordingFile, RecordingLayout, RecordingSpec,
    RoomService,
};
use callgate::storage::Download;
use callgate::storage::fake::FakeBucket;
use callgate::workers::jobs;
use chrono::Duration;
use sha2::Digest;
use uuid::Uuid;

use crate::support::{World, in_room, joined, person};

/// A world that records into a folder of its own.
async fn world() -> (World, PathBuf) {
    let dir = std::env::temp_dir().join(format!("callgate-recordings-{}", Uuid::new_v4().simple()));
    let folder = dir.clone();
    let world = World::configured(move |c| {
        c.recording_policy = RecordingPolicy::AllParty;
        c.recording.dir = folder.clone();
        c.recording.egress_dir = folder.to_string_lossy().into_owned();
    })
    .await;
    (world, dir)
}

async fn run_jobs(world: &World) -> jobs::Ran {
    jobs::run_due(&world.core).await.expect("a run")
}

/// Everyone asked says yes after `by` asks; the call is being recorded.
async fn consented(world: &World, call: CallId, by: &AuthUser, others: &[&AuthUser]) {
    let request = recording::request(&world.core, by, call).await.expect("asked");
    for who in others {
        recording::answer(&world.core, who, call, request.id, true).await.expect("a yes");
    }
    assert_eq!(recording::view(&world.core, by, call).await.expect("a view").state, VideoState::On);
}

fn started(world: &World) -> Vec<(Egress, RecordingSpec)> {
    world.rooms.recordings()
}

fn egress_event(world: &World, call: CallId, name: &str, egress: Egress) -> Event {
    Event {
        id: format!("EV_{}", Uuid::new_v4().simple()),
        kind: EventKind::Other(name.into()),
        room: Some(world.room_of(call)),
        created_at: Some(world.clock.now()),
        participant: None,
        track: None,
        egress: Some(egress),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_everyone_present_says_yes_egress_records_the_room_into_a_file_of_the_call() {
    let (world, dir) = world().await;
    let (alice, bob, carl) =
        (person("alice", Gender::Female), person("bob", Gender::Male), person("carl", Gender::Male));
    let call = world.answered_call(&alice, &[&bob, &carl]).await;
    let request = recording::request(&world.core, &bob, call).await.expect("asked");
    recording::answer(&world.core, &alice, call, request.id, true).await.expect("her yes");
    run_jobs(&world).await;
    assert!(started(&world).is_empty(), "carl has not answered: nothing records");

    recording::answer(&world.core, &carl, call, request.id, true).await.expect("his yes");
    assert!(run_jobs(&world).await.recordings >= 1);

    let recordings = started(&world);
    assert_eq!(recordings.len(), 1, "{recordings:?}");
    let (egress, spec) = &recordings[0];
    assert_eq!((spec.layout, spec.file), (RecordingLayout::AudioOnly, RecordingFile::Ogg), "an audio call");
    let folder = format!("{}/{}/", dir.display(), call.0);
    assert!(spec.filepath.starts_with(&folder) && spec.filepath.ends_with(".ogg"), "{}", spec.filepath);
    let listed = recording::list(&world.core, &carl, call).await.expect("listed");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status, "starting");
    let view = recording::view(&world.core, &alice, call).await.expect("a view");
    assert_eq!(view.recording.map(|r| r.id), Some(listed[0].id));
    assert!(egress.status.is_running());
    assert_eq!(run_jobs(&world).await.recordings, 0, "nothing more to do");
    assert_eq!(started(&world).len(), 1, "one recording");
}

/// Whether the room's metadata (what every client reads) says it records.
fn metadata_says_recording(world: &World, call: CallId) -> bool {
    let raw = world.rooms.metadata_of(&world.room_of(call)).expect("the room");
    let meta: serde_json::Value = serde_json::from_str(&raw).expect("JSON");
    meta["recording"].as_bool().unwrap_or_else(|| panic!("a recording flag: {raw}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_metadata_says_it_records_while_everyone_consents_and_not_after_a_stop() {
    let (world, _) = world().await;
    let (alice, bob) = (person("alice", Gender::Female), person("bob", Gender::Male));
    let call = world.answered_call(&alice, &[&bob]).await;
    assert!(!metadata_says_recording(&world, call), "nothing asked");

    let request = recording::request(&world.core, &alice, call).await.expect("asked");
    assert!(!metadata_says_recording(&world, call), "a request is no business of the room");
    let raw = world.rooms.metadata_of(&world.room_of(call)).expect("the room");
    assert!(!raw.contains(&request.id.to_string()), "nothing of the request: {raw}");

    // No settling by the test: the answer itself has told LiveKit.
    recording::answer(&world.core, &bob, call, request.id, true).await.expect("his yes");
    assert!(metadata_says_recording(&world, call), "on once everyone consents");
    run_jobs(&world).await;
    assert!(metadata_says_recording(&world, call), "still on while egress records");

    recording::stop(&world.core, &bob, call).await.expect("stopped");
    assert!(!metadata_says_recording(&world, call), "off after the stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_who_does_not_consent_takes_the_recording_flag_off_the_room() {
    let (world, _) = world().await;
    let (alice, bob, dave) =
        (person("alice", Gender::Female), person("bob", Gender::Male), person("dave", Gender::Male));
    let call = world.answered_call(&alice, &[&bob]).await;
    consented(&world, call, &alice, &[&bob]).await;
    assert!(metadata_says_recording(&world, call));
    growth::invite(&world.core, &alice, call, vec![dave.id.clone()]).await.expect("dave rung");

    lifecycle::accept(&world.core, &dave, call, Consents::default()).await.expect("dave answers");
    world.settle(call).await;

    assert!(!metadata_says_recording(&world, call), "his answer settles the room");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_that_missed_the_recording_flag_is_put_back_by_the_reconciler() {
    let (world, _) = world().await;
    let (alice, bob) = (person("alice", Gender::Female), person("bob", Gender::Male));
    let call = world.answered_call(&alice, &[&bob]).await;
    let room = world.room_of(call);
    let before = world.rooms.metadata_of(&room).expect("metadata");
    consented(&world, call, &alice, &[&bob]).await;
    let good = world.rooms.metadata_of(&room).expect("metadata");
    // As if LiveKit lost the push (a restart) while callgate's record says it holds it.
    RoomService::update_room_metadata(&*world.rooms, &room, before).await.expect("set");

    let pass = callgate::workers::reconcile::pass(&world.core).await.expect("a pass");

    assert_eq!(pass.calls_disagreeing, 1, "{pass:?}");
    assert_eq!(world.rooms.metadata_of(&room), Some(good));
    assert!(metadata_says_recording(&world, call));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_no_records_nothing_and_the_requester_is_cooled_down() {
    let (world, _) = world().await;
    let (alice, bob, carl) =
        (person("alice", Gender::Female), person("bob", Gender::Male), person("carl", Gender::Male));
    let call = world.answered_call(&alice, &[&bob, &carl]).await;
    let request = recording::request(&world.core, &alice, call).await.expect("asked");
    recording::answer(&world.core, &bob, call, request.id, false).await.expect("his no");
    recording::answer(&world.core, &carl, call, request.id, true).await.expect("his yes");

    run_jobs(&world).await;
    assert!(started(&world).is_empty());
    assert_eq!(recording::view(&world.core, &alice, call).await.expect("a view").state, VideoState::Off);
    match recording::request(&world.core, &alice, call).await {
        Err(CallError::TooManyRequests { code, .. }) => assert_eq!(code, Code::RecordingRequestCooldown),
        other => panic!("a second request at once: {:?}", other.map(|r| r.id)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anyone_present_stops_it_and_egress_is_told_to_stop() {
    let (world, _) = world().await;
    let (alice, bob) = (person("alice", Gender::Female), person("bob", Gender::Male));
    let call = world.answered_call(&alice, &[&bob]).await;
    consented(&world, call, &alice, &[&bob]).await;
    run_jobs(&world).await;

    let view = recording::stop(&world.core, &bob, call).await.expect("stopped");
    assert_eq!(view.state, VideoState::Off);
    run_jobs(&world).await;

    let (egress, _) = &started(&world)[0];
    let now = world.rooms.list_recordings(&world.room_of(call), false).await.expect("listed");
    assert_eq!(now[0].status, EgressStatus::Complete, "egress stopped {}", egress.egress_id);
    // The fake's egress is over at once and wrote no file: callgate saw it
    // over (in the same job) and found no file.
    let listed = recording::list(&world.core, &alice, call).await.expect("listed");
    assert_eq!(listed[0].status, "failed", "{:?}", listed[0].status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_who_does_not_consent_as_they_join_stops_it_and_one_who_does_keeps_it() {
    for (consent, still) in [(None, VideoState::Off), (Some(true), VideoState::On)] {
        let (world, _) = world().await;
        let (alice, bob, dave) =
            (person("alice", Gender::Female), person("bob", Gender::Male), person("dave", Gender::Male));
        let call = world.answered_call(&alice, &[&bob]).await;
        consented(&world, call, &alice, &[&bob]).await;
        growth::invite(&world.core, &alice, call, vec![dave.id.clone()]).await.expect("dave rung");

        lifecycle::accept(&world.core, &dave, call, Consents { video: None, recording: consent })
            .await
            .expect("dave answers");

        let view = recording::view(&world.core, &alice, call).await.expect("a view");
        assert_eq!(view.state, still, "dave joined with recording {consent:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_file_is_checked_on_disk_kept_ready_and_the_host_and_participants_hear() {
    let (world, dir) = world().await;
    let (alice, bob) = (person("alice", Gender::Female), person("bob", Gender::Male));
    let call = world.answered_call(&alice, &[&bob]).await;
    consented(&world, call, &alice, &[&bob]).await;
    run_jobs(&world).await;
    let (egress, spec) = started(&world).remove(0);

    let active =
        Egress { status: EgressStatus::Active, started_at: Some(world.clock.now()), ..egress.clone() };
    world.deliver(&egress_event(&world, call, "egress_started", active.clone())).await;
    world.deliver(&egress_event(&world, call, "egress_updated", active)).await;
    assert_eq!(recording::list(&world.core, &bob, call).await.expect("listed")[0].status, "recording");

    // Egress wrote the file, then says it is done.
    let bytes = b"OggS a recording of alice and bob".repeat(100);
    std::fs::create_dir_all(std::path::Path::new(&spec.filepath).parent().expect("a folder")).expect("mkdir");
    std::fs::write(&spec.filepath, &bytes).expect("the file");
    let done = Egress {
        status: EgressStatus::Complete,
        ended_at: Some(world.clock.now() + Duration::seconds(9)),
        files: vec![EgressFile {
            filename: spec.filepath.clone(),
            size: bytes.len() as u64,
            duration: std::time::Duration::from_millis(8_500),
            started_at: None,
        }],
        ..egress.clone()
    };
    let ended = egress_event(&world, call, "egress_ended", done);
    world.deliver(&ended).await;
    world.deliver(&ended).await;
    run_jobs(&world).await;

    let listed = recording::list(&world.core, &alice, call).await.expect("listed");
    let ready = &listed[0];
    assert_eq!(ready.status, "ready");
    assert_eq!((ready.size_bytes, ready.duration_ms), (Some(bytes.len() as i64), Some(8_500)));
    assert_eq!(ready.sha256.as_deref(), Some(hex::encode(sha2::Sha256::digest(&bytes)).as_str()));
    let (found, how) = recording::download(&world.core, &bob, ready.id).await.expect("his to fetch");
    let Download::File(path) = how else { panic!("the local disk's file is streamed: {how:?}") };
    assert_eq!(std::fs::read(path).expect("the file"), bytes);
    assert_eq!(found.id, ready.id);

    let hooks: Vec<(String, serde_json::Value)> =
        sqlx::query_as("select type, payload from app_webhook_outbox where call_id = $1 order by created_at")
            .bind(call.0)
            .fetch_all(&world.core.db)
            .await
            .expect("the outbox");
    let kinds: Vec<&str> = hooks.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "recording.started").count(), 1, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "recording.ready").count(), 1, "{kinds:?}");
    let (_, ready_hook) = hooks.iter().find(|(k, _)| k == "recording.ready").expect("ready");
    let text = ready_hook.to_string();
    assert!(!text.contains(&dir.display().to_string()), "no path reaches the host: {text}");
    assert!(!text.contains("female") && !text.contains("gender"), "nothing of anyone's gender: {text}");
    let told: i64 = sqlx::query_scalar(
        "select count(distinct user_id) from user_events where call_id = $1 and type = 'recording.ready'",
    )
    .bind(call.0)
    .fetch_one(&world.core.db)
    .await
    .expect("counted");
    assert_eq!(told, 2, "both participants hear the file is ready");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_whose_egress_failed_is_failed_and_one_whose_file_is_missing_too() {
    let (world, _) = world().await;
    let (alice, bob) = (person("alice", Gender::Female), person("bob", Gender::Male));
    let call = world.answered_call(&alice, &[&bob]).await;
    consented(&world, call, &alice, &[&bob]).await;
    run_jobs(&world).await;
    let (egress, _) = started(&world).remove(0);
    let failed =
        Egress { status: EgressStatus::Failed, error: "pipeline went away".into(), ..egress.clone() };
    world.deliver(&egress_event(&world, call, "egress_ended", failed)).await;
    let listed = recording::list(&world.core, &alice, call).await.expect("listed");
    assert_eq!(listed[0].status, "failed");
    // Nothing records, so the consent lapsed (nobody is told it records).
    let view = recording::view(&world.core, &alice, call).await.expect("the view");
    assert_eq!(view.state, VideoState::Off);
    run_jobs(&world).await;
    assert_eq!(started(&world).len(), 1, "nothing is started again behind anyone's back");

    // Asked again: this time egress says complete, but no file is there.
    consented(&world, call, &bob, &[&alice]).await;
    run_jobs(&world).await;
    let (second, _) = started(&world).remove(1);
    let done = Egress { status: EgressStatus::Complete, ..second };
    world.deliver(&egress_event(&world, call, "egress_ended", done)).await;
    run_jobs(&world).await;
    let listed = recording::list(&world.core, &alice, call).await.expect("listed");
    assert_eq!(listed.iter().map(|r| r.status.as_str()).collect::<Vec<_>>(), ["failed", "failed"]);
    assert!(matches!(
        recording::download(&world.core, &alice, listed[1].id).await,
        Err(CallError::Conflict { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_egress_never_starts_lets_the_consent_lapse_once_given_up() {
    let (world, _) = world().await;
    let (alice, bob) = (person("alice", Gender::Female), person("bob", Gender::Male));
    let call = world.answered_call(&alice, &[&bob]).await;
    // Both are in the room (the call is connected, and stays so).
    let (room, now) = (world.room_of(call), world.clock.now());
    for who in [&alice, &bob] {
        world.rooms.join(&room, in_room(who, now));
        world.deliver(&joined(&room, who, now, now)).await;
    }
    consented(&world, call, &alice, &[&bob]).await;
    // LiveKit (and so egress) does not answer however often it is asked.
    world.rooms.set_down(true);
    // Its backoff (1, 2, 5, 10 and 30 s), then it is given up.
    for wait in [1, 2, 5, 10, 30, 1] {
        run_jobs(&world).await;
        world.clock.advance(Duration::seconds(wait) + Duration::milliseconds(100));
    }
    run_jobs(&world).await;
    world.rooms.set_down(false);
    assert!(started(&world).is_empty(), "nothing was recorded");
    let view = recording::view(&world.core, &bob, call).await.expect("the view");
    assert_eq!(view.state, VideoState::Off, "nobody is told it records");
    let kinds: Vec<String> = sqlx::query_scalar(
        "select kind from consent_ledger where call_id = $1 and subject = 'recording' order by id",
    )
    .bind(call.0)
    .fetch_all(&world.core.db)
    .await
    .expect("the ledger");
    let state: String = sqlx::query_scalar("select state::text from calls where id = $1")
        .bind(call.0)
        .fetch_one(&world.core.db)
        .await
        .expect("its state");
    assert_eq!(state, "active", "the call goes on");
    assert_eq!(kinds.last().map(String::as_str), Some("off"), "{kinds:?}");
}

/// A call of Alice's and Bob's whose room someone with LiveKit's keys
/// records: the world, Alice, the call, its room and egress's recording.
async fn recorded_behind_callgates_back() -> (World, AuthUser, CallId, String, Egress) {
    let (world, _) = world().await;
    let (alice, bob) = (person("alice", Gender::Female), person("bob", Gender::Male));
    let call = world.answered_call(&alice, &[&bob]).await;
    let room = world.room_of(call);
    let spec =
        RecordingSpec { layout: RecordingLayout::AudioOnly, file: RecordingFile::Ogg, filepath: "/x".into() };
    let stray = world.rooms.start_recording(&room, &spec).await.expect("someone else's recording");
    (world, alice, call, room, stray)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_of_the_room_nobody_consented_to_is_stopped() {
    let (world, _, call, room, stray) = recorded_behind_callgates_back().await;
    let reported = Egress { status: EgressStatus::Active, ..stray.clone() };

    world.deliver(&egress_event(&world, call, "egress_started", reported)).await;
    run_jobs(&world).await;

    let now = world.rooms.list_recordings(&room, true).await.expect("listed");
    assert!(now.is_empty(), "the stray was stopped: {now:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_nobody_consented_to_whose_webhooks_never_came_is_stopped_by_the_reconciler() {
    let (world, alice, call, room, _) = recorded_behind_callgates_back().await;

    // No webhook: ListRooms says a recorder is in the room.
    let pass = callgate::workers::reconcile::pass(&world.core).await.expect("a pass");
    assert_eq!(pass.recorders_unasked, 1, "{pass:?}");
    run_jobs(&world).await;

    let now = world.rooms.list_recordings(&room, true).await.expect("listed");
    assert!(now.is_empty(), "the stray was stopped: {now:?}");
    let pass = callgate::workers::reconcile::pass(&world.core).await.expect("another pass");
    assert_eq!(pass.recorders_unasked, 0, "{pass:?}");
    let listed = recording::list(&world.core, &alice, call).await.expect("listed");
    assert!(listed.is_empty(), "nothing of callgate's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_the_call_stops_its_recording() {
    let (world, _) = world().await;
    let (alice, bob) = (person("alice", Gender::Female), person("bob", Gender::Male));
    let call = world.answered_call(&alice, &[&bob]).await;
    consented(&world, call, &alice, &[&bob]).await;
    run_jobs(&world).await;

    lifecycle::end(&world.core, &alice, call).await.expect("ended");
    run_jobs(&world).await;

    let running = world.rooms.list_recordings(&world.room_of(call), true).await.expect("listed");
    assert!(running.is_empty(), "{running:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_and_those_never_in_the_call_reach_no_recording_and_learn_nothing() {
    let (world, _) = world().await;
    let (alice, bob, eve) =
        (person("alice", Gender::Female), person("bob", Gender::Male), person("eve", Gender::Female));
    let call = world.answered_call(&alice, &[&bob]).await;
    consented(&world, call, &alice, &[&bob]).await;
    run_jobs(&world).await;
    let id = recording::list(&world.core, &alice, call).await.expect("listed")[0].id;

    for (who, what) in [(&eve, "a stranger")] {
        assert!(matches!(recording::list(&world.core, who, call).await, Err(CallError::NotFound)), "{what}");
        assert!(
            matches!(recording::download(&world.core, who, id).await, Err(CallError::NotFound)),
            "{what}"
        );
        assert!(matches!(recording::delete(&world.core, who, id).await, Err(CallError::NotFound)), "{what}");
        assert!(matches!(recording::view(&world.core, who, call).await, Err(CallError::NotFound)), "{what}");
        assert!(
            matches!(recording::request(&world.core, who, call).await, Err(CallError::NotFound)),
            "{what}"
        );
    }
    let unknown = Uuid::new_v4();
    assert!(matches!(recording::download(&world.core, &alice, unknown).await, Err(CallError::NotFound)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_recording_off_a_request_is_refused_and_nothing_is_written() {
    let world = World::configured(|c| c.recording_policy = RecordingPolicy::Off).await;
    let (alice, bob) = (person("alice", Gender::Female), person("bob", Gender::Male));
    let call = world.answered_call(&alice, &[&bob]).await;
    match recording::request(&world.core, &alice, call).await {
        Err(CallError::Forbidden { code, .. }) => assert_eq!(code, Code::RecordingDisabled),
        other => panic!("{:?}", other.map(|r| r.id)),
    }
    let rows: i64 = sqlx::query_scalar(
        "select count(*) from consent_ledger where call_id = $1 and subject = 'recording'",
    )
    .bind(call.0)
    .fetch_one(&world.core.db)
    .await
    .expect("counted");
    assert_eq!(rows, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_whose_egress_died_without_a_word_is_failed_by_the_reconciler() {
    let (world, _) = world().await;
    let (alice, bob) = (person("alice", Gender::Female), person("bob", Gender::Male));
    let call = world.answered_call(&alice, &[&bob]).await;
    consented(&world, call, &alice, &[&bob]).await;
    run_jobs(&world).await;
    let (egress, _) = started(&world).remove(0);

    world.rooms.end_recording(&egress.egress_id, EgressStatus::Failed);
    callgate::workers::reconcile::pass(&world.core).await.expect("a pass");
    run_jobs(&world).await;

    let listed = recording::list(&world.core, &alice, call).await.expect("listed");
    assert_eq!(listed[0].status, "failed");
    let hooks: i64 = sqlx::query_scalar(
        "select count(*) from app_webhook_outbox where call_id = $1 and type = 'recording.failed'",
    )
    .bind(call.0)
    .fetch_one(&world.core.db)
    .await
    .expect("counted");
    assert_eq!(hooks, 1, "the host hears of it once");
}

/// Alice and Bob consent; egress records, writes `bytes` and says it is
/// done. The recording's id and the file egress wrote (no job run yet).
async fn recorded(world: &World, bytes: &[u8]) -> (CallId, AuthUser, AuthUser, Uuid, PathBuf) {
    let (alice, bob) = (person("alice", Gender::Female), person("bob", Gender::Male));
    let call = world.answered_call(&alice, &[&bob]).await;
    consented(world, call, &alice, &[&bob]).await;
    run_jobs(world).await;
    let (egress, spec) = started(world).pop().expect("egress was asked");
    let file = PathBuf::from(&spec.filepath);
    std::fs::create_dir_all(file.parent().expect("a folder")).expect("mkdir");
    std::fs::write(&file, bytes).expect("the file");
    let done = Egress { status: EgressStatus::Complete, ended_at: Some(world.clock.now()), ..egress };
    world.deliver(&egress_event(world, call, "egress_ended", done)).await;
    let id = recording::list(&world.core, &alice, call).await.expect("listed")[0].id;
    (call, alice, bob, id, file)
}

async fn row(world: &World, id: Uuid) -> Option<(String, String, String)> {
    sqlx::query_as("select status, storage, storage_key from recordings where id = $1")
        .bind(id)
        .fetch_optional(&world.core.db)
        .await
        .expect("read")
}

/// A world that records into a folder of its own and keeps the files in
/// a (fake) S3 bucket.
async fn world_with_a_bucket() -> (World, Arc<FakeBucket>) {
    let dir = std::env::temp_dir().join(format!("callgate-recordings-{}", Uuid::new_v4().simple()));
    let bucket = Arc::new(FakeBucket::default());
    let world = World::storing(
        move |c| {
            c.recording_policy = RecordingPolicy::AllParty;
            c.recording.dir = dir.clone();
            c.recording.egress_dir = dir.to_string_lossy().into_owned();
        },
        Some(bucket.clone()),
    )
    .await;
    (world, bucket)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_bucket_a_finished_file_is_uploaded_then_its_local_copy_deleted_and_fetched_by_a_link() {
    let (world, bucket) = world_with_a_bucket().await;
    let bytes = b"OggS kept in the bucket".repeat(50);
    let (call, alice, _, id, file) = recorded(&world, &bytes).await;

    run_jobs(&world).await;

    let key = format!("recordings/{}/{id}.ogg", call.0);
    assert_eq!(bucket.uploads(), [(key.clone(), true)], "one upload, of the file egress wrote");
    assert_eq!(bucket.object(&key).as_deref(), Some(bytes.as_slice()), "the bucket holds its bytes");
    assert!(!file.exists(), "the local copy is gone once the bucket holds it");
    assert_eq!(row(&world, id).await, Some(("ready".into(), "s3".into(), key.clone())));
    let ready = &recording::list(&world.core, &alice, call).await.expect("listed")[0];
    assert_eq!(ready.sha256.as_deref(), Some(hex::encode(sha2::Sha256::digest(&bytes)).as_str()));
    let (_, how) = recording::download(&world.core, &alice, id).await.expect("hers to fetch");
    let ttl = world.core.config.recording.link_ttl;
    let expires_at = world.clock.now() + ttl;
    assert_eq!(
        how,
        Download::Link {
            url: format!("https://bucket.invalid/{key}?expires={}", expires_at.timestamp()),
            expires_at
        },
        "a link to the bucket, for RECORDING_LINK_TTL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_that_refuses_the_upload_leaves_the_file_on_disk_until_a_later_try_succeeds() {
    let (world, bucket) = world_with_a_bucket().await;
    bucket.refuse_uploads(8);
    let (call, alice, _, id, file) = recorded(&world, b"OggS worth keeping").await;

    let ran = run_jobs(&world).await;

    assert_eq!(ran.failed, 1, "{ran:?}");
    assert!(file.exists(), "the file stays while the bucket does not have it");
    assert_eq!(row(&world, id).await.map(|r| r.0), Some("ending".into()));
    // For minutes (egress forgot it; the reconciler passes): tried again
    // and again, never given up, never failed.
    for _ in 0..7 {
        world.clock.advance(Duration::minutes(1));
        callgate::workers::reconcile::pass(&world.core).await.expect("a pass");
        assert_eq!(run_jobs(&world).await.failed, 1, "tried again, refused again");
        assert!(file.exists());
        assert_eq!(recording::list(&world.core, &alice, call).await.expect("listed")[0].status, "ending");
    }

    world.clock.advance(Duration::minutes(1));
    run_jobs(&world).await;

    let key = format!("recordings/{}/{id}.ogg", call.0);
    let tries: Vec<bool> = bucket.uploads().iter().map(|(_, kept)| *kept).collect();
    assert_eq!(tries, [vec![false; 8], vec![true]].concat());
    assert_eq!(bucket.object(&key).as_deref(), Some(&b"OggS worth keeping"[..]));
    assert!(!file.exists());
    assert_eq!(row(&world, id).await, Some(("ready".into(), "s3".into(), key)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_retention_a_recording_is_deleted_file_and_row() {
    let (world, _) = world().await;
    let (call, alice, _, id, file) = recorded(&world, b"OggS kept a while").await;
    run_jobs(&world).await;
    assert_eq!(recording::purge(&world.core).await.expect("a purge"), 0, "not old yet");
    assert!(file.exists());

    let retention = Duration::from_std(world.core.config.recording.retention).expect("a duration");
    world.clock.advance(retention + Duration::seconds(1));
    assert_eq!(recording::purge(&world.core).await.expect("a purge"), 1);

    assert!(!file.exists(), "the file is gone");
    assert_eq!(row(&world, id).await, None, "and so is its row");
    assert!(recording::list(&world.core, &alice, call).await.expect("listed").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_deletes_the_object_and_the_row_stays_deleted_until_the_retention_removes_it() {
    let (world, bucket) = world_with_a_bucket().await;
    let (call, alice, bob, id, _) = recorded(&world, b"OggS not for long").await;
    run_jobs(&world).await;
    let key = format!("recordings/{}/{id}.ogg", call.0);

    let deleted = recording::delete(&world.core, &bob, id).await.expect("his to delete");

    assert_eq!(deleted.status, "deleted");
    assert_eq!(bucket.deleted(), std::slice::from_ref(&key));
    assert!(bucket.keys().is_empty(), "the bucket holds nothing of it");
    assert!(matches!(recording::download(&world.core, &alice, id).await, Err(CallError::Conflict { .. })));
    assert_eq!(row(&world, id).await.map(|r| r.0), Some("deleted".into()), "that it was made stays known");

    let retention = Duration::from_std(world.core.config.recording.retention).expect("a duration");
    world.clock.advance(retention + Duration::seconds(1));
    assert_eq!(recording::purge(&world.core).await.expect("a purge"), 1);
    assert_eq!(row(&world, id).await, None);
    assert_eq!(bucket.deleted(), [key], "nothing more to delete in the bucket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_rung_into_a_call_being_recorded_reads_so_before_answering() {
    let (world, _) = world().await;
    let (alice, bob, dave) =
        (person("alice", Gender::Female), person("bob", Gender::Male), person("dave", Gender::Male));
    let call = world.answered_call(&alice, &[&bob]).await;
    assert_eq!(world.call(&bob, call).await.recording, VideoState::Off);
    consented(&world, call, &alice, &[&bob]).await;
    growth::invite(&world.core, &alice, call, vec![dave.id.clone()]).await.expect("dave rung");

    assert_eq!(world.call(&dave, call).await.recording, VideoState::On, "he can consent as he answers");
}
