-- Appointments: calls booked ahead by the host application or a scheduler,
-- found by the host's own id (`external_ref`, unique: booking is idempotent).
-- Nobody is busy because of a row here; only the call it opens makes its
-- people busy, once they are in it.

create table appointments (
    id           uuid primary key,
    external_ref text not null unique check (length(external_ref) between 1 and 128),
    type         text not null check (type in ('audio', 'video')),
    title        text check (length(title) <= 200),
    starts_at    timestamptz not null,
    ends_at      timestamptz not null,
    state        text not null default 'scheduled' check (state in ('scheduled', 'open', 'active', 'ended')),
    outcome      text check (outcome in ('completed', 'cancelled', 'no_show', 'failed')),
    booked_by    text not null,
    created_at   timestamptz not null default now(),
    ended_at     timestamptz,
    check (ends_at > starts_at),
    check ((state = 'ended') = (outcome is not null))
);

create table appointment_people (
    appointment_id uuid not null references appointments (id) on delete cascade,
    user_id        text not null,
    role           text not null check (role in ('host', 'guest')),
    -- The order they were named in, to give them back as booked.
    position       smallint not null,
    primary key (appointment_id, user_id)
);

-- "Mine, soonest first."
create index appointment_people_by_user on appointment_people (user_id);
create index appointments_by_start on appointments (starts_at, id);
