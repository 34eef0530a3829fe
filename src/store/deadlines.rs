//! A call's deadlines: what happens to it if nothing else does first; each
//! a job of the call's lane (`store::jobs`), one per kind.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::CallId;
use crate::store::jobs::{self, Again, Job};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineKind {
    Ringing,
    Connect,
    MaxDuration,
    VideoRequest,
    /// A pending recording request's expiry.
    RecordingRequest,
    /// The end of `REJOIN_GRACE` for the call's oldest drop.
    Rejoin,
}

impl DeadlineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadlineKind::Ringing => "ringing",
            DeadlineKind::Connect => "connect",
            DeadlineKind::MaxDuration => "max_duration",
            DeadlineKind::VideoRequest => "video_request",
            DeadlineKind::RecordingRequest => "recording_request",
            DeadlineKind::Rejoin => "rejoin",
        }
    }
}

/// Schedules the call's deadline of `kind` at `due_at` (moving a pending one).
pub async fn schedule(
    conn: &mut PgConnection,
    call: CallId,
    kind: DeadlineKind,
    due_at: DateTime<Utc>,
    ref_id: Option<Uuid>,
) -> sqlx::Result<()> {
    let job = Job::Deadline { call: call.0, deadline: kind, ref_id };
    jobs::enqueue(conn, &job, due_at, Again::Replace, false).await
}

/// Schedules the deadline, or brings an existing one forward to `due_at`
/// (never later).
pub async fn schedule_earliest(
    conn: &mut PgConnection,
    call: CallId,
    kind: DeadlineKind,
    due_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    let job = Job::Deadline { call: call.0, deadline: kind, ref_id: None };
    jobs::enqueue(conn, &job, due_at, Again::Earliest, false).await
}

pub async fn cancel(conn: &mut PgConnection, call: CallId, kind: DeadlineKind) -> sqlx::Result<()> {
    jobs::cancel_deadline(conn, call, kind).await
}
