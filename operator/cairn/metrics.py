"""Every Prometheus metric Cairn exports, in one place: prefix `cairn_`, bounded labels only (phase,
reason, queue, never a run or pod name)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RUNS_FINISHED = Counter("cairn_runs_finished_total", "Runs that reached a final phase.", ["phase"])
ATTEMPTS_ENDED = Counter("cairn_attempts_ended_total", "Attempts (pods) that ended, by reason.", ["reason"])
RETRIES = Counter("cairn_retries_total", "Attempts retried, by the reason the previous one ended.", ["reason"])
ADMISSIONS = Counter("cairn_admissions_total", "Runs admitted by their queue.")
REGISTRATIONS_KNOWN = Counter(
    "cairn_registrations_known_total",
    "Runs presumed new (no phase) whose registration found them in the store already: looked up again.",
)
ADMISSION_WAIT = Histogram(
    "cairn_admission_wait_seconds",
    "Time from TaskRun creation to its first pod.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
RUN_DURATION = Histogram(
    "cairn_run_duration_seconds",
    "Time from a run's first attempt to its end.",
    buckets=(1, 5, 15, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 24 * 3600),
)
QUEUE_DEPTH = Gauge("cairn_queue_queued", "Runs waiting in a queue.", ["namespace", "queue"])
QUEUE_RUNNING = Gauge("cairn_queue_running", "Runs holding a slot of a queue.", ["namespace", "queue"])
RECONCILE_SECONDS = Histogram("cairn_reconcile_seconds", "Time spent in one reconcile.", ["kind"])
RECONCILE_ERRORS = Counter("cairn_reconcile_errors_total", "Reconciles that failed (retried).", ["kind", "error"])
KUBE_REQUESTS = Counter("cairn_kube_requests_total", "Requests the operator made to the API server.", ["what"])
WORKQUEUE_DEPTH = Gauge("cairn_workqueue_depth", "Keys waiting in a work queue.", ["queue"])
CHECKPOINT_SECONDS = Histogram(
    "cairn_checkpoint_write_seconds",
    "Time to record a step through the API (database included).",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
API_REQUESTS = Counter("cairn_api_requests_total", "Checkpoint and trigger API requests.", ["route", "code"])
LEADER = Gauge("cairn_operator_leader", "1 while this operator holds the lease and acts; 0 while it stands by.")
API_THROTTLED = Counter("cairn_api_throttled_total", "API requests answered 429: a client over its pace.")
API_CLIENTS_GONE = Counter("cairn_api_clients_gone_total", "API requests whose client went away before the answer.")
SCHEDULED_RUNS = Counter("cairn_schedule_runs_total", "TaskRuns a Schedule started.", ["namespace", "schedule"])
SCHEDULE_FIRE_DELAY = Histogram(
    "cairn_schedule_fire_delay_seconds",
    "From a fire time to its TaskRun created (late fire times of a catch-up included).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 30, 300, 3600),
)
WAITS_STARTED = Counter(
    "cairn_waits_started_total", "Durable waits that stopped a pod and gave its slot back, by kind.", ["kind"]
)
WAIT_SECONDS = Histogram(
    "cairn_wait_seconds",
    "From a wait's start to the pod that resumes its run: the wait itself, then the queue.",
    buckets=(1, 5, 15, 30, 60, 300, 900, 3600, 6 * 3600, 86400),
)
QUEUE_WAITING = Gauge(
    "cairn_queue_waiting", "Runs of a queue in a durable wait (no slot held).", ["namespace", "queue"]
)
QUEUE_RATE_LIMITED = Gauge(
    "cairn_queue_rate_limited",
    "Queued runs of a queue held back by its rateLimit or perKeyRateLimit.",
    ["namespace", "queue"],
)
RATE_LIMITED_ROUNDS = Counter(
    "cairn_rate_limited_rounds_total",
    "Admission rounds in which a rate held back a run that had a free slot.",
    ["namespace", "queue"],
)
RUNS_REJECTED = Counter(
    "cairn_runs_rejected_total",
    "Runs refused by a queue at its maxQueued (trigger API 429, or ended Rejected).",
    ["namespace", "queue"],
)
STATUS_WRITES_WAITING = Gauge(
    "cairn_status_writes_waiting", "TaskRun status patches handed over and not yet sent (one per run at most)."
)
STATUS_WRITES_MERGED = Counter(
    "cairn_status_writes_merged_total",
    "TaskRun status patches merged into one still waiting for the client's budget (a request saved each).",
)
RECONCILES_SKIPPED = Counter(
    "cairn_taskrun_events_skipped_total",
    "TaskRun watch events that changed nothing a reconcile reads (mostly the echo of a status write).",
)
POD_EVENTS_SKIPPED = Counter(
    "cairn_pod_events_skipped_total",
    "Pod watch events that changed nothing a reconcile reads (conditions that decide nothing until the pod ends).",
)
