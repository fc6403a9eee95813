"""The trigger API: applications start runs with any Kubernetes identity RBAC allows, and an
idempotency key makes a retried (or repeated, or concurrent) request create one run."""

from __future__ import annotations

import concurrent.futures
import json
import time

import httpx
from lightkube import Client

from cairn.k8s.resources import TaskRunResource
from cairn.sdk.trigger import TriggerClient
from tests.support.cairn import CairnProcesses
from tests.support.runs import make_task
from tests.support.tokens import service_account_token

ECHO = """
def main(ctx):
    return {"echo": ctx.payload, "steps": ctx.step("double", lambda: (ctx.payload or {}).get("n", 0) * 2)}
"""


def test_an_application_triggers_a_run_and_reads_its_result(kube: Client, ns: str, cairn: CairnProcesses) -> None:
    make_task(kube, ns, "echo", ECHO)
    token = service_account_token(kube, ns, "app", verbs=["create", "get"])
    client = TriggerClient(cairn.api_url, token=token)
    run = client.trigger(ns, "echo", {"n": 21}, priority=3, concurrency_key="tenant-1")
    assert run["phase"] in ("Pending", "Queued") and run["task"] == "echo"
    done = client.wait(ns, run["name"], timeout=120)
    assert done["phase"] == "Succeeded"
    assert done["result"] == {"echo": {"n": 21}, "steps": 42}
    spec = kube.get(TaskRunResource, run["name"], namespace=ns).to_dict()["spec"]  # type: ignore[no-untyped-call]
    assert (spec["priority"], spec["concurrencyKey"], json.loads(spec["payload"])) == (3, "tenant-1", {"n": 21})


def test_the_same_request_sent_twenty_times_at_once_creates_exactly_one_run(
    kube: Client, ns: str, cairn: CairnProcesses
) -> None:
    make_task(kube, ns, "echo", ECHO)
    token = service_account_token(kube, ns, "app", verbs=["create", "get"])
    body = {"task": "echo", "payload": {"n": 1}, "idempotencyKey": "upload-7731"}

    def send(_: int) -> tuple[int, str]:
        response = httpx.post(
            f"{cairn.api_url}/v1/namespaces/{ns}/taskruns",
            json=body,
            timeout=30,
            headers={"Authorization": f"Bearer {token}"},
            trust_env=False,
        )
        return response.status_code, response.json()["name"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(send, range(20)))
    names = {name for _, name in answers}
    codes = sorted(code for code, _ in answers)
    assert len(names) == 1, answers
    assert codes.count(201) == 1 and codes.count(200) == 19, codes
    runs = [r for r in kube.list(TaskRunResource, namespace=ns)]
    assert len(runs) == 1
    time.sleep(0.5)
    assert send(0) == (200, names.pop())  # later retries too


def test_the_trigger_api_refuses_callers_without_rights_and_bad_requests_clearly(
    kube: Client, ns: str, cairn: CairnProcesses
) -> None:
    make_task(kube, ns, "echo", ECHO)
    allowed = service_account_token(kube, ns, "app", verbs=["create", "get"])
    nobody = service_account_token(kube, ns, "nobody")
    url = f"{cairn.api_url}/v1/namespaces/{ns}/taskruns"

    def post(token: str | None, content: str, content_type: str = "application/json") -> tuple[int, str]:
        headers = {"Content-Type": content_type}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        r = httpx.post(url, content=content, headers=headers, timeout=30, trust_env=False)
        return r.status_code, r.json()["message"]

    cases = [
        (None, '{"task": "echo"}', 401, "send a Kubernetes bearer token"),
        ("not-a-token", '{"task": "echo"}', 401, "refused by the Kubernetes API server"),
        (nobody, '{"task": "echo"}', 403, f'may not create taskruns.cairn.dev in namespace "{ns}"'),
        (allowed, '{"task": "missing"}', 404, 'Task "missing" does not exist'),
        (allowed, '{"task": "echo", "queue": "nowhere"}', 422, 'Queue "nowhere" does not exist'),
        (allowed, '{"task": "echo"', 400, "the body is not valid JSON"),
        (allowed, '{"task": "echo", "priority": "high"}', 422, "priority"),
        (allowed, '{"task": "echo", "colour": "red"}', 422, "colour"),
        (allowed, json.dumps({"task": "echo", "payload": "x" * 300_000}), 413, "over the cap of 262144"),
        (allowed, '{"task": "echo", "payload": {"n": NaN}}', 422, "the payload holds a number JSON cannot carry"),
        (allowed, '{"task": "echo", "payload": "a\\u0000"}', 422, "the payload contains the character U+0000"),
    ]
    for token, content, code, message in cases:
        got = post(token, content)
        assert got[0] == code and message in got[1], (content[:60], got)
    assert post(allowed, "task=echo", "text/plain")[0] == 415
