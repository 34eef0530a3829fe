//! The `audit_log` table: what moderators did, who, when and why.
//! Append-only: nothing updates or deletes a row.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::{CallId, ModerationAction, UserId};

pub struct NewEntry<'a> {
    pub at: DateTime<Utc>,
    pub actor: &'a UserId,
    pub action: ModerationAction,
    pub call: Option<CallId>,
    pub user: Option<&'a UserId>,
    /// `None` only for a read.
    pub reason: Option<&'a str>,
    pub detail: Value,
}

/// Writes an entry, in the transaction of what it records.
pub async fn append(conn: &mut PgConnection, entry: &NewEntry<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        "insert into audit_log (at, actor_id, action, call_id, user_id, reason, detail) \
         values ($1, $2, $3, $4, $5, $6, $7) returning id",
        entry.at,
        entry.actor.as_str(),
        entry.action.as_str(),
        entry.call.map(|c| c.0),
        entry.user.map(UserId::as_str),
        entry.reason,
        &entry.detail,
    )
    .fetch_one(conn)
    .await
}

/// Writes that `actor` (an `admin`) read what participants cannot of the
/// call (`action`: `read_ledger`, `read_reports`), before it is answered.
pub async fn read(
    conn: &mut PgConnection,
    at: DateTime<Utc>,
    actor: &UserId,
    action: ModerationAction,
    call: CallId,
) -> sqlx::Result<()> {
    let entry = NewEntry {
        at,
        actor,
        action,
        call: Some(call),
        user: None,
        reason: None,
        detail: Value::Object(Default::default()),
    };
    append(conn, &entry).await.map(drop)
}

#[derive(Clone, Debug)]
pub struct EntryRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor_id: String,
    pub action: ModerationAction,
    pub call_id: Option<Uuid>,
    pub user_id: Option<String>,
    pub reason: Option<String>,
    pub detail: Value,
}

/// What to list.
pub struct Filter<'a> {
    /// Entries older than this one (a page's cursor).
    pub before: Option<i64>,
    pub call: Option<CallId>,
    pub user: Option<&'a UserId>,
    pub limit: i64,
}

/// Up to `limit` entries, newest first.
pub async fn list(db: &PgPool, filter: &Filter<'_>) -> sqlx::Result<Vec<EntryRow>> {
    sqlx::query_as!(
        EntryRow,
        r#"select id, at, actor_id, action as "action: ModerationAction", call_id, user_id, reason, detail
           from audit_log
           where ($1::bigint is null or id < $1) and ($2::uuid is null or call_id = $2)
           and ($3::text is null or user_id = $3) order by id desc limit $4"#,
        filter.before,
        filter.call.map(|c| c.0),
        filter.user.map(UserId::as_str),
        filter.limit,
    )
    .fetch_all(db)
    .await
}
