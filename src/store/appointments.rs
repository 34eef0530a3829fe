//! The `appointments` and `appointment_people` tables.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{AppointmentOutcome, AppointmentRole, AppointmentState, CallType, UserId};
use crate::store::jobs::{self, Again, Job};

#[derive(Clone, Debug)]
pub struct AppointmentRow {
    pub id: Uuid,
    pub external_ref: String,
    pub call_type: CallType,
    pub title: Option<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub state: AppointmentState,
    pub outcome: Option<AppointmentOutcome>,
    pub booked_by: String,
    pub created_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// When it may be joined from.
    pub opens_at: DateTime<Utc>,
    /// When a host and an admitted guest were first in it together.
    pub started_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug)]
pub struct PersonRow {
    pub user_id: UserId,
    pub role: AppointmentRole,
}

// The query macros take a string literal: each statement that reads an
// `AppointmentRow` names its columns itself, with the words' types
// (`state as "state: AppointmentState"`, see `store::words`).

pub struct NewAppointment<'a> {
    pub id: Uuid,
    /// Whose refs `external_ref` is among (`'service'` or `'user:<id>'`).
    pub ref_scope: &'a str,
    pub external_ref: &'a str,
    pub call_type: CallType,
    pub title: Option<&'a str>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub booked_by: &'a UserId,
    /// Hosts first, then guests, each in the order named.
    pub people: &'a [(UserId, AppointmentRole)],
    /// When it opens (and its first deadline is due).
    pub opens_at: DateTime<Utc>,
}

/// Writes a booking, unless its booker has one with its `external_ref`
/// (then nothing is written; a booking of the same ref being written by
/// another transaction is waited for). Returns whether it was written.
pub async fn insert(conn: &mut PgConnection, new: &NewAppointment<'_>) -> sqlx::Result<bool> {
    let inserted = sqlx::query!(
        "insert into appointments \
         (id, ref_scope, external_ref, type, title, starts_at, ends_at, booked_by, opens_at) \
         values ($1, $9, $2, $3, $4, $5, $6, $7, $8) on conflict (ref_scope, external_ref) do nothing",
        new.id,
        new.external_ref,
        new.call_type.as_str(),
        new.title,
        new.starts_at,
        new.ends_at,
        new.booked_by.as_str(),
        new.opens_at,
        new.ref_scope,
    )
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    check_at(conn, new.id, Some(new.opens_at)).await?;
    let users: Vec<&str> = new.people.iter().map(|(u, _)| u.as_str()).collect();
    let roles: Vec<&str> = new.people.iter().map(|(_, r)| r.as_str()).collect();
    sqlx::query!(
        "insert into appointment_people (appointment_id, user_id, role, position) \
         select $1, u, r, p::smallint from unnest($2::text[], $3::text[]) with ordinality as t(u, r, p)",
        new.id,
        &users as &[&str],
        &roles as &[&str],
    )
    .execute(&mut *conn)
    .await?;
    Ok(true)
}

pub async fn find(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<AppointmentRow>> {
    sqlx::query_as!(
        AppointmentRow,
        r#"select id, external_ref, type as "call_type: CallType", title, starts_at, ends_at,
           state as "state: AppointmentState", outcome as "outcome: AppointmentOutcome",
           booked_by, created_at, ended_at, opens_at, started_at
           from appointments where id = $1"#,
        id,
    )
    .fetch_optional(conn)
    .await
}

/// The appointment of this booker's ref (`ref_scope` as in [`NewAppointment`]).
pub async fn find_by_ref(
    conn: &mut PgConnection,
    ref_scope: &str,
    external_ref: &str,
) -> sqlx::Result<Option<AppointmentRow>> {
    sqlx::query_as!(
        AppointmentRow,
        r#"select id, external_ref, type as "call_type: CallType", title, starts_at, ends_at,
           state as "state: AppointmentState", outcome as "outcome: AppointmentOutcome",
           booked_by, created_at, ended_at, opens_at, started_at
           from appointments where ref_scope = $1 and external_ref = $2"#,
        ref_scope,
        external_ref,
    )
    .fetch_optional(conn)
    .await
}

/// Locks the appointment's row for the rest of the transaction.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<AppointmentRow>> {
    sqlx::query_as!(
        AppointmentRow,
        r#"select id, external_ref, type as "call_type: CallType", title, starts_at, ends_at,
           state as "state: AppointmentState", outcome as "outcome: AppointmentOutcome",
           booked_by, created_at, ended_at, opens_at, started_at
           from appointments where id = $1 for update"#,
        id,
    )
    .fetch_optional(conn)
    .await
}

/// Locks the appointment's row, unless another transaction holds it (`None`
/// then, as for no appointment).
pub async fn lock_nowait(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<AppointmentRow>> {
    sqlx::query_as!(
        AppointmentRow,
        r#"select id, external_ref, type as "call_type: CallType", title, starts_at, ends_at,
           state as "state: AppointmentState", outcome as "outcome: AppointmentOutcome",
           booked_by, created_at, ended_at, opens_at, started_at
           from appointments where id = $1 for update skip locked"#,
        id,
    )
    .fetch_optional(conn)
    .await
}

/// Its hosts and guests, as booked.
pub async fn people(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Vec<PersonRow>> {
    sqlx::query_as!(
        PersonRow,
        r#"select user_id as "user_id: UserId", role as "role: AppointmentRole"
           from appointment_people where appointment_id = $1 order by position"#,
        id,
    )
    .fetch_all(conn)
    .await
}

/// Ends it with `outcome`, at the database's time: the time its call's end
/// is written with (`store::calls::end_call`), in the same transaction.
pub async fn end(conn: &mut PgConnection, id: Uuid, outcome: AppointmentOutcome) -> sqlx::Result<()> {
    sqlx::query!(
        "update appointments set state = 'ended', outcome = $2, ended_at = now() where id = $1",
        id,
        outcome.as_str(),
    )
    .execute(&mut *conn)
    .await?;
    check_at(conn, id, None).await
}

/// Its next check (opening, then the no-show) is due at `at` (none: `None`):
/// a job of its own lane (`store::jobs`).
async fn check_at(conn: &mut PgConnection, id: Uuid, at: Option<DateTime<Utc>>) -> sqlx::Result<()> {
    match at {
        Some(at) => {
            jobs::enqueue(conn, &Job::Appointment { appointment: id }, at, Again::Replace, false).await
        }
        None => jobs::cancel_appointment(conn, id).await,
    }
}

/// Moves it to `state`, its next deadline due at `due_at` (none: `None`).
pub async fn set_state(
    conn: &mut PgConnection,
    id: Uuid,
    state: AppointmentState,
    due_at: Option<DateTime<Utc>>,
) -> sqlx::Result<()> {
    sqlx::query!("update appointments set state = $2 where id = $1", id, state.as_str())
        .execute(&mut *conn)
        .await?;
    check_at(conn, id, due_at).await
}

/// A host and an admitted guest are in it together: active from now.
pub async fn mark_started(conn: &mut PgConnection, id: Uuid, now: DateTime<Utc>) -> sqlx::Result<()> {
    sqlx::query!(
        "update appointments set state = 'active', started_at = coalesce(started_at, $2) where id = $1",
        id,
        now,
    )
    .execute(&mut *conn)
    .await?;
    check_at(conn, id, None).await
}

/// Moves its window (and its opening, when its deadline is due) before it opens.
pub async fn reschedule(
    conn: &mut PgConnection,
    id: Uuid,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    opens_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "update appointments set starts_at = $2, ends_at = $3, opens_at = $4 where id = $1",
        id,
        starts_at,
        ends_at,
        opens_at,
    )
    .execute(&mut *conn)
    .await?;
    check_at(conn, id, Some(opens_at)).await
}

/// A page of `user`'s appointments starting in `[from, to)`, soonest
/// first, after the cursor `(starts_at, id)` if given.
pub async fn of_user(
    conn: &mut PgConnection,
    user: &UserId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> sqlx::Result<Vec<AppointmentRow>> {
    let (after_at, after_id) = after.map_or((None, None), |(at, id)| (Some(at), Some(id)));
    sqlx::query_as!(
        AppointmentRow,
        r#"select id, external_ref, type as "call_type: CallType", title, starts_at, ends_at,
           state as "state: AppointmentState", outcome as "outcome: AppointmentOutcome",
           booked_by, created_at, ended_at, opens_at, started_at
           from appointments where id in (select appointment_id from appointment_people where user_id = $1)
           and starts_at >= $2 and starts_at < $3
           and ($4::timestamptz is null or (starts_at, id) > ($4, $5))
           order by starts_at, id limit $6"#,
        user.as_str(),
        from,
        to,
        after_at,
        after_id,
        limit,
    )
    .fetch_all(conn)
    .await
}

/// The hosts and guests of each of these appointments, in one query.
pub async fn people_of(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> sqlx::Result<std::collections::HashMap<Uuid, Vec<PersonRow>>> {
    let rows = sqlx::query!(
        r#"select appointment_id, user_id as "user_id: UserId", role as "role: AppointmentRole"
           from appointment_people where appointment_id = any($1)
           order by appointment_id, position"#,
        ids,
    )
    .fetch_all(conn)
    .await?;
    let mut by_id: std::collections::HashMap<Uuid, Vec<PersonRow>> = std::collections::HashMap::new();
    for row in rows {
        by_id.entry(row.appointment_id).or_default().push(PersonRow { user_id: row.user_id, role: row.role });
    }
    Ok(by_id)
}

/// A webhook to the host application about an appointment.
pub async fn enqueue_webhook(
    conn: &mut PgConnection,
    kind: &str,
    id: Uuid,
    data: serde_json::Value,
) -> sqlx::Result<()> {
    crate::store::outbox::enqueue_app_webhook(conn, kind, id, data).await
}
