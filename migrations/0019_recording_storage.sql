-- Recordings kept in S3-compatible storage (issue 27, item 3). A row says
-- which storage holds its file: `local` (RECORDING_DIR, where egress writes
-- every file first) or `s3` (uploaded to the bucket; `storage_key` is then
-- the object's key). Rows written before were all on the local disk.
alter table recordings
    add column storage text not null default 'local' check (storage in ('local', 's3'));

-- RECORDING_RETENTION now deletes the rows too, those a participant had
-- deleted (`deleted`, their file gone) included.
drop index recordings_ready_at;
create index recordings_ended_at on recordings (ended_at) where status in ('ready', 'failed', 'deleted');
