//! The few things callgate asks of LiveKit, named for what they do, in
//! callgate's own words: a [`RoomService`] of [`Room`]s and [`Participant`]s,
//! recordings of a room by LiveKit Egress ([`Egress`]), and webhooks
//! decoded into [`Event`]s. Only this module names the LiveKit
//! crates; `client` is the real RoomService (every request timed, by
//! method, in the metrics), `fake` an in-memory one for tests.

mod client;
mod event;
pub mod fake;
pub mod tokens;
pub mod webhooks;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::consent::{TrackKind, TrackLabel, TrackSource, VideoState};
use crate::domain::{CallId, CallType};

pub use client::LiveKit;
pub use event::{Event, EventKind, decode_egress, decode_event};

#[derive(Debug, thiserror::Error)]
pub enum LiveKitError {
    #[error("not found in LiveKit")]
    NotFound,
    #[error("LiveKit request failed: {0}")]
    Failed(#[from] livekit_api::services::ServiceError),
    #[error("LiveKit request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("signing a LiveKit request: {0}")]
    Token(#[from] livekit_api::access_token::AccessTokenError),
    #[error("LiveKit refused: {code}: {msg}")]
    Refused { code: String, msg: String },
}

pub type LiveKitResult<T> = Result<T, LiveKitError>;

pub struct RoomSpec {
    pub empty_timeout: Duration,
    pub departure_timeout: Duration,
    pub max_participants: u32,
    pub metadata: String,
}

/// A room as LiveKit lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Room {
    pub name: String,
    /// `None` when LiveKit does not say.
    pub created_at: Option<DateTime<Utc>>,
    pub num_participants: u32,
    pub metadata: String,
    /// A recorder (egress) is in the room, whoever asked for it.
    pub active_recording: bool,
}

/// Why LiveKit says a participant left, as far as callgate tells reasons apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The same identity joined again (a reconnect): no departure.
    DuplicateIdentity,
    /// Moved to another LiveKit node: no departure.
    Migration,
    /// The client left (`CLIENT_INITIATED`): a departure, at once.
    ClientInitiated,
    /// Put out through the API (`PARTICIPANT_REMOVED`), or the room was
    /// deleted or closed (`ROOM_DELETED`, `ROOM_CLOSED`): a departure, at once.
    Removed,
    /// Any other reason, or none given (a timeout, a closed signal
    /// connection, a server shutting down): the connection dropped, and
    /// the client may come back.
    #[default]
    Other,
}

/// A participant in a room, as LiveKit sees them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Participant {
    pub identity: String,
    /// A person, not an agent, egress or ingress: only people are held to
    /// the call's roster.
    pub is_person: bool,
    /// When their LiveKit session began: it orders their joins and departures.
    pub session: Option<DateTime<Utc>>,
    /// The sources they may publish, when their rights are of the shape
    /// callgate grants (subscribe, publish, publish data, no metadata
    /// updates); `None` for no rights or any other shape.
    pub publish_sources: Option<Vec<TrackSource>>,
    /// In a waiting room: no publish, no subscribe, no data, no metadata.
    pub waiting: bool,
    pub tracks: Vec<TrackSeen>,
    /// Why they left (for the departure events).
    pub disconnect_reason: DisconnectReason,
}

impl Participant {
    /// A person in a room, publishing nothing and allowed nothing yet.
    pub fn person(identity: &str) -> Self {
        Participant {
            identity: identity.to_owned(),
            is_person: true,
            session: None,
            publish_sources: None,
            waiting: false,
            tracks: Vec::new(),
            disconnect_reason: DisconnectReason::Other,
        }
    }
}

/// What a room-composite recording captures: the room's mixed audio, or
/// its audio and the page of LiveKit's default template in one of its
/// layouts (`speaker`, `grid`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordingLayout {
    AudioOnly,
    Speaker,
    Grid,
}

impl RecordingLayout {
    /// The template's name for it (empty for audio only).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AudioOnly => "",
            Self::Speaker => "speaker",
            Self::Grid => "grid",
        }
    }
}

/// The file a recording writes. The audio is always Opus (the egress built
/// here has no AAC encoder): an OGG file for audio only, MP4 with H.264
/// video and Opus audio otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordingFile {
    Ogg,
    Mp4,
}

/// A room-composite recording to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordingSpec {
    pub layout: RecordingLayout,
    pub file: RecordingFile,
    /// Where egress writes it: a path on egress's machine (its extension
    /// is the file's; egress adds it when missing).
    pub filepath: String,
}

/// Where a recording is, as LiveKit Egress reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EgressStatus {
    Starting,
    Active,
    Ending,
    Complete,
    Failed,
    Aborted,
    LimitReached,
}

impl EgressStatus {
    /// Still starting, recording or finishing its file.
    pub fn is_running(self) -> bool {
        matches!(self, Self::Starting | Self::Active | Self::Ending)
    }
}

/// A file a recording wrote (as egress reports it when the file is done).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressFile {
    pub filename: String,
    pub size: u64,
    pub duration: Duration,
    pub started_at: Option<DateTime<Utc>>,
}

/// A recording of a room by LiveKit Egress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Egress {
    /// LiveKit's id (`EG_...`), which is also the identity under which the
    /// recorder is in the room, as a hidden participant of kind egress.
    pub egress_id: String,
    pub room: String,
    pub status: EgressStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Why it failed, if it did.
    pub error: String,
    pub files: Vec<EgressFile>,
}

/// A published track as the policy judges it: the kind and source its
/// client declared, and the kind of the media LiveKit receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackSeen {
    pub sid: String,
    /// The kind its client declared (`TrackInfo.type`).
    pub kind: TrackKind,
    /// The kind of its media (`TrackInfo.mime_type` and its codecs'),
    /// `None` while LiveKit does not say.
    pub media: Option<TrackKind>,
    /// `None` for a source LiveKit calls unknown.
    pub source: Option<TrackSource>,
    pub muted: bool,
}

impl TrackSeen {
    /// An honest track: its media is what its client declared.
    pub fn honest(sid: &str, kind: TrackKind, source: TrackSource) -> Self {
        TrackSeen { sid: sid.to_owned(), kind, media: Some(kind), source: Some(source), muted: false }
    }

    /// What the policy judges.
    pub fn label(&self) -> TrackLabel {
        TrackLabel { declared: self.kind, media: self.media, source: self.source }
    }

    /// What it really is (video if its media or its label says so).
    pub fn kind_name(&self) -> &'static str {
        self.label().kind().as_str()
    }

    /// The source's name, `unknown` when LiveKit does not know it.
    pub fn source_name(&self) -> &'static str {
        self.source.map_or("unknown", TrackSource::as_str)
    }
}

/// What callgate asks of LiveKit's RoomService. Requests for a room or a
/// participant that is not there answer as each method says, not with an
/// error, unless it says `NotFound`.
#[async_trait]
pub trait RoomService: Send + Sync {
    /// The prefix of this deployment's room names.
    fn prefix(&self) -> &str;

    fn room_name(&self, call: CallId) -> String {
        format!("{}{}", self.prefix(), call.0)
    }

    /// The call a room belongs to, if it is one of this deployment's rooms.
    fn call_of_room(&self, room: &str) -> Option<CallId> {
        let id = room.strip_prefix(self.prefix())?;
        // Only the form `room_name` writes (uuid parses braced, URN and
        // unhyphenated forms too).
        let call = Uuid::parse_str(id).ok().map(CallId)?;
        (self.room_name(call) == room).then_some(call)
    }

    async fn create_room(&self, name: &str, spec: RoomSpec) -> LiveKitResult<()>;

    /// Deletes the room; a room that is already gone is not an error.
    async fn delete_room(&self, name: &str) -> LiveKitResult<()>;

    /// This deployment's rooms: named exactly `<prefix><call id>`. Another
    /// deployment whose prefix extends ours (`cg-staging-<uuid>` beside
    /// `cg-<uuid>`) shares the prefix, never that shape.
    async fn list_rooms(&self) -> LiveKitResult<Vec<Room>>;

    async fn room_exists(&self, name: &str) -> LiveKitResult<bool>;

    /// Everyone in the room; `NotFound` when the room is not there.
    async fn list_participants(&self, room: &str) -> LiveKitResult<Vec<Participant>>;

    /// The participant as LiveKit sees them; `None` when not in the room.
    async fn participant(&self, room: &str, identity: &str) -> LiveKitResult<Option<Participant>>;

    /// Removes a participant from the room; one not there is not an error.
    async fn remove_participant(&self, room: &str, identity: &str) -> LiveKitResult<()>;

    /// Replaces every permission of a connected participant so that only
    /// `sources` may be published (LiveKit unpublishes tracks whose source
    /// is no longer allowed). Returns false when the participant is not in
    /// the room.
    async fn set_publish_sources(
        &self,
        room: &str,
        identity: &str,
        sources: &[TrackSource],
    ) -> LiveKitResult<bool>;

    /// Like `set_publish_sources`, and makes sure LiveKit removes the
    /// published tracks of a source `sources` does not allow. LiveKit skips
    /// an update equal to the grants it holds, and only an applied update
    /// removes tracks; a track that was pending (asked for while allowed)
    /// when the rights were withdrawn is published afterwards and stays
    /// unless the rights are applied again. Returns false when the
    /// participant is not in the room.
    async fn withdraw_tracks(
        &self,
        room: &str,
        identity: &str,
        sources: &[TrackSource],
    ) -> LiveKitResult<bool>;

    /// Replaces every permission of a connected participant with none:
    /// a waiting room (no publish, no subscribe, no data; LiveKit
    /// unpublishes their tracks). Returns false when they are not in the room.
    async fn set_waiting(&self, room: &str, identity: &str) -> LiveKitResult<bool>;

    async fn update_room_metadata(&self, room: &str, metadata: String) -> LiveKitResult<()>;

    /// Sends a reliable data message to everyone in the room.
    async fn send_data(&self, room: &str, topic: &str, payload: Vec<u8>) -> LiveKitResult<()>;

    /// Mutes (or unmutes) a published track. Returns false when the track,
    /// its participant or the room is not there.
    async fn mute_track(
        &self,
        room: &str,
        identity: &str,
        track_sid: &str,
        muted: bool,
    ) -> LiveKitResult<bool>;

    /// A cheap request that proves LiveKit answers and accepts our key.
    async fn ping(&self) -> LiveKitResult<()>;

    /// Starts a room-composite recording of `room` into a file (LiveKit
    /// Egress); egress joins the room as a hidden participant of kind
    /// egress. Refused when no egress takes it (none running, or all busy).
    async fn start_recording(&self, room: &str, spec: &RecordingSpec) -> LiveKitResult<Egress>;

    /// Stops a recording: egress finishes its file. Returns false when
    /// LiveKit knows no such recording or it is over already.
    async fn stop_recording(&self, egress_id: &str) -> LiveKitResult<bool>;

    /// The recordings LiveKit knows of this room (only those still running
    /// with `running_only`).
    async fn list_recordings(&self, room: &str, running_only: bool) -> LiveKitResult<Vec<Egress>>;
}

/// A room's metadata: what clients read of the call from LiveKit itself.
/// Only callgate can set it (no participant holds `roomAdmin`), so it is
/// what honest clients go by: they play a participant's video only while
/// `video` is `on` and that participant is in `live`, and let only those in
/// `live` subscribe to their own tracks. `live` is sorted. `video` is `on`
/// or `off`: a pending request is no business of the room (those who may
/// answer it hear of it on their event stream), and puts nothing to push in
/// LiveKit. `recording` is true while everyone present consents to record
/// (egress is told to record): the indicator every client shows. Like
/// `video`, it says nothing of a pending request nor of who answered what.
pub fn room_metadata(
    call: CallId,
    call_type: CallType,
    video: VideoState,
    recording: VideoState,
    live: &[String],
) -> String {
    let video = if video == VideoState::On { VideoState::On } else { VideoState::Off };
    let recording = recording == VideoState::On;
    serde_json::json!({"callId": call, "type": call_type, "video": video, "recording": recording, "live": live})
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::livekit::fake::FakeRooms;

    #[test]
    fn the_metadata_says_recording_only_while_it_is_on_and_nothing_of_a_request_or_its_answers() {
        let call = CallId(Uuid::new_v4());
        let live = ["alice".to_owned(), "bob".to_owned()];
        for (recording, shown) in
            [(VideoState::On, true), (VideoState::Requested, false), (VideoState::Off, false)]
        {
            let raw = room_metadata(call, CallType::Audio, VideoState::Off, recording, &live);
            let meta: serde_json::Value = serde_json::from_str(&raw).expect("JSON");
            assert_eq!(meta["recording"], shown, "{recording:?}: {raw}");
            let mut keys: Vec<&str> =
                meta.as_object().expect("an object").keys().map(|k| k.as_str()).collect();
            keys.sort_unstable();
            assert_eq!(keys, ["callId", "live", "recording", "type", "video"], "{raw}");
        }
    }

    #[test]
    fn only_rooms_named_prefix_and_call_id_are_this_deployments() {
        let lk = FakeRooms::new("cg-");
        let call = CallId(Uuid::new_v4());
        assert_eq!(lk.call_of_room(&lk.room_name(call)), Some(call));
        for foreign in [
            format!("cg-staging-{}", call.0),
            format!("cg-{}", call.0.simple()),
            format!("cg-{{{}}}", call.0),
            format!("cg-urn:uuid:{}", call.0),
            format!("cg-{}", call.0.to_string().to_uppercase()),
            format!("other-{}", call.0),
        ] {
            assert_eq!(lk.call_of_room(&foreign), None, "{foreign}");
        }
    }
}
