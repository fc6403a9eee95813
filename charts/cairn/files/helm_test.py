"""`helm test`: run a three-step Task end to end through the installed Cairn and check the result.

Runs in the operator image (lightkube and Cairn's resource definitions are there) under a ServiceAccount
that may only create, read and delete Tasks, TaskRuns and Queues in the test namespace. It creates a
Queue, a Task (the task base image running the module of the test's ConfigMap) and a TaskRun; waits for
the run to succeed with its three steps recorded (they go through the API, whose token check and
database are thereby tested too); prints what happened; and deletes what it created.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from lightkube import ApiError, Client, KubeConfig
from lightkube.generic_resource import GenericNamespacedResource

from cairn.k8s.resources import QueueResource, TaskResource, TaskRunResource

NAMESPACE = os.environ["TEST_NAMESPACE"]
NAME = os.environ["TEST_NAME"]
TIMEOUT = float(os.environ.get("TEST_TIMEOUT_SECONDS", "180"))
FINAL = ("Succeeded", "Failed", "Cancelled")


def manifests() -> list[dict[str, Any]]:
    meta = {"name": NAME, "namespace": NAMESPACE, "labels": {"app.kubernetes.io/component": "helm-test"}}
    task_container = {
        "name": "task",
        "image": os.environ["TASK_IMAGE"],
        "imagePullPolicy": os.environ.get("TASK_IMAGE_PULL_POLICY", "IfNotPresent"),
        "command": ["python3", "-m", "cairn.run", "helm_test_task:main"],
        "env": [{"name": "PYTHONPATH", "value": "/helm-test-task"}],
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
        "volumeMounts": [{"name": "code", "mountPath": "/helm-test-task", "readOnly": True}],
    }
    return [
        {
            "apiVersion": "cairn.dev/v1alpha1",
            "kind": "Queue",
            "metadata": meta,
            "spec": {"concurrencyLimit": 1},
        },
        {
            "apiVersion": "cairn.dev/v1alpha1",
            "kind": "Task",
            "metadata": meta,
            "spec": {
                "queue": NAME,
                "template": {
                    "spec": {
                        "containers": [task_container],
                        "volumes": [{"name": "code", "configMap": {"name": os.environ["TASK_CONFIGMAP"]}}],
                    }
                },
                "retry": {"maxAttempts": 2, "backoff": {"initialDelay": "1s"}},
                "attemptTimeout": "2m",
            },
        },
        {
            "apiVersion": "cairn.dev/v1alpha1",
            "kind": "TaskRun",
            "metadata": meta,
            "spec": {"taskRef": {"name": NAME}, "payload": json.dumps({"steps": 3})},
        },
    ]


KINDS: dict[str, type[GenericNamespacedResource]] = {
    "Queue": QueueResource,
    "Task": TaskResource,
    "TaskRun": TaskRunResource,
}


def delete_all(client: Client) -> None:
    for kind in ("TaskRun", "Task", "Queue"):
        try:
            client.delete(KINDS[kind], NAME, namespace=NAMESPACE)
        except ApiError as e:
            if e.status.code != 404:
                raise


def wait_gone(client: Client) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            client.get(TaskRunResource, NAME, namespace=NAMESPACE)
        except ApiError as e:
            if e.status.code == 404:
                return
            raise
        time.sleep(1)
    raise SystemExit(f"FAIL: the previous TaskRun {NAMESPACE}/{NAME} is still there after 60s")


def wait_final(client: Client) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT
    last = ""
    while True:
        run = client.get(TaskRunResource, NAME, namespace=NAMESPACE)
        status: dict[str, Any] = run.get("status") or {}
        steps = (status.get("progress") or {}).get("stepsCompleted")
        seen = f"{status.get('phase')} attempt={status.get('attempt')} steps={steps}"
        if seen != last:
            print(f"  {seen}", flush=True)
            last = seen
        if status.get("phase") in FINAL:
            return status
        if time.monotonic() > deadline:
            raise SystemExit(f"FAIL: the run did not finish in {TIMEOUT:.0f}s; last status: {json.dumps(status)}")
        time.sleep(1)


def check(status: dict[str, Any]) -> list[str]:
    problems = []
    if status.get("phase") != "Succeeded":
        problems.append(f"phase {status.get('phase')} ({status.get('reason')}: {status.get('message')})")
    steps = (status.get("progress") or {}).get("stepsCompleted")
    if steps != 3:
        problems.append(f"{steps} steps recorded, not 3")
    result = json.loads(status.get("result") or "null")
    if result != {"total": 6}:
        problems.append(f"result {result!r}, not {{'total': 6}}")
    return problems


def main() -> int:
    client = Client(KubeConfig.from_service_account(), field_manager="cairn-helm-test", trust_env=False)
    print(f"Cairn helm test: a three-step Task in namespace {NAMESPACE}", flush=True)
    delete_all(client)
    wait_gone(client)
    for body in manifests():
        client.create(KINDS[body["kind"]].from_dict(body))
        print(f"  created {body['kind']} {NAMESPACE}/{NAME}", flush=True)
    started = time.monotonic()
    status = wait_final(client)
    problems = check(status)
    for attempt in status.get("attempts") or []:
        print(f"  attempt {attempt.get('number')}: pod {attempt.get('pod')} {attempt.get('reason') or ''}")
    if problems:
        print("FAIL: " + "; ".join(problems), flush=True)
        print(json.dumps(status, indent=2))
        return 1
    delete_all(client)
    took = time.monotonic() - started
    print(f"PASS: the run succeeded in {took:.1f}s with 3 steps recorded; result {status['result']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
