//! The `recordings` table (a call's recordings by LiveKit Egress, and where
//! their files are) and the call's consent to record
//! (`calls.recording_session`).

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::CallId;
use crate::domain::consent::VideoSession;

/// Where a recording is.
pub mod status {
    /// Asked of egress; not yet writing.
    pub const STARTING: &str = "starting";
    pub const RECORDING: &str = "recording";
    /// Asked to stop; egress is finishing the file, or callgate is
    /// keeping it (checking it, uploading it).
    pub const ENDING: &str = "ending";
    /// The file is whole and kept.
    pub const READY: &str = "ready";
    pub const FAILED: &str = "failed";
    /// Its file was deleted at a participant's request (past the
    /// retention, the row goes too).
    pub const DELETED: &str = "deleted";
}

#[derive(Clone, Debug)]
pub struct RecordingRow {
    pub id: Uuid,
    pub call_id: Uuid,
    pub egress_id: Option<String>,
    pub status: String,
    pub file_type: String,
    /// Which storage holds the file: `local` or `s3` (`crate::storage::Kind`).
    pub storage: String,
    /// The file's key in that storage.
    pub storage_key: String,
    pub requested_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub size_bytes: Option<i64>,
    pub checksum: Option<String>,
    pub error: Option<String>,
}

impl RecordingRow {
    /// Still starting, recording or finishing its file.
    pub fn is_running(&self) -> bool {
        matches!(self.status.as_str(), status::STARTING | status::RECORDING | status::ENDING)
    }

    /// Egress is done with it (it said so: its end is known), and its file
    /// is being checked and kept (`calls::recording::finish`, which may
    /// wait for the storage): nothing of egress's concern any more.
    pub fn egress_done(&self) -> bool {
        self.is_running() && self.ended_at.is_some()
    }
}

/// `query_as!(RecordingRow, ...)` of the statement that reads its columns
/// `from recordings` and goes on with `$tail` (a literal, appended with the
/// macros' `+`, so the whole is still checked).
macro_rules! select_recordings {
    ($tail:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            RecordingRow,
            "select id, call_id, egress_id, status, file_type, storage, storage_key, requested_at, \
             started_at, ended_at, duration_ms, size_bytes, checksum, error from recordings " + $tail
            $(, $arg)*
        )
    };
}

/// Egress is put in line with the call's consent to record once `tx` has
/// committed: a job of the call's lane (`calls::recording::sync`), one
/// pending at a time, as it reads the committed state.
pub async fn sync_after_commit(tx: &mut PgConnection, call: CallId, now: DateTime<Utc>) -> sqlx::Result<()> {
    use crate::store::jobs::{self, Again, Job};
    jobs::enqueue(tx, &Job::Recording { call: call.0 }, now, Again::Replace, true).await
}

/// Stores the call's consent to record (its row is locked).
pub async fn save_session(conn: &mut PgConnection, call: CallId, session: &VideoSession) -> sqlx::Result<()> {
    sqlx::query!(
        "update calls set recording_session = $2 where id = $1",
        call.0,
        Json(session) as Json<&VideoSession>,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub struct NewRecording<'a> {
    pub id: Uuid,
    pub call: CallId,
    pub file_type: &'a str,
    pub storage_key: &'a str,
    pub requested_at: DateTime<Utc>,
}

pub async fn insert(conn: &mut PgConnection, new: &NewRecording<'_>) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into recordings (id, call_id, status, file_type, storage_key, requested_at) \
         values ($1, $2, 'starting', $3, $4, $5)",
        new.id,
        new.call.0,
        new.file_type,
        new.storage_key,
        new.requested_at,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Egress took the request: its id.
pub async fn set_egress(conn: &mut PgConnection, id: Uuid, egress_id: &str) -> sqlx::Result<()> {
    sqlx::query!("update recordings set egress_id = $2 where id = $1", id, egress_id).execute(conn).await?;
    Ok(())
}

/// Moves a running recording on (never one that is over: egress's events
/// come late and out of order).
pub async fn set_status(
    conn: &mut PgConnection,
    id: Uuid,
    to: &str,
    at: DateTime<Utc>,
    error: Option<&str>,
) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "update recordings set status = $2, error = coalesce($4, error), \
         started_at = case when $2 = 'recording' then coalesce(started_at, $3) else started_at end, \
         ended_at = case when $2 in ('ready', 'failed') then coalesce(ended_at, $3) else ended_at end \
         where id = $1 and status in ('starting', 'recording', 'ending')",
        id,
        to,
        at,
        error,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// What egress says of a recording it finished.
pub struct EgressResult {
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: DateTime<Utc>,
    pub duration_ms: i64,
}

pub async fn set_result(conn: &mut PgConnection, id: Uuid, result: &EgressResult) -> sqlx::Result<()> {
    sqlx::query!(
        "update recordings set started_at = coalesce($2, started_at), ended_at = $3, duration_ms = $4 \
         where id = $1 and status in ('starting', 'recording', 'ending')",
        id,
        result.started_at,
        result.ended_at,
        result.duration_ms.max(0),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A whole file, kept.
pub struct Kept<'a> {
    pub size_bytes: i64,
    /// sha256, hex.
    pub checksum: &'a str,
    /// Which storage holds it (`local`, `s3`), and its key there.
    pub storage: &'a str,
    pub storage_key: &'a str,
}

/// The file is whole and kept: its size, sha256 and where it is.
pub async fn set_ready(
    conn: &mut PgConnection,
    id: Uuid,
    kept: &Kept<'_>,
    at: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let set = sqlx::query!(
        "update recordings set status = 'ready', size_bytes = $2, checksum = $3, storage = $4, \
         storage_key = $5, ended_at = coalesce(ended_at, $6) \
         where id = $1 and status in ('starting', 'recording', 'ending')",
        id,
        kept.size_bytes,
        kept.checksum,
        kept.storage,
        kept.storage_key,
        at,
    )
    .execute(conn)
    .await?;
    Ok(set.rows_affected() == 1)
}

/// The call's recordings still running, oldest first.
pub async fn running(conn: &mut PgConnection, call: CallId) -> sqlx::Result<Vec<RecordingRow>> {
    select_recordings!(
        "where call_id = $1 and status in ('starting', 'recording', 'ending') order by requested_at",
        call.0,
    )
    .fetch_all(conn)
    .await
}

/// The recording egress `egress_id` makes, locked.
pub async fn by_egress(conn: &mut PgConnection, egress_id: &str) -> sqlx::Result<Option<RecordingRow>> {
    select_recordings!("where egress_id = $1 for update", egress_id).fetch_optional(conn).await
}

pub async fn find(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<RecordingRow>> {
    select_recordings!("where id = $1", id).fetch_optional(conn).await
}

/// The call's recordings, oldest first (deleted ones too: that one was made
/// stays known).
pub async fn of_call(conn: &mut PgConnection, call: CallId) -> sqlx::Result<Vec<RecordingRow>> {
    select_recordings!("where call_id = $1 order by requested_at, id", call.0).fetch_all(conn).await
}

/// Marks a recording's file deleted; whether it was kept until now.
pub async fn set_deleted(conn: &mut PgConnection, id: Uuid, at: DateTime<Utc>) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "update recordings set status = 'deleted', deleted_at = $2 where id = $1 and status in ('ready', 'failed')",
        id,
        at,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Finished recordings that ended before `before` (past the retention),
/// deleted ones too.
pub async fn ended_before(db: &PgPool, before: DateTime<Utc>, limit: i64) -> sqlx::Result<Vec<RecordingRow>> {
    select_recordings!(
        "where status in ('ready', 'failed', 'deleted') and ended_at < $1 order by ended_at limit $2",
        before,
        limit,
    )
    .fetch_all(db)
    .await
}

/// Removes a finished recording's row (its file is gone); whether it was there.
pub async fn delete(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<bool> {
    let done =
        sqlx::query!("delete from recordings where id = $1 and status in ('ready', 'failed', 'deleted')", id)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Calls with a recording egress still makes (to callgate), oldest first;
/// not those whose file only waits to be kept ([`RecordingRow::egress_done`]).
pub async fn calls_recording(db: &PgPool, limit: i64) -> sqlx::Result<Vec<CallId>> {
    let ids = sqlx::query_scalar!(
        "select call_id from recordings where status in ('starting', 'recording', 'ending') \
         and ended_at is null group by call_id order by min(requested_at) limit $1",
        limit,
    )
    .fetch_all(db)
    .await?;
    Ok(ids.into_iter().map(CallId).collect())
}
