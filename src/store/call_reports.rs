//! The `call_reports` table: participants' reports of one another.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{CallId, ReportReason, UserId};

#[derive(Clone, Debug)]
pub struct ReportRow {
    pub id: Uuid,
    pub call_id: Uuid,
    pub reporter_id: String,
    pub reported_id: String,
    pub reason: ReportReason,
    pub text: Option<String>,
    pub created_at: DateTime<Utc>,
}

pub struct NewReport<'a> {
    pub call: CallId,
    pub reporter: &'a UserId,
    pub reported: &'a UserId,
    pub reason: ReportReason,
    pub text: Option<&'a str>,
    pub at: DateTime<Utc>,
}

/// Holds the reporter's lock for the rest of the transaction, so that two
/// reports at once cannot both pass the daily limit.
pub async fn lock_reporter(conn: &mut PgConnection, reporter: &UserId) -> sqlx::Result<()> {
    sqlx::query!(
        "select pg_advisory_xact_lock(hashtextextended('callgate:reports:' || $1, 0))",
        reporter.as_str(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// When the reporter filed their reports since `since`, oldest first.
pub async fn filed_since(
    conn: &mut PgConnection,
    reporter: &UserId,
    since: DateTime<Utc>,
) -> sqlx::Result<Vec<DateTime<Utc>>> {
    sqlx::query_scalar!(
        "select created_at from call_reports where reporter_id = $1 and created_at > $2 order by created_at",
        reporter.as_str(),
        since,
    )
    .fetch_all(conn)
    .await
}

/// The report `reporter` filed of `reported` in the call, if any.
pub async fn find(
    conn: &mut PgConnection,
    call: CallId,
    reporter: &UserId,
    reported: &UserId,
) -> sqlx::Result<Option<ReportRow>> {
    sqlx::query_as!(
        ReportRow,
        r#"select id, call_id, reporter_id, reported_id, reason as "reason: ReportReason", text, created_at
           from call_reports where call_id = $1 and reporter_id = $2 and reported_id = $3"#,
        call.0,
        reporter.as_str(),
        reported.as_str(),
    )
    .fetch_optional(conn)
    .await
}

/// Files a report; `None` if this reporter has filed one of this user in
/// this call already (the first stands).
pub async fn insert(conn: &mut PgConnection, report: &NewReport<'_>) -> sqlx::Result<Option<ReportRow>> {
    sqlx::query_as!(
        ReportRow,
        r#"insert into call_reports (id, call_id, reporter_id, reported_id, reason, text, created_at)
           values ($1, $2, $3, $4, $5, $6, $7) on conflict (call_id, reporter_id, reported_id) do nothing
           returning id, call_id, reporter_id, reported_id, reason as "reason: ReportReason", text, created_at"#,
        Uuid::new_v4(),
        report.call.0,
        report.reporter.as_str(),
        report.reported.as_str(),
        report.reason.as_str(),
        report.text,
        report.at,
    )
    .fetch_optional(conn)
    .await
}

/// The call's reports, oldest first; only those `reporter` filed if given.
pub async fn of_call(
    conn: &mut PgConnection,
    call: CallId,
    reporter: Option<&UserId>,
) -> sqlx::Result<Vec<ReportRow>> {
    sqlx::query_as!(
        ReportRow,
        r#"select id, call_id, reporter_id, reported_id, reason as "reason: ReportReason", text, created_at
           from call_reports where call_id = $1 and ($2::text is null or reporter_id = $2)
           order by created_at, id"#,
        call.0,
        reporter.map(UserId::as_str),
    )
    .fetch_all(conn)
    .await
}

/// The violations `identity` has in the call's ledger: when, and the track.
pub async fn violations_of(
    conn: &mut PgConnection,
    call: CallId,
    identity: &str,
) -> sqlx::Result<Vec<(DateTime<Utc>, Value)>> {
    let rows = sqlx::query!(
        "select at, detail from consent_ledger where call_id = $1 and kind = 'violation' and actor = $2 \
         order by id",
        call.0,
        identity,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.at, r.detail)).collect())
}
