"""The SDK's token: read from the projected file once every few seconds (not once per call), and read
again at once when the API answers 401 (the kubelet rotated it meanwhile)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from cairn.sdk import client as sdk_client
from cairn.sdk.client import ApiRefused, Encoded, Endpoint, SyncApi


def _api(tmp_path: Path, handler: object) -> tuple[SyncApi, Path]:
    token = tmp_path / "token"
    token.write_text("old\n")
    api = SyncApi(Endpoint(url="http://api", token_file=str(token), retry_seconds=5))
    api.http = httpx.Client(base_url="http://api", transport=httpx.MockTransport(handler))  # type: ignore[arg-type]
    return api, token


def test_the_token_file_is_read_once_for_many_calls_then_again_after_a_while(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return httpx.Response(200, json={})

    api, token = _api(tmp_path, handler)
    clock = [1000.0]
    monkeypatch.setattr("cairn.sdk.client.time.monotonic", lambda: clock[0])
    for _ in range(3):
        api.call("GET", "/v1/run")
    token.write_text("new\n")
    api.call("GET", "/v1/run")  # within TOKEN_REREAD_SECONDS: the token read before
    clock[0] += sdk_client.TOKEN_REREAD_SECONDS + 1
    api.call("GET", "/v1/run")
    assert seen == ["Bearer old"] * 4 + ["Bearer new"]


def test_a_401_reads_a_rotated_token_at_once_and_the_call_goes_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    valid = {"Bearer old"}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        if request.headers["Authorization"] not in valid:
            return httpx.Response(401, json={"error": "Unauthorized", "message": "token expired"})
        return httpx.Response(201, json={"recorded": True})

    api, token = _api(tmp_path, handler)
    clock = [1000.0]
    monkeypatch.setattr("cairn.sdk.client.time.monotonic", lambda: clock[0])
    api.call("POST", "/v1/steps", {"key": "s#0"})
    token.write_text("new\n")  # the kubelet rotates the token; the API stops taking the old one
    valid = {"Bearer new"}
    clock[0] += 3
    assert api.call("POST", "/v1/steps", {"key": "s#1"}) == {"recorded": True}
    assert seen == ["Bearer old", "Bearer old", "Bearer new"]


def test_a_401_for_a_token_just_read_is_the_apis_answer(tmp_path: Path) -> None:
    api, _ = _api(tmp_path, lambda _: httpx.Response(401, json={"error": "Unauthorized", "message": "bad"}))
    with pytest.raises(ApiRefused, match="401"):
        api.call("POST", "/v1/steps", {"key": "s#0"})


def test_an_encoded_body_is_sent_as_it_is(tmp_path: Path) -> None:
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return httpx.Response(201, json={})

    api, _ = _api(tmp_path, handler)
    text = '{"key":"s#0","result":{"b":1,"a":2}}'
    api.call("POST", "/v1/steps", Encoded(text))
    api.call("POST", "/v1/steps", {"key": "s#1"})
    assert bodies[0] == text.encode()
    assert json.loads(bodies[1]) == {"key": "s#1"}
