-- Runs created within the same second (creationTimestamp's resolution) are admitted in the order the
-- operator registered them, which follows the order the API server recorded them.
ALTER TABLE runs ADD COLUMN registered bigint GENERATED ALWAYS AS IDENTITY;
DROP INDEX runs_waiting;
CREATE INDEX runs_waiting ON runs (namespace, queue, priority DESC, created_at, registered) WHERE state = 'queued';
