"""Running tasks end to end in tests: task code of the test's own (mounted from a ConfigMap), a
side channel that counts step executions, and waiting for runs to reach a phase."""

from __future__ import annotations

import http.server
import json
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlparse

from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Pod

from cairn.k8s.resources import TaskResource, TaskRunResource
from harness.images import EXAMPLES
from tests.support.kube import as_dict, wait_for

FINAL = ("Succeeded", "Failed", "Cancelled")

# Prepended to every test task module: `hit(ctx, what)` reports one execution to the test's counter.
PRELUDE = """
import json, os, sys, time, urllib.parse, urllib.request

def hit(ctx, what):
    # No counter is a broken test, not a quiet one: the counts it asserts would read 0.
    url = os.environ.get("COUNTER_URL")
    if not url:
        raise SystemExit("hit(): COUNTER_URL is not set; give make_task a counter")
    query = urllib.parse.urlencode({"run": ctx.run_name, "what": what, "attempt": ctx.attempt})
    urllib.request.urlopen(url + "?" + query, timeout=10).read()
"""


class StepCounter:
    """An HTTP server on the host side of the nodes' veths; task code GETs it once per execution."""

    def __init__(self, host: str) -> None:
        self.hits: Counter[tuple[str, str]] = Counter()
        self.attempts: dict[tuple[str, str], list[int]] = {}
        self._lock = threading.Lock()
        counter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                q = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
                with counter._lock:
                    key = (q.get("run", ""), q.get("what", ""))
                    counter.hits[key] += 1
                    counter.attempts.setdefault(key, []).append(int(q.get("attempt", "0")))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/hit"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, run: str, what: str) -> int:
        with self._lock:
            return self.hits[(run, what)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def task_module(code: str) -> str:
    return PRELUDE + "\n" + textwrap.dedent(code)


def make_task(
    kube: Client,
    namespace: str,
    name: str,
    code: str,
    *,
    counter: StepCounter | None = None,
    entry: str = "main",
    queue: str | None = None,
    retry: dict[str, Any] | None = None,
    resources: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    image: str = EXAMPLES,
    **spec: Any,
) -> None:
    """A Task running `code` (a Python module defining `entry(ctx)`) from a ConfigMap volume."""
    module = f"task_{name.replace('-', '_')}"
    kube.create(
        ConfigMap(
            metadata=ObjectMeta(name=f"{name}-code", namespace=namespace), data={f"{module}.py": task_module(code)}
        )
    )
    container_env = [{"name": "PYTHONPATH", "value": "/tasks:/app"}]
    if counter is not None:
        container_env.append({"name": "COUNTER_URL", "value": counter.url})
    container_env += [{"name": k, "value": v} for k, v in (env or {}).items()]
    body: dict[str, Any] = {
        "apiVersion": "cairn.dev/v1alpha1",
        "kind": "Task",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "image": image,
                            "imagePullPolicy": "Never",
                            "command": ["python3", "-m", "cairn.run", f"{module}:{entry}"],
                            "env": container_env,
                            "resources": resources
                            or {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
                            "volumeMounts": [{"name": "code", "mountPath": "/tasks", "readOnly": True}],
                        }
                    ],
                    "volumes": [{"name": "code", "configMap": {"name": f"{name}-code"}}],
                }
            },
            "retry": retry or {"maxAttempts": 3, "backoff": {"initialDelay": "1s", "maxDelay": "5s"}},
            **({"queue": queue} if queue else {}),
            **spec,
        },
    }
    kube.create(TaskResource.from_dict(body))


def create_run(kube: Client, namespace: str, task: str, name: str, payload: Any = None, **spec: Any) -> str:
    body: dict[str, Any] = {
        "apiVersion": "cairn.dev/v1alpha1",
        "kind": "TaskRun",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"taskRef": {"name": task}, **spec},
    }
    if payload is not None:
        body["spec"]["payload"] = payload if isinstance(payload, str) else json.dumps(payload)
    kube.create(TaskRunResource.from_dict(body))
    return name


def get_run(kube: Client, namespace: str, name: str) -> dict[str, Any]:
    return as_dict(kube.get(TaskRunResource, name, namespace=namespace))


def status(kube: Client, namespace: str, name: str) -> dict[str, Any]:
    return dict(get_run(kube, namespace, name).get("status") or {})


def wait_phase(
    kube: Client, namespace: str, name: str, phases: tuple[str, ...] = FINAL, timeout: float = 120
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        st = status(kube, namespace, name)
        return st if st.get("phase") in phases else None

    return wait_for(f"run {namespace}/{name} to reach {phases}", probe, timeout=timeout, interval=0.3)


def wait_steps(kube: Client, namespace: str, name: str, steps: int, timeout: float = 120) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        st = status(kube, namespace, name)
        return st if (st.get("progress") or {}).get("stepsCompleted", 0) >= steps else None

    return wait_for(f"run {namespace}/{name} to record {steps} steps", probe, timeout=timeout, interval=0.2)


def pods_of(kube: Client, namespace: str, run: str) -> list[dict[str, Any]]:
    pods = [as_dict(p) for p in kube.list(Pod, namespace=namespace, labels={"cairn.dev/run": run})]
    return sorted(pods, key=lambda p: int(p["metadata"]["labels"]["cairn.dev/attempt"]))


@contextmanager
def counter_at(host: str) -> Iterator[StepCounter]:
    counter = StepCounter(host)
    try:
        yield counter
    finally:
        counter.close()


def seconds_between(a: str, b: str) -> float:
    from cairn.domain.timefmt import parse_time

    return (parse_time(b) - parse_time(a)).total_seconds()


def poll(seconds: float) -> None:
    time.sleep(seconds)
