//! The `consent_ledger` table: every step of the consent policy, about
//! video or recording (`subject`), and the violations seen.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::CallId;
use crate::domain::consent::{LedgerKind, Subject};

pub async fn append(
    tx: &mut PgConnection,
    call: CallId,
    subject: Subject,
    kind: LedgerKind,
    actor: Option<&str>,
    request_id: Option<Uuid>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into consent_ledger (call_id, subject, kind, actor, request_id) values ($1, $2, $3, $4, $5)",
        call.0,
        subject.as_str(),
        kind.as_str(),
        actor,
        request_id,
    )
    .execute(tx)
    .await?;
    Ok(())
}

/// When video last turned on or off in the call; `None` if it never did.
pub async fn last_video_switch(tx: &mut PgConnection, call: CallId) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar!(
        "select max(at) from consent_ledger where call_id = $1 and subject = 'video' and kind in ('on', 'off')",
        call.0,
    )
    .fetch_one(tx)
    .await
}

/// A track seen against the policy, as the ledger records it.
pub struct ViolatingTrack<'a> {
    pub sid: &'a str,
    pub source: &'a str,
    /// What it is (video if its media or its label says so).
    pub kind: &'a str,
    /// The type its client declared.
    pub declared: &'a str,
}

/// Writes a `violation`, once per track. Returns whether it was written.
pub async fn append_violation_once(
    tx: &mut PgConnection,
    call: CallId,
    identity: &str,
    track: &ViolatingTrack<'_>,
) -> sqlx::Result<bool> {
    let written = sqlx::query!(
        "insert into consent_ledger (call_id, kind, actor, detail) \
         select $1, 'violation', $2, jsonb_build_object('trackSid', $3::text, 'source', $4::text, 'kind', $5::text, 'declared', $6::text) \
         where not exists (select 1 from consent_ledger where call_id = $1 and kind = 'violation' \
                           and detail->>'trackSid' = $3)",
        call.0,
        identity,
        track.sid,
        track.source,
        track.kind,
        track.declared,
    )
    .execute(tx)
    .await?;
    Ok(written.rows_affected() == 1)
}

/// How many violations `identity` has in the call's ledger.
pub async fn violations_by(tx: &mut PgConnection, call: CallId, identity: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"select count(*) as "count!" from consent_ledger where call_id = $1 and kind = 'violation' and actor = $2"#,
        call.0,
        identity,
    )
    .fetch_one(tx)
    .await
}

#[derive(Debug)]
pub struct LedgerEntry {
    pub id: i64,
    pub subject: String,
    pub kind: String,
    pub actor: Option<String>,
    pub request_id: Option<Uuid>,
    pub at: DateTime<Utc>,
}

/// The call's ledger, in order.
pub async fn of_call(conn: &mut PgConnection, call: CallId) -> sqlx::Result<Vec<LedgerEntry>> {
    sqlx::query_as!(
        LedgerEntry,
        "select id, subject, kind, actor, request_id, at from consent_ledger where call_id = $1 order by id",
        call.0,
    )
    .fetch_all(conn)
    .await
}

/// Video requests made, and accepted, in calls created in `[from, to)`.
pub async fn request_counts(db: &PgPool, from: DateTime<Utc>, to: DateTime<Utc>) -> sqlx::Result<(i64, i64)> {
    let counts = sqlx::query!(
        r#"select count(distinct l.request_id) filter (where l.kind = 'request') as "requested!",
           count(distinct l.request_id) filter (where l.kind = 'on') as "accepted!"
           from consent_ledger l join calls c on c.id = l.call_id
           where c.created_at >= $1 and c.created_at < $2 and l.subject = 'video' and l.kind in ('request', 'on')"#,
        from,
        to,
    )
    .fetch_one(db)
    .await?;
    Ok((counts.requested, counts.accepted))
}
