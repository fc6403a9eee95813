-- The declared schema: what the store's code expects, in one place. The migrations in migrations/
-- must produce exactly this (tests/integration/test_store.py checks it); update both together.
-- Cairn's store: queues and their slots, runs, attempts, recorded steps, saved state.

CREATE TABLE cairn_settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- One row per Queue object. Its row lock serialises admission on the queue.
CREATE TABLE queues (
    namespace         text    NOT NULL,
    name              text    NOT NULL,
    uid               text    NOT NULL,
    concurrency_limit integer NOT NULL CHECK (concurrency_limit >= 1),
    per_key_limit     integer CHECK (per_key_limit >= 1),
    paused            boolean NOT NULL DEFAULT false,
    admitted_total    bigint  NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    rate_limit        integer CHECK (rate_limit >= 1),  -- spec.rateLimit: limit per period, burst
    rate_period       interval,
    rate_burst        integer,
    key_rate_limit    integer CHECK (key_rate_limit >= 1),  -- spec.perKeyRateLimit
    key_rate_period   interval,
    key_rate_burst    integer,
    max_queued        integer CHECK (max_queued >= 0),  -- spec.maxQueued
    PRIMARY KEY (namespace, name)
);

-- Every admission of a queue, for its rates (a sliding window, by PostgreSQL's clock): kept while it
-- may still count, pruned by the admission rounds.
CREATE TABLE admissions (
    namespace       text        NOT NULL,
    queue           text        NOT NULL,
    concurrency_key text,
    at              timestamptz NOT NULL
);
CREATE INDEX admissions_recent ON admissions (namespace, queue, at);

-- One row per TaskRun. state 'admitted' is a held slot of its queue.
CREATE TABLE runs (
    uid             uuid    PRIMARY KEY,
    namespace       text    NOT NULL,
    name            text    NOT NULL,
    task            text    NOT NULL,
    queue           text    NOT NULL,
    priority        integer NOT NULL DEFAULT 0,
    concurrency_key text,
    created_at      timestamptz NOT NULL,
    state           text    NOT NULL CHECK (state IN ('queued', 'admitted', 'waiting', 'finished')),
    not_before      timestamptz,
    wait_reason     text,
    admitted_at     timestamptz,
    finished_at     timestamptz,
    phase           text,
    snapshot        jsonb   NOT NULL,
    payload         text,
    attempt         integer NOT NULL DEFAULT 0,
    result          jsonb,
    result_set      boolean NOT NULL DEFAULT false,
    retain_until    timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    registered      bigint GENERATED ALWAYS AS IDENTITY,
    resumed         boolean NOT NULL DEFAULT false,  -- it started before a wait: ahead of runs that never did
    parent_uid      uuid,     -- a child run: its parent, the step that started it, its place among its siblings
    parent_step     text,
    parent_index    integer,
    wait_until      timestamptz,  -- waiting on a rate: when its chance comes
    labels          jsonb,        -- the TaskRun's labels, for history queries
    deleted_at      timestamptz   -- when its TaskRun was deleted: an archived run
);
CREATE INDEX runs_children ON runs (parent_uid, parent_step) WHERE parent_uid IS NOT NULL;
CREATE INDEX runs_waiting ON runs (namespace, queue, priority DESC, created_at, registered) WHERE state = 'queued';
CREATE INDEX runs_holding ON runs (namespace, queue, concurrency_key) WHERE state = 'admitted';
CREATE INDEX runs_by_name ON runs (namespace, name);
CREATE INDEX runs_expiring ON runs (retain_until) WHERE state = 'finished';
CREATE INDEX runs_history ON runs (namespace, created_at DESC);

-- One row per attempt (pod). The attempt named by runs.attempt is the only one allowed to record.
CREATE TABLE attempts (
    run_uid    uuid    NOT NULL REFERENCES runs (uid) ON DELETE CASCADE,
    attempt    integer NOT NULL CHECK (attempt >= 1),
    namespace  text    NOT NULL,
    pod_name   text    NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    ended_at   timestamptz,
    exit_code  integer,
    reason     text,
    PRIMARY KEY (run_uid, attempt)
);
CREATE INDEX attempts_by_pod ON attempts (namespace, pod_name);

-- One row per completed step: written once (the key is unique per run), never overwritten.
CREATE TABLE steps (
    run_uid      uuid    NOT NULL REFERENCES runs (uid) ON DELETE CASCADE,
    step_key     text    NOT NULL,
    seq          integer NOT NULL,
    attempt      integer NOT NULL,
    result       jsonb,
    started_at   timestamptz,
    completed_at timestamptz NOT NULL DEFAULT now(),
    tries        integer,  -- a step retried in its pod: the tries it took
    PRIMARY KEY (run_uid, step_key)
);
CREATE INDEX steps_by_seq ON steps (run_uid, seq);  -- the next seq, the latest steps

-- Explicit state a task saves to resume a long loop (one value per run, overwritten).
CREATE TABLE run_state (
    run_uid    uuid    PRIMARY KEY REFERENCES runs (uid) ON DELETE CASCADE,
    state      jsonb   NOT NULL,
    note       text,
    attempt    integer NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- A run's durable waits (a sleep, a token, its children), one per step key. 'suspended': the pod was
-- told to end; done_at: the wait is over (its result is then the step's, in steps).
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

-- Wait tokens: completed once (by their URL's secret, or a TokenCompletion), or timed out.
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
