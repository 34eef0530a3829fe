-- Real-time fan-out of user events, and the host application's webhooks.

-- The order in which user events are fanned out: `created_at` is the start
-- of the writing transaction, the same for every row it writes (a
-- call.missed and the call.ended after it, say).
alter table user_events add column seq bigint generated always as identity;

-- The transactional outbox of app webhooks: a row is written in the same
-- transaction as the call change it announces, and delivered (at least
-- once) by a worker on any instance with APP_WEBHOOK_URL. `id` is the
-- `webhook-id`: the same on every attempt, so the receiver can dedupe.
create table app_webhook_outbox (
    id              uuid primary key,
    type            text not null,
    call_id         uuid not null,
    -- The whole Standard Webhooks payload: {type, timestamp, data}.
    payload         jsonb not null,
    created_at      timestamptz not null default now(),
    attempts        integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    last_error      text,
    delivered_at    timestamptz,
    -- Given up on (undelivered after the retention period).
    failed_at       timestamptz
);

create index app_webhook_outbox_due on app_webhook_outbox (next_attempt_at)
    where delivered_at is null and failed_at is null;
create index app_webhook_outbox_by_call on app_webhook_outbox (call_id);
create index app_webhook_outbox_by_age on app_webhook_outbox (created_at);

-- Wakes the publishers and delivery workers of every instance (each
-- LISTENs) when a transaction that wrote rows commits: NOTIFY is delivered
-- at commit, and identical notifications of one transaction are folded
-- into one. The workers also sweep periodically, so a lost wake-up only
-- delays.
create function callgate_wake() returns trigger language plpgsql as $$
begin
    perform pg_notify(tg_argv[0], '');
    return null;
end
$$;

create trigger user_events_wake after insert on user_events
    for each statement execute function callgate_wake('callgate_user_events');
create trigger app_webhook_outbox_wake after insert on app_webhook_outbox
    for each statement execute function callgate_wake('callgate_app_webhooks');
