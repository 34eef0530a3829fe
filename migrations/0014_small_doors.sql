-- issue 28, the small doors.
--
-- The timelines of calls are deleted 90 days on (crate::store::housekeeping);
-- this index finds the old rows.
create index call_events_at on call_events (at);

-- An appointment's external_ref is its booker's: the host application's
-- backend (every token with the `service` role books as one booker,
-- 'service') or one scheduler ('user:<id>'). Unique per booker, so that a
-- scheduler can neither take nor probe another booker's ref. Appointments
-- booked before, under one global ref space, stay in the host
-- application's; whoever may see one still finds it by its ref.
alter table appointments add column ref_scope text not null default 'service';
alter table appointments alter column ref_scope drop default;
alter table appointments drop constraint appointments_external_ref_key;
create unique index appointments_by_ref on appointments (ref_scope, external_ref);
