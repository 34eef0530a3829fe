-- Consent that holds against a modified client.
--
-- A participant who published video under another label (a video track
-- declared `microphone`, say) is `removed`: no longer live in the call,
-- refused new join tokens, and put out of the room whenever they come back.
alter table call_participants drop constraint call_participants_status_check;
alter table call_participants add constraint call_participants_status_check
    check (status in ('invited', 'accepted', 'joined', 'left', 'declined', 'missed', 'busy', 'removed'));

-- LiveKit is told about a change of the video state after the change has
-- committed, never inside its transaction. `video_version` counts the
-- committed changes; `rights_version` is the newest one LiveKit has
-- confirmed for every present participant. Where they differ, the SFU may
-- still be behind: the instance that made the change retries, and the
-- reconciler looks at such calls first.
alter table calls add column video_version bigint not null default 0;
alter table calls add column rights_version bigint not null default 0;
create index calls_rights_behind on calls (id) where state <> 'ended' and rights_version < video_version;
