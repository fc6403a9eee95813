-- Durable waits: a run may end its pod and give its slot back while it sleeps, waits for a token or
-- for its child runs ('waiting'); when the wait is over it queues again, ahead of runs that never started.
ALTER TABLE runs DROP CONSTRAINT runs_state_check;
ALTER TABLE runs ADD CONSTRAINT runs_state_check CHECK (state IN ('queued', 'admitted', 'waiting', 'finished'));
ALTER TABLE runs ADD COLUMN resumed boolean NOT NULL DEFAULT false;
ALTER TABLE runs ADD COLUMN parent_uid uuid;
ALTER TABLE runs ADD COLUMN parent_step text;
ALTER TABLE runs ADD COLUMN parent_index integer;
CREATE INDEX runs_children ON runs (parent_uid, parent_step) WHERE parent_uid IS NOT NULL;

CREATE TABLE waits (
    run_uid    uuid    NOT NULL REFERENCES runs (uid) ON DELETE CASCADE,
    step_key   text    NOT NULL,
    kind       text    NOT NULL CHECK (kind IN ('sleep', 'token', 'children')),
    attempt    integer NOT NULL,
    until      timestamptz,
    token_id   text,
    children   integer,
    suspended  boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    done_at    timestamptz,
    PRIMARY KEY (run_uid, step_key)
);
CREATE INDEX waits_open ON waits (run_uid) WHERE done_at IS NULL;

CREATE TABLE tokens (
    id           text    PRIMARY KEY,
    secret_hash  text    NOT NULL,
    namespace    text    NOT NULL,
    run_uid      uuid    NOT NULL REFERENCES runs (uid) ON DELETE CASCADE,
    step_key     text    NOT NULL,
    tags         text[]  NOT NULL DEFAULT '{}',
    timeout_at   timestamptz,
    status       text    NOT NULL DEFAULT 'waiting' CHECK (status IN ('waiting', 'completed', 'timedOut')),
    data         jsonb,
    completed_by text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    UNIQUE (run_uid, step_key)
);
CREATE INDEX tokens_by_namespace ON tokens (namespace, status);

-- A step retried inside its pod (ctx.step(..., retry=...)): how many tries it took.
ALTER TABLE steps ADD COLUMN tries integer;
