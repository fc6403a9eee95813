-- Queues that pace: spec.rateLimit and spec.perKeyRateLimit (a sliding window over the admissions
-- made, by PostgreSQL's clock) and spec.maxQueued (runs past it are rejected, never queued).
ALTER TABLE queues ADD COLUMN rate_limit integer CHECK (rate_limit >= 1);
ALTER TABLE queues ADD COLUMN rate_period interval;
ALTER TABLE queues ADD COLUMN rate_burst integer;
ALTER TABLE queues ADD COLUMN key_rate_limit integer CHECK (key_rate_limit >= 1);
ALTER TABLE queues ADD COLUMN key_rate_period interval;
ALTER TABLE queues ADD COLUMN key_rate_burst integer;
ALTER TABLE queues ADD COLUMN max_queued integer CHECK (max_queued >= 0);
ALTER TABLE runs ADD COLUMN wait_until timestamptz;

CREATE TABLE admissions (
    namespace       text        NOT NULL,
    queue           text        NOT NULL,
    concurrency_key text,
    at              timestamptz NOT NULL
);
CREATE INDEX admissions_recent ON admissions (namespace, queue, at);
