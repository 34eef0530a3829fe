//! LiveKit's webhooks on the real stack: a camera published through drifted
//! rights is recorded as a violation and removed by LiveKit itself once the
//! rights are put back. Verification, deduplication, the timeline, the order
//! of events and the route's bounds are proved in-process, in
//! tests/fast/webhooks.rs.

use std::time::Duration;

use livekit_api::services::room::UpdateParticipantOptions;
use livekit_protocol as proto;
use serde_json::Value;

use crate::consent::{call_in_room, camera_tracks, participants};
use crate::helpers::{eventually, livekit_rooms, spawn_app};

pub const MICROPHONE: i32 = proto::TrackSource::Microphone as i32;

/// The sources LiveKit lets `identity` publish right now.
pub async fn publish_sources(room: &str, identity: &str) -> Vec<i32> {
    participants(room)
        .await
        .into_iter()
        .find(|p| p.identity == identity)
        .and_then(|p| p.permission)
        .map(|p| p.can_publish_sources)
        .unwrap_or_default()
}

#[tokio::test]
async fn a_camera_published_through_drifted_rights_is_removed_and_recorded_as_a_violation() {
    let app = spawn_app().await;
    let (him, her) = (app.user("male"), app.user("female"));
    let (call, mut a, _b) = call_in_room(&app, &him, &her, "audio", Value::Null).await;
    let room = app.room_name(&call);
    // The reconciler may put the rights back between the grant and the
    // publication; then grant again.
    let mut published = None;
    for _ in 0..3 {
        grant_camera_directly(&room, &him.id).await;
        if let Ok(sid) = a.publish_camera().await.expect("client alive") {
            published = Some(sid);
            break;
        }
    }
    let track = published.expect("LiveKit accepted the camera under the drifted right");

    // LiveKit reports the track; callgate records the violation...
    let db = app.state.db.clone();
    let call_id = uuid::Uuid::parse_str(&call).expect("uuid");
    eventually(Duration::from_secs(5), "the violation is in the ledger", || {
        let (db, track) = (db.clone(), track.clone());
        async move {
            let found: i64 = sqlx::query_scalar(
                "select count(*) from consent_ledger where call_id = $1 and kind = 'violation' \
                 and detail->>'trackSid' = $2",
            )
            .bind(call_id)
            .bind(track)
            .fetch_one(&db)
            .await
            .expect("count");
            found == 1
        }
    })
    .await;
    // ...and puts his rights back, which makes LiveKit remove the track.
    eventually(Duration::from_secs(5), "LiveKit has removed the camera track and the camera right", || {
        let (room, him) = (room.clone(), him.id.clone());
        async move { camera_tracks(&room).await == 0 && publish_sources(&room, &him).await == [MICROPHONE] }
    })
    .await;
    let violations: Vec<(String, Value)> =
        sqlx::query_as("select actor, detail from consent_ledger where call_id = $1 and kind = 'violation'")
            .bind(call_id)
            .fetch_all(&app.state.db)
            .await
            .expect("ledger");
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].0, him.id);
    assert_eq!(violations[0].1["source"], "camera");
    let (_, ledger) = app.get(&format!("/api/v1/calls/{call}/consent"), &her).await;
    let seen = ledger["entries"].as_array().expect("entries").iter().any(|e| e["kind"] == "violation");
    assert!(seen, "participants read the violation in the ledger: {ledger}");
}

/// Drift: the camera right given through LiveKit's API, behind callgate's back.
pub async fn grant_camera_directly(room: &str, identity: &str) {
    let permission = proto::ParticipantPermission {
        can_subscribe: true,
        can_publish: true,
        can_publish_data: true,
        can_publish_sources: vec![MICROPHONE, proto::TrackSource::Camera as i32],
        ..Default::default()
    };
    let options = UpdateParticipantOptions { permission: Some(permission), ..Default::default() };
    livekit_rooms().update_participant(room, identity, options).await.expect("LiveKit takes the grant");
}
