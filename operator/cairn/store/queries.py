"""Every SQL statement Cairn runs, named and in one place. Parameters are always bound, never
formatted in."""

from __future__ import annotations

from typing import LiteralString

# Pods' progress wakes the operator through this NOTIFY channel (the checkpoint API notifies, the
# operator listens).
PROGRESS_CHANNEL: LiteralString = "cairn_progress"
LISTEN_PROGRESS: LiteralString = "LISTEN " + PROGRESS_CHANNEL

# -- migrations -------------------------------------------------------------------------------------
MIGRATIONS_TABLE: LiteralString = """
CREATE TABLE IF NOT EXISTS cairn_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""
MIGRATION_LOCK: LiteralString = "SELECT pg_advisory_xact_lock(7263140)"  # 'cairn' on a phone keypad
APPLIED_VERSIONS: LiteralString = "SELECT version FROM cairn_migrations ORDER BY version"
RECORD_MIGRATION: LiteralString = "INSERT INTO cairn_migrations (version, name) VALUES (%s, %s)"

# -- queues -----------------------------------------------------------------------------------------
UPSERT_QUEUE: LiteralString = """
INSERT INTO queues (namespace, name, uid, concurrency_limit, per_key_limit, paused, rate_limit, rate_period,
                    rate_burst, key_rate_limit, key_rate_period, key_rate_burst, max_queued)
VALUES (%(namespace)s, %(name)s, %(uid)s, %(limit)s, %(per_key)s, %(paused)s, %(rate_limit)s, %(rate_period)s,
        %(rate_burst)s, %(key_rate_limit)s, %(key_rate_period)s, %(key_rate_burst)s, %(max_queued)s)
ON CONFLICT (namespace, name) DO UPDATE SET
    uid = EXCLUDED.uid,
    concurrency_limit = EXCLUDED.concurrency_limit,
    per_key_limit = EXCLUDED.per_key_limit,
    paused = EXCLUDED.paused,
    rate_limit = EXCLUDED.rate_limit,
    rate_period = EXCLUDED.rate_period,
    rate_burst = EXCLUDED.rate_burst,
    key_rate_limit = EXCLUDED.key_rate_limit,
    key_rate_period = EXCLUDED.key_rate_period,
    key_rate_burst = EXCLUDED.key_rate_burst,
    max_queued = EXCLUDED.max_queued,
    admitted_total = CASE WHEN queues.uid = EXCLUDED.uid THEN queues.admitted_total ELSE 0 END,
    updated_at = now()"""
DELETE_QUEUE: LiteralString = "DELETE FROM queues WHERE namespace = %s AND name = %s AND uid = %s"
# Admissions older than any rate of the queue can count no more (all of them, once it has no rate).
PRUNE_ADMISSIONS: LiteralString = """
DELETE FROM admissions a WHERE a.namespace = %(namespace)s AND a.queue = %(queue)s
AND a.at <= %(now)s - coalesce(
    (SELECT greatest(q.rate_period, q.key_rate_period) FROM queues q
     WHERE q.namespace = %(namespace)s AND q.name = %(queue)s), interval '0')"""
QUEUES_WITH_WAITING_RUNS: LiteralString = """
SELECT DISTINCT namespace, queue FROM runs WHERE state = 'queued'"""
LOCK_QUEUE: LiteralString = """
SELECT concurrency_limit, per_key_limit, paused, rate_limit, rate_period, rate_burst, key_rate_limit, key_rate_period,
       key_rate_burst, max_queued
FROM queues WHERE namespace = %s AND name = %s FOR UPDATE"""
# After the lock: PostgreSQL's clock (the one every operator shares) and the admissions that still count.
RECENT_ADMISSIONS: LiteralString = """
SELECT clock_timestamp(), coalesce(array_agg(concurrency_key ORDER BY at), '{}'),
       coalesce(array_agg(at ORDER BY at), '{}')
FROM admissions WHERE namespace = %s AND queue = %s AND at > clock_timestamp() - %s::interval"""
LOG_ADMISSIONS: LiteralString = """
INSERT INTO admissions (namespace, queue, concurrency_key, at)
SELECT %s, %s, k, %s FROM unnest(%s::text[]) AS k"""
QUEUE_USAGE: LiteralString = """
SELECT concurrency_key, count(*) FROM runs
WHERE namespace = %s AND queue = %s AND state = 'admitted'
GROUP BY concurrency_key"""
QUEUE_CANDIDATES: LiteralString = """
SELECT uid::text, priority, created_at, concurrency_key, not_before, registered, resumed, attempt > 0, wait_reason,
       wait_until FROM runs
WHERE namespace = %s AND queue = %s AND state = 'queued'
ORDER BY priority DESC, resumed DESC, created_at, registered
LIMIT %s"""
ADMIT: LiteralString = """
UPDATE runs SET state = 'admitted', admitted_at = coalesce(%s, now()), wait_reason = NULL, wait_until = NULL,
    not_before = NULL, updated_at = now()
WHERE uid = ANY(%s::uuid[]) AND state = 'queued'
RETURNING uid::text"""
COUNT_ADMISSIONS: LiteralString = """
UPDATE queues SET admitted_total = admitted_total + %s WHERE namespace = %s AND name = %s"""
SET_WAIT_REASONS: LiteralString = """
UPDATE runs SET wait_reason = v.reason, wait_until = v.until, updated_at = now()
FROM unnest(%s::uuid[], %s::text[], %s::timestamptz[]) AS v (uid, reason, until)
WHERE runs.uid = v.uid AND runs.state = 'queued'
AND (runs.wait_reason, runs.wait_until) IS DISTINCT FROM (v.reason, v.until)
RETURNING runs.uid::text"""
QUEUE_STATS: LiteralString = """
SELECT
    count(*) FILTER (WHERE state = 'queued'),
    count(*) FILTER (WHERE state = 'admitted'),
    min(created_at) FILTER (WHERE state = 'queued'),
    (SELECT admitted_total FROM queues q WHERE q.namespace = %(namespace)s AND q.name = %(queue)s),
    count(*) FILTER (WHERE state = 'waiting'),
    (SELECT count(*) FROM admissions a JOIN queues q ON q.namespace = a.namespace AND q.name = a.queue
     WHERE a.namespace = %(namespace)s AND a.queue = %(queue)s AND a.at > now() - q.rate_period),
    count(*) FILTER (WHERE state = 'queued' AND wait_reason IN ('RateLimited', 'KeyRateLimited'))
FROM runs WHERE namespace = %(namespace)s AND queue = %(queue)s AND state <> 'finished'"""

# -- runs -------------------------------------------------------------------------------------------
# A fork (TaskRun spec.from): the run of that name the store knows last, and the keys it recorded.
FORK_SOURCE: LiteralString = """
SELECT uid::text, task, payload, snapshot FROM runs WHERE namespace = %s AND name = %s
ORDER BY created_at DESC LIMIT 1"""
FORK_SOURCE_STEPS: LiteralString = "SELECT step_key FROM steps WHERE run_uid = %s ORDER BY seq"
# In the fork's registration: the source's steps recorded before the chosen one, as they were (attempt
# 0: not run by any attempt of this run); the fork's next step takes the next seq.
COPY_FORK_STEPS: LiteralString = """
INSERT INTO steps (run_uid, step_key, seq, attempt, result, started_at, completed_at, tries)
SELECT %(uid)s, s.step_key, s.seq, 0, s.result, s.started_at, s.completed_at, s.tries
FROM steps s
WHERE s.run_uid = %(source)s
  -- a step the source never reached (the one it failed in): all it recorded
  AND s.seq < coalesce((SELECT seq FROM steps WHERE run_uid = %(source)s AND step_key = %(step)s), 2147483647)
ON CONFLICT (run_uid, step_key) DO NOTHING"""
# A new run, after its queue's row is locked (LOCK_QUEUE, a statement of its own so that the counts here
# see every admission committed before the lock): admitted as it is registered where its queue has
# room (and no run waits ahead of it, no rate paces it, no pause or delay holds it), so that the first
# pod is one reconcile away; past maxQueued recorded as rejected (ended, nothing held), so that its
# reconciler ends it; else queued, as it is where the Queue does not exist (yet). Returns the state it
# was given; nothing if the store had the run already.
REGISTER: LiteralString = """
WITH q AS (
    SELECT concurrency_limit, per_key_limit, paused, rate_limit, key_rate_limit, max_queued FROM queues
    WHERE namespace = %(namespace)s AND name = %(queue)s
), depth AS (
    SELECT count(*) FILTER (WHERE state = 'admitted') AS admitted,
           count(*) FILTER (WHERE state = 'admitted' AND concurrency_key = %(key)s::text) AS admitted_of_key,
           count(*) FILTER (WHERE state = 'queued') AS queued
    FROM runs WHERE namespace = %(namespace)s AND queue = %(queue)s AND state IN ('admitted', 'queued')
), here AS (
    SELECT
        coalesce(NOT q.paused AND q.rate_limit IS NULL AND q.key_rate_limit IS NULL
                 AND %(not_before)s::timestamptz IS NULL
                 AND depth.admitted < q.concurrency_limit
                 AND (q.per_key_limit IS NULL OR %(key)s::text IS NULL OR depth.admitted_of_key < q.per_key_limit)
                 AND depth.queued = 0, false) AS room,
        coalesce(depth.queued >= q.max_queued, false) AS full
    FROM depth LEFT JOIN q ON true
), added AS (
    INSERT INTO runs (uid, namespace, name, task, queue, priority, concurrency_key, created_at, state, admitted_at,
                      snapshot, payload, parent_uid, parent_step, parent_index, not_before, wait_reason, labels)
    SELECT %(uid)s, %(namespace)s, %(name)s, %(task)s, %(queue)s, %(priority)s, %(key)s, %(created)s,
           CASE WHEN here.room THEN 'admitted' WHEN here.full THEN 'finished' ELSE 'queued' END,
           CASE WHEN here.room THEN now() END,
           %(snapshot)s, %(payload)s, %(parent_uid)s, %(parent_step)s, %(parent_index)s, %(not_before)s,
           CASE WHEN NOT here.room AND here.full THEN 'Rejected' END, %(labels)s
    FROM here
    ON CONFLICT (uid) DO NOTHING
    RETURNING state
), counted AS (
    UPDATE queues SET admitted_total = admitted_total + 1
    WHERE namespace = %(namespace)s AND name = %(queue)s AND EXISTS (SELECT 1 FROM added WHERE state = 'admitted')
)
SELECT state FROM added"""
# In the registration's transaction, after REGISTER: a run admitted by it (admitted_at is this
# transaction's now()) begins its first attempt, as begin_attempt would before its pod is created.
BEGIN_FIRST_ATTEMPT: LiteralString = """
WITH fence AS (
    UPDATE runs SET attempt = 1, updated_at = now()
    WHERE uid = %(uid)s AND state = 'admitted' AND attempt < 1 AND admitted_at = now()
    RETURNING uid, namespace
)
INSERT INTO attempts (run_uid, attempt, namespace, pod_name)
SELECT uid, 1, namespace, %(pod)s FROM fence
ON CONFLICT (run_uid, attempt) DO NOTHING"""
QUEUE_DEPTH: LiteralString = """
SELECT q.max_queued,
       CASE WHEN q.max_queued IS NULL THEN 0  -- unbounded: no need to count
            ELSE (SELECT count(*) FROM runs r WHERE r.namespace = q.namespace AND r.queue = q.name
                  AND r.state = 'queued') END
FROM queues q WHERE q.namespace = %s AND q.name = %s"""
GET_RUN: LiteralString = """
SELECT r.state, r.queue, r.snapshot, r.wait_reason, r.wait_until, q.concurrency_limit, q.per_key_limit, q.paused,
       q.rate_limit, q.rate_period, q.rate_burst, q.key_rate_limit, q.key_rate_period, q.key_rate_burst, q.max_queued,
       r.phase,
       -- Once finished, the attempts it recorded: a status that never landed before a restart is
       -- written from them (only then, so a live run's look reads no more than before).
       CASE WHEN r.state = 'finished' THEN
           (SELECT json_agg(json_build_array(a.attempt, a.pod_name, a.started_at, a.ended_at, a.exit_code, a.reason)
                            ORDER BY a.attempt)
            FROM attempts a WHERE a.run_uid = r.uid) END
FROM runs r LEFT JOIN queues q ON q.namespace = r.namespace AND q.name = r.queue
WHERE r.uid = %s"""
REQUEUE: LiteralString = """
UPDATE runs SET state = 'queued', not_before = %s, wait_reason = NULL, wait_until = NULL, updated_at = now()
WHERE uid = %s AND state = 'admitted'
RETURNING namespace, queue"""
# Before a slot is given back for an attempt's end (retry or wait): the attempt is the run's current one
# and has not ended yet. A plan made again after a restart, from a status that had not landed, finds it
# ended and gives nothing back: the slot may already hold the next attempt's admission.
END_CURRENT_ATTEMPT: LiteralString = """
WITH current AS (
    SELECT 1 FROM runs r WHERE r.uid = %(uid)s AND r.state = 'admitted' AND r.attempt = %(attempt)s
    AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.run_uid = r.uid AND a.attempt = r.attempt
                    AND a.ended_at IS NOT NULL)
), ended AS (
    UPDATE attempts SET ended_at = now(), exit_code = %(exit_code)s, reason = %(reason)s
    WHERE run_uid = %(uid)s AND attempt = %(attempt)s AND EXISTS (SELECT 1 FROM current)
)
SELECT count(*) FROM current"""
LIVE_RUNS: LiteralString = """
SELECT uid::text, namespace, queue, name FROM runs WHERE state <> 'finished' AND updated_at < %s"""
# Bounded per call (a sweep deletes at most `batch` runs, oldest retention first), so that a backlog
# of expired history never holds long locks; SKIP LOCKED: a run being written is left for the next one.
PURGE_EXPIRED: LiteralString = """
DELETE FROM runs WHERE uid IN (
    SELECT uid FROM runs WHERE state = 'finished' AND retain_until < now()
    ORDER BY retain_until LIMIT %(batch)s FOR UPDATE SKIP LOCKED
)"""
# The count side of retention: past `keep` archived runs (TaskRun deleted) in a namespace, the oldest
# go, `batch` at most per call.
PURGE_OVER_COUNT: LiteralString = """
DELETE FROM runs WHERE uid IN (
    SELECT uid FROM (
        SELECT uid, row_number() OVER (PARTITION BY namespace ORDER BY finished_at DESC, uid) AS n
        FROM runs WHERE state = 'finished' AND deleted_at IS NOT NULL
    ) ranked
    WHERE n > %(keep)s LIMIT %(batch)s
)"""
MARK_DELETED: LiteralString = "UPDATE runs SET deleted_at = coalesce(deleted_at, now()) WHERE uid = %s"

# -- attempts ---------------------------------------------------------------------------------------
BEGIN_ATTEMPT: LiteralString = """
WITH fence AS (
    UPDATE runs SET attempt = %(attempt)s, updated_at = now()
    WHERE uid = %(uid)s AND state = 'admitted' AND attempt < %(attempt)s
)
INSERT INTO attempts (run_uid, attempt, namespace, pod_name)
VALUES (%(uid)s, %(attempt)s, %(namespace)s, %(pod)s)
ON CONFLICT (run_uid, attempt) DO NOTHING"""
END_ATTEMPT: LiteralString = """
UPDATE attempts SET ended_at = coalesce(ended_at, now()), exit_code = %s, reason = %s
WHERE run_uid = %s AND attempt = %s"""

# -- what the task recorded ---------------------------------------------------------------------------
RECORDED: LiteralString = """
SELECT
    (SELECT count(*) FROM steps s WHERE s.run_uid = r.uid),
    (SELECT step_key FROM steps s WHERE s.run_uid = r.uid ORDER BY seq DESC LIMIT 1),
    (SELECT max(completed_at) FROM steps s WHERE s.run_uid = r.uid),
    (SELECT note FROM run_state rs WHERE rs.run_uid = r.uid),
    (SELECT updated_at FROM run_state rs WHERE rs.run_uid = r.uid),
    CASE WHEN r.result_set THEN r.result::text END
FROM runs r WHERE r.uid = %s"""

RECENT_STEPS: LiteralString = """
SELECT step_key, attempt, started_at, completed_at, tries FROM (
    SELECT step_key, attempt, started_at, completed_at, tries, seq FROM steps WHERE run_uid = %s
    ORDER BY seq DESC LIMIT %s
) recent ORDER BY seq"""

# -- the checkpoint API -------------------------------------------------------------------------------
# The attempt a pod belongs to, and whether it may still record: only the run's current attempt,
# and only while the run holds its slot.
RESOLVE_POD: LiteralString = """
SELECT a.run_uid::text, a.attempt, r.name, r.attempt, r.state
FROM attempts a JOIN runs r ON r.uid = a.run_uid
WHERE a.namespace = %s AND a.pod_name = %s
ORDER BY r.state = 'finished', a.started_at DESC
LIMIT 1"""
RUN_CONTEXT: LiteralString = """
SELECT r.payload, r.attempt, r.state, rs.state, r.snapshot -> 'spec' ->> 'suspendAfter'
FROM runs r LEFT JOIN run_state rs ON rs.run_uid = r.uid WHERE r.uid = %s"""
RUN_STEPS: LiteralString = """
SELECT step_key, result FROM steps WHERE run_uid = %s ORDER BY seq"""
STEP_RESULT: LiteralString = """
SELECT result FROM steps WHERE run_uid = %s AND step_key = %s"""
# Written once: a second write of the same step keeps the first result (and reports it). One
# statement (its own transaction): the fence, the insert and the progress notification (sent at
# commit, only when a step was inserted) in a single round trip.
RECORD_STEP: LiteralString = """
WITH current AS (
    SELECT uid FROM runs WHERE uid = %(uid)s AND attempt = %(attempt)s AND state = 'admitted' FOR SHARE
), inserted AS (
    INSERT INTO steps (run_uid, step_key, seq, attempt, result, started_at, tries)
    SELECT %(uid)s, %(key)s,
           (SELECT coalesce(max(seq), 0) + 1 FROM steps WHERE run_uid = %(uid)s),
           %(attempt)s, %(result)s, %(started)s, %(tries)s
    FROM current
    ON CONFLICT (run_uid, step_key) DO NOTHING
    RETURNING 1
), notified AS (
    SELECT pg_notify(%(channel)s, %(uid)s::text) FROM inserted
)
SELECT (SELECT count(*) FROM current) AS allowed, (SELECT count(*) FROM inserted) AS inserted,
       (SELECT count(*) FROM notified) AS notified"""
# Several steps that finished together (asyncio.gather): one statement, as RECORD_STEP for each, in
# the order given; the ones recorded before keep their first result (read back in the same statement).
RECORD_STEPS: LiteralString = """
WITH current AS (
    SELECT uid FROM runs WHERE uid = %(uid)s AND attempt = %(attempt)s AND state = 'admitted' FOR SHARE
), given AS (
    SELECT * FROM unnest(%(keys)s::text[], %(results)s::jsonb[], %(started)s::timestamptz[], %(tries)s::integer[])
        WITH ORDINALITY AS g(step_key, result, started_at, tries, n)
), fresh AS (
    SELECT g.* FROM given g
    WHERE NOT EXISTS (SELECT 1 FROM steps s WHERE s.run_uid = %(uid)s AND s.step_key = g.step_key)
), inserted AS (
    INSERT INTO steps (run_uid, step_key, seq, attempt, result, started_at, tries)
    SELECT %(uid)s, f.step_key,
           (SELECT coalesce(max(seq), 0) FROM steps WHERE run_uid = %(uid)s) + row_number() OVER (ORDER BY f.n),
           %(attempt)s, f.result, f.started_at, f.tries
    FROM fresh f, current
    ON CONFLICT (run_uid, step_key) DO NOTHING
    RETURNING step_key
), notified AS (
    SELECT pg_notify(%(channel)s, %(uid)s::text) WHERE EXISTS (SELECT 1 FROM inserted)
)
SELECT (SELECT count(*) FROM current) AS allowed, g.step_key,
       EXISTS (SELECT 1 FROM inserted i WHERE i.step_key = g.step_key) AS inserted,
       CASE WHEN e.step_key IS NULL THEN g.result ELSE e.result END AS result,  -- the first result stands
       (SELECT count(*) FROM notified) AS notified
FROM given g LEFT JOIN steps e ON e.run_uid = %(uid)s AND e.step_key = g.step_key
ORDER BY g.n"""
NOTIFY_PROGRESS: LiteralString = "SELECT pg_notify(%s, %s)"
SAVE_STATE: LiteralString = """
INSERT INTO run_state (run_uid, state, note, attempt)
SELECT %(uid)s, %(state)s, %(note)s, %(attempt)s
FROM runs WHERE uid = %(uid)s AND attempt = %(attempt)s AND state = 'admitted'
ON CONFLICT (run_uid) DO UPDATE SET state = EXCLUDED.state, note = EXCLUDED.note, attempt = EXCLUDED.attempt,
    updated_at = now()
RETURNING 1"""
RECORD_RESULT: LiteralString = """
UPDATE runs SET result = %(result)s, result_set = true, updated_at = now()
WHERE uid = %(uid)s AND attempt = %(attempt)s AND state = 'admitted'
RETURNING 1"""

# -- history (the history API: cairn runs --archived, cairn steps, describe of a deleted run) -----------
# Newest first, keyset-paginated by (created_at, uid); each filter applies when its parameter is set.
HISTORY_RUNS: LiteralString = """
SELECT uid::text, name, task, queue, state, phase, created_at, finished_at, deleted_at, attempt, labels,
       (SELECT count(*) FROM steps s WHERE s.run_uid = r.uid) AS steps
FROM runs r
WHERE namespace = %(namespace)s
  AND (%(task)s::text IS NULL OR task = %(task)s)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(name_like)s::text IS NULL OR name LIKE %(name_like)s)
  AND (%(phase)s::text IS NULL OR phase = %(phase)s OR (%(phase)s = 'Live' AND state <> 'finished'))
  AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s)
  AND (%(labels)s::jsonb IS NULL OR labels @> %(labels)s)
  AND (NOT %(archived)s OR deleted_at IS NOT NULL)
  AND (%(after_time)s::timestamptz IS NULL OR (created_at, uid) < (%(after_time)s, %(after_uid)s::uuid))
ORDER BY created_at DESC, uid DESC
LIMIT %(limit)s"""
HISTORY_RUN: LiteralString = """
SELECT uid::text, name, task, queue, state, phase, created_at, finished_at, deleted_at, attempt, labels, payload,
       result_set, result, retain_until, snapshot,
       (SELECT jsonb_build_object('state', rs.state, 'note', rs.note) FROM run_state rs WHERE rs.run_uid = r.uid)
FROM runs r WHERE namespace = %s AND name = %s
ORDER BY created_at DESC LIMIT 1"""
RUN_HISTORY_STEPS: LiteralString = """
SELECT step_key, seq, attempt, started_at, completed_at, octet_length(result::text), tries FROM steps
WHERE run_uid = %s ORDER BY seq"""
RUN_HISTORY_ATTEMPTS: LiteralString = """
SELECT attempt, pod_name, started_at, ended_at, exit_code, reason FROM attempts WHERE run_uid = %s ORDER BY attempt"""
RUN_RESULT: LiteralString = "SELECT result_set, result FROM runs WHERE uid = %s"
RUN_PARENT: LiteralString = """
SELECT p.name, c.parent_step FROM runs c JOIN runs p ON p.uid = c.parent_uid WHERE c.uid = %s"""
TASK_SUMMARY: LiteralString = """
SELECT task, count(*), count(*) FILTER (WHERE phase = 'Succeeded'),
       count(*) FILTER (WHERE phase IN ('Failed', 'Expired', 'Rejected')),
       count(*) FILTER (WHERE phase = 'Cancelled'), count(*) FILTER (WHERE state <> 'finished'),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at))
           FILTER (WHERE phase = 'Succeeded'),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at))
           FILTER (WHERE phase = 'Succeeded'),
       avg(attempt) FILTER (WHERE state = 'finished'), max(created_at)
FROM runs WHERE namespace = %s AND created_at >= %s
GROUP BY task ORDER BY task LIMIT 500"""
QUEUE_ACTIVITY: LiteralString = """
SELECT queue, 'admitted', floor(extract(epoch FROM now() - admitted_at) / %(bucket)s)::int, count(*)
FROM runs WHERE namespace = %(namespace)s AND admitted_at >= now() - make_interval(secs => %(span)s)
GROUP BY 1, 3
UNION ALL
SELECT queue, 'finished', floor(extract(epoch FROM now() - finished_at) / %(bucket)s)::int, count(*)
FROM runs WHERE namespace = %(namespace)s AND finished_at >= now() - make_interval(secs => %(span)s)
GROUP BY 1, 3"""
RUN_CHILDREN: LiteralString = """
SELECT name, state, phase, parent_step, created_at, finished_at FROM runs WHERE parent_uid = %s
ORDER BY created_at, name LIMIT 200"""
RUN_WAITS: LiteralString = """
SELECT step_key, kind, attempt, created_at, done_at FROM waits WHERE run_uid = %s ORDER BY created_at LIMIT 200"""

# -- durable waits ------------------------------------------------------------------------------------
# Every path that ends a wait (its time came, its token was completed or timed out, its last child
# ended) or starts one takes the waiting run's row lock first: they are serialised per run, so a wake
# can never fall between a run giving its slot back and being marked waiting.
LOCK_RUN: LiteralString = "SELECT state, attempt, namespace, queue FROM runs WHERE uid = %s FOR UPDATE"
WAIT_OF: LiteralString = """
SELECT kind, until, token_id, children, done_at IS NOT NULL, until <= now() FROM waits
WHERE run_uid = %s AND step_key = %s"""
INSERT_WAIT: LiteralString = """
INSERT INTO waits (run_uid, step_key, kind, attempt, until, token_id, children)
VALUES (%(uid)s, %(key)s, %(kind)s, %(attempt)s, %(until)s, %(token)s, %(children)s)
ON CONFLICT (run_uid, step_key) DO UPDATE SET attempt = EXCLUDED.attempt WHERE waits.kind = EXCLUDED.kind"""
SUSPEND_WAIT: LiteralString = "UPDATE waits SET suspended = true WHERE run_uid = %s AND step_key = %s"
WAIT_DONE: LiteralString = "UPDATE waits SET done_at = now() WHERE run_uid = %s AND step_key = %s AND done_at IS NULL"
# The wait's result becomes the step's: on resume the task reads it like any recorded step.
RECORD_WAIT_STEP: LiteralString = """
INSERT INTO steps (run_uid, step_key, seq, attempt, result, started_at)
SELECT w.run_uid, w.step_key, (SELECT coalesce(max(seq), 0) + 1 FROM steps WHERE run_uid = w.run_uid),
       w.attempt, %s, w.created_at
FROM waits w WHERE w.run_uid = %s AND w.step_key = %s
ON CONFLICT (run_uid, step_key) DO NOTHING"""
# A woken run queues again, ahead of runs of its priority that never started ('resumed').
WAKE_RUN: LiteralString = """
UPDATE runs SET state = 'queued', resumed = true, not_before = NULL, wait_reason = NULL, wait_until = NULL,
    updated_at = now()
WHERE uid = %s AND state = 'waiting'
RETURNING namespace, queue"""
SUSPEND_RUN: LiteralString = """
UPDATE runs SET state = 'waiting', wait_reason = NULL, wait_until = NULL, updated_at = now()
WHERE uid = %s AND state = 'admitted'
RETURNING namespace, queue"""
# The run's last wait that ended a pod: what the operator shows and watches the clock for.
CURRENT_WAIT: LiteralString = """
SELECT w.step_key, w.kind, w.attempt, w.created_at, w.until, w.token_id, w.children, w.done_at,
       CASE WHEN w.kind = 'children' THEN
           (SELECT count(*) FROM runs c WHERE c.parent_uid = w.run_uid AND c.parent_step = w.step_key
                                          AND c.state = 'finished')
       END
FROM waits w WHERE w.run_uid = %s AND w.suspended ORDER BY w.created_at DESC LIMIT 1"""
FINISHED_CHILDREN: LiteralString = """
SELECT name, phase, CASE WHEN result_set THEN result END, parent_index FROM runs
WHERE parent_uid = %s AND parent_step = %s AND state = 'finished'
ORDER BY parent_index, name"""
OPEN_CHILD_WAIT: LiteralString = """
SELECT step_key FROM waits WHERE run_uid = %s AND step_key = %s AND done_at IS NULL"""

# -- wait tokens ---------------------------------------------------------------------------------------
CREATE_TOKEN: LiteralString = """
INSERT INTO tokens (id, secret_hash, namespace, run_uid, step_key, tags, timeout_at)
VALUES (%(id)s, %(secret)s, %(namespace)s, %(uid)s, %(key)s, %(tags)s, %(timeout)s)
ON CONFLICT (run_uid, step_key) DO NOTHING"""
INSERT_STEP: LiteralString = """
INSERT INTO steps (run_uid, step_key, seq, attempt, result, started_at)
VALUES (%(uid)s, %(key)s, (SELECT coalesce(max(seq), 0) + 1 FROM steps WHERE run_uid = %(uid)s),
        %(attempt)s, %(result)s, now())
ON CONFLICT (run_uid, step_key) DO NOTHING"""
TOKEN_OWNER: LiteralString = "SELECT run_uid::text, namespace, secret_hash FROM tokens WHERE id = %s"
LOCK_TOKEN: LiteralString = """
SELECT status, data, timeout_at IS NOT NULL AND timeout_at <= now(), completed_at, completed_by, timeout_at
FROM tokens WHERE id = %s FOR UPDATE"""
COMPLETE_TOKEN: LiteralString = """
UPDATE tokens SET status = 'completed', data = %s, completed_by = %s, completed_at = now()
WHERE id = %s AND status = 'waiting'"""
TIME_OUT_TOKEN: LiteralString = """
UPDATE tokens SET status = 'timedOut', completed_at = timeout_at WHERE id = %s AND status = 'waiting'"""
WAITS_ON_TOKEN: LiteralString = """
SELECT step_key FROM waits WHERE run_uid = %s AND token_id = %s AND done_at IS NULL"""
RUN_TOKENS: LiteralString = """
SELECT id, step_key, tags, status, timeout_at, created_at, completed_at FROM tokens
WHERE run_uid = %s ORDER BY created_at DESC LIMIT %s"""

# A finished child: its parent (if any) may be waiting for it.
FINISH: LiteralString = """
UPDATE runs SET state = 'finished', phase = %s, finished_at = now(), retain_until = now() + %s,
    not_before = NULL, wait_until = NULL, updated_at = now(),
    wait_reason = CASE WHEN state = 'finished' THEN wait_reason END  -- 'Rejected' stays: it says why
WHERE uid = %s AND (state <> 'finished' OR (wait_reason = 'Rejected' AND retain_until IS NULL))
RETURNING namespace, queue, parent_uid::text, parent_step"""
FORGET_RUN: LiteralString = """
UPDATE runs SET state = 'finished', phase = coalesce(phase, 'Deleted'), finished_at = coalesce(finished_at, now()),
    retain_until = coalesce(retain_until, now() + %s), updated_at = now()
WHERE uid = %s AND state <> 'finished'
RETURNING namespace, queue, parent_uid::text, parent_step"""
