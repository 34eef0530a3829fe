-- The room metadata LiveKit was last confirmed to hold for the call (the
-- video state and who is live in the call, `crate::livekit::room_metadata`).
-- Honest clients subscribe to video only while it says video is on and its
-- publisher is live, and let only those it lists subscribe to their own
-- tracks, so it is written before any reduction of rights is enforced, and
-- compared-and-set so that two instances writing at once end on the newest.
alter table calls add column room_metadata text;
