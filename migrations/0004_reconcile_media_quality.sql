-- Webhook inbox, presence ordering, reconciler bookkeeping, call quality.

-- LiveKit's webhooks become an inbox: the HTTP handler verifies the
-- signature, stores the event (the primary key on the event id drops a
-- second delivery) and answers at once; the event is handled afterwards, in
-- arrival order per call (seq), and retried until it is processed.
alter table livekit_webhook_events
    add column seq bigserial,
    add column call_id uuid,
    add column payload jsonb,
    add column processed_at timestamptz,
    -- Failed handlings; after a few the event is set aside (processed).
    add column attempts integer not null default 0;
-- Rows written before the inbox were handled when they were stored.
update livekit_webhook_events set processed_at = received_at;
create index livekit_webhook_events_pending on livekit_webhook_events (call_id, seq)
    where processed_at is null;
create index livekit_webhook_events_done on livekit_webhook_events (received_at)
    where processed_at is not null;

-- The LiveKit session (ParticipantInfo.joined_at_ms) of the participant's
-- latest known join: a participant_left of an older session is stale.
alter table call_participants add column lk_session_at timestamptz;

-- When the reconciler last compared the call with its room: oldest first.
alter table calls add column reconciled_at timestamptz;
create index calls_to_reconcile on calls (reconciled_at nulls first)
    where state in ('connecting', 'active');
create index calls_by_created on calls (created_at);

-- One row: when a reconciler pass last started on any instance. A pass
-- starts only by moving it forward with a conditional update, so however
-- many instances run, about one pass happens per interval.
create table reconciler_lease (
    id     boolean primary key default true check (id),
    ran_at timestamptz not null
);
insert into reconciler_lease (ran_at) values ('-infinity');

-- Network quality as the participants' clients measure it.
create table quality_samples (
    id              bigserial primary key,
    call_id         uuid not null references calls (id) on delete cascade,
    user_id         text not null,
    jitter_ms       double precision not null check (jitter_ms between 0 and 10000),
    packet_loss_pct double precision not null check (packet_loss_pct between 0 and 100),
    rtt_ms          double precision not null check (rtt_ms between 0 and 60000),
    bitrate_kbps    double precision check (bitrate_kbps between 0 and 1000000),
    fps             double precision check (fps between 0 and 240),
    resolution      text,
    codec           text,
    network_type    text,
    at              timestamptz not null default now()
);
create index quality_samples_by_call on quality_samples (call_id, user_id);

-- What each participant thought of an ended call; a second rating replaces the first.
create table call_ratings (
    call_id  uuid not null references calls (id) on delete cascade,
    user_id  text not null,
    score    smallint not null check (score between 1 and 5),
    comment  text,
    rated_at timestamptz not null default now(),
    primary key (call_id, user_id)
);
