"""Leader election: one leader at a time, a standby takes over only after the lease ran out, and a
leader that cannot renew stops before that (domain.leader's rules, driven by controller.leader
against an in-memory Lease with optimistic concurrency, on a fake clock)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.controller.leader import Elector
from cairn.domain.leader import Move, Record, Timing, must_stop, next_move
from cairn.k8s.lease import Lost

T = Timing(lease_duration=10, renew_deadline=7, retry_period=2)


def test_timing_that_would_let_two_lead_is_refused() -> None:
    with pytest.raises(ValueError, match="renew deadline < lease duration"):
        Timing(lease_duration=5, renew_deadline=7, retry_period=2)


def test_a_lease_of_another_is_taken_only_after_its_duration_with_no_change_seen() -> None:
    other = Record("b", "v1")
    assert next_move("a", None, 0, 0, T) is Move.CREATE
    assert next_move("a", Record("a", "v1"), 0, 100, T) is Move.RENEW
    assert next_move("a", other, observed_at=0, now=9.9, timing=T) is Move.WAIT
    assert next_move("a", other, observed_at=0, now=10, timing=T) is Move.TAKE
    assert next_move("a", Record(None, "v2"), observed_at=5, now=5, timing=T) is Move.TAKE  # released


@given(last=st.floats(0, 1000), gap=st.floats(0, 100))
def test_a_leader_has_stopped_before_a_standby_may_take_over(last: float, gap: float) -> None:
    # The standby saw the last renewal at `last` at the earliest; the leader renewed at `last`.
    standby_takes = next_move("b", Record("a", "v"), observed_at=last, now=last + gap, timing=T) is Move.TAKE
    if standby_takes:
        assert must_stop(last, last + gap, T)


@dataclass
class FakeLease:
    """The API server's Lease: a write based on an old version is refused (409 -> Lost)."""

    namespace: str = "ns"
    name: str = "cairn-operator"
    holder: str | None = None
    version: int = 0
    exists: bool = False
    reachable: bool = True
    reads: dict[str, int] = field(default_factory=dict)
    _read_version: dict[str, int] = field(default_factory=dict)
    _who: str = ""

    def as_seen_by(self, me: str) -> FakeLease:
        self._who = me
        return self

    async def read(self) -> Record | None:
        if not self.reachable:
            raise ConnectionError("the API server is unreachable")
        self._read_version[self._who] = self.version
        return Record(self.holder, str(self.version)) if self.exists else None

    async def create(self, me: str) -> None:
        if self.exists:
            raise Lost("exists")
        self.exists, self.holder, self.version = True, me, self.version + 1

    async def write(self, me: str, *, take: bool) -> None:
        if not self.reachable:
            raise ConnectionError("the API server is unreachable")
        if self._read_version.get(self._who) != self.version:
            raise Lost("conflict")
        self.holder, self.version = me, self.version + 1

    async def release(self, me: str) -> None:
        if self.holder == me:
            self.holder, self.version = None, self.version + 1


class View:
    """One elector's handle on the shared lease (the fake tracks who read which version)."""

    def __init__(self, lease: FakeLease, me: str) -> None:
        self.lease, self.me = lease, me
        self.namespace, self.name = lease.namespace, lease.name

    async def read(self) -> Record | None:
        return await self.lease.as_seen_by(self.me).read()

    async def create(self, me: str) -> None:
        await self.lease.as_seen_by(self.me).create(me)

    async def write(self, me: str, *, take: bool) -> None:
        await self.lease.as_seen_by(self.me).write(me, take=take)

    async def release(self, me: str) -> None:
        await self.lease.release(me)


def test_of_two_operators_one_leads_and_the_other_takes_over_only_after_the_leader_stopped() -> None:
    lease = FakeLease()
    now = [0.0]
    a = Elector(View(lease, "a"), "a", T, clock=lambda: now[0])
    b = Elector(View(lease, "b"), "b", T, clock=lambda: now[0])
    stopped: list[str] = []

    async def scenario() -> None:
        assert await a._try() is True and lease.holder == "a"
        assert await b._try() is False  # a leads: b waits
        # a renews every retry period while b keeps looking: b never takes over.
        for _ in range(10):
            now[0] += T.retry_period
            assert await a._try() is True
            assert await b._try() is False
        # a is cut off from the API server: it cannot renew, and stops at its renew deadline.
        lease.reachable = False
        last = a.last_renewed
        while not stopped:
            now[0] += 0.5
            try:
                await a._try()
            except ConnectionError:
                if a.last_renewed == last and now[0] - last >= T.renew_deadline:
                    stopped.append(f"a stopped at {now[0] - last}")
        lease.reachable = True
        # b, which last saw a change at `last`, takes over only once lease_duration has passed.
        while not await b._try():
            now[0] += 0.5
        assert lease.holder == "b"
        assert now[0] - last >= T.lease_duration

    asyncio.run(scenario())
    assert stopped


def test_a_leader_that_sees_another_holder_stops_at_once() -> None:
    lease = FakeLease(exists=True, holder="b", version=5)
    now = [0.0]
    a = Elector(View(lease, "a"), "a", T, clock=lambda: now[0])
    a.last_renewed = 0.0
    reasons: list[str] = []

    async def keep() -> None:
        task = asyncio.create_task(a.keep(reasons.append))
        await asyncio.wait_for(task, timeout=T.retry_period + 2)

    asyncio.run(keep())
    assert reasons and "now held by b" in reasons[0]


@settings(max_examples=50, deadline=None)
@given(steps=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.floats(0, 3)), min_size=1, max_size=60))
def test_the_lease_never_has_two_holders_believing_they_lead(steps: list[tuple[str, float]]) -> None:
    lease = FakeLease()
    now = [0.0]
    electors = {m: Elector(View(lease, m), m, T, clock=lambda: now[0]) for m in "abc"}
    leading: dict[str, bool] = dict.fromkeys("abc", False)

    async def go() -> None:
        for who, dt in steps:
            now[0] += dt
            e = electors[who]
            leading[who] = await e._try()
            # Whoever believes it leads and has renewed within its deadline holds the lease.
            believers = [m for m, on in leading.items() if on and not must_stop(electors[m].last_renewed, now[0], T)]
            assert len(believers) <= 1 or all(lease.holder == m for m in believers), (believers, lease.holder)

    asyncio.run(go())
