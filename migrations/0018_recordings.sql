-- Recording that everyone agreed to (issue 27). Consent to record is kept
-- as video's is: the policy's state in the call's row, each step in the
-- consent ledger (which now says what a step is about), and the recordings
-- LiveKit Egress made, with where their files are.
alter table calls
    add column recording_session jsonb not null
        default '{"state": "off", "request": null, "consents": [], "cooldowns": {}}';

alter table consent_ledger
    add column subject text not null default 'video' check (subject in ('video', 'recording'));

create table recordings (
    id           uuid primary key,
    call_id      uuid not null references calls (id) on delete cascade,
    -- LiveKit's id, once egress took the request.
    egress_id    text unique,
    status       text not null
                 check (status in ('starting', 'recording', 'ending', 'ready', 'failed', 'deleted')),
    file_type    text not null check (file_type in ('ogg', 'mp4')),
    -- Where the file is, relative to the storage's root.
    storage_key  text not null,
    requested_at timestamptz not null,
    started_at   timestamptz,
    ended_at     timestamptz,
    duration_ms  bigint check (duration_ms >= 0),
    size_bytes   bigint check (size_bytes >= 0),
    -- sha256 of the file, hex.
    checksum     text,
    error        text,
    deleted_at   timestamptz
);

create index recordings_of_call on recordings (call_id, requested_at);
create index recordings_running on recordings (call_id) where status in ('starting', 'recording', 'ending');
create index recordings_ready_at on recordings (ended_at) where status in ('ready', 'failed');

-- An administrator's reads of a call's recordings are audited as the
-- ledger's and the reports' are.
alter table audit_log drop constraint audit_log_action_check;
alter table audit_log add constraint audit_log_action_check
    check (action in ('end_call', 'remove_participant', 'suspend', 'lift_suspension',
                      'read_ledger', 'read_reports', 'read_recordings'));
alter table audit_log drop constraint audit_log_check;
alter table audit_log add constraint audit_log_check
    check (reason is not null or action in ('read_ledger', 'read_reports', 'read_recordings'));
