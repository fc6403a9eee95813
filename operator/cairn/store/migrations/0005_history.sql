-- Run history that outlives the TaskRun object: its labels (for `cairn runs --archived -l`), when its
-- object was deleted (an archived run: the record stays for its retention), and runs by creation
-- time per namespace, for listing history newest first.
ALTER TABLE runs ADD COLUMN labels jsonb;
ALTER TABLE runs ADD COLUMN deleted_at timestamptz;
CREATE INDEX runs_history ON runs (namespace, created_at DESC);
