//! The reconciler repairs what LiveKit's webhooks never said. The apps here
//! have a database and a room prefix of their own, so LiveKit's webhooks
//! never reach them (they go to the shared receiver, which ignores rooms it
//! does not know): whatever they learn, they learn by reconciling.

use std::time::{Duration, Instant};

use livekit_api::services::room::CreateRoomOptions;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::consent::camera_tracks;
use crate::helpers::lk_client::LkClient;
use crate::helpers::lk_events::spawn_unreconciled_app;
use crate::helpers::{Options, TestApp, eventually, livekit_rooms, room_exists, spawn_app_with, start};
use crate::webhooks::{MICROPHONE, grant_camera_directly, publish_sources};

const INTERVAL: Duration = Duration::from_secs(2);

/// The pass after a change may skip (another instance's pass just ran), so
/// the next one repairs it: two intervals, plus LiveKit's own time.
fn within() -> Duration {
    INTERVAL * 2 + Duration::from_secs(3)
}

async fn unhooked() -> TestApp {
    spawn_app_with(Options {
        isolated: true,
        configure: Box::new(|c| {
            c.reconcile_interval = INTERVAL;
            c.orphan_room_grace = Duration::from_secs(1);
        }),
    })
    .await
}

fn participant<'a>(call: &'a Value, user: &str) -> &'a Value {
    call["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .find(|p| p["userId"] == user)
        .expect("a participant")
}

#[tokio::test]
async fn once_callgate_is_back_a_call_whose_room_was_deleted_ends_and_a_room_without_a_call_is_deleted() {
    let app = unhooked().await;
    let (alice, bob, carol, dave) =
        (app.user("female"), app.user("male"), app.user("female"), app.user("male"));
    let (gone, _) = app.ring(&alice, &[&bob], "audio").await;
    app.call_action(&gone, "accept", &bob, json!({})).await;
    let (kept, _) = app.ring(&carol, &[&dave], "audio").await;
    let config = app.config.clone();
    drop(app);

    // While callgate is down: its room deleted, a room it never made created.
    livekit_rooms().delete_room(&format!("{}{gone}", config.room_prefix)).await.expect("room deleted");
    let stray = format!("{}{}", config.room_prefix, Uuid::new_v4());
    let options = CreateRoomOptions { empty_timeout: 600, ..Default::default() };
    livekit_rooms().create_room(&stray, options).await.expect("room created");
    tokio::time::sleep(config.orphan_room_grace).await;

    let app = start(config).await;
    let back = Instant::now();
    let ended = app.wait_for_call(&gone, &alice, within(), |c| c["state"] == "ended").await;
    assert_eq!(ended["outcome"], "failed", "it was still connecting: {ended}");
    assert_eq!(ended["endReason"], "room_closed");
    let stray_room = stray.clone();
    eventually(within().saturating_sub(back.elapsed()), "the stray room is deleted", || {
        let room = stray_room.clone();
        async move { !room_exists(&room).await }
    })
    .await;
    assert_eq!(app.call(&kept, &carol).await["state"], "ringing", "a call with its room is left alone");
    assert!(room_exists(&app.room_name(&kept)).await, "and so is its room");
    let repaired = app
        .db_count("select count(*) from call_events where call_id = $1 and type = 'call.ended' and source = 'system'", &gone)
        .await;
    assert_eq!(repaired, 1);
}

#[tokio::test]
async fn presence_missed_by_webhooks_is_repaired_both_ways() {
    let app = unhooked().await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (call, started) = app.ring(&alice, &[&bob], "audio").await;
    let (_, accepted) = app.call_action(&call, "accept", &bob, json!({})).await;
    let url = started["join"]["url"].as_str().expect("url");
    let _a =
        LkClient::connect(url, started["join"]["token"].as_str().expect("token")).await.expect("alice joins");
    let b =
        LkClient::connect(url, accepted["join"]["token"].as_str().expect("token")).await.expect("bob joins");

    let active = app.wait_for_call(&call, &alice, within(), |c| c["state"] == "active").await;
    assert_eq!(participant(&active, &alice.id)["status"], "joined");
    assert_eq!(participant(&active, &bob.id)["status"], "joined");
    let found = app
        .db_count(
            "select count(*) from call_events where call_id = $1 and type = 'participant.joined' \
             and source = 'system' and data->>'reason' = 'found_in_room'",
            &call,
        )
        .await;
    assert_eq!(found, 2, "both were found in the room");

    b.disconnect().await.expect("bob leaves");
    let ended = app.wait_for_call(&call, &alice, within(), |c| c["state"] == "ended").await;
    let bob_now = participant(&ended, &bob.id);
    assert_eq!(bob_now["status"], "left", "{ended}");
    assert!(bob_now["leftAt"].is_string());
    assert_eq!(ended["outcome"], "completed", "it had been active: {ended}");
    // Deleted just after the end commits (the end is read before that, at times).
    let room = app.room_name(&call);
    crate::helpers::eventually(Duration::from_secs(10), "the ended call's room is torn down", || async {
        !room_exists(&room).await
    })
    .await;
}

#[tokio::test]
async fn publish_rights_that_drifted_from_the_policy_are_put_back_and_a_camera_is_a_violation() {
    // No periodic pass here: the test makes the pass itself once the drift
    // is in place, so that it sees the camera track.
    let app = spawn_unreconciled_app().await;
    let (him, her) = (app.user("male"), app.user("female"));
    let (call, started) = app.ring(&him, &[&her], "audio").await;
    let (_, accepted) = app.call_action(&call, "accept", &her, json!({})).await;
    let url = started["join"]["url"].as_str().expect("url");
    let mut a =
        LkClient::connect(url, started["join"]["token"].as_str().expect("token")).await.expect("he joins");
    let _b =
        LkClient::connect(url, accepted["join"]["token"].as_str().expect("token")).await.expect("she joins");
    let room = app.room_name(&call);
    let pass = callgate::workers::reconcile::pass(&app.state).await.expect("a pass");
    assert_eq!(pass.presence_fixed, 2, "both found in the room: {pass:?}");
    assert_eq!(app.call(&call, &him).await["state"], "active");

    grant_camera_directly(&room, &him.id).await;
    a.publish_camera()
        .await
        .expect("client alive")
        .expect("LiveKit accepts the camera under the drifted right");
    eventually(Duration::from_secs(5), "LiveKit lists the camera track", || {
        let room = room.clone();
        async move { camera_tracks(&room).await == 1 }
    })
    .await;

    let pass = callgate::workers::reconcile::pass(&app.state).await.expect("a pass");
    assert_eq!((pass.rights_fixed, pass.violations), (1, 1), "{pass:?}");
    eventually(Duration::from_secs(5), "LiveKit has removed the camera track and the camera right", || {
        let (room, him) = (room.clone(), him.id.clone());
        async move { camera_tracks(&room).await == 0 && publish_sources(&room, &him).await == [MICROPHONE] }
    })
    .await;
    let violations = app
        .db_count("select count(*) from consent_ledger where call_id = $1 and kind = 'violation'", &call)
        .await;
    assert_eq!(violations, 1);
    let again = callgate::workers::reconcile::pass(&app.state).await.expect("a pass");
    assert_eq!((again.rights_fixed, again.violations), (0, 0), "nothing left to repair: {again:?}");
}

#[tokio::test]
async fn with_two_instances_a_repair_happens_once() {
    let first = unhooked().await;
    let second = start(first.config.clone()).await;
    let (alice, bob) = (first.user("female"), first.user("male"));
    let (call, _) = first.ring(&alice, &[&bob], "audio").await;
    let (status, _) = second.call_action(&call, "accept", &bob, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    livekit_rooms().delete_room(&first.room_name(&call)).await.expect("room deleted");

    second.wait_for_call(&call, &alice, within(), |c| c["state"] == "ended").await;
    tokio::time::sleep(INTERVAL * 2).await; // both instances make passes meanwhile
    let ended = first
        .db_count("select count(*) from call_events where call_id = $1 and type = 'call.ended'", &call)
        .await;
    assert_eq!(ended, 1, "the call ended once");
    let told = first
        .db_count("select count(*) from user_events where call_id = $1 and type = 'call.ended'", &call)
        .await;
    assert_eq!(told, 2, "each participant is told once");
}

#[tokio::test]
async fn the_purge_deletes_published_events_after_a_day_and_settled_app_webhooks_after_a_week() {
    let app = unhooked().await;
    let user = format!("u-{}", Uuid::new_v4().simple());
    let event = |age_hours: i32, published: bool| {
        let (db, user) = (app.state.db.clone(), user.clone());
        async move {
            let id = Uuid::new_v4();
            sqlx::query(
                "insert into user_events (id, user_id, type, created_at, published_at) \
                 values ($1, $2, 'call.ended', now() - make_interval(hours => $3), \
                 case when $4 then now() - make_interval(hours => $3) end)",
            )
            .bind(id)
            .bind(&user)
            .bind(age_hours)
            .bind(published)
            .execute(&db)
            .await
            .expect("insert an event");
            id
        }
    };
    let old_published = event(30, true).await;
    let recent_published = event(2, true).await;
    let webhook = |age_days: i32, delivered: bool| {
        let db = app.state.db.clone();
        async move {
            let id = Uuid::new_v4();
            sqlx::query(
                "insert into app_webhook_outbox (id, type, call_id, payload, created_at, delivered_at) \
                 values ($1, 'call.ended', $2, '{}', now() - make_interval(days => $3), \
                 case when $4 then now() end)",
            )
            .bind(id)
            .bind(Uuid::new_v4())
            .bind(age_days)
            .bind(delivered)
            .execute(&db)
            .await
            .expect("insert an app webhook");
            id
        }
    };
    let old_delivered = webhook(8, true).await;
    let old_pending = webhook(8, false).await;
    let recent_delivered = webhook(2, true).await;

    // workers::purge, on every instance, every few seconds.
    callgate::store::housekeeping::purge_old_rows(&app.state.db).await.expect("a purge");

    let events: Vec<Uuid> = sqlx::query_scalar("select id from user_events where user_id = $1")
        .bind(&user)
        .fetch_all(&app.state.db)
        .await
        .expect("events");
    assert!(!events.contains(&old_published), "a published event of yesterday is gone");
    assert!(events.contains(&recent_published), "a recent one stays, for replays");
    let webhooks: Vec<Uuid> = sqlx::query_scalar("select id from app_webhook_outbox where id = any($1)")
        .bind(vec![old_delivered, old_pending, recent_delivered])
        .fetch_all(&app.state.db)
        .await
        .expect("webhooks");
    assert!(!webhooks.contains(&old_delivered), "a delivered webhook of last week is gone");
    assert!(webhooks.contains(&old_pending) && webhooks.contains(&recent_delivered));
}

#[tokio::test]
async fn a_pass_puts_out_of_the_call_whoever_publishes_video_under_another_label() {
    // LiveKit's webhooks never reach this app: the reconciler alone sees the track.
    let app = spawn_unreconciled_app().await;
    let (him, her, w2) = (app.user("male"), app.user("female"), app.user("female"));
    let (call, mut his, others, _) = crate::consent::group_in_room(&app, &him, &[&her, &w2]).await;
    callgate::workers::reconcile::pass(&app.state).await.expect("a pass");
    assert!(his.publish_video_as("microphone").await.expect("alive").is_ok(), "LiveKit takes it");
    let room = app.room_name(&call);
    eventually(Duration::from_secs(5), "LiveKit lists the track", || {
        let (room, him) = (room.clone(), him.id.clone());
        async move {
            crate::consent::participants(&room)
                .await
                .iter()
                .any(|p| p.identity == him && !p.tracks.is_empty())
        }
    })
    .await;

    let pass = callgate::workers::reconcile::pass(&app.state).await.expect("a pass");
    assert_eq!(pass.violations, 1, "{pass:?}");
    eventually(Duration::from_secs(5), "he is out of the room", || {
        let (room, him) = (room.clone(), him.id.clone());
        async move { !crate::consent::participants(&room).await.iter().any(|p| p.identity == him) }
    })
    .await;
    let view = app.call(&call, &her).await;
    assert_eq!(participant(&view, &him.id)["status"], "removed", "{view}");
    assert_eq!(view["state"], "active", "the call goes on for the other two");
    let violations = app
        .db_count("select count(*) from consent_ledger where call_id = $1 and kind = 'violation'", &call)
        .await;
    assert_eq!(violations, 1);
    let (status, _) = app.call_action(&call, "token", &him, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "no new token");
    drop(others);
}

/// issue 16 A: with `ROOM_PREFIX=cg-`, `cg-staging-<uuid>` is another
/// deployment's room on the same LiveKit; only `<prefix><uuid>` is ours.
#[tokio::test]
async fn a_room_of_another_deployment_sharing_the_prefix_is_left_alone() {
    // Only the pass the test makes, after the rooms exist (no pass at start
    // either, which on a loaded machine could come after them).
    let app = crate::helpers::lk_events::spawn_unreconciled_app_with(|c| {
        c.orphan_room_grace = Duration::from_secs(1);
    })
    .await;
    let prefix = &app.config.room_prefix;
    let foreign = format!("{prefix}staging-{}", Uuid::new_v4());
    let stray = format!("{prefix}{}", Uuid::new_v4());
    for room in [&foreign, &stray] {
        let options = CreateRoomOptions { empty_timeout: 600, ..Default::default() };
        livekit_rooms().create_room(room, options).await.expect("room created");
    }
    // Older than the grace, LiveKit's creation time being in whole seconds.
    tokio::time::sleep(app.config.orphan_room_grace + Duration::from_secs(1)).await;

    let pass = callgate::workers::reconcile::pass(&app.state).await.expect("a pass");
    let foreign_kept = room_exists(&foreign).await;
    let _ = livekit_rooms().delete_room(&foreign).await;
    assert!(foreign_kept, "{foreign} was deleted: {pass:?}");
    assert!(!room_exists(&stray).await, "the pass ran: a room of ours that no call owns is deleted");
    assert_eq!(pass.rooms_deleted, 1, "{pass:?}");
}
