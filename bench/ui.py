"""The dashboard's run list with 10,000 runs: the first page, a filtered page, a search by name and a
page 5,000 runs deep, each the whole HTML page as the server renders it (p50 and p99 of `ui_loads`
loads), beside the history API's JSON of the same rows (the same query, no HTML); then the time to
first contentful paint of the first page in a real headless Chromium (Debian's, through Playwright).

The 10,000 runs are written into PostgreSQL's history directly, in one statement (ten tasks, three
queues, every final phase, a label, one in five archived): the list is read from there and from
nowhere else, and running 10,000 pods first would only make the benchmark slower, not the page.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

import httpx

from bench.env import Env
from bench.options import Options
from bench.report import Result
from bench.stats import Figure, Machine, percentile

RUNS = 10_000
SEED_SQL = """
INSERT INTO runs (uid, namespace, name, task, queue, created_at, state, finished_at, phase, snapshot,
                  payload, attempt, labels, deleted_at)
SELECT gen_random_uuid(), %(ns)s, format('run-%%s', lpad(i::text, 5, '0')), format('task-%%s', i %% 10),
       (ARRAY['default', 'batch', 'nightly'])[1 + i %% 3],
       now() - make_interval(secs => %(runs)s - i), 'finished',
       now() - make_interval(secs => %(runs)s - i) + interval '20 seconds',
       (ARRAY['Succeeded', 'Succeeded', 'Succeeded', 'Failed', 'Cancelled', 'Expired'])[1 + i %% 6],
       '{}'::jsonb, format('{"item": %%s}', i), 1 + i %% 3,
       jsonb_build_object('team', (ARRAY['media', 'search'])[1 + i %% 2]),
       CASE WHEN i %% 5 = 0 THEN now() ELSE NULL END
FROM generate_series(1, %(runs)s) AS i"""


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
                paint = page.evaluate(
                    "performance.getEntriesByName('first-contentful-paint').map(e => e.startTime)[0] ?? null"
                )
                assert paint is not None, "Chromium reported no first contentful paint"
                out.append(float(paint))
        finally:
            browser.close()
    return out


def run(env: Env, opts: Options) -> Result:
    import psycopg

    machine = Machine(slot=env.harness.slot.index)
    ns = env.namespace("ui")
    procs = env.cairn(ns, api=True)
    try:
        with psycopg.connect(procs.dsn, autocommit=True) as conn:
            t0 = time.monotonic()
            conn.execute(SEED_SQL, {"ns": ns, "runs": RUNS})
            conn.execute("ANALYZE runs")
            seed_s = time.monotonic() - t0
            count = conn.execute("SELECT count(*) FROM runs WHERE namespace = %s", (ns,)).fetchone()
        assert count is not None and count[0] == RUNS, count
        token = _token(env, ns)
        n = opts.ui_loads
        base = procs.api_url
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            cursor = None
            for _ in range(10):  # 10 pages of 500: a cursor 5,000 runs deep
                listed = client.get(
                    f"/v1/namespaces/{ns}/history/runs",
                    params={"limit": "500", **({"after": cursor} if cursor else {})},
                )
                assert listed.status_code == 200, listed.text
                cursor = listed.json()["next"]
                assert cursor, "fewer runs than seeded"
            pages: dict[str, tuple[str, str, dict[str, str], str]] = {
                # name: (dashboard path, history API path, its query, text both answers must hold)
                "first page": (f"/ui/namespaces/{ns}/runs", f"/v1/namespaces/{ns}/history/runs", {}, "run-10000"),
                "filtered page (task, phase, label)": (
                    f"/ui/namespaces/{ns}/runs?task=task-3&phase=Failed&label=team%3Dsearch",
                    f"/v1/namespaces/{ns}/history/runs?task=task-3&phase=Failed&label=team%3Dsearch",
                    {},
                    "task-3",
                ),
                "search by name": (f"/ui/namespaces/{ns}/runs?q=run-0421", "", {}, "run-04219"),
                "a page 5,000 runs deep": (
                    f"/ui/namespaces/{ns}/runs?after={cursor}",
                    f"/v1/namespaces/{ns}/history/runs?after={cursor}",
                    {},
                    "run-05000",
                ),
            }
            figures = []
            details: dict[str, Any] = {"runs": RUNS, "seed_s": round(seed_s, 2), "loads": n}
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
                            f"{name} with {RUNS:,} runs, {label}",
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
