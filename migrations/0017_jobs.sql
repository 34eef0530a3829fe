-- One durable queue for everything that must happen later or again
-- (`store::jobs`, run by `workers::jobs`): a call's deadlines, an
-- appointment's next check, LiveKit put in line after a commit.
--
-- A job is written in the transaction that decides it, so it exists if and
-- only if that decision committed. A runner takes the lane's advisory lock
-- (namespace 'cgjb') and the lane's first due row with FOR UPDATE SKIP
-- LOCKED, deletes it and does the work in that same transaction: a job
-- whose work commits is gone, one whose runner dies is there again, and the
-- jobs of one lane (a call) never run side by side. Nothing is ever left
-- claimed: there is no lease, only a transaction.
create table jobs (
    id          bigserial primary key,
    kind        text not null,
    -- Jobs of one lane run one at a time, the earliest due first.
    lane        text not null,
    -- At most one pending job per key: scheduling it again moves it.
    dedupe_key  text unique,
    payload     jsonb not null,
    -- From the application's clock, not the database's.
    run_at      timestamptz not null,
    -- Failed runs so far, and the last one's error.
    attempts    integer not null default 0,
    last_error  text,
    created_at  timestamptz not null default now()
);

create index jobs_due on jobs (run_at, id);
create index jobs_by_lane on jobs (lane, run_at, id);

-- The pending deadlines become jobs.
insert into jobs (kind, lane, dedupe_key, payload, run_at)
select 'deadline', 'call:' || call_id, 'deadline:' || kind || ':' || call_id,
       jsonb_build_object('kind', 'deadline', 'call', call_id, 'deadline', kind, 'ref', ref_id), due_at
from deadlines;
drop table deadlines;

-- So do the appointments' next checks (opening, the no-show).
insert into jobs (kind, lane, dedupe_key, payload, run_at)
select 'appointment', 'appointment:' || id, 'appointment:' || id,
       jsonb_build_object('kind', 'appointment', 'appointment', id), due_at
from appointments where due_at is not null;
alter table appointments drop column due_at;
