-- An appointment's call: created when the appointment opens (its deadline,
-- or the first join in the window), with its hosts and guests written but
-- not live: nobody is busy with it until they join.
alter table calls add column appointment_id uuid unique references appointments (id);

-- A guest in an appointment's waiting room is in the call (and in LiveKit)
-- with no rights until a host admits them. Everyone else is admitted.
alter table call_participants add column admitted boolean not null default true;

-- What happens to an appointment next, and when: opening (while scheduled),
-- the no-show check (while open). Taken by any instance with FOR UPDATE SKIP
-- LOCKED in the transaction that acts on it, so it fires once, after a
-- restart too.
alter table appointments add column due_at timestamptz;
-- When it may be joined from (APPOINTMENT_EARLY_JOIN before it starts, as
-- configured when it was booked or moved: the time people were told).
alter table appointments add column opens_at timestamptz;
update appointments set opens_at = starts_at - interval '10 minutes';
alter table appointments alter column opens_at set not null;
-- When a host and an admitted guest were first in the room together.
alter table appointments add column started_at timestamptz;
update appointments set due_at = opens_at where state = 'scheduled';
create index appointments_due on appointments (due_at) where due_at is not null;
