-- issue 28: reports, suspensions and the moderators' audit log.
--
-- A participant's report of another participant of a call they both took
-- part in (crate::calls::call_reports): one per reporter, reported user and
-- call; never shown to the reported user. `created_at` is the instance's
-- clock (crate::clock), as the report window and the daily limit read it.
create table call_reports (
    id          uuid primary key,
    call_id     uuid not null references calls (id) on delete cascade,
    reporter_id text not null,
    reported_id text not null,
    reason      text not null check (reason in ('harassment', 'nudity_or_sexual_content', 'hate',
                    'threats_or_violence', 'spam_or_scam', 'underage', 'impersonation', 'other')),
    text        text check (char_length(text) between 1 and 1000),
    created_at  timestamptz not null,
    unique (call_id, reporter_id, reported_id),
    check (reporter_id <> reported_id)
);
-- The daily limit counts a reporter's latest reports.
create index call_reports_by_reporter on call_reports (reporter_id, created_at desc);

-- Who may not call nor be called (crate::calls::moderation): one row per
-- user, replaced by a new suspension and deleted when it is lifted; one
-- whose `ends_at` has passed is no longer in force. Every instance reads
-- it from here at every way into a call: nothing is cached.
create table suspensions (
    user_id      text primary key,
    suspended_by text not null,
    reason       text not null check (char_length(reason) between 1 and 1000),
    created_at   timestamptz not null,
    -- null: until lifted.
    ends_at      timestamptz,
    check (ends_at is null or ends_at > created_at)
);

-- What moderators (the `admin` role) did, who, when and why; append-only.
-- Their reads of what participants cannot read (a call's full ledger, its
-- reports) are written too, without a reason.
create table audit_log (
    id       bigint generated always as identity primary key,
    at       timestamptz not null,
    actor_id text not null,
    action   text not null check (action in ('end_call', 'remove_participant', 'suspend', 'lift_suspension',
                 'read_ledger', 'read_reports')),
    call_id  uuid,
    user_id  text,
    reason   text check (char_length(reason) between 1 and 1000),
    detail   jsonb not null default '{}',
    check (reason is not null or action in ('read_ledger', 'read_reports'))
);
create index audit_log_by_call on audit_log (call_id, id desc) where call_id is not null;
create index audit_log_by_user on audit_log (user_id, id desc) where user_id is not null;
