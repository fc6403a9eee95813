"""The dashboard's run list with 10,000 runs: the first page, a filtered page, a search by name and a
page 5,000 runs deep, each the whole HTML page as the server renders it (p50 and p99 of `ui_loads`
loads), beside the history API's JSON of the same rows (the same query, no HTML); then the time to
first contentful paint of the first page in a real headless Chromium (Debian's, through Playwright).

The 10,000 runs are run first, by the operator, on simulated (KWOK) nodes: ten tasks (two of them exit
1 and fail) in three queues, each run labelled, created at once; the bench waits until the store has
every one finished, then deletes one TaskRun in five so that they are archived. The list is then read
as a person would read it: from the store the runs went through, not from rows written for the bench.
"""

from __future__ import annotations

import json
import shutil
import time
from typing import Any

import httpx

from bench import env as E
from bench.env import Env
from bench.options import Options
from bench.report import Result
from bench.stats import Figure, Machine, percentile

TASKS, FAILING = 10, (3, 7)  # task-3 and task-7 exit 1 (one attempt): Failed runs to filter by
QUEUES = ("default", "batch", "nightly")
QUEUE_LIMIT = 150  # per queue: 450 simulated pods at once


def _name(i: int) -> str:
    return f"run-{i:05d}"


def _seed(env: Env, ns: str, runs: int) -> dict[str, float]:
    """Queues, tasks and `runs` TaskRuns, run to the end on the simulated nodes; then one in five
    deleted (archived). Returns how long each part took."""
    kube = env.kube
    for q in QUEUES:
        kube.create(E.queues(ns), E.queue(ns, q, QUEUE_LIMIT))
    for k in range(TASKS):
        template = E.simulated_template("1s", exit_code=1 if k in FAILING else 0)
        body = E.task(ns, f"task-{k}", template, queue=QUEUES[k % len(QUEUES)], retry={"maxAttempts": 1})
        kube.create(E.tasks(ns), body)
    bodies = []
    for i in range(1, runs + 1):
        body = E.taskrun(ns, _name(i), f"task-{i % TASKS}", payload=json.dumps({"item": i}))
        body["metadata"]["labels"] = {"team": ("media", "search")[i % 2]}
        bodies.append(body)
    t0 = time.monotonic()
    kube.create_many(lambda _: E.taskruns(ns), bodies)
    created_s = time.monotonic() - t0
    return {"created_s": round(created_s, 1)}


def _count(dsn: str, sql: str, ns: str) -> int:
    import psycopg

    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql, (ns,)).fetchone()
    return int(row[0]) if row else 0


FINISHED_SQL = "SELECT count(*) FROM runs WHERE namespace = %s AND state = 'finished'"
ARCHIVED_SQL = "SELECT count(*) FROM runs WHERE namespace = %s AND deleted_at IS NOT NULL"


def _token(env: Env, ns: str) -> str:
    """A ServiceAccount that may read TaskRuns in the namespace, and a token for it."""
    kube = env.kube
    kube.create(
        f"/api/v1/namespaces/{ns}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}},
    )
    kube.create(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "reader"},
            "rules": [{"apiGroups": ["cairn.dev"], "resources": ["taskruns"], "verbs": ["get", "list"]}],
        },
    )
    kube.create(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
        },
    )
    answer = kube.create(
        f"/api/v1/namespaces/{ns}/serviceaccounts/reader/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}},
    )
    return str(answer["status"]["token"])


def _timed(client: httpx.Client, path: str, n: int, *, expect: str) -> list[float]:
    """n loads of `path` (whole bodies), in ms; each answer must be 200 and hold `expect`."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        answer = client.get(path)
        out.append((time.perf_counter() - t0) * 1000)
        assert answer.status_code == 200 and expect in answer.text, (path, answer.status_code, answer.text[:500])
    return out


def _first_paint(url: str, token: str, n: int) -> list[float]:
    """First contentful paint of the page in headless Chromium, ms after navigation began, n loads."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    out = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context(extra_http_headers={"Authorization": f"Bearer {token}"})
            page = context.new_page()
            for _ in range(n):
                page.goto(url, wait_until="load")
                assert page.locator("tr[data-run]").count() == 50, "a page of 50 runs"
                # The paint entry may be reported just after the load event: wait for it (at most 5 s).
                page.wait_for_function(
                    "performance.getEntriesByName('first-contentful-paint').length > 0", timeout=5000
                )
                paint = page.evaluate(
                    "performance.getEntriesByName('first-contentful-paint').map(e => e.startTime)[0] ?? null"
                )
                assert paint is not None, "Chromium reported no first contentful paint"
                out.append(float(paint))
        finally:
            browser.close()
    return out


def run(env: Env, opts: Options) -> Result:
    machine = Machine(slot=env.harness.slot.index)
    ns = env.namespace("ui")
    runs = opts.ui_runs
    # A larger client budget than the default, only to run the 10,000 sooner; the page is what is measured.
    procs = env.cairn(ns, api=True, kube_qps="500", kube_burst="1000")
    try:
        t0 = time.monotonic()
        timings = _seed(env, ns, runs)
        env.wait(
            f"the store to have all {runs:,} runs finished",
            lambda: _count(procs.dsn, FINISHED_SQL, ns) == runs,
            3600,
            interval=5.0,
        )
        timings["all_finished_s"] = round(time.monotonic() - t0, 1)
        archived = [_name(i) for i in range(5, runs + 1, 5)]
        t1 = time.monotonic()
        for name in archived:
            env.kube.delete(f"{E.taskruns(ns)}/{name}")
        env.wait(
            f"the store to have {len(archived):,} runs archived",
            lambda: _count(procs.dsn, ARCHIVED_SQL, ns) == len(archived),
            900,
            interval=2.0,
        )
        timings["archived_s"] = round(time.monotonic() - t1, 1)
        failed = _count(procs.dsn, "SELECT count(*) FROM runs WHERE namespace = %s AND phase = 'Failed'", ns)
        token = _token(env, ns)
        n = opts.ui_loads
        base = procs.api_url
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            cursor = None
            page_size = 500 if runs >= 2000 else 50
            depth = runs // 2 // page_size * page_size  # a cursor half way down: 5,000 of 10,000
            for _ in range(depth // page_size):
                listed = client.get(
                    f"/v1/namespaces/{ns}/history/runs",
                    params={"limit": str(page_size), **({"after": cursor} if cursor else {})},
                )
                assert listed.status_code == 200, listed.text
                cursor = listed.json()["next"]
                assert cursor, "fewer runs than seeded"
            sought = _name(runs * 42 // 100 + 1)  # run-04201 of 10,000: ten names share its prefix
            newest = client.get(f"/v1/namespaces/{ns}/history/runs", params={"limit": "1"}).json()["runs"][0]
            deep = client.get(f"/v1/namespaces/{ns}/history/runs", params={"limit": "1", "after": cursor}).json()
            pages: dict[str, tuple[str, str, dict[str, str], str]] = {
                # name: (dashboard path, history API path, its query, text both answers must hold)
                "first page": (f"/ui/namespaces/{ns}/runs", f"/v1/namespaces/{ns}/history/runs", {}, newest["name"]),
                "filtered page (task, phase, label)": (
                    f"/ui/namespaces/{ns}/runs?task=task-3&phase=Failed&label=team%3Dsearch",
                    f"/v1/namespaces/{ns}/history/runs?task=task-3&phase=Failed&label=team%3Dsearch",
                    {},
                    "task-3",
                ),
                "search by name": (f"/ui/namespaces/{ns}/runs?q={sought[:-1]}", "", {}, sought),
                f"a page {depth:,} runs deep": (
                    f"/ui/namespaces/{ns}/runs?after={cursor}",
                    f"/v1/namespaces/{ns}/history/runs?after={cursor}",
                    {},
                    deep["runs"][0]["name"],
                ),
            }
            figures = []
            details: dict[str, Any] = {"runs": runs, "failed": failed, "archived": len(archived), "loads": n, **timings}
            for name, (page, api, _, text) in pages.items():
                _timed(client, page, 3, expect=text)  # warm: the SubjectAccessReview cache, PostgreSQL's
                html = _timed(client, page, n, expect=text)
                json_ms = (
                    _timed(client, api + ("&" if "?" in api else "?") + "limit=50", n, expect=text) if api else None
                )
                for q, label in ((0.5, "p50"), (0.99, "p99")):
                    figures.append(
                        Figure(
                            "ui",
                            f"{name} with {runs:,} runs, {label}",
                            "ms",
                            [percentile(html, q)],
                            baseline=[percentile(json_ms, q)] if json_ms else None,
                            baseline_name="history API JSON, same rows" if json_ms else "",
                            samples=n,
                        )
                    )
            paint = _first_paint(f"{base}/ui/namespaces/{ns}/runs", token, max(5, n // 5))
            for q, label in ((0.5, "p50"), (0.99, "p99")):
                figures.append(
                    Figure(
                        "ui",
                        f"first contentful paint of the run list in Chromium, {label}",
                        "ms",
                        [percentile(paint, q)],
                        samples=len(paint),
                    )
                )
        return Result("ui", figures, details, machine.reading())
    finally:
        env.release(procs)
