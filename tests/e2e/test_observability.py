"""What operators of Cairn watch: Prometheus metrics that move as runs do (bounded labels only), and
JSON logs that name the run and the attempt."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from lightkube import Client
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cairn import CairnProcesses
from tests.support.runs import create_run, make_task, wait_phase

FLAKY = """
def main(ctx):
    ctx.step("one", lambda: 1)
    ctx.step("two", lambda: 2)
    if ctx.attempt == 1:
        sys.exit(1)
    ctx.step("three", lambda: 3)
    return "ok"
"""

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(port: int) -> Samples:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10, trust_env=False).text
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_move_as_a_run_fails_once_and_succeeds(kube: Client, ns: str, cairn: CairnProcesses) -> None:
    make_task(kube, ns, "flaky", FLAKY, retry={"maxAttempts": 3, "backoff": {"initialDelay": "1s"}})
    op0, api0 = _scrape(cairn.operator_metrics_port), _scrape(cairn.api_metrics_port)
    create_run(kube, ns, "flaky", "r1")
    assert wait_phase(kube, ns, "r1")["phase"] == "Succeeded"
    op1, api1 = _scrape(cairn.operator_metrics_port), _scrape(cairn.api_metrics_port)

    def grew(samples0: Samples, samples1: Samples, name: str, **labels: str) -> float:
        return _value(samples1, name, **labels) - _value(samples0, name, **labels)

    assert grew(op0, op1, "cairn_admissions_total") >= 2  # the first attempt, and the retry's
    assert grew(op0, op1, "cairn_runs_finished_total", phase="Succeeded") >= 1
    assert grew(op0, op1, "cairn_attempts_ended_total", reason="Error") >= 1
    assert grew(op0, op1, "cairn_attempts_ended_total", reason="Completed") >= 1
    assert grew(op0, op1, "cairn_retries_total", reason="Error") >= 1
    assert grew(op0, op1, "cairn_admission_wait_seconds_count") >= 1
    assert grew(op0, op1, "cairn_run_duration_seconds_count") >= 1
    assert grew(api0, api1, "cairn_checkpoint_write_seconds_count") >= 3  # one, two, three (one and two once)
    assert grew(api0, api1, "cairn_api_requests_total", route="/v1/steps", code="201") >= 3
    assert _value(op1, "cairn_queue_queued", namespace=ns, queue="default") == 0
    # No label is unbounded: runs and pods are never labels.
    for name, labels in op1:
        if name.startswith("cairn_"):
            assert not {k for k, _ in labels} & {"run", "pod", "uid", "run_uid"}, (name, labels)


def test_operator_logs_are_json_lines_naming_the_run_and_the_attempt(
    kube: Client, ns: str, cairn: CairnProcesses
) -> None:
    make_task(kube, ns, "flaky", FLAKY, retry={"maxAttempts": 3, "backoff": {"initialDelay": "1s"}})
    create_run(kube, ns, "flaky", "logged")
    wait_phase(kube, ns, "logged")
    assert cairn.operator is not None
    lines = [json.loads(line) for line in Path(cairn.operator.log).read_text().splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("run") == "logged" and line.get("namespace") == ns]
    messages = {line["message"] for line in mine}
    assert {"attempt 1 started", "attempt 1 ended: Error", "attempt 2 started", "run succeeded"} <= messages, messages
    started = next(line for line in mine if line["message"] == "attempt 2 started")
    assert started["attempt"] == 2 and started["pod"] == "logged-2" and started["level"] == "info"
