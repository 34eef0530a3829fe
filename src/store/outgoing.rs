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

// The statement writes the rows of `user_events` (whose statement trigger
// wakes the publishers) and of `app_webhook_outbox`, stamped with the
// transaction's time, in one of three forms: a table without rows is named
// in a part that is not run, so that every form takes the same parameters.
// (The statement answers one row, `written`.) The query macros take one
// literal each, so the parts are written out
// thrice in `write`: for the events, `with e as (insert into user_events
// ...)`; for the webhooks, `h as (insert into app_webhook_outbox ...)`.

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
        let Outgoing { events, hooks } = self;
        let done = match (!events.ids.is_empty(), !hooks.ids.is_empty()) {
            (false, false) => return Ok(()),
            (true, false) => sqlx::query!(
                "with e as (insert into user_events (id, user_id, call_id, type, data) \
                 select i, u, c, k, d from unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::jsonb[]) \
                 with ordinality as r(i, u, c, k, d, n) order by n), \
                 h as (select $6::uuid[], $7::text[], $8::uuid[], $9::jsonb[]) select 1 as written",
                &events.ids[..],
                &events.users[..],
                &events.calls as &[Option<Uuid>],
                &events.kinds as &[&str],
                &events.data[..],
                &hooks.ids[..],
                &hooks.kinds[..],
                &hooks.calls[..],
                &hooks.data[..],
            )
            .fetch_one(conn)
            .await
            .map(drop),
            (false, true) => sqlx::query!(
                "with e as (select $1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::jsonb[]), \
                 h as (insert into app_webhook_outbox (id, type, call_id, payload) \
                 select i, k, c, jsonb_build_object('type', k, 'timestamp', now(), 'data', d) \
                 from unnest($6::uuid[], $7::text[], $8::uuid[], $9::jsonb[]) \
                 with ordinality as r(i, k, c, d, n) order by n) select 1 as written",
                &events.ids[..],
                &events.users[..],
                &events.calls as &[Option<Uuid>],
                &events.kinds as &[&str],
                &events.data[..],
                &hooks.ids[..],
                &hooks.kinds[..],
                &hooks.calls[..],
                &hooks.data[..],
            )
            .fetch_one(conn)
            .await
            .map(drop),
            (true, true) => sqlx::query!(
                "with e as (insert into user_events (id, user_id, call_id, type, data) \
                 select i, u, c, k, d from unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::jsonb[]) \
                 with ordinality as r(i, u, c, k, d, n) order by n), \
                 h as (insert into app_webhook_outbox (id, type, call_id, payload) \
                 select i, k, c, jsonb_build_object('type', k, 'timestamp', now(), 'data', d) \
                 from unnest($6::uuid[], $7::text[], $8::uuid[], $9::jsonb[]) \
                 with ordinality as r(i, k, c, d, n) order by n) select 1 as written",
                &events.ids[..],
                &events.users[..],
                &events.calls as &[Option<Uuid>],
                &events.kinds as &[&str],
                &events.data[..],
                &hooks.ids[..],
                &hooks.kinds[..],
                &hooks.calls[..],
                &hooks.data[..],
            )
            .fetch_one(conn)
            .await
            .map(drop),
        };
        done?;
        Ok(())
    }
}
