"""Task, TaskRun and Queue against the real API server: the examples apply, every field is explained,
and bad manifests are rejected at `kubectl apply` with a message that names the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import config
from tests.support.builders import queue_body, schedule_body, task_body, taskrun_body, with_path
from tests.support.kube import kubectl

EXAMPLES = sorted((config.REPO / "examples").rglob("*.yaml"))


def _apply(kubeconfig: Path, namespace: str, body: dict[str, Any], verb: str = "apply") -> tuple[int, str]:
    res = kubectl(kubeconfig, verb, "-n", namespace, "-f", "-", input=json.dumps(body), check=False)
    return res.returncode, (res.stdout + res.stderr).strip()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(config.REPO)))
def test_each_example_applies_cleanly(crds: Path, namespace: str, path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    verb = "create" if "generateName" in doc["metadata"] else "apply"
    res = kubectl(crds, verb, "-n", namespace, "-f", str(path), check=False)
    assert res.returncode == 0, res.stderr
    assert "created" in res.stdout or "configured" in res.stdout


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ("taskrun.spec.payload", "JSON text, at most 262144 bytes"),
        ("taskrun.status.attempts", "Every attempt so far"),
        ("task.spec.retry.backoff.maxDelay", "The longest delay between two attempts"),
        ("task.spec.retry.podFailurePolicy.rules.action", "FailRun: fail the run now"),
        ("task.spec.template.spec.containers.image", "explicit tag or digest"),
        ("queue.spec.perKeyLimit", "A key at its limit never blocks runs of other keys"),
        ("schedule.spec.overlapPolicy", "BufferOne starts it when the running one ends"),
        ("schedule.spec.timeZone", "a time skipped by the clock moving forward fires once"),
        ("schedule.status.missed", "older than catchupWindow"),
        ("tokencompletion.spec.token", "It must belong to a run in this namespace"),
        ("task.spec.suspendAfter", "A durable sleep longer than this ends the attempt's pod"),
    ],
)
def test_kubectl_explain_reads_like_documentation(crds: Path, resource: str, expected: str) -> None:
    out = kubectl(crds, "explain", resource).stdout
    assert expected in " ".join(out.split())


def test_kubectl_get_cairn_lists_all_three_kinds(crds: Path, namespace: str) -> None:
    _apply(crds, namespace, queue_body("default"))
    _apply(crds, namespace, task_body("t"))
    _apply(crds, namespace, taskrun_body("r", "t"))
    out = kubectl(crds, "get", "cairn", "-n", namespace).stdout
    assert "queue.cairn.dev/default" in out
    assert "task.cairn.dev/t" in out
    assert "taskrun.cairn.dev/r" in out


_T = task_body("bad")
_R = taskrun_body("bad", "t")
_Q = queue_body("bad", concurrencyLimit=3)
_C = "spec.template.spec.containers.0"
_S = schedule_body("bad", "t", "*/5 * * * *")
_TC: dict[str, Any] = {
    "apiVersion": "cairn.dev/v1alpha1",
    "kind": "TokenCompletion",
    "metadata": {"name": "bad"},
    "spec": {"token": "tok-0123456789abcdef"},
}

# (case, manifest, what the user reads in the error). Each message names the field at fault.
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("schedule with a minute of 61", with_path(_S, "spec.cron", ["61 * * * *"]), "spec.cron[0]: Invalid value"),
    ("schedule with four fields", with_path(_S, "spec.cron", ["* * * *"]), "must be a cron expression"),
    ("schedule without a cron", with_path(_S, "spec.cron", []), "spec.cron: Invalid value"),
    ("schedule in an unknown zone", with_path(_S, "spec.timeZone", "Mars/Olympus_Mons"), "spec.timeZone"),
    ("catch-up window in words", with_path(_S, "spec.catchupWindow", "an hour"), "spec.catchupWindow: Invalid value"),
    (
        "unknown overlap policy",
        with_path(_S, "spec.overlapPolicy", "Queue"),
        'spec.overlapPolicy: Unsupported value: "Queue"',
    ),
    (
        "schedule ending before it starts",
        with_path(with_path(_S, "spec.startTime", "2027-01-02T00:00:00Z"), "spec.endTime", "2027-01-01T00:00:00Z"),
        'spec.endTime: Invalid value: "object": endTime must be after startTime',
    ),
    ("task without template", {**_T, "spec": {"queue": "default"}}, "spec.template: Required value"),
    (
        "task with no container",
        with_path(_T, "spec.template.spec.containers", []),
        "spec.template.spec.containers: Invalid value: 0: spec.template.spec.containers in body should have at least 1 items",
    ),
    (
        "task with two containers",
        with_path(_T, "spec.template.spec.containers", [{"image": "a:1"}, {"name": "b", "image": "b:1"}]),
        "spec.template.spec.containers: Too many: 2: must have at most 1 items",
    ),
    (
        "container without image",
        with_path(_T, _C, {"name": "task"}),
        "spec.template.spec.containers[0].image: Required value",
    ),
    (
        "zero attempts",
        with_path(_T, "spec.retry", {"maxAttempts": 0}),
        "spec.retry.maxAttempts: Invalid value: 0: spec.retry.maxAttempts in body should be greater than or equal to 1",
    ),
    (
        "attempts as a word",
        with_path(_T, "spec.retry", {"maxAttempts": "three"}),
        'spec.retry.maxAttempts: Invalid value: "string": spec.retry.maxAttempts in body must be of type integer',
    ),
    (
        "maxDelay below initialDelay",
        with_path(_T, "spec.retry", {"backoff": {"initialDelay": "1m", "maxDelay": "10s"}}),
        'spec.retry.backoff.maxDelay: Invalid value: "object": maxDelay must be at least initialDelay',
    ),
    (
        "backoff factor below 1",
        with_path(_T, "spec.retry", {"backoff": {"factor": 0.5}}),
        "spec.retry.backoff.factor: Invalid value: 0.5: spec.retry.backoff.factor in body should be greater than or equal to 1",
    ),
    (
        "jitter above 1",
        with_path(_T, "spec.retry", {"backoff": {"jitter": 2}}),
        "spec.retry.backoff.jitter: Invalid value: 2: spec.retry.backoff.jitter in body should be less than or equal to 1",
    ),
    (
        "timeout in words",
        with_path(_T, "spec.attemptTimeout", "10 minutes"),
        'spec.attemptTimeout: Invalid value: "string": must be a duration such as 30s, 5m, 1h30m or 500ms',
    ),
    (
        "maxDuration below attemptTimeout",
        with_path(with_path(_T, "spec.attemptTimeout", "1h"), "spec.maxDuration", "30m"),
        'spec.maxDuration: Invalid value: "object": maxDuration must be at least attemptTimeout',
    ),
    ("misspelt field", with_path(_T, "spec.retries", {"maxAttempts": 2}), 'unknown field "spec.retries"'),
    (
        "host network",
        with_path(_T, "spec.template.spec.hostNetwork", True),
        'unknown field "spec.template.spec.hostNetwork"',
    ),
    (
        "privileged container",
        with_path(_T, f"{_C}.securityContext", {"privileged": True}),
        'unknown field "spec.template.spec.containers[0].securityContext.privileged"',
    ),
    (
        "hostPath volume",
        with_path(_T, "spec.template.spec.volumes", [{"name": "h", "hostPath": {"path": "/"}}]),
        'spec.template.spec.volumes[0]: Invalid value: "object": hostPath volumes are not allowed in task pods',
    ),
    (
        "a volume with two sources",
        with_path(_T, "spec.template.spec.volumes", [{"name": "v", "emptyDir": {}, "secret": {"secretName": "s"}}]),
        'spec.template.spec.volumes[0]: Invalid value: "object": set exactly one volume source: configMap',
    ),
    (
        "reserved env name",
        with_path(_T, f"{_C}.env", [{"name": "CAIRN_RUN", "value": "x"}]),
        'spec.template.spec.containers[0].env[0]: Invalid value: "object": names starting with CAIRN_ are reserved',
    ),
    (
        "env value and valueFrom",
        with_path(
            _T,
            f"{_C}.env",
            [{"name": "A", "value": "1", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
        ),
        'spec.template.spec.containers[0].env[0]: Invalid value: "object": set value or valueFrom, not both',
    ),
    (
        "rule matching on nothing",
        with_path(_T, "spec.retry", {"podFailurePolicy": {"rules": [{"action": "FailRun"}]}}),
        'spec.retry.podFailurePolicy.rules[0]: Invalid value: "object": set exactly one of onExitCodes or onPodConditions',
    ),
    (
        "unknown rule action",
        with_path(
            _T,
            "spec.retry",
            {"podFailurePolicy": {"rules": [{"action": "Retry", "onExitCodes": {"operator": "In", "values": [1]}}]}},
        ),
        'spec.retry.podFailurePolicy.rules[0].action: Unsupported value: "Retry": supported values: "FailRun", "Ignore", "Count"',
    ),
    (
        "OOM policy without a cap",
        with_path(_T, "spec.retry", {"outOfMemory": {"memoryFactor": 2}}),
        "spec.retry.outOfMemory.maxMemory: Required value",
    ),
    (
        "negative TTL",
        with_path(_T, "spec.ttlSecondsAfterFinished", -1),
        "spec.ttlSecondsAfterFinished: Invalid value: -1: spec.ttlSecondsAfterFinished in body should be greater than or equal to 0",
    ),
    (
        "run as root",
        with_path(_T, "spec.template.spec.securityContext", {"runAsUser": 0}),
        "spec.template.spec.securityContext.runAsUser: Invalid value: 0: spec.template.spec.securityContext.runAsUser in body should be greater than or equal to 1",
    ),
    (
        "queue limit zero",
        with_path(_Q, "spec.concurrencyLimit", 0),
        "spec.concurrencyLimit: Invalid value: 0: spec.concurrencyLimit in body should be greater than or equal to 1",
    ),
    (
        "negative queue limit",
        with_path(_Q, "spec.concurrencyLimit", -3),
        "spec.concurrencyLimit: Invalid value: -3: spec.concurrencyLimit in body should be greater than or equal to 1",
    ),
    (
        "per-key limit above the queue's",
        with_path(_Q, "spec.perKeyLimit", 5),
        'spec.perKeyLimit: Invalid value: "object": perKeyLimit must not exceed concurrencyLimit',
    ),
    (
        "rate burst above its limit",
        with_path(_Q, "spec.rateLimit", {"limit": 5, "period": "10s", "burst": 6}),
        'spec.rateLimit.burst: Invalid value: "object": burst must not exceed limit',
    ),
    (
        "rate period over a day",
        with_path(_Q, "spec.rateLimit", {"limit": 5, "period": "48h"}),
        'spec.rateLimit.period: Invalid value: "object": period must be from 1s to 24h',
    ),
    (
        "rate period not a duration",
        with_path(_Q, "spec.perKeyRateLimit", {"limit": 5, "period": "ten"}),
        "spec.perKeyRateLimit.period: Invalid value:",
    ),
    (
        "negative maxQueued",
        with_path(_Q, "spec.maxQueued", -1),
        "spec.maxQueued: Invalid value: -1: spec.maxQueued in body should be greater than or equal to 0",
    ),
    (
        "paused as a word",
        with_path(_Q, "spec.paused", "yes"),
        'spec.paused: Invalid value: "string": spec.paused in body must be of type boolean',
    ),
    ("run without a task", {**_R, "spec": {"payload": "{}"}}, "spec.taskRef: Required value"),
    (
        "oversized payload",
        with_path(_R, "spec.payload", json.dumps({"blob": "x" * 300_000})),
        "spec.payload: Too long: may not be more than 262144 bytes",
    ),
    # The payload is JSON *text*; an unquoted YAML object is decoded as fields a string cannot have.
    ("payload as an object", with_path(_R, "spec.payload", {"url": "x"}), 'unknown field "spec.payload.url"'),
    (
        "priority out of range",
        with_path(_R, "spec.priority", 5000),
        "spec.priority: Invalid value: 5000: spec.priority in body should be less than or equal to 1000",
    ),
    (
        "empty concurrency key",
        with_path(_R, "spec.concurrencyKey", ""),
        'spec.concurrencyKey: Invalid value: "": spec.concurrencyKey in body should be at least 1 chars long',
    ),
    (
        "token completion of something that is not a token id",
        with_path(_TC, "spec.token", "approve-me"),
        'spec.token: Invalid value: "approve-me": spec.token in body should match',
    ),
    ("token completion without a token", {**_TC, "spec": {}}, "spec.token: Required value"),
]


def test_a_hostpath_volume_is_refused_for_what_it_is_and_nothing_contradictory(crds: Path, namespace: str) -> None:
    code, out = _apply(
        crds, namespace, with_path(_T, "spec.template.spec.volumes", [{"name": "h", "hostPath": {"path": "/"}}])
    )
    assert code != 0 and "hostPath volumes are not allowed in task pods" in out, out
    assert "set exactly one volume source" not in out, out


@pytest.mark.parametrize(("case", "manifest", "message"), INVALID, ids=[c[0] for c in INVALID])
def test_an_invalid_manifest_is_rejected_with_a_message_naming_the_field(
    crds: Path, namespace: str, case: str, manifest: dict[str, Any], message: str
) -> None:
    code, out = _apply(crds, namespace, manifest)
    assert code != 0, f"{case}: accepted, but should have been rejected"
    assert message in out, f"{case}: the error does not say {message!r}:\n{out}"


# (case, the edit, what the user reads)
IMMUTABLE: list[tuple[str, str, object, str]] = [
    (
        "another task",
        "spec.taskRef",
        {"name": "other"},
        'spec.taskRef: Invalid value: "object": taskRef is immutable',
    ),
    (
        "another payload",
        "spec.payload",
        '{"n": 2}',
        'spec.payload: Invalid value: "object": payload is immutable',
    ),
    ("another queue", "spec.queue", "fast", 'spec.queue: Invalid value: "object": queue is immutable'),
    (
        "made a fork afterwards",
        "spec.from",
        {"run": "earlier", "step": "work#3"},
        'spec.from: Invalid value: "object": from is immutable',
    ),
    (
        "un-cancel",
        "spec.cancel",
        False,
        'spec.cancel: Invalid value: "object": a cancelled TaskRun cannot be un-cancelled',
    ),
]


@pytest.mark.parametrize(("case", "path", "value", "message"), IMMUTABLE, ids=[c[0] for c in IMMUTABLE])
def test_an_edit_to_an_immutable_field_is_rejected(
    crds: Path, namespace: str, case: str, path: str, value: object, message: str
) -> None:
    original = taskrun_body("r", "t", payload='{"n": 1}', queue="slow", cancel=True)
    assert _apply(crds, namespace, original)[0] == 0
    code, out = _apply(crds, namespace, with_path(original, path, value))
    assert code != 0, f"{case}: the edit was accepted"
    assert message in out, out


def test_status_is_written_only_through_the_status_subresource(crds: Path, namespace: str) -> None:
    # Server-side dry runs: the API server's answer to each write, which no operator running in the
    # same cluster (the session's, reconciling every Queue) can overwrite before it is read.
    _apply(crds, namespace, queue_body("q"))

    def patch(*extra: str) -> dict[str, Any]:
        out = kubectl(
            crds, "patch", "queue", "q", "-n", namespace, *extra, "--type=merge", "--dry-run=server", "-o", "json",
            "-p", '{"status": {"queued": 7}, "spec": {"concurrencyLimit": 9}}',
        ).stdout  # fmt: skip
        body: dict[str, Any] = json.loads(out)
        return body

    # A write of the main resource drops status...
    main = patch()
    assert (main.get("status") or {}).get("queued") != 7 and main["spec"]["concurrencyLimit"] == 9, main
    # ...and the status subresource keeps it, without touching spec.
    sub = patch("--subresource=status")
    assert sub["status"]["queued"] == 7 and sub["spec"]["concurrencyLimit"] != 9, sub


def test_defaults_are_filled_in_and_shown(crds: Path, namespace: str) -> None:
    _apply(crds, namespace, task_body("t"))
    spec = json.loads(kubectl(crds, "get", "task", "t", "-n", namespace, "-o", "jsonpath={.spec}").stdout)
    assert spec["queue"] == "default"
    assert spec["retry"]["maxAttempts"] == 3
    assert spec["retry"]["backoff"] == {"initialDelay": "10s", "factor": 2, "maxDelay": "5m", "jitter": 0.1}
    assert spec["template"]["spec"]["containers"][0]["name"] == "task"
    table = kubectl(crds, "get", "tasks", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "QUEUE", "IMAGE", "MAX-ATTEMPTS", "AGE"]
    assert table[1].split()[:4] == ["t", "default", "localhost/cairn-examples:0.1.0", "3"]
