"""The operator's client budget: pods first, status writes in what is left but never starved."""

from __future__ import annotations

import asyncio

from cairn.k8s.client import RateLimiter


async def _race(limiter: RateLimiter, urgent: int, background: int) -> list[str]:
    order: list[str] = []

    async def take(kind: str) -> None:
        await limiter.acquire(background=kind == "background")
        order.append(kind)

    await asyncio.gather(*(take("background") for _ in range(background)), *(take("urgent") for _ in range(urgent)))
    return order


def test_urgent_requests_go_before_background_ones_that_waited_as_long() -> None:
    # The background acquirers are started first: they still yield to the urgent ones.
    limiter = RateLimiter(qps=400, burst=1, background_share=0.1)
    order = asyncio.run(_race(limiter, urgent=40, background=40))
    assert sorted(order) == ["background"] * 40 + ["urgent"] * 40  # every request served
    first = order[:40]
    # 40 grants at 400/s take 0.1 s, in which a 10 % share is 4 background grants (1 more at the start).
    assert first.count("background") <= 8, first
    assert first.count("urgent") >= 32, first


def test_background_requests_get_their_share_while_urgent_ones_keep_coming() -> None:
    limiter = RateLimiter(qps=400, burst=1, background_share=0.25)
    order = asyncio.run(_race(limiter, urgent=120, background=60))
    # While urgent requests wait (the first 120 grants), background ones are not starved: ~25 % of them.
    during = order[:120].count("background")
    assert 10 <= during <= 45, (during, order[:120])


def test_background_requests_alone_are_not_held_to_their_share() -> None:
    # At 0.001/s a 10 % share is one request per 10,000 s: were the share a cap, the burst's last
    # four would hang (and wait_for fail); with no urgent request waiting they all go at once.
    limiter = RateLimiter(qps=0.001, burst=5, background_share=0.1)
    order = asyncio.run(asyncio.wait_for(_race(limiter, urgent=0, background=5), timeout=10))
    assert order == ["background"] * 5


def test_a_limiter_without_a_budget_never_waits() -> None:
    limiter = RateLimiter(qps=0, burst=0)
    order = asyncio.run(_race(limiter, urgent=3, background=3))
    assert len(order) == 6
