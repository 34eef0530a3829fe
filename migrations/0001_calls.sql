-- Calls, their participants and their timeline.
--
-- Words (states, outcomes, statuses) are text with CHECK constraints rather
-- than Postgres enums: adding a word is then a one-line migration.

create table calls (
    id              uuid primary key,
    room_name       text not null unique,
    type            text not null check (type in ('audio', 'video')),
    state           text not null check (state in ('ringing', 'connecting', 'active', 'ended')),
    outcome         text check (outcome in ('completed', 'declined', 'missed', 'cancelled', 'busy', 'failed')),
    end_reason      text,
    initiator_id    text not null,
    conversation_id text,
    external_ref    text,
    scheduled       boolean not null default false,
    -- The consent policy's whole state (crate::policy::VideoSession) and,
    -- for queries, its headline.
    video_state     text not null default 'off' check (video_state in ('off', 'requested', 'on')),
    video_session   jsonb not null default '{}',
    video_used      boolean not null default false,
    created_at      timestamptz not null default now(),
    answered_at     timestamptz,
    connected_at    timestamptz,
    ended_at        timestamptz,
    -- An ended call always says how it ended, and only an ended call does.
    check ((state = 'ended') = (outcome is not null)),
    check ((state = 'ended') = (ended_at is not null))
);

create index calls_live on calls (created_at) where state <> 'ended';
create index calls_by_conversation on calls (conversation_id, created_at desc) where conversation_id is not null;

create table call_participants (
    call_id              uuid not null references calls (id) on delete cascade,
    user_id              text not null,
    name                 text,
    -- Private: read by the consent policy only, never serialized.
    gender               text not null default 'other' check (gender in ('female', 'male', 'other')),
    role                 text not null check (role in ('initiator', 'invitee')),
    status               text not null check (status in ('invited', 'accepted', 'joined', 'left', 'declined', 'missed', 'busy')),
    -- True while this participation keeps the user busy: ringing, accepted
    -- or in the room of a call that has not ended.
    live                 boolean not null,
    may_share_screen     boolean not null default true,
    invited_at           timestamptz not null default now(),
    answered_at          timestamptz,
    joined_at            timestamptz,
    left_at              timestamptz,
    audio_enabled        boolean not null default true,
    video_enabled        boolean not null default false,
    screen_share_enabled boolean not null default false,
    primary key (call_id, user_id)
);

-- "A user is never in two live calls at once", enforced here rather than by
-- a check-then-insert: concurrent call starts race on this index.
create unique index one_live_call_per_user on call_participants (user_id) where live;
create index call_participants_by_user on call_participants (user_id, call_id);

-- The timeline of a call: what happened, who did it, where we learned it.
create table call_events (
    id       bigserial primary key,
    call_id  uuid not null references calls (id) on delete cascade,
    type     text not null,
    source   text not null check (source in ('api', 'livekit', 'system')),
    actor    text,
    data     jsonb not null default '{}',
    at       timestamptz not null default now()
);

create index call_events_by_call on call_events (call_id, id);

-- Durable deadlines. Each instance polls for due rows with
-- FOR UPDATE SKIP LOCKED and deletes the row in the transaction that acts on
-- it, so a deadline fires once across instances and survives restarts.
create table deadlines (
    call_id  uuid not null references calls (id) on delete cascade,
    kind     text not null check (kind in ('ringing', 'connect', 'max_duration', 'video_request')),
    due_at   timestamptz not null,
    ref_id   uuid,
    primary key (call_id, kind)
);

create index deadlines_due on deadlines (due_at);

-- LiveKit webhook deliveries already handled (LiveKit may send one twice).
create table livekit_webhook_events (
    id          text primary key,
    event       text not null,
    room_name   text,
    created_at  timestamptz,
    received_at timestamptz not null default now()
);

-- Events for users, written in the transaction of the change they announce,
-- then fanned out to connected clients.
create table user_events (
    id           uuid primary key,
    user_id      text not null,
    call_id      uuid references calls (id) on delete cascade,
    type         text not null,
    data         jsonb not null default '{}',
    created_at   timestamptz not null default now(),
    published_at timestamptz
);

create index user_events_unpublished on user_events (created_at) where published_at is null;
create index user_events_by_user on user_events (user_id, created_at desc);
