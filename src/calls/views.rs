//! What the API shows of a call. Nothing here may carry a participant's
//! gender: the rows it is built from keep it in a type that does not
//! serialize.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;

use crate::domain::consent::VideoState;
use crate::domain::{CallState, CallType, EndReason, Outcome, ParticipantStatus, Role};
use crate::infra::turn::IceServer;
use crate::store::{self, CallRow, ParticipantRow};

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallView {
    pub id: uuid::Uuid,
    #[serde(rename = "type")]
    pub call_type: CallType,
    pub state: CallState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<EndReason>,
    pub initiator_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_ref: Option<String>,
    /// Booked ahead (an appointment's call): nobody rang.
    pub scheduled: bool,
    /// The appointment this call is the meeting of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appointment_id: Option<uuid::Uuid>,
    pub video: VideoState,
    /// Whether the call is being recorded (`on`), asked to be (`requested`)
    /// or not: one who answers or joins keeps a recording going only with
    /// `recording: true` (README, "Recording").
    pub recording: VideoState,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connected_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<i64>,
    pub participants: Vec<ParticipantView>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantView {
    pub user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub role: Role,
    pub status: ParticipantStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub joined_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left_at: Option<DateTime<Utc>>,
    pub audio_enabled: bool,
    pub video_enabled: bool,
    pub screen_share_enabled: bool,
}

impl CallView {
    pub fn new(call: &CallRow, participants: &[ParticipantRow]) -> Self {
        let duration_seconds = match (call.connected_at, call.ended_at) {
            (Some(from), Some(to)) => Some((to - from).num_seconds().max(0)),
            _ => None,
        };
        CallView {
            id: call.id.0,
            call_type: call.call_type,
            state: call.state,
            outcome: call.outcome.map(|w| w.0),
            end_reason: call.end_reason.map(|w| w.0),
            initiator_id: call.initiator_id.clone(),
            conversation_id: call.conversation_id.clone(),
            external_ref: call.external_ref.clone(),
            scheduled: call.scheduled,
            appointment_id: call.appointment_id,
            video: call.video_state(),
            recording: call.recording_session.0.state,
            created_at: call.created_at,
            answered_at: call.answered_at,
            connected_at: call.connected_at,
            ended_at: call.ended_at,
            duration_seconds,
            participants: participants.iter().map(ParticipantView::new).collect(),
        }
    }

    /// Reads the call as it now stands in this transaction.
    pub async fn load(conn: &mut PgConnection, call: &CallRow) -> sqlx::Result<Self> {
        let fresh = store::calls::reread(conn, call).await?;
        let participants = store::participants(conn, call.call_id()).await?;
        Ok(Self::new(&fresh, &participants))
    }
}

impl ParticipantView {
    fn new(p: &ParticipantRow) -> Self {
        ParticipantView {
            user_id: p.user_id.to_string(),
            name: p.name.clone(),
            role: p.role,
            status: p.status,
            joined_at: p.joined_at,
            left_at: p.left_at,
            audio_enabled: p.audio_enabled,
            video_enabled: p.video_enabled,
            screen_share_enabled: p.screen_share_enabled,
        }
    }
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JoinView {
    pub url: String,
    pub token: String,
    pub room_name: String,
    pub identity: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallWithJoin {
    pub call: CallView,
    pub join: JoinView,
    /// STUN, and TURN with credentials once someone has answered the call;
    /// STUN alone while it rings (its initiator asks `POST /calls/{id}/token`
    /// on `call.accepted` for a relay).
    pub ice_servers: Vec<IceServer>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JoinOnly {
    pub join: JoinView,
    /// STUN, and TURN with credentials once someone has answered the call;
    /// STUN alone while it rings.
    pub ice_servers: Vec<IceServer>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CallOnly {
    pub call: CallView,
}
