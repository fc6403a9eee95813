"""Pacing API clients (the server's Pace) and the SDK's patience with a 429."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from cairn.sdk.client import Endpoint, SyncApi
from cairn.server.guard import Pace


def test_a_client_gets_its_burst_then_is_told_when_to_come_back() -> None:
    async def go() -> tuple[list[float | None], float | None]:
        pace = Pace(rate=2, burst=4)
        mine = [await pace.admit("a") for _ in range(6)]
        return mine, await pace.admit("b")

    mine, other = asyncio.run(go())
    assert mine[:4] == [None] * 4
    assert all(w is not None and 0 < w <= 2.0 for w in mine[4:]), mine
    assert other is None  # another client has its own allowance


def test_a_rate_of_zero_paces_nobody() -> None:
    async def go() -> list[float | None]:
        pace = Pace(rate=0, burst=1)
        return [await pace.admit("a") for _ in range(1000)]

    assert set(asyncio.run(go())) == {None}


def test_the_sdk_waits_as_long_as_retry_after_says_then_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "2"}, json={"error": "TooManyRequests", "message": "slow"}),
            httpx.Response(200, json={"ok": True}),
        ]
    )
    slept: list[float] = []
    api = SyncApi(Endpoint(url="http://api", token_file=str(token), retry_seconds=30))
    api.http = httpx.Client(base_url="http://api", transport=httpx.MockTransport(lambda _: next(answers)))
    monkeypatch.setattr("cairn.sdk.client.time.sleep", slept.append)
    assert api.call("GET", "/v1/run") == {"ok": True}
    assert len(slept) == 1 and slept[0] >= 2.0, slept
