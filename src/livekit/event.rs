//! LiveKit's webhook events, decoded into callgate's words.

use chrono::{DateTime, Utc};
use livekit_protocol as proto;

use super::{Egress, Participant, TrackSeen, client};

/// What happened, as LiveKit names it (`as_str`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    RoomStarted,
    RoomFinished,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantConnectionAborted,
    TrackPublished,
    TrackUnpublished,
    /// Any other event (egress, ingress, agents, ...), by its name.
    Other(String),
}

impl EventKind {
    pub fn parse(name: &str) -> Self {
        match name {
            "room_started" => Self::RoomStarted,
            "room_finished" => Self::RoomFinished,
            "participant_joined" => Self::ParticipantJoined,
            "participant_left" => Self::ParticipantLeft,
            "participant_connection_aborted" => Self::ParticipantConnectionAborted,
            "track_published" => Self::TrackPublished,
            "track_unpublished" => Self::TrackUnpublished,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::RoomStarted => "room_started",
            Self::RoomFinished => "room_finished",
            Self::ParticipantJoined => "participant_joined",
            Self::ParticipantLeft => "participant_left",
            Self::ParticipantConnectionAborted => "participant_connection_aborted",
            Self::TrackPublished => "track_published",
            Self::TrackUnpublished => "track_unpublished",
            Self::Other(name) => name,
        }
    }
}

/// A webhook event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// LiveKit's id (empty if it sent none).
    pub id: String,
    pub kind: EventKind,
    /// The room's name, when the event is about a room (an egress event's
    /// is its recording's room).
    pub room: Option<String>,
    /// When LiveKit created it (whole seconds); `None` if it does not say.
    pub created_at: Option<DateTime<Utc>>,
    pub participant: Option<Participant>,
    pub track: Option<TrackSeen>,
    /// The recording an egress event is about.
    pub egress: Option<Egress>,
}

impl From<&proto::WebhookEvent> for Event {
    fn from(event: &proto::WebhookEvent) -> Self {
        Event {
            id: event.id.clone(),
            kind: EventKind::parse(&event.event),
            // LiveKit sends an egress event with its recording, not a room.
            room: event.room.as_ref().map(|r| r.name.clone()).or_else(|| {
                event.egress_info.as_ref().map(|e| e.room_name.clone()).filter(|name| !name.is_empty())
            }),
            created_at: (event.created_at > 0)
                .then(|| DateTime::from_timestamp(event.created_at, 0))
                .flatten(),
            participant: event.participant.as_ref().map(client::participant),
            track: event.track.as_ref().map(client::track),
            egress: event.egress_info.as_ref().map(client::egress),
        }
    }
}

/// Decodes a webhook's body as stored (LiveKit's protojson); `None` if it
/// is not a webhook event.
pub fn decode_event(payload: serde_json::Value) -> Option<Event> {
    let event: proto::WebhookEvent = serde_json::from_value(payload).ok()?;
    Some(Event::from(&event))
}

/// The recording an egress event (`egress_started`, `egress_updated`,
/// `egress_ended`) is about, from its body as stored; `None` for any other.
pub fn decode_egress(payload: serde_json::Value) -> Option<Egress> {
    let event: proto::WebhookEvent = serde_json::from_value(payload).ok()?;
    event.egress_info.as_ref().map(client::egress)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::consent::{TrackKind, TrackSource};
    use crate::livekit::DisconnectReason;

    #[test]
    fn a_departure_decodes_with_its_session_and_reason() {
        let payload = serde_json::json!({
            "event": "participant_left", "id": "EV_1", "createdAt": "1700000000",
            "room": {"name": "cg-x"},
            "participant": {"identity": "u1", "joinedAtMs": "1700000000123", "disconnectReason": "DUPLICATE_IDENTITY"},
        });
        let event = decode_event(payload).expect("an event");
        assert_eq!(event.kind, EventKind::ParticipantLeft);
        assert_eq!(event.room.as_deref(), Some("cg-x"));
        assert_eq!(event.created_at, DateTime::from_timestamp(1_700_000_000, 0));
        let who = event.participant.expect("a participant");
        assert!(who.is_person);
        assert_eq!(who.session, DateTime::from_timestamp_millis(1_700_000_000_123));
        assert_eq!(who.disconnect_reason, DisconnectReason::DuplicateIdentity);
    }

    #[test]
    fn an_egress_event_is_about_its_recordings_room() {
        let payload = serde_json::json!({
            "event": "egress_ended", "id": "EV_3", "createdAt": "1700000000",
            "egressInfo": {
                "egressId": "EG_1", "roomName": "cg-r", "status": "EGRESS_COMPLETE",
                "fileResults": [{"filename": "/rec/a.ogg", "size": "2048", "duration": "3000000000"}],
            },
        });
        let event = decode_event(payload.clone()).expect("an event");
        assert_eq!(event.kind, EventKind::Other("egress_ended".into()));
        assert_eq!(event.room.as_deref(), Some("cg-r"));
        assert_eq!(event.participant, None);
        let egress = decode_egress(payload).expect("an egress");
        assert_eq!(egress.egress_id, "EG_1");
        assert_eq!(egress.status, crate::livekit::EgressStatus::Complete);
        assert_eq!(egress.files[0].size, 2048);
        assert_eq!(egress.files[0].duration, std::time::Duration::from_secs(3));
    }

    #[test]
    fn an_egress_joining_decodes_as_no_person() {
        let payload = serde_json::json!({
            "event": "participant_joined", "id": "EV_4", "room": {"name": "cg-r"},
            "participant": {"identity": "EG_1", "kind": "EGRESS", "joinedAtMs": "1700000000123"},
        });
        let who = decode_event(payload).and_then(|e| e.participant).expect("a participant");
        assert!(!who.is_person);
    }

    #[test]
    fn a_track_decodes_with_its_kind_and_source_and_unknown_events_keep_their_name() {
        let payload = serde_json::json!({
            "event": "egress_started", "id": "EV_2",
            "track": {"sid": "TR_1", "type": "VIDEO", "source": "CAMERA"},
        });
        let event = decode_event(payload).expect("an event");
        assert_eq!(event.kind, EventKind::Other("egress_started".into()));
        assert_eq!(event.kind.as_str(), "egress_started");
        assert_eq!(event.created_at, None);
        let track = event.track.expect("a track");
        assert_eq!((track.kind, track.source), (TrackKind::Video, Some(TrackSource::Camera)));
    }
}
