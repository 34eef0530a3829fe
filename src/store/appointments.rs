//! The `appointments` and `appointment_people` tables.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{AppointmentOutcome, AppointmentRole, AppointmentState, CallType, UserId};
use crate::store::Word;

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AppointmentRow {
    pub id: Uuid,
    pub external_ref: String,
    #[sqlx(rename = "type", try_from = "String")]
    pub call_type: CallType,
    pub title: Option<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    #[sqlx(try_from = "String")]
    pub state: AppointmentState,
    pub outcome: Option<Word<AppointmentOutcome>>,
    pub booked_by: String,
    pub created_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct PersonRow {
    #[sqlx(try_from = "String")]
    pub user_id: UserId,
    #[sqlx(try_from = "String")]
    pub role: AppointmentRole,
}

macro_rules! appointment_columns {
    () => {
        "id, external_ref, type, title, starts_at, ends_at, state, outcome, booked_by, created_at, ended_at"
    };
}

pub struct NewAppointment<'a> {
    pub id: Uuid,
    pub external_ref: &'a str,
    pub call_type: CallType,
    pub title: Option<&'a str>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub booked_by: &'a UserId,
    /// Hosts first, then guests, each in the order named.
    pub people: &'a [(UserId, AppointmentRole)],
}

/// Writes a booking, unless one with its `external_ref` exists (then
/// nothing is written; a booking of the same ref being written by another
/// transaction is waited for). Returns whether it was written.
pub async fn insert(conn: &mut PgConnection, new: &NewAppointment<'_>) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "insert into appointments (id, external_ref, type, title, starts_at, ends_at, booked_by) \
         values ($1, $2, $3, $4, $5, $6, $7) on conflict (external_ref) do nothing",
    )
    .bind(new.id)
    .bind(new.external_ref)
    .bind(new.call_type.as_str())
    .bind(new.title)
    .bind(new.starts_at)
    .bind(new.ends_at)
    .bind(new.booked_by.as_str())
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query(
        "insert into appointment_people (appointment_id, user_id, role, position) \
         select $1, u, r, p::smallint from unnest($2::text[], $3::text[]) with ordinality as t(u, r, p)",
    )
    .bind(new.id)
    .bind(new.people.iter().map(|(u, _)| u.as_str()).collect::<Vec<_>>())
    .bind(new.people.iter().map(|(_, r)| r.as_str()).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(true)
}

pub async fn find(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<AppointmentRow>> {
    sqlx::query_as(concat!("select ", appointment_columns!(), " from appointments where id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

pub async fn find_by_ref(
    conn: &mut PgConnection,
    external_ref: &str,
) -> sqlx::Result<Option<AppointmentRow>> {
    sqlx::query_as(concat!("select ", appointment_columns!(), " from appointments where external_ref = $1"))
        .bind(external_ref)
        .fetch_optional(conn)
        .await
}

/// Locks the appointment's row for the rest of the transaction.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<AppointmentRow>> {
    sqlx::query_as(concat!("select ", appointment_columns!(), " from appointments where id = $1 for update"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Its hosts and guests, as booked.
pub async fn people(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Vec<PersonRow>> {
    sqlx::query_as("select user_id, role from appointment_people where appointment_id = $1 order by position")
        .bind(id)
        .fetch_all(conn)
        .await
}

/// Ends it with `outcome`.
pub async fn end(conn: &mut PgConnection, id: Uuid, outcome: AppointmentOutcome) -> sqlx::Result<()> {
    sqlx::query("update appointments set state = 'ended', outcome = $2, ended_at = now() where id = $1")
        .bind(id)
        .bind(outcome.as_str())
        .execute(conn)
        .await?;
    Ok(())
}
