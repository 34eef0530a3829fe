-- Calls as people live them: many devices, network blips.

-- App webhooks of one call are delivered in the order they were written
-- (`call.ringing` before its `call.ring_stopped`, `call.started` before
-- `call.ended`): rows of one transaction share `created_at`, so a sequence
-- orders them, and a row waits while an earlier one of its call is
-- undelivered.
alter table app_webhook_outbox add column seq bigint generated always as identity;
create index app_webhook_outbox_pending_by_call on app_webhook_outbox (call_id, seq)
    where delivered_at is null and failed_at is null;

-- A participant whose connection dropped is `reconnecting` (since
-- `left_at`) for REJOIN_GRACE: still in the call, then `left`.
alter table call_participants drop constraint call_participants_status_check;
alter table call_participants add constraint call_participants_status_check
    check (status in ('invited', 'accepted', 'joined', 'reconnecting', 'left', 'declined', 'missed', 'busy', 'removed'));

-- The end of the grace of a call's oldest drop.
alter table deadlines drop constraint deadlines_kind_check;
alter table deadlines add constraint deadlines_kind_check
    check (kind in ('ringing', 'connect', 'max_duration', 'video_request', 'rejoin'));

-- The grace of a call's dropped participants, fixed when it starts (as its
-- room's departure timeout is); null: the REJOIN_GRACE of the instance.
alter table calls add column rejoin_grace_secs integer check (rejoin_grace_secs > 0);

-- Who stopped whom from calling them. A block works both ways: calls
-- between the two never ring, and the caller is answered as for a busy
-- callee. A user holds at most a bounded number (calls::blocks).
create table blocks (
    blocker    text not null,
    blocked    text not null,
    created_at timestamptz not null default now(),
    primary key (blocker, blocked),
    check (blocker <> blocked)
);
create index blocks_by_blocked on blocks (blocked, blocker);
