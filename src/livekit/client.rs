//! The real RoomService: livekit-api's client (and one request of our own),
//! every request timed, by RoomService method, in the metrics. Protobuf
//! types end here: what leaves is callgate's.

use std::future::Future;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use livekit_api::access_token::{AccessToken, VideoGrants};
use livekit_api::services::egress::{
    EgressClient, EgressListFilter, EgressListOptions, EgressOutput, RoomCompositeOptions, encoding,
};
use livekit_api::services::room::{CreateRoomOptions, RoomClient, UpdateParticipantOptions};
use livekit_api::services::{ServerError, ServiceError};
use livekit_protocol as proto;
use secrecy::ExposeSecret;

use super::{
    DisconnectReason, Egress, EgressFile, EgressStatus, LiveKitError, LiveKitResult, Participant,
    RecordingFile, RecordingLayout, RecordingSpec, Room, RoomService, RoomSpec, TrackSeen,
};
use crate::config::LiveKitConfig;
use crate::domain::consent::{TrackKind, TrackSource};
use crate::metrics::LiveKitMetrics;

fn classify(err: ServiceError) -> LiveKitError {
    match &err {
        ServiceError::Twirp(ServerError::Twirp(code)) if code.code == "not_found" => LiveKitError::NotFound,
        _ => LiveKitError::Failed(err),
    }
}

pub struct LiveKit {
    rooms: RoomClient,
    egress: EgressClient,
    prefix: String,
    /// For the few RoomService requests made without livekit-api.
    http: reqwest::Client,
    config: LiveKitConfig,
    metrics: LiveKitMetrics,
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// LiveKit answers a start once an egress has taken the request (it waits
/// for one to accept it, a few seconds when egress is busy).
const EGRESS_REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

impl LiveKit {
    pub fn new(config: &LiveKitConfig, prefix: &str, metrics: LiveKitMetrics) -> Self {
        let secret = config.api_secret.expose_secret();
        let rooms = RoomClient::with_api_key(&config.api_url, &config.api_key, secret)
            .with_failover(false)
            .with_request_timeout(REQUEST_TIMEOUT);
        let egress = EgressClient::with_api_key(&config.api_url, &config.api_key, secret)
            .with_failover(false)
            .with_request_timeout(EGRESS_REQUEST_TIMEOUT);
        let http = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().unwrap_or_default();
        Self { rooms, egress, prefix: prefix.to_owned(), http, config: config.clone(), metrics }
    }

    /// Replaces every permission of a participant (LiveKit sets them all at
    /// once); false when they are not in the room.
    async fn set_permission(
        &self,
        room: &str,
        identity: &str,
        permission: proto::ParticipantPermission,
    ) -> LiveKitResult<bool> {
        let options = UpdateParticipantOptions { permission: Some(permission), ..Default::default() };
        let request =
            async { self.rooms.update_participant(room, identity, options).await.map_err(classify) };
        match self.timed("update_participant", request).await {
            Ok(_) => Ok(true),
            Err(LiveKitError::NotFound) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Makes one RoomService request (`method`, snake_case) and records it.
    async fn timed<T>(
        &self,
        method: &'static str,
        request: impl Future<Output = LiveKitResult<T>>,
    ) -> LiveKitResult<T> {
        let started = Instant::now();
        let result = request.await;
        let failed = matches!(result, Err(ref err) if !matches!(err, LiveKitError::NotFound));
        self.metrics.observe(method, started.elapsed(), failed);
        result
    }

    /// The rooms of these names (all rooms for none).
    async fn rooms_named(&self, names: Vec<String>) -> LiveKitResult<Vec<proto::Room>> {
        self.timed("list_rooms", async { self.rooms.list_rooms(names).await.map_err(classify) }).await
    }

    /// A request of our own: livekit-api's `mute_published_track` unwraps
    /// the track in the reply.
    async fn mute_published_track(
        &self,
        room: &str,
        identity: &str,
        track_sid: &str,
        muted: bool,
    ) -> LiveKitResult<bool> {
        let grants = VideoGrants { room_admin: true, room: room.to_owned(), ..Default::default() };
        let token = AccessToken::with_api_key(&self.config.api_key, self.config.api_secret.expose_secret())
            .with_grants(grants)
            .with_ttl(Duration::from_secs(60))
            .to_jwt()?;
        let url = format!(
            "{}/twirp/livekit.RoomService/MutePublishedTrack",
            self.config.api_url.trim_end_matches('/')
        );
        let body =
            serde_json::json!({"room": room, "identity": identity, "track_sid": track_sid, "muted": muted});
        let resp = self.http.post(url).bearer_auth(token).json(&body).send().await?;
        if resp.status().is_success() {
            let reply: serde_json::Value = resp.json().await?;
            return Ok(reply.get("track").is_some_and(|t| t.is_object()));
        }
        let error: serde_json::Value = resp.json().await.unwrap_or_default();
        let field =
            |name: &str| error.get(name).and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
        match field("code").as_str() {
            "not_found" => Ok(false),
            _ => Err(LiveKitError::Refused { code: field("code"), msg: field("msg") }),
        }
    }
}

#[async_trait]
impl RoomService for LiveKit {
    fn prefix(&self) -> &str {
        &self.prefix
    }

    #[tracing::instrument(skip(self, spec))]
    async fn create_room(&self, name: &str, spec: RoomSpec) -> LiveKitResult<()> {
        let options = CreateRoomOptions {
            empty_timeout: spec.empty_timeout.as_secs() as u32,
            departure_timeout: spec.departure_timeout.as_secs() as u32,
            max_participants: spec.max_participants,
            metadata: spec.metadata,
            ..Default::default()
        };
        self.timed("create_room", async { self.rooms.create_room(name, options).await.map_err(classify) })
            .await?;
        Ok(())
    }

    #[tracing::instrument(skip(self))]
    async fn delete_room(&self, name: &str) -> LiveKitResult<()> {
        match self.timed("delete_room", async { self.rooms.delete_room(name).await.map_err(classify) }).await
        {
            Ok(()) | Err(LiveKitError::NotFound) => Ok(()),
            Err(err) => Err(err),
        }
    }

    async fn list_rooms(&self) -> LiveKitResult<Vec<Room>> {
        let rooms = self.rooms_named(Vec::new()).await?;
        Ok(rooms.iter().filter(|r| self.call_of_room(&r.name).is_some()).map(room).collect())
    }

    async fn room_exists(&self, name: &str) -> LiveKitResult<bool> {
        let rooms = self.rooms_named(vec![name.to_owned()]).await?;
        Ok(rooms.iter().any(|r| r.name == name))
    }

    async fn list_participants(&self, room: &str) -> LiveKitResult<Vec<Participant>> {
        let people = self
            .timed("list_participants", async { self.rooms.list_participants(room).await.map_err(classify) })
            .await?;
        Ok(people.iter().map(participant).collect())
    }

    async fn participant(&self, room: &str, identity: &str) -> LiveKitResult<Option<Participant>> {
        let request = async { self.rooms.get_participant(room, identity).await.map_err(classify) };
        match self.timed("get_participant", request).await {
            Ok(info) => Ok(Some(participant(&info))),
            Err(LiveKitError::NotFound) => Ok(None),
            Err(err) => Err(err),
        }
    }

    async fn remove_participant(&self, room: &str, identity: &str) -> LiveKitResult<()> {
        let request = async { self.rooms.remove_participant(room, identity).await.map_err(classify) };
        match self.timed("remove_participant", request).await {
            Ok(()) | Err(LiveKitError::NotFound) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// LiveKit replaces every permission field on update, so all are set.
    #[tracing::instrument(skip(self, sources))]
    async fn set_publish_sources(
        &self,
        room: &str,
        identity: &str,
        sources: &[TrackSource],
    ) -> LiveKitResult<bool> {
        let sources: Vec<i32> = sources.iter().map(|s| proto_source(*s) as i32).collect();
        self.set_permission(room, identity, granted(sources)).await
    }

    /// The rights twice: first with the first source listed twice, then as
    /// they are. LiveKit compares the lists in order, so whichever form it
    /// holds, one of the two updates differs from it and is applied.
    #[tracing::instrument(skip(self, sources))]
    async fn withdraw_tracks(
        &self,
        room: &str,
        identity: &str,
        sources: &[TrackSource],
    ) -> LiveKitResult<bool> {
        let plain: Vec<i32> = sources.iter().map(|s| proto_source(*s) as i32).collect();
        let doubled: Vec<i32> = plain.first().into_iter().copied().chain(plain.iter().copied()).collect();
        if !self.set_permission(room, identity, granted(doubled)).await? {
            return Ok(false);
        }
        self.set_permission(room, identity, granted(plain)).await
    }

    async fn set_waiting(&self, room: &str, identity: &str) -> LiveKitResult<bool> {
        // Every field false: no publish, no subscribe, no data, no metadata.
        self.set_permission(room, identity, proto::ParticipantPermission::default()).await
    }

    async fn update_room_metadata(&self, room: &str, metadata: String) -> LiveKitResult<()> {
        let request = async { self.rooms.update_room_metadata(room, &metadata).await.map_err(classify) };
        self.timed("update_room_metadata", request).await?;
        Ok(())
    }

    async fn send_data(&self, room: &str, topic: &str, payload: Vec<u8>) -> LiveKitResult<()> {
        let options = livekit_api::services::room::SendDataOptions {
            kind: proto::data_packet::Kind::Reliable,
            topic: Some(topic.to_owned()),
            ..Default::default()
        };
        self.timed("send_data", async {
            self.rooms.send_data(room, payload, options).await.map_err(classify)
        })
        .await
    }

    #[tracing::instrument(skip(self))]
    async fn mute_track(
        &self,
        room: &str,
        identity: &str,
        track_sid: &str,
        muted: bool,
    ) -> LiveKitResult<bool> {
        self.timed("mute_published_track", self.mute_published_track(room, identity, track_sid, muted)).await
    }

    async fn ping(&self) -> LiveKitResult<()> {
        self.rooms_named(vec![format!("{}ping", self.prefix)]).await?;
        Ok(())
    }

    #[tracing::instrument(skip(self, spec), fields(layout = ?spec.layout, file = ?spec.file))]
    async fn start_recording(&self, room: &str, spec: &RecordingSpec) -> LiveKitResult<Egress> {
        let (output, options) = room_composite(spec);
        let request = async {
            self.egress.start_room_composite_egress(room, vec![output], options).await.map_err(classify)
        };
        let info = self.timed("start_room_composite_egress", request).await?;
        Ok(egress(&info))
    }

    #[tracing::instrument(skip(self))]
    async fn stop_recording(&self, egress_id: &str) -> LiveKitResult<bool> {
        let request = async { self.egress.stop_egress(egress_id).await.map_err(classify) };
        match self.timed("stop_egress", request).await {
            Ok(_) => Ok(true),
            Err(LiveKitError::NotFound) => Ok(false),
            // "egress with status EGRESS_COMPLETE cannot be stopped"
            Err(LiveKitError::Failed(ServiceError::Twirp(ServerError::Twirp(code))))
                if code.code == "failed_precondition" =>
            {
                Ok(false)
            }
            Err(err) => Err(err),
        }
    }

    async fn list_recordings(&self, room: &str, running_only: bool) -> LiveKitResult<Vec<Egress>> {
        let options = EgressListOptions {
            filter: EgressListFilter::Room(room.to_owned()),
            active: running_only,
            page_token: None,
        };
        let request = async { self.egress.list_egress(options).await.map_err(classify) };
        let items = self.timed("list_egress", request).await?;
        Ok(items.iter().map(egress).collect())
    }
}

/// The request of a room-composite recording: Opus audio whatever the file
/// (`advanced.audio_codec`, which livekit-api always sends); for video a
/// 720p, 24 fps H.264 picture, enough for a call and within two cores.
fn room_composite(spec: &RecordingSpec) -> (EgressOutput, RoomCompositeOptions) {
    let file_type = match spec.file {
        RecordingFile::Ogg => proto::EncodedFileType::Ogg,
        RecordingFile::Mp4 => proto::EncodedFileType::Mp4,
    };
    let output = EgressOutput::File(proto::EncodedFileOutput {
        file_type: file_type as i32,
        filepath: spec.filepath.clone(),
        disable_manifest: true,
        output: None,
    });
    let encoding = encoding::EncodingOptions {
        width: 1280,
        height: 720,
        framerate: 24,
        video_bitrate: 2000,
        video_codec: proto::VideoCodec::H264Main,
        audio_codec: proto::AudioCodec::Opus,
        audio_bitrate: 64,
        audio_frequency: 48000,
        ..Default::default()
    };
    let options = RoomCompositeOptions {
        layout: spec.layout.as_str().to_owned(),
        encoding,
        audio_only: spec.layout == RecordingLayout::AudioOnly,
        ..Default::default()
    };
    (output, options)
}

/// A time egress gives in nanoseconds since the epoch (0: not yet).
fn nanos(at: i64) -> Option<DateTime<Utc>> {
    (at > 0).then(|| DateTime::from_timestamp_nanos(at))
}

pub(super) fn egress(info: &proto::EgressInfo) -> Egress {
    let status = match proto::EgressStatus::try_from(info.status) {
        Ok(proto::EgressStatus::EgressStarting) => EgressStatus::Starting,
        Ok(proto::EgressStatus::EgressActive) => EgressStatus::Active,
        Ok(proto::EgressStatus::EgressEnding) => EgressStatus::Ending,
        Ok(proto::EgressStatus::EgressComplete) => EgressStatus::Complete,
        Ok(proto::EgressStatus::EgressAborted) => EgressStatus::Aborted,
        Ok(proto::EgressStatus::EgressLimitReached) => EgressStatus::LimitReached,
        // A status this crate does not know counts as failed.
        Ok(proto::EgressStatus::EgressFailed) | Err(_) => EgressStatus::Failed,
    };
    let files = info
        .file_results
        .iter()
        .map(|f| EgressFile {
            filename: f.filename.clone(),
            size: u64::try_from(f.size).unwrap_or(0),
            duration: Duration::from_nanos(u64::try_from(f.duration).unwrap_or(0)),
            started_at: nanos(f.started_at),
        })
        .collect();
    Egress {
        egress_id: info.egress_id.clone(),
        room: info.room_name.clone(),
        status,
        started_at: nanos(info.started_at),
        ended_at: nanos(info.ended_at),
        error: info.error.clone(),
        files,
    }
}

fn proto_source(source: TrackSource) -> proto::TrackSource {
    match source {
        TrackSource::Camera => proto::TrackSource::Camera,
        TrackSource::Microphone => proto::TrackSource::Microphone,
        TrackSource::ScreenShare => proto::TrackSource::ScreenShare,
        TrackSource::ScreenShareAudio => proto::TrackSource::ScreenShareAudio,
    }
}

fn source_of(source: i32) -> Option<TrackSource> {
    match proto::TrackSource::try_from(source) {
        Ok(proto::TrackSource::Camera) => Some(TrackSource::Camera),
        Ok(proto::TrackSource::Microphone) => Some(TrackSource::Microphone),
        Ok(proto::TrackSource::ScreenShare) => Some(TrackSource::ScreenShare),
        Ok(proto::TrackSource::ScreenShareAudio) => Some(TrackSource::ScreenShareAudio),
        _ => None,
    }
}

pub(super) fn room(room: &proto::Room) -> Room {
    let created_at = if room.creation_time_ms > 0 {
        DateTime::from_timestamp_millis(room.creation_time_ms)
    } else {
        DateTime::from_timestamp(room.creation_time, 0)
    };
    Room {
        name: room.name.clone(),
        created_at,
        num_participants: room.num_participants,
        metadata: room.metadata.clone(),
        active_recording: room.active_recording,
    }
}

pub(super) fn track(info: &proto::TrackInfo) -> TrackSeen {
    let kind = match proto::TrackType::try_from(info.r#type) {
        Ok(proto::TrackType::Audio) => TrackKind::Audio,
        Ok(proto::TrackType::Video) => TrackKind::Video,
        _ => TrackKind::Other,
    };
    TrackSeen {
        sid: info.sid.clone(),
        kind,
        media: media_of(info),
        source: source_of(info.source),
        muted: info.muted,
    }
}

/// The kind of the media LiveKit receives, from the codec's mime type (and
/// those of its simulcast codecs): video if any of them is. The declared
/// type is whatever the client put in its request; this is not.
fn media_of(info: &proto::TrackInfo) -> Option<TrackKind> {
    let kinds = std::iter::once(info.mime_type.as_str())
        .chain(info.codecs.iter().map(|c| c.mime_type.as_str()))
        .filter_map(TrackKind::of_mime);
    kinds.max_by_key(|kind| match kind {
        TrackKind::Video => 2,
        TrackKind::Other => 1,
        TrackKind::Audio => 0,
    })
}

fn session_of(info: &proto::ParticipantInfo) -> Option<DateTime<Utc>> {
    if info.joined_at_ms > 0 {
        DateTime::from_timestamp_millis(info.joined_at_ms)
    } else if info.joined_at > 0 {
        DateTime::from_timestamp(info.joined_at, 0)
    } else {
        None
    }
}

/// The rights callgate grants a participant in the call.
fn granted(sources: Vec<i32>) -> proto::ParticipantPermission {
    proto::ParticipantPermission {
        can_subscribe: true,
        can_publish: true,
        can_publish_data: true,
        can_publish_sources: sources,
        can_update_metadata: false,
        ..Default::default()
    }
}

/// Whether a permission is a waiting room's: nothing at all.
fn waiting(permission: Option<&proto::ParticipantPermission>) -> bool {
    permission.is_some_and(|p| {
        !(p.can_publish || p.can_subscribe || p.can_publish_data || p.can_update_metadata)
            && p.can_publish_sources.is_empty()
    })
}

/// The sources a permission allows, if it has the shape callgate grants.
fn publish_sources(permission: Option<&proto::ParticipantPermission>) -> Option<Vec<TrackSource>> {
    let p = permission?;
    if !(p.can_publish && p.can_subscribe && p.can_publish_data) || p.can_update_metadata {
        return None;
    }
    // A source callgate does not know is drift too.
    p.can_publish_sources.iter().map(|s| source_of(*s)).collect()
}

pub(super) fn participant(info: &proto::ParticipantInfo) -> Participant {
    let disconnect_reason = match proto::DisconnectReason::try_from(info.disconnect_reason) {
        Ok(proto::DisconnectReason::DuplicateIdentity) => DisconnectReason::DuplicateIdentity,
        Ok(proto::DisconnectReason::Migration) => DisconnectReason::Migration,
        Ok(proto::DisconnectReason::ClientInitiated) => DisconnectReason::ClientInitiated,
        Ok(
            proto::DisconnectReason::ParticipantRemoved
            | proto::DisconnectReason::RoomDeleted
            | proto::DisconnectReason::RoomClosed,
        ) => DisconnectReason::Removed,
        _ => DisconnectReason::Other,
    };
    Participant {
        identity: info.identity.clone(),
        is_person: info.kind == proto::participant_info::Kind::Standard as i32,
        session: session_of(info),
        publish_sources: publish_sources(info.permission.as_ref()),
        waiting: waiting(info.permission.as_ref()),
        tracks: info.tracks.iter().map(track).collect(),
        disconnect_reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permission(sources: &[proto::TrackSource]) -> proto::ParticipantPermission {
        proto::ParticipantPermission {
            can_subscribe: true,
            can_publish: true,
            can_publish_data: true,
            can_publish_sources: sources.iter().map(|s| *s as i32).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_rights_callgate_grants_read_as_their_sources() {
        let granted = permission(&[proto::TrackSource::Camera, proto::TrackSource::Microphone]);
        assert_eq!(publish_sources(Some(&granted)), Some(vec![TrackSource::Camera, TrackSource::Microphone]));
    }

    #[test]
    fn metadata_rights_or_no_rights_read_as_none() {
        let mut granted = permission(&[proto::TrackSource::Microphone]);
        granted.can_update_metadata = true;
        assert_eq!(publish_sources(Some(&granted)), None);
        assert_eq!(publish_sources(None), None);
        let unknown = permission(&[proto::TrackSource::Unknown]);
        assert_eq!(publish_sources(Some(&unknown)), None);
    }

    #[test]
    fn only_standard_participants_are_people() {
        let mut info = proto::ParticipantInfo { identity: "u".into(), ..Default::default() };
        assert!(participant(&info).is_person);
        info.kind = proto::participant_info::Kind::Agent as i32;
        assert!(!participant(&info).is_person);
    }

    #[test]
    fn an_egress_is_no_person_whatever_its_identity_and_a_person_named_eg_is_one() {
        let recorder = proto::ParticipantInfo {
            identity: "EG_x7Yh3kQ".into(),
            kind: proto::participant_info::Kind::Egress as i32,
            ..Default::default()
        };
        assert!(!participant(&recorder).is_person);
        let named_like_one = proto::ParticipantInfo { identity: "EG_x7Yh3kQ".into(), ..Default::default() };
        assert!(participant(&named_like_one).is_person);
    }

    #[test]
    fn a_recording_asks_for_opus_audio_in_either_file() {
        for (layout, file, audio_only) in [
            (RecordingLayout::AudioOnly, RecordingFile::Ogg, true),
            (RecordingLayout::Speaker, RecordingFile::Mp4, false),
            (RecordingLayout::Grid, RecordingFile::Mp4, false),
        ] {
            let spec = RecordingSpec { layout, file, filepath: "/rec/a".into() };
            let (output, options) = room_composite(&spec);
            assert_eq!(options.encoding.audio_codec, proto::AudioCodec::Opus);
            assert_eq!(options.audio_only, audio_only);
            assert_eq!(options.layout, layout.as_str());
            let EgressOutput::File(output) = output else { panic!("a file output") };
            assert_eq!(output.filepath, "/rec/a");
            let want = if file == RecordingFile::Ogg {
                proto::EncodedFileType::Ogg
            } else {
                proto::EncodedFileType::Mp4
            };
            assert_eq!(output.file_type, want as i32);
        }
    }

    #[test]
    fn an_egress_reads_with_its_status_times_and_files() {
        let info = proto::EgressInfo {
            egress_id: "EG_1".into(),
            room_name: "cg-r".into(),
            status: proto::EgressStatus::EgressComplete as i32,
            started_at: 1_700_000_000_123_000_000,
            ended_at: 1_700_000_010_000_000_000,
            file_results: vec![proto::FileInfo {
                filename: "/rec/a.ogg".into(),
                size: 4096,
                duration: 9_500_000_000,
                ..Default::default()
            }],
            ..Default::default()
        };
        let e = egress(&info);
        assert_eq!(
            (e.egress_id.as_str(), e.room.as_str(), e.status),
            ("EG_1", "cg-r", EgressStatus::Complete)
        );
        assert!(!e.status.is_running());
        assert_eq!(e.started_at, DateTime::from_timestamp_millis(1_700_000_000_123));
        assert_eq!(e.files[0].size, 4096);
        assert_eq!(e.files[0].duration, Duration::from_millis(9500));
        assert_eq!(e.files[0].started_at, None);
        let unknown = proto::EgressInfo { status: 99, ..Default::default() };
        assert_eq!(egress(&unknown).status, EgressStatus::Failed);
    }
}
