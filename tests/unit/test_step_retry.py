"""Step retries inside the pod (the SDK, run locally): a failing function is tried again with backoff,
the last failure ends the attempt, Fatal is never retried, and a retried step says how many tries it
took when it is recorded."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from cairn.sdk import Context, Fatal, StepRetry
from cairn.sdk.client import Encoded

FAST = StepRetry(max_attempts=3, initial_delay=0.0)


class Recorder:
    """A stand-in for the checkpoint API's client: what the SDK sends."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    def call(self, method: str, path: str, body: Any = None) -> Any:
        body = json.loads(body) if isinstance(body, Encoded) else body  # sent as encoded JSON
        self.calls.append((method, path, body))
        if path == "/v1/steps/start":
            return {"recorded": False}
        return {"key": body["key"], "recorded": True, "first": True, "result": body.get("result")}


def _ctx(api: Recorder | None = None) -> Context:
    return Context(run={"name": "r", "uid": "u"}, attempt=1, payload=None, steps=[], state=None, api=api)  # type: ignore[arg-type]


def flaky(failures: int) -> Any:
    tries = {"n": 0}

    def fn() -> int:
        tries["n"] += 1
        if tries["n"] <= failures:
            raise ConnectionError(f"try {tries['n']} failed")
        return tries["n"]

    return fn


def test_a_flaky_step_is_tried_again_and_records_how_many_tries_it_took() -> None:
    api = Recorder()
    assert _ctx(api).step("fetch", flaky(2), retry=FAST) == 3
    recorded = [body for _, path, body in api.calls if path == "/v1/steps"]
    assert recorded == [{"key": "fetch#0", "result": 3, "startedAt": recorded[0]["startedAt"], "tries": 3}]


def test_the_last_failure_ends_the_attempt_and_without_retry_the_first_does() -> None:
    with pytest.raises(ConnectionError, match="try 3 failed"):
        _ctx().step("fetch", flaky(5), retry=FAST)
    with pytest.raises(ConnectionError, match="try 1 failed"):
        _ctx().step("fetch", flaky(1))


def test_fatal_and_errors_outside_retry_on_are_never_retried() -> None:
    def fatal() -> None:
        raise Fatal("bad input")

    with pytest.raises(Fatal):
        _ctx().step("check", fatal, retry=FAST)
    only_timeouts = StepRetry(max_attempts=3, initial_delay=0.0, retry_on=(TimeoutError,))
    with pytest.raises(ConnectionError, match="try 1 failed"):
        _ctx().step("fetch", flaky(1), retry=only_timeouts)


def test_async_steps_retry_the_same_way() -> None:
    calls = {"n": 0}

    async def fn() -> str:
        calls["n"] += 1
        if calls["n"] < 2:
            raise ConnectionError("once")
        return "ok"

    async def main() -> str:
        return await _ctx().astep("fetch", fn, retry=FAST)

    assert asyncio.run(main()) == "ok"
    assert calls["n"] == 2


def test_the_backoff_grows_by_its_factor_up_to_its_cap_and_bad_policies_are_refused() -> None:
    policy = StepRetry(max_attempts=10, initial_delay=1.0, factor=2.0, max_delay=5.0)
    assert [policy.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    with pytest.raises(ValueError, match="max_attempts"):
        StepRetry(max_attempts=0)
    with pytest.raises(ValueError, match="factor"):
        StepRetry(factor=0.5)
