//! What a transaction tells: events for users' streams (`user_events`) and
//! webhooks to the host application (`app_webhook_outbox`), gathered while
//! the transaction decides and written in one statement, each table's rows
//! in the order they were added (their `seq`). A step that tells several
//! things (an answer tells the others, stops the callee's other devices
//! ringing and announces the answer) costs one round trip for all of them.

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::ClientEvent;

#[derive(Debug, Default)]
pub struct Outgoing {
    events: Events,
    hooks: Hooks,
}

#[derive(Debug, Default)]
struct Events {
    ids: Vec<Uuid>,
    users: Vec<String>,
    calls: Vec<Option<Uuid>>,
    kinds: Vec<&'static str>,
    data: Vec<Value>,
}

#[derive(Debug, Default)]
struct Hooks {
    ids: Vec<Uuid>,
    kinds: Vec<String>,
    calls: Vec<Uuid>,
    data: Vec<Value>,
}

/// The rows of `user_events`; the statement trigger wakes the publishers.
macro_rules! events_sql {
    () => {
        "insert into user_events (id, user_id, call_id, type, data) \
         select i, u, c, k, d from unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::jsonb[]) \
         with ordinality as r(i, u, c, k, d, n) order by n"
    };
}
/// The rows of `app_webhook_outbox`, stamped with the transaction's time.
macro_rules! hooks_sql {
    () => {
        "insert into app_webhook_outbox (id, type, call_id, payload) \
         select i, k, c, jsonb_build_object('type', k, 'timestamp', now(), 'data', d) \
         from unnest($6::uuid[], $7::text[], $8::uuid[], $9::jsonb[]) \
         with ordinality as r(i, k, c, d, n) order by n"
    };
}
// A table without rows is named in a part that is not run, so that every
// statement takes the same parameters.
const EVENTS_ONLY: &str = concat!(
    "with e as (",
    events_sql!(),
    "), ",
    "h as (select $6::uuid[], $7::text[], $8::uuid[], $9::jsonb[]) select 1"
);
const HOOKS_ONLY: &str = concat!(
    "with e as (select $1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::jsonb[]), ",
    "h as (",
    hooks_sql!(),
    ") select 1"
);
const BOTH: &str = concat!("with e as (", events_sql!(), "), h as (", hooks_sql!(), ") select 1");

impl Outgoing {
    /// An event for each recipient's streams.
    pub fn notify(&mut self, recipients: &[String], kind: ClientEvent, call: Option<Uuid>, data: &Value) {
        let events = &mut self.events;
        for user in recipients {
            events.ids.push(Uuid::new_v4());
            events.users.push(user.clone());
            events.calls.push(call);
            events.kinds.push(kind.as_str());
            events.data.push(data.clone());
        }
    }

    /// A webhook to the host application about `call`.
    pub fn hook(&mut self, kind: &str, call: Uuid, data: Value) {
        let hooks = &mut self.hooks;
        hooks.ids.push(Uuid::new_v4());
        hooks.kinds.push(kind.to_owned());
        hooks.calls.push(call);
        hooks.data.push(data);
    }

    /// Writes everything gathered, in one statement (none if nothing was):
    /// only the tables that get rows are written, so their triggers wake
    /// only the workers that have something to do.
    pub async fn write(self, conn: &mut PgConnection) -> sqlx::Result<()> {
        let (events, hooks) = (!self.events.ids.is_empty(), !self.hooks.ids.is_empty());
        let sql = match (events, hooks) {
            (false, false) => return Ok(()),
            (true, false) => EVENTS_ONLY,
            (false, true) => HOOKS_ONLY,
            (true, true) => BOTH,
        };
        let Outgoing { events, hooks } = self;
        sqlx::query(sql)
            .bind(events.ids)
            .bind(events.users)
            .bind(events.calls)
            .bind(events.kinds)
            .bind(events.data)
            .bind(hooks.ids)
            .bind(hooks.kinds)
            .bind(hooks.calls)
            .bind(hooks.data)
            .execute(conn)
            .await?;
        Ok(())
    }
}
