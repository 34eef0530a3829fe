-- Quality samples are history too: the reconciler deletes those older than
-- 30 days (issue 16), found by this index.
create index quality_samples_at on quality_samples (at);
