"""Bad input to the checkpoint API gets a 4xx that says what is wrong, never a 500: hand-written
cases, then a fuzzer (schemathesis) driving every operation of the OpenAPI description."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx
import pytest
import yaml
from lightkube import Client

from cairn.server.checkpoints import STEP_MAX_BYTES
from tests.support.cairn import CairnProcesses
from tests.support.kube import wait_for
from tests.support.runs import create_run, make_task, pods_of, wait_phase
from tests.support.tokens import pod_token, service_account_token

WAITER = "def main(ctx):\n    time.sleep(900)\n"


@pytest.fixture
def token(kube: Client, ns: str) -> str:
    make_task(kube, ns, "wait", WAITER)
    create_run(kube, ns, "wait", "r1")
    wait_phase(kube, ns, "r1", ("Running",))
    pod = wait_for("the pod", lambda: next((p for p in pods_of(kube, ns, "r1") if p["metadata"].get("uid")), None))
    return pod_token(kube, pod)


def _send(
    cairn: CairnProcesses,
    token: str,
    method: str,
    path: str,
    content: bytes | str,
    content_type: str = "application/json",
) -> httpx.Response:
    return httpx.request(
        method,
        f"{cairn.api_url}{path}",
        content=content,
        timeout=30,
        trust_env=False,
        headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
    )


BAD: list[tuple[str, str, str, bytes | str, int, str]] = [
    ("malformed JSON", "POST", "/v1/steps", '{"key": "a#0", "result": ', 400, "the body is not valid JSON"),
    ("not UTF-8", "POST", "/v1/steps", b'{"key": "\xff\xfe"}', 400, "the body is not valid JSON"),
    ("a list, not an object", "POST", "/v1/steps", "[1, 2]", 422, "body"),
    (
        "key of the wrong type",
        "POST",
        "/v1/steps",
        '{"key": 7, "result": 1}',
        422,
        "key: Input should be a valid string",
    ),
    ("missing key", "POST", "/v1/steps", '{"result": 1}', 422, "key: Field required"),
    ("empty key", "POST", "/v1/steps", '{"key": "", "result": 1}', 422, "key: String should have at least 1 character"),
    ("overlong key", "POST", "/v1/steps", json.dumps({"key": "k" * 300, "result": 1}), 422, "at most 256 characters"),
    ("control character in key", "POST", "/v1/steps", '{"key": "a\\u0007#0", "result": 1}', 400, "control characters"),
    ("unknown field", "POST", "/v1/steps", '{"key": "a#0", "result": 1, "extra": true}', 422, "extra: Extra inputs"),
    ("bad startedAt", "POST", "/v1/steps", '{"key": "a#0", "startedAt": "yesterday"}', 422, "startedAt"),
    (
        "result over the cap",
        "POST",
        "/v1/steps",
        json.dumps({"key": "big#0", "result": "x" * (STEP_MAX_BYTES + 10)}),
        413,
        f"over the cap of {STEP_MAX_BYTES}",
    ),
    (
        "body over the limit",
        "POST",
        "/v1/steps",
        json.dumps({"key": "huge#0", "result": "x" * (3 * STEP_MAX_BYTES)}),
        413,
        "over the limit",
    ),
    ("state over the cap", "PUT", "/v1/state", json.dumps({"state": "x" * (STEP_MAX_BYTES + 10)}), 413, "saved state"),
    ("state without state", "PUT", "/v1/state", '{"note": "hi"}', 422, "state: Field required"),
    ("note too long", "PUT", "/v1/state", json.dumps({"state": 1, "note": "n" * 300}), 422, "note"),
    # What PostgreSQL cannot store (jsonb has no NaN or Infinity; neither jsonb nor text holds U+0000 or
    # a lone surrogate): refused at the door, not left to fail in the database.
    ("NaN in a result", "POST", "/v1/steps", '{"key": "n#0", "result": NaN}', 422, "a number JSON cannot carry"),
    ("1e999 in a batch", "POST", "/v1/steps/batch", '{"steps": [{"key": "i#0", "result": 1e999}]}', 422, "1e999"),
    ("U+0000 in a result", "POST", "/v1/steps", '{"key": "z#0", "result": "a\\u0000b"}', 422, "U+0000"),
    ("a lone surrogate in a result", "POST", "/v1/steps", '{"key": "u#0", "result": "\\ud800"}', 422, "surrogate"),
    ("a lone surrogate in a key", "POST", "/v1/steps", '{"key": "\\udc00#0", "result": 1}', 422, "key: Input should"),
    ("U+0000 in a note", "PUT", "/v1/state", '{"state": 1, "note": "a\\u0000"}', 422, "the note contains"),
    ("Infinity in the result", "PUT", "/v1/result", '{"result": -Infinity}', 422, "a number JSON cannot carry"),
    ("unknown route", "GET", "/v1/runs/other", "", 404, "Not Found"),
    ("wrong method", "DELETE", "/v1/steps", "", 405, "Method Not Allowed"),
]


@pytest.mark.parametrize(("case", "method", "path", "content", "code", "message"), BAD, ids=[c[0] for c in BAD])
def test_bad_input_gets_a_clear_4xx_never_a_500(
    cairn: CairnProcesses,
    token: str,
    case: str,
    method: str,
    path: str,
    content: bytes | str,
    code: int,
    message: str,
) -> None:
    response = _send(cairn, token, method, path, content)
    assert response.status_code == code, (case, response.status_code, response.text[:300])
    assert message in response.json()["message"], (case, response.text[:300])


def test_a_body_that_is_not_json_is_refused_by_its_media_type(cairn: CairnProcesses, token: str) -> None:
    response = _send(cairn, token, "POST", "/v1/steps", "key=a", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415 and "application/json" in response.json()["message"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_fuzzer_finds_no_server_error_in_any_operation(
    kube: Client, ns: str, cairn: CairnProcesses, token: str, tmp_path: Any
) -> None:
    app_token = service_account_token(kube, ns, "app", verbs=["create", "get"])
    spec = yaml.safe_load(httpx.get(f"{cairn.api_url}/openapi.yaml", timeout=10, trust_env=False).text)
    results = []
    # The pod's operations with the pod's token; the trigger operations with an application's.
    for operations, bearer in (
        (r"^/v1/(run|steps|state|result|waits|tokens|children)", token),
        (r"^/v1/namespaces", app_token),
    ):
        spec_file = tmp_path / "openapi.yaml"
        spec_file.write_text(yaml.safe_dump(spec))
        cmd = [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            str(spec_file),
            "--url",
            cairn.api_url,
            "--checks",
            "not_a_server_error",
            "--include-path-regex",
            operations,
            "-H",
            f"Authorization: Bearer {bearer}",
            "--max-examples",
            "40",
            "--generation-deterministic",
            "--request-timeout",
            "30",
            "--no-color",
        ]
        results.append(subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False))
    for res in results:
        report = res.stdout[-4000:] + res.stderr[-2000:]
        print(report)
        assert res.returncode == 0, report
        assert "passed" in res.stdout.lower()
