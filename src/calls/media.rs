//! A participant's own media (microphone, camera, screen share): what they
//! say is recorded, applied in LiveKit to the tracks they publish, and
//! announced to the call as `media.updated`. Changes are counted per
//! participant (`RATE_LIMIT_MEDIA_CHANGES_PER_MINUTE`): each is an event to
//! everyone in the call; a burst of them is one row of the timeline.
//!
//! LiveKit hears of a change after it has committed, never under the call's
//! lock. LiveKit can always mute a track; unmuting from the server is refused
//! unless the server enables remote unmute, so turning something back on is
//! recorded and left to the participant's client when LiveKit refuses.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::calls::CallError;
use crate::calls::Core;
use crate::calls::Unit;
use crate::domain::AuthUser;
use crate::domain::CallId;
use crate::domain::ClientEvent;
use crate::domain::Code;
use crate::domain::consent as rules;
use crate::domain::consent::TrackSource;
use crate::store;

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaChange {
    pub audio_enabled: Option<bool>,
    pub video_enabled: Option<bool>,
    pub screen_share_enabled: Option<bool>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaView {
    pub user_id: String,
    pub audio_enabled: bool,
    pub video_enabled: bool,
    pub screen_share_enabled: bool,
}

impl From<store::participants::MediaFlags> for MediaView {
    fn from(f: store::participants::MediaFlags) -> Self {
        MediaView {
            user_id: f.user_id,
            audio_enabled: f.audio_enabled,
            video_enabled: f.video_enabled,
            screen_share_enabled: f.screen_share_enabled,
        }
    }
}

#[tracing::instrument(skip_all, fields(user_id = %user.id, call_id = %id))]
pub async fn update(
    app: &Core,
    user: &AuthUser,
    id: CallId,
    change: MediaChange,
) -> Result<MediaView, CallError> {
    // Counted before the call's row is locked: no Redis round trip under it.
    crate::calls::limits::media_change(app, id, &user.id).await?;
    let mut unit = Unit::open(app, id).await?;
    let call = unit.call().clone();
    let participants = store::participants(unit.conn(), id).await?;
    let me = participants
        .iter()
        .find(|p| p.user_id == user.id.as_str() && p.member().took_part())
        .ok_or(CallError::NotFound)?;
    if !call.state.is_live() {
        return Err(CallError::conflict(Code::CallEnded, "the call has ended"));
    }
    if !me.is_present() {
        return Err(CallError::conflict(Code::NotInCall, "answer the call first"));
    }
    let camera_allowed = rules::camera_allowed(call.video_state());
    if (change.video_enabled == Some(true) || change.screen_share_enabled == Some(true)) && !camera_allowed {
        return Err(CallError::conflict(Code::VideoOff, "video is off in this call"));
    }
    if change.screen_share_enabled == Some(true) && !me.may_share_screen {
        return Err(CallError::forbidden(Code::ScreenShareNotAllowed, "your role may not share its screen"));
    }
    let view = MediaView::from(
        store::participants::update_media(
            unit.conn(),
            id,
            &user.id,
            change.audio_enabled,
            change.video_enabled,
            change.screen_share_enabled,
        )
        .await?,
    );
    let data = json!({
        "audioEnabled": change.audio_enabled,
        "videoEnabled": change.video_enabled,
        "screenShareEnabled": change.screen_share_enabled,
    });
    store::events::record_media_change(unit.conn(), id, user.id.as_str(), data).await?;
    let recipients: Vec<String> =
        participants.iter().filter(|p| p.live).map(|p| p.user_id.to_string()).collect();
    store::notify(unit.conn(), &recipients, ClientEvent::MediaUpdated, id, &json!({"media": view})).await?;
    unit.commit().await?;
    // After the commit (no LiveKit request holds the call's lock), with the
    // flags as they now stand rather than this request's change: two changes
    // racing leave LiveKit as the later commit says, whichever arrives last.
    let now = store::participants::media_of(&app.db, id, &user.id).await?;
    if let Some(now) = now {
        let stands = MediaChange {
            audio_enabled: change.audio_enabled.map(|_| now.audio_enabled),
            video_enabled: change.video_enabled.map(|_| now.video_enabled),
            screen_share_enabled: change.screen_share_enabled.map(|_| now.screen_share_enabled),
        };
        apply(app, &call.room_name, user.id.as_str(), &stands).await;
    }
    Ok(view)
}

/// Whether `change` mutes (`Some(true)`), unmutes or leaves a source alone.
/// `None` is a source LiveKit calls unknown.
fn wanted_mute(change: &MediaChange, source: Option<TrackSource>) -> Option<bool> {
    let enabled = match source? {
        TrackSource::Microphone => change.audio_enabled,
        TrackSource::Camera => change.video_enabled,
        TrackSource::ScreenShare | TrackSource::ScreenShareAudio => change.screen_share_enabled,
    };
    enabled.map(|on| !on)
}

/// Mutes or unmutes the participant's published tracks. A participant not
/// in the room, or without such a track, has nothing to apply: their state
/// is recorded all the same.
async fn apply(app: &Core, room: &str, identity: &str, change: &MediaChange) {
    let info = match app.livekit.participant(room, identity).await {
        // A recorder (or agent) under a user's identity is not theirs to mute.
        Ok(Some(info)) if info.is_person => info,
        Ok(_) => return,
        Err(err) => {
            tracing::warn!(error = %err, "could not read the participant's tracks from LiveKit");
            return;
        }
    };
    for track in &info.tracks {
        let Some(muted) = wanted_mute(change, track.source).filter(|muted| *muted != track.muted) else {
            continue;
        };
        match app.livekit.mute_track(room, identity, &track.sid, muted).await {
            Ok(true) => {}
            Ok(false) => tracing::debug!(track = %track.sid, "the track went away before it was muted"),
            Err(err) if !muted => tracing::debug!(error = %err, "LiveKit does not unmute from the server"),
            Err(err) => tracing::warn!(error = %err, track = %track.sid, "could not mute the track"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_flag_governs_its_own_sources() {
        let change = MediaChange {
            audio_enabled: Some(false),
            screen_share_enabled: Some(true),
            ..Default::default()
        };
        assert_eq!(wanted_mute(&change, Some(TrackSource::Microphone)), Some(true));
        assert_eq!(wanted_mute(&change, Some(TrackSource::Camera)), None);
        assert_eq!(wanted_mute(&change, Some(TrackSource::ScreenShare)), Some(false));
        assert_eq!(wanted_mute(&change, Some(TrackSource::ScreenShareAudio)), Some(false));
        assert_eq!(wanted_mute(&change, None), None);
    }
}
