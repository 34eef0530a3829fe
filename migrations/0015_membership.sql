-- Who rang a participant last, and until when their ringing lasts
-- (`calls::participants::ring`, RINGING_TIMEOUT from when they were rung,
-- as the instance that rang them has it): an invitation no longer restarts
-- everyone's ringing, and the ring cooldown counts a callee's declines of
-- whoever rang them, the initiator or an inviter.
alter table call_participants add column rung_by text, add column ring_until timestamptz;

-- A callee declined a ring by `caller`: the ring cooldown's log, kept for
-- RING_DECLINES_WINDOW at most (purged by the reconciler's housekeeping).
create table ring_declines (
    caller text not null,
    callee text not null,
    at     timestamptz not null default now()
);
create index ring_declines_by_pair on ring_declines (caller, callee, at desc);
create index ring_declines_by_age on ring_declines (at);
