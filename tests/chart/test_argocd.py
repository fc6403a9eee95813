"""The Argo CD health checks (charts/cairn/files/argocd/*.lua), run by Debian's Lua interpreters: 5.1,
the language of Argo CD's gopher-lua, and 5.4. Each object below is what Argo CD would hand the script
as `obj`; docs/gitops.md shows the same scripts in its argocd-cm snippet."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness import config
from tests.chart.helm import CHART

LUA = CHART / "files" / "argocd"
INTERPRETERS = ("lua5.1", "lua5.4")


def lua_literal(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid Lua string literal for these values
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{json.dumps(k)}] = {lua_literal(v)}" for k, v in value.items() if v is not None) + "}"
    raise TypeError(type(value))


def health(script: Path, obj: dict[str, Any], interpreter: str) -> tuple[str, str]:
    runner = (
        f"obj = {lua_literal(obj)}\n"
        f"local hs = assert(loadfile({json.dumps(str(script))}))()\n"
        'io.write(hs.status, "\\n", hs.message or "")\n'
    )
    lua = config.system_bin(interpreter)
    res = subprocess.run([str(lua), "-e", runner], capture_output=True, text=True, timeout=10, check=False)
    assert res.returncode == 0, res.stderr
    status, _, message = res.stdout.partition("\n")
    return status, message


def taskrun(status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "cairn.dev/v1alpha1",
        "kind": "TaskRun",
        "metadata": {"name": "r", "generation": generation},
        "spec": {"taskRef": {"name": "t"}},
    }
    if status is not None:
        obj["status"] = status
    return obj


TASKRUNS = [
    (None, "Progressing", "Waiting for Cairn to admit the run"),
    ({"phase": "Queued", "reason": "QueueFull", "observedGeneration": 1}, "Progressing", "Queued: QueueFull"),
    (
        {"phase": "Starting", "attempt": 1, "reason": "Unschedulable", "observedGeneration": 1},
        "Progressing",
        "Starting (attempt 1): Unschedulable",
    ),
    (
        {"phase": "Running", "attempt": 2, "progress": {"stepsCompleted": 3}, "observedGeneration": 1},
        "Progressing",
        "Running (attempt 2, 3 steps)",
    ),
    (
        {"phase": "Retrying", "attempt": 1, "message": "exit code 1; next attempt in 2s", "observedGeneration": 1},
        "Progressing",
        "Retrying (attempt 1): exit code 1; next attempt in 2s",
    ),
    ({"phase": "Succeeded", "progress": {"stepsCompleted": 5}}, "Healthy", "Succeeded after 5 steps"),
    (
        {"phase": "Failed", "reason": "BackoffLimitExceeded", "message": "3 attempts failed"},
        "Degraded",
        "Failed: 3 attempts failed",
    ),
    ({"phase": "Cancelled", "reason": "Cancelled"}, "Degraded", "Cancelled: Cancelled"),
    ({"phase": "Waiting", "message": "until 2026-12-01T00:00:00Z"}, "Suspended", "Waiting: until 2026-12-01T00:00:00Z"),
    ({"phase": "Exploded"}, "Unknown", "Unknown phase Exploded"),
]


@pytest.mark.parametrize("interpreter", INTERPRETERS)
@pytest.mark.parametrize(
    ("status", "want", "message"), TASKRUNS, ids=[str((s or {}).get("phase")) for s, _, _ in TASKRUNS]
)
def test_taskrun_health(interpreter: str, status: dict[str, Any] | None, want: str, message: str) -> None:
    assert health(LUA / "taskrun-health.lua", taskrun(status), interpreter) == (want, message)


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_a_taskrun_whose_new_spec_cairn_has_not_seen_is_progressing(interpreter: str) -> None:
    obj = taskrun({"phase": "Running", "attempt": 1, "observedGeneration": 1}, generation=2)
    assert health(LUA / "taskrun-health.lua", obj, interpreter) == (
        "Progressing",
        "Waiting for Cairn to observe generation 2",
    )
    finished = taskrun({"phase": "Succeeded", "observedGeneration": 1}, generation=2)
    assert health(LUA / "taskrun-health.lua", finished, interpreter)[0] == "Healthy"


def queue(spec: dict[str, Any], status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {"kind": "Queue", "metadata": {"name": "q", "generation": generation}, "spec": spec}
    if status is not None:
        obj["status"] = status
    return obj


ACTIVE = [{"type": "Active", "status": "True", "reason": "Admitting"}]
PAUSED = [{"type": "Active", "status": "False", "reason": "Paused"}]
QUEUES = [
    ("new", queue({"concurrencyLimit": 5}, None), "Progressing", "Waiting for Cairn to observe the queue"),
    (
        "stale",
        queue({"concurrencyLimit": 5}, {"observedGeneration": 1, "conditions": ACTIVE}, generation=2),
        "Progressing",
        "Waiting for Cairn to observe the queue",
    ),
    (
        "admitting",
        queue({"concurrencyLimit": 5}, {"running": 2, "queued": 7, "observedGeneration": 1, "conditions": ACTIVE}),
        "Healthy",
        "2 running, 7 queued (limit 5)",
    ),
    (
        "paused",
        queue({"concurrencyLimit": 5, "paused": True}, {"running": 1, "observedGeneration": 1, "conditions": PAUSED}),
        "Suspended",
        "Paused: 1 running, 0 queued",
    ),
]


@pytest.mark.parametrize("interpreter", INTERPRETERS)
@pytest.mark.parametrize(("case", "obj", "want", "message"), QUEUES, ids=[q[0] for q in QUEUES])
def test_queue_health(interpreter: str, case: str, obj: dict[str, Any], want: str, message: str) -> None:
    assert health(LUA / "queue-health.lua", obj, interpreter) == (want, message)


def test_the_gitops_docs_carry_the_scripts_as_shipped() -> None:
    doc = (config.REPO / "docs" / "gitops.md").read_text()
    for kind, script in (("TaskRun", "taskrun-health.lua"), ("Queue", "queue-health.lua")):
        key = f"resource.customizations.health.cairn.dev_{kind}: |"
        assert key in doc, f"docs/gitops.md has no {key}"
        block = doc.split(key, 1)[1].split("\n")[1:]
        body = [line[4:] for line in block[: len((LUA / script).read_text().splitlines())]]
        assert body == (LUA / script).read_text().splitlines(), (
            f"docs/gitops.md: the {kind} script differs from {script}"
        )
