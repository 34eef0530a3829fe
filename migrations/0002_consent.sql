-- The consent ledger: every step of the video consent policy for a call,
-- append-only (no update or delete is ever issued against it).
create table consent_ledger (
    id         bigserial primary key,
    call_id    uuid not null references calls (id) on delete cascade,
    kind       text not null check (kind in ('request', 'consent', 'reject', 'expire', 'revoke', 'withdraw', 'on', 'off', 'violation')),
    actor      text,
    request_id uuid,
    detail     jsonb not null default '{}',
    at         timestamptz not null default now()
);

create index consent_ledger_by_call on consent_ledger (call_id, id);

-- A call started as `video` is the initiator's request for video; it is
-- put to the policy when the call is first answered, with both present.
alter table calls add column video_requested_at_start boolean not null default false;
