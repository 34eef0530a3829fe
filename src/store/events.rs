//! The call's timeline (`call_events`) and the events queued for users
//! (`user_events`, published by `crate::workers::fanout`).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::ClientEvent;
use crate::domain::{CallId, EventSource};

/// Rows a call's timeline holds at most. Beyond it only the rows of the
/// call's own lifecycle (`call.*`, `appointment.*`, a few per participant,
/// bounded by its state machine) are added: LiveKit's events, media changes
/// and presence come from what participants do, as often as they do it.
pub const MAX_TIMELINE_ROWS: i64 = 2000;

/// A participant's media change merges into their previous one when that
/// was written less than this long ago, with no row of another kind since.
pub const MEDIA_COALESCE_SECS: f64 = 10.0;

/// Appends to the call's timeline (within [`MAX_TIMELINE_ROWS`]).
pub async fn record_event(
    conn: &mut PgConnection,
    call: CallId,
    kind: &str,
    source: EventSource,
    actor: Option<&str>,
    data: Value,
) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into call_events (call_id, type, source, actor, data) select $1, $2, $3, $4, $5 \
         where $2 like 'call.%' or $2 like 'appointment.%' \
         or (select count(*) from (select 1 from call_events where call_id = $1 limit $6) c) < $6",
        call.0,
        kind,
        source.as_str(),
        actor,
        data,
        MAX_TIMELINE_ROWS,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a participant's change of their own media (`media.updated`):
/// merged into their previous change (the net change, at the time of the
/// first) when that is younger than [`MEDIA_COALESCE_SECS`] and only other
/// media changes came since (everyone in a call toggling at once still
/// leaves a row each per burst), else appended within [`MAX_TIMELINE_ROWS`].
/// One statement. The age is by the database's clock, as the rows' `at`
/// (written by the database, as every timeline row's) is.
pub async fn record_media_change(
    conn: &mut PgConnection,
    call: CallId,
    actor: &str,
    change: Value,
) -> sqlx::Result<()> {
    sqlx::query!(
        "with mine as (select id, at from call_events \
             where call_id = $1 and type = 'media.updated' and actor = $2 order by id desc limit 1), \
         merged as (update call_events e set data = e.data || jsonb_strip_nulls($3) from mine \
             where e.id = mine.id and mine.at > now() - make_interval(secs => $4) \
             and not exists (select 1 from call_events o \
                 where o.call_id = $1 and o.id > mine.id and o.type <> 'media.updated') \
             returning e.id) \
         insert into call_events (call_id, type, source, actor, data) \
         select $1, 'media.updated', 'api', $2, $3 where not exists (select 1 from merged) \
         and (select count(*) from (select 1 from call_events where call_id = $1 limit $5) c) < $5",
        call.0,
        actor,
        change,
        MEDIA_COALESCE_SECS,
        MAX_TIMELINE_ROWS,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A timeline row written later, with others (`record_events`).
#[derive(Debug)]
pub struct NewEvent {
    pub kind: String,
    pub source: EventSource,
    pub actor: Option<String>,
    pub data: Value,
}

/// Appends rows to the call's timeline in one statement, in their order;
/// those the cap counts only while there is room (see [`record_event`]).
pub async fn record_events(conn: &mut PgConnection, call: CallId, rows: &[NewEvent]) -> sqlx::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    let sources: Vec<&str> = rows.iter().map(|r| r.source.as_str()).collect();
    let actors: Vec<Option<&str>> = rows.iter().map(|r| r.actor.as_deref()).collect();
    let data: Vec<&Value> = rows.iter().map(|r| &r.data).collect();
    // `with ordinality` keeps the ids (the timeline's order) in the rows' order;
    // `nth` numbers the rows the cap counts.
    sqlx::query!(
        "insert into call_events (call_id, type, source, actor, data) \
         select $1, k, s, a, d from ( \
             select k, s, a, d, n, (k like 'call.%' or k like 'appointment.%') as always, \
                 count(*) filter (where not (k like 'call.%' or k like 'appointment.%')) over (order by n) as nth \
             from unnest($2::text[], $3::text[], $4::text[], $5::jsonb[]) with ordinality as r(k, s, a, d, n)) r \
         where always or nth <= $6 - (select count(*) from (select 1 from call_events where call_id = $1 limit $6) c) \
         order by n",
        call.0,
        &kinds as &[&str],
        &sources as &[&str],
        &actors as &[Option<&str>],
        &data as &[&Value],
        MAX_TIMELINE_ROWS,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Queues an event for each recipient, in the caller's transaction.
pub async fn notify(
    conn: &mut PgConnection,
    recipients: &[String],
    kind: ClientEvent,
    call: CallId,
    data: &Value,
) -> sqlx::Result<()> {
    insert_events(conn, recipients, kind, Some(call.0), data).await
}

/// Like [`notify`], for an event of no call (an appointment before it opened).
pub async fn notify_without_call(
    conn: &mut PgConnection,
    recipients: &[String],
    kind: ClientEvent,
    data: &Value,
) -> sqlx::Result<()> {
    insert_events(conn, recipients, kind, None, data).await
}

/// One kind of event for these recipients, written the way a step's
/// events are (`store::Outgoing`).
async fn insert_events(
    conn: &mut PgConnection,
    recipients: &[String],
    kind: ClientEvent,
    call: Option<Uuid>,
    data: &Value,
) -> sqlx::Result<()> {
    let mut out = crate::store::Outgoing::default();
    out.notify(recipients, kind, call, data);
    out.write(conn).await
}

#[derive(Debug)]
pub struct TimelineEvent {
    pub id: i64,
    pub kind: String,
    pub source: String,
    pub actor: Option<String>,
    pub at: DateTime<Utc>,
    pub data: Value,
}

/// Up to `limit` of the call's events after the event `after`, oldest first.
pub async fn timeline(
    conn: &mut PgConnection,
    call: CallId,
    after: i64,
    limit: i64,
) -> sqlx::Result<Vec<TimelineEvent>> {
    sqlx::query_as!(
        TimelineEvent,
        "select id, type as kind, source, actor, at, data from call_events \
         where call_id = $1 and id > $2 order by id limit $3",
        call.0,
        after,
        limit,
    )
    .fetch_all(conn)
    .await
}

/// An event queued for a user.
#[derive(Debug)]
pub struct UserEvent {
    pub id: Uuid,
    pub user_id: String,
    pub call_id: Option<Uuid>,
    pub kind: String,
    pub data: Value,
    pub created_at: DateTime<Utc>,
    /// The order of events written at the same time.
    pub seq: i64,
}

/// Begins a transaction on the listener's connection (which has no
/// transaction API of its own).
pub async fn begin_on(conn: &mut PgListener) -> sqlx::Result<()> {
    sqlx::query!("begin").execute(&mut *conn).await.map(|_| ())
}

/// Ends the transaction `begin_on` began: commits it, or rolls it back.
pub async fn end_on(conn: &mut PgListener, commit: bool) -> sqlx::Result<()> {
    let done = if commit {
        sqlx::query!("commit").execute(&mut *conn).await
    } else {
        sqlx::query!("rollback").execute(&mut *conn).await
    };
    done.map(|_| ())
}

/// Takes up to `limit` unpublished events, oldest first, of users on whom
/// this transaction could take the advisory lock (in the namespace
/// `user_locks`), and marks them published at the database's time (the time
/// their `created_at` is written with and `store::housekeeping` purges by),
/// in one statement: a publisher that cannot publish them rolls back and
/// they are unpublished again. Call within `begin_on`.
pub async fn claim_unpublished(
    conn: &mut PgListener,
    user_locks: i32,
    limit: i64,
) -> sqlx::Result<Vec<UserEvent>> {
    // FOR UPDATE re-reads a row another publisher has just marked (and
    // then skips it), so rows are published twice only across a crash.
    let mut rows = sqlx::query_as!(
        UserEvent,
        r#"update user_events set published_at = now()
            where id in (select id from user_events
                          where published_at is null and pg_try_advisory_xact_lock($1, hashtext(user_id))
                          order by created_at, seq limit $2 for update)
        returning id, user_id, call_id, type as kind, data, created_at, seq"#,
        user_locks,
        limit,
    )
    .fetch_all(&mut *conn)
    .await?;
    // RETURNING keeps no order.
    rows.sort_by_key(|row| (row.created_at, row.seq));
    Ok(rows)
}

/// Up to `limit` published events of these users since `since`, oldest first.
pub async fn published_since(
    db: &PgPool,
    users: &[String],
    since: DateTime<Utc>,
    limit: i64,
) -> sqlx::Result<Vec<UserEvent>> {
    sqlx::query_as!(
        UserEvent,
        "select id, user_id, call_id, type as kind, data, created_at, seq from user_events \
         where user_id = any($1) and created_at >= $2 and published_at is not null \
         order by created_at, seq limit $3",
        users,
        since,
        limit,
    )
    .fetch_all(db)
    .await
}
