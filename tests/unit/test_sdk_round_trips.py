"""A new step costs one round trip to the checkpoint API when the API has just confirmed the attempt
(writes are fenced to the current attempt, so the start check would add nothing), and two when the
last answer is older: then POST /v1/steps/start first learns whether the pod was superseded."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from cairn.sdk import context as sdk_context
from cairn.sdk.client import Encoded
from cairn.sdk.context import Context


class Recorder:
    def __init__(self) -> None:
        self.paths: list[str] = []

    def call(self, method: str, path: str, body: Any = None) -> Any:
        body = json.loads(body) if isinstance(body, Encoded) else body  # sent as encoded JSON
        self.paths.append(path)
        if path == "/v1/steps/start":
            return {"recorded": False}
        return {"key": body["key"], "recorded": True, "first": True, "result": body.get("result")}


class AsyncRecorder:
    def __init__(self) -> None:
        self.sync = Recorder()
        self.paths = self.sync.paths

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        return self.sync.call(method, path, body)

    async def close(self) -> None:
        pass


def _ctx(api: Any, aapi: Any = None) -> Context:
    return Context(
        run={"name": "r", "uid": "u"}, attempt=1, payload=None, steps=[], state=None, api=api,
        aapi_factory=(lambda: aapi) if aapi is not None else None,
    )  # fmt: skip


def test_steps_right_after_an_answer_go_straight_to_their_record() -> None:
    api = Recorder()
    ctx = _ctx(api)
    assert [ctx.step("s", lambda i=i: i) for i in range(3)] == [0, 1, 2]
    assert api.paths == ["/v1/steps", "/v1/steps", "/v1/steps"]


def test_after_a_quiet_while_a_step_asks_first_whether_the_attempt_is_still_current(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sdk_context, "START_CHECK_SECONDS", 0.0)
    api = Recorder()
    ctx = _ctx(api)
    ctx.step("s", lambda: 1)
    ctx.step("s", lambda: 2)
    assert api.paths == ["/v1/steps/start", "/v1/steps", "/v1/steps/start", "/v1/steps"]


def test_async_steps_started_together_also_skip_the_check_when_it_adds_nothing() -> None:
    aapi = BatchRecorder()
    ctx = _ctx(Recorder(), aapi)

    async def main() -> list[int]:
        async def value(i: int) -> int:
            return i

        out = await asyncio.gather(*(ctx.astep("s", value, i) for i in range(4)))
        await ctx.aclose()
        return list(out)

    assert asyncio.run(main()) == [0, 1, 2, 3]
    assert "/v1/steps/start" not in aapi.paths and aapi.paths, aapi.paths


class BatchRecorder(AsyncRecorder):
    """The async API: what the SDK sends, answering a batch as the API does."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        if path == "/v1/steps/batch":
            self.paths.append(path)
            self.batches.append([s["key"] for s in body["steps"]])
            return {
                "steps": [
                    {"key": s["key"], "recorded": True, "first": True, "result": s["result"]} for s in body["steps"]
                ]
            }
        return await super().call(method, path, body)


def test_async_steps_that_finish_together_are_recorded_in_one_write_in_the_order_they_were_called() -> None:
    aapi = BatchRecorder()
    ctx = _ctx(Recorder(), aapi)

    async def main() -> list[int]:
        async def value(i: int) -> int:
            return i * 10

        out = await asyncio.gather(*(ctx.astep("part", value, i) for i in range(5)))
        alone = await ctx.astep("after", value, 7)
        await ctx.aclose()
        return [*out, alone]

    assert asyncio.run(main()) == [0, 10, 20, 30, 40, 70]
    assert aapi.paths == ["/v1/steps/batch", "/v1/steps"]
    assert aapi.batches == [["part#0", "part#1", "part#2", "part#3", "part#4"]]
    assert ctx.completed_steps == ["part#0", "part#1", "part#2", "part#3", "part#4", "after#0"]


def test_a_write_that_fails_fails_every_step_in_it() -> None:
    class Refusing(BatchRecorder):
        async def call(self, method: str, path: str, body: Any = None) -> Any:
            from cairn.sdk.client import Superseded

            raise Superseded("attempt 2 is current")

    ctx = _ctx(Recorder(), Refusing())

    async def main() -> list[BaseException | int]:
        async def value(i: int) -> int:
            return i

        return list(await asyncio.gather(*(ctx.astep("p", value, i) for i in range(3)), return_exceptions=True))

    outcomes = asyncio.run(main())
    assert [type(o).__name__ for o in outcomes] == ["Superseded"] * 3
