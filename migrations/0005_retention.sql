-- The reconciler deletes what is only history: client events published a
-- day ago (a lost Redis subscription replays minutes, not days) and app
-- webhooks delivered or given up on a week ago. These indexes find them.
create index user_events_published on user_events (created_at) where published_at is not null;
create index app_webhook_outbox_settled on app_webhook_outbox (created_at)
    where delivered_at is not null or failed_at is not null;
