//! Persistence: every SQL statement of callgate, in small functions named
//! for what they do, a module per table. Every state change of a call
//! happens in a transaction that first locks the call's row, so concurrent
//! requests, webhooks and deadlines on any instance serialize per call in
//! the database.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

pub mod appointments;
pub mod audit_log;
pub mod blocks;
pub mod call_reports;
pub mod calls;
pub mod consent_ledger;
pub mod deadlines;
pub mod events;
pub mod housekeeping;
pub mod jobs;
pub mod livekit_inbox;
pub mod outbox;
pub mod outgoing;
pub mod participants;
pub mod quality;
pub mod recordings;
pub mod suspensions;
pub mod words;

pub use calls::{
    CallRow, NewCall, end_call, find_call, history, insert_call, live_call_counts, live_calls_of, lock_call,
    present_call_of, save_video_session, set_state,
};
pub use deadlines::{DeadlineKind, cancel, schedule};
pub use events::{NewEvent, notify, record_event, record_events};
pub use outbox::{app_webhook_backlog, enqueue_app_webhook};
pub use outgoing::Outgoing;
pub use participants::{
    NewParticipant, ParticipantRow, StoredGender, gender_word, insert_participant, live_users, mark_answered,
    mark_gone, mark_joined, participants,
};

/// A pooled connection idle for longer than this is pinged before it is
/// handed out (a server restart or a dropped link shows there, not in the
/// caller's query); one used more recently is not. sqlx's default pings on
/// every acquire: a round trip more for every transaction and every query
/// on the pool, about 15 per call lifecycle and not counted by
/// `pg_stat_statements`. A connection that broke less than this ago fails
/// the caller's query, as one that breaks between a ping and the query does.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// The options every pool of callgate's is built with.
pub fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new().test_before_acquire(false).before_acquire(|conn, meta| {
        Box::pin(async move {
            if meta.idle_for < PING_IF_IDLE_FOR {
                return Ok(true);
            }
            Ok(sqlx::Connection::ping(conn).await.is_ok())
        })
    })
}

/// A small pool of its own for a background job, so that request traffic
/// cannot starve it (nor it the requests): connections to the same database.
pub fn job_pool(db: &sqlx::PgPool, size: u32) -> sqlx::PgPool {
    pool_options()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with((*db.connect_options()).clone())
}

/// Whether the database answers.
pub async fn ping(db: &PgPool) -> sqlx::Result<()> {
    sqlx::query_scalar!(r#"select 1 as "one!""#).fetch_one(db).await.map(drop)
}

/// A word of the domain (`Outcome`, `EndReason`, ...) in a text column,
/// decoded by its `FromStr`: an unknown word is a decoding error, never a
/// string passed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Word<T>(pub T);

impl<T> sqlx::Type<sqlx::Postgres> for Word<T> {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <String as sqlx::Type<sqlx::Postgres>>::type_info()
    }

    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <String as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'r, T> sqlx::Decode<'r, sqlx::Postgres> for Word<T>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        Ok(Word(text.parse()?))
    }
}
