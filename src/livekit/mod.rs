//! The few things callgate asks of LiveKit, named for what they do. Every
//! request is timed, by RoomService method, in the metrics.

pub mod tokens;
pub mod webhooks;

use std::future::Future;
use std::time::{Duration, Instant};

use livekit_api::access_token::{AccessToken, AccessTokenError, VideoGrants};
use livekit_api::services::room::{CreateRoomOptions, RoomClient, UpdateParticipantOptions};
use livekit_api::services::{ServerError, ServiceError};
use livekit_protocol as proto;
use uuid::Uuid;

use crate::config::LiveKitConfig;
use crate::domain::consent::{TrackKind, TrackSource, VideoState};
use crate::domain::{CallId, CallType};
use crate::metrics::LiveKitMetrics;

#[derive(Debug, thiserror::Error)]
pub enum LiveKitError {
    #[error("not found in LiveKit")]
    NotFound,
    #[error("LiveKit request failed: {0}")]
    Failed(#[from] ServiceError),
    #[error("LiveKit request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("signing a LiveKit request: {0}")]
    Token(#[from] AccessTokenError),
    #[error("LiveKit refused: {code}: {msg}")]
    Refused { code: String, msg: String },
}

pub type LiveKitResult<T> = Result<T, LiveKitError>;

fn classify(err: ServiceError) -> LiveKitError {
    match &err {
        ServiceError::Twirp(ServerError::Twirp(code)) if code.code == "not_found" => LiveKitError::NotFound,
        _ => LiveKitError::Failed(err),
    }
}

pub struct RoomSpec {
    pub empty_timeout: Duration,
    pub departure_timeout: Duration,
    pub max_participants: u32,
    pub metadata: String,
}

pub struct LiveKit {
    rooms: RoomClient,
    prefix: String,
    /// For the few RoomService requests made without livekit-api.
    http: reqwest::Client,
    config: LiveKitConfig,
    metrics: LiveKitMetrics,
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

impl LiveKit {
    pub fn new(config: &LiveKitConfig, prefix: &str, metrics: LiveKitMetrics) -> Self {
        let rooms = RoomClient::with_api_key(&config.api_url, &config.api_key, config.api_secret.expose())
            .with_failover(false)
            .with_request_timeout(REQUEST_TIMEOUT);
        let http = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().unwrap_or_default();
        Self { rooms, prefix: prefix.to_owned(), http, config: config.clone(), metrics }
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

    pub fn room_name(&self, call: CallId) -> String {
        format!("{}{}", self.prefix, call.0)
    }

    /// The call a room belongs to, if it is one of this deployment's rooms.
    pub fn call_of_room(&self, room: &str) -> Option<CallId> {
        let id = room.strip_prefix(&self.prefix)?;
        // Only the form `room_name` writes (uuid parses braced, URN and
        // unhyphenated forms too).
        let call = Uuid::parse_str(id).ok().map(CallId)?;
        (self.room_name(call) == room).then_some(call)
    }

    #[tracing::instrument(skip(self, spec))]
    pub async fn create_room(&self, name: &str, spec: RoomSpec) -> LiveKitResult<()> {
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

    /// Deletes the room; a room that is already gone is not an error.
    #[tracing::instrument(skip(self))]
    pub async fn delete_room(&self, name: &str) -> LiveKitResult<()> {
        match self.timed("delete_room", async { self.rooms.delete_room(name).await.map_err(classify) }).await
        {
            Ok(()) | Err(LiveKitError::NotFound) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// This deployment's rooms: named exactly `<prefix><call id>`. Another
    /// deployment whose prefix extends ours (`cg-staging-<uuid>` beside
    /// `cg-<uuid>`) shares the prefix, never that shape.
    pub async fn list_rooms(&self) -> LiveKitResult<Vec<proto::Room>> {
        let rooms = self.rooms_named(Vec::new()).await?;
        Ok(rooms.into_iter().filter(|r| self.call_of_room(&r.name).is_some()).collect())
    }

    /// The rooms of these names (all rooms for none).
    async fn rooms_named(&self, names: Vec<String>) -> LiveKitResult<Vec<proto::Room>> {
        self.timed("list_rooms", async { self.rooms.list_rooms(names).await.map_err(classify) }).await
    }

    pub async fn room_exists(&self, name: &str) -> LiveKitResult<bool> {
        let rooms = self.rooms_named(vec![name.to_owned()]).await?;
        Ok(rooms.iter().any(|r| r.name == name))
    }

    pub async fn list_participants(&self, room: &str) -> LiveKitResult<Vec<proto::ParticipantInfo>> {
        self.timed("list_participants", async { self.rooms.list_participants(room).await.map_err(classify) })
            .await
    }

    /// The participant as LiveKit sees them; `None` when not in the room.
    pub async fn participant(
        &self,
        room: &str,
        identity: &str,
    ) -> LiveKitResult<Option<proto::ParticipantInfo>> {
        let request = async { self.rooms.get_participant(room, identity).await.map_err(classify) };
        match self.timed("get_participant", request).await {
            Ok(info) => Ok(Some(info)),
            Err(LiveKitError::NotFound) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Mutes (or unmutes) a published track. Returns false when the track,
    /// its participant or the room is not there. A request of our own:
    /// livekit-api's `mute_published_track` unwraps the track in the reply.
    #[tracing::instrument(skip(self))]
    pub async fn mute_track(
        &self,
        room: &str,
        identity: &str,
        track_sid: &str,
        muted: bool,
    ) -> LiveKitResult<bool> {
        self.timed("mute_published_track", self.mute_published_track(room, identity, track_sid, muted)).await
    }

    async fn mute_published_track(
        &self,
        room: &str,
        identity: &str,
        track_sid: &str,
        muted: bool,
    ) -> LiveKitResult<bool> {
        let grants = VideoGrants { room_admin: true, room: room.to_owned(), ..Default::default() };
        let token = AccessToken::with_api_key(&self.config.api_key, self.config.api_secret.expose())
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

    /// Replaces every permission field of a connected participant (LiveKit
    /// replaces them all on update) so that only `sources` may be
    /// published. LiveKit unpublishes tracks whose source is no longer
    /// allowed. Returns false when the participant is not in the room.
    #[tracing::instrument(skip(self, sources))]
    pub async fn set_publish_sources(
        &self,
        room: &str,
        identity: &str,
        sources: &[TrackSource],
    ) -> LiveKitResult<bool> {
        let permission = proto::ParticipantPermission {
            can_subscribe: true,
            can_publish: true,
            can_publish_data: true,
            can_publish_sources: sources.iter().map(|s| proto_source(*s) as i32).collect(),
            can_update_metadata: false,
            ..Default::default()
        };
        let options = UpdateParticipantOptions { permission: Some(permission), ..Default::default() };
        let request =
            async { self.rooms.update_participant(room, identity, options).await.map_err(classify) };
        match self.timed("update_participant", request).await {
            Ok(_) => Ok(true),
            Err(LiveKitError::NotFound) => Ok(false),
            Err(err) => Err(err),
        }
    }

    pub async fn update_room_metadata(&self, room: &str, metadata: String) -> LiveKitResult<()> {
        let request = async { self.rooms.update_room_metadata(room, &metadata).await.map_err(classify) };
        self.timed("update_room_metadata", request).await?;
        Ok(())
    }

    /// Sends a reliable data message to everyone in the room.
    pub async fn send_data(&self, room: &str, topic: &str, payload: Vec<u8>) -> LiveKitResult<()> {
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

    pub async fn remove_participant(&self, room: &str, identity: &str) -> LiveKitResult<()> {
        let request = async { self.rooms.remove_participant(room, identity).await.map_err(classify) };
        match self.timed("remove_participant", request).await {
            Ok(()) | Err(LiveKitError::NotFound) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// A cheap request that proves LiveKit answers and accepts our key.
    pub async fn ping(&self) -> LiveKitResult<()> {
        self.rooms_named(vec![format!("{}ping", self.prefix)]).await?;
        Ok(())
    }
}

pub fn proto_source(source: TrackSource) -> proto::TrackSource {
    match source {
        TrackSource::Camera => proto::TrackSource::Camera,
        TrackSource::Microphone => proto::TrackSource::Microphone,
        TrackSource::ScreenShare => proto::TrackSource::ScreenShare,
        TrackSource::ScreenShareAudio => proto::TrackSource::ScreenShareAudio,
    }
}

/// A room's metadata: what clients read of the call from LiveKit itself.
/// Only callgate can set it (no participant holds `roomAdmin`).
pub fn room_metadata(call: CallId, call_type: CallType, video: VideoState) -> String {
    serde_json::json!({"callId": call, "type": call_type, "video": video}).to_string()
}

/// A published track as the policy judges it: its real kind and the source
/// its client declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackSeen {
    pub sid: String,
    pub kind: TrackKind,
    /// `None` for a source LiveKit calls unknown.
    pub source: Option<TrackSource>,
}

impl TrackSeen {
    pub fn of(info: &proto::TrackInfo) -> Self {
        let kind = match proto::TrackType::try_from(info.r#type) {
            Ok(proto::TrackType::Audio) => TrackKind::Audio,
            Ok(proto::TrackType::Video) => TrackKind::Video,
            _ => TrackKind::Other,
        };
        let source = match proto::TrackSource::try_from(info.source) {
            Ok(proto::TrackSource::Camera) => Some(TrackSource::Camera),
            Ok(proto::TrackSource::Microphone) => Some(TrackSource::Microphone),
            Ok(proto::TrackSource::ScreenShare) => Some(TrackSource::ScreenShare),
            Ok(proto::TrackSource::ScreenShareAudio) => Some(TrackSource::ScreenShareAudio),
            _ => None,
        };
        TrackSeen { sid: info.sid.clone(), kind, source }
    }

    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            TrackKind::Audio => "audio",
            TrackKind::Video => "video",
            TrackKind::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn livekit(prefix: &str) -> LiveKit {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = LiveKitConfig {
            url: "ws://127.0.0.1:7880".into(),
            api_url: "http://127.0.0.1:7880".into(),
            api_key: "key".into(),
            api_secret: crate::config::Secret::new("0123456789abcdef0123456789abcdef"),
        };
        LiveKit::new(&config, prefix, crate::metrics::Metrics::default().livekit())
    }

    #[test]
    fn only_rooms_named_prefix_and_call_id_are_this_deployments() {
        let lk = livekit("cg-");
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
