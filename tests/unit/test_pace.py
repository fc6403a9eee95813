"""Queues that pace: a rate is never exceeded in any window of its period (with and without keys, limit
changes, pauses and racing admitters), a key at its rate never blocks another, and each run held back
is told a chance that stays put from round to round."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.domain.admission import Candidate, Limits, Recent, Usage, WaitReason, decide, explain
from cairn.domain.pace import Rate, Window
from tests.unit.builders import T0

S = timedelta(seconds=1)


def cand(uid: str, *, age: int = 0, key: str | None = None) -> Candidate:
    return Candidate(uid=uid, priority=0, created=T0 - timedelta(seconds=age), key=key)


class Admitter:
    """What the store does around decide(): candidates in line, the admission log, rounds at given times."""

    def __init__(self, limits: Limits, candidates: list[Candidate]) -> None:
        self.limits = limits
        self.line = {c.uid: c for c in candidates}
        self.log: list[tuple[datetime, str | None, str]] = []  # (at, key, uid)

    def round(self, now: datetime) -> dict[str, datetime]:
        recent = Recent(
            [t for t, _, _ in self.log],
            {k: [t for t, kk, _ in self.log if kk == k] for k in {k for _, k, _ in self.log if k is not None}},
        )
        d = decide(self.limits, Usage(), list(self.line.values()), now, recent)
        for uid in d.admitted:
            self.log.append((now, self.line.pop(uid).key, uid))
        return d.chances


def most_in_a_window(times: list[datetime], period: timedelta) -> int:
    """The most admissions in any half-open window (t - period, t] (the worst one ends at an admission)."""
    return max((sum(1 for u in times if t - period < u <= t) for t in times), default=0)


# -- examples --------------------------------------------------------------------------------------
def test_ten_per_ten_seconds_admits_ten_then_the_next_ten_when_the_first_are_ten_seconds_old() -> None:
    a = Admitter(Limits(100, rate=Rate(10, 10 * S, 10)), [cand(f"r{i:02d}", age=40 - i) for i in range(40)])
    chances = a.round(T0)
    assert len(a.log) == 10
    assert sorted(set(chances.values())) == [T0 + 10 * S, T0 + 20 * S, T0 + 30 * S]
    assert a.round(T0 + 9 * S) == chances and len(a.log) == 10  # too early: nothing, and nobody's chance moves
    later = a.round(T0 + 10 * S)
    assert len(a.log) == 20
    assert later == {u: t for u, t in chances.items() if u in a.line}  # the rest keep their chances


def test_burst_one_spreads_admissions_evenly() -> None:
    a = Admitter(Limits(100, rate=Rate(10, 10 * S, 1)), [cand(f"r{i}", age=9 - i) for i in range(5)])
    chances = a.round(T0)
    assert len(a.log) == 1
    assert sorted(chances.values()) == [T0 + 1 * S, T0 + 2 * S, T0 + 3 * S, T0 + 4 * S]


def test_a_key_at_its_rate_does_not_block_another_key() -> None:
    runs = [cand(f"a{i}", age=10 - i, key="acme") for i in range(3)] + [cand("g0", age=0, key="globex")]
    a = Admitter(Limits(100, key_rate=Rate(1, 60 * S, 1)), runs)
    a.round(T0)
    assert sorted(uid for _, _, uid in a.log) == ["a0", "g0"]
    d = decide(a.limits, Usage(), list(a.line.values()), T0, Recent([T0, T0], {"acme": [T0], "globex": [T0]}))
    assert d.waiting == {"a1": WaitReason.KEY_RATE_LIMITED, "a2": WaitReason.KEY_RATE_LIMITED}
    assert d.chances == {"a1": T0 + 60 * S, "a2": T0 + 120 * S}


def test_runs_without_a_key_are_not_paced_by_the_per_key_rate() -> None:
    a = Admitter(Limits(100, key_rate=Rate(1, 60 * S, 1)), [cand(f"n{i}") for i in range(5)])
    a.round(T0)
    assert len(a.log) == 5


def test_a_full_queue_is_said_before_its_rate() -> None:
    d = decide(Limits(1, rate=Rate(1, 10 * S, 1)), Usage(total=1), [cand("a")], T0, Recent([T0]))
    assert d.waiting == {"a": WaitReason.QUEUE_FULL} and d.wake is None


def test_lowering_the_limit_counts_the_admissions_already_made() -> None:
    a = Admitter(Limits(100, rate=Rate(10, 10 * S, 10)), [cand(f"r{i:02d}", age=20 - i) for i in range(20)])
    a.round(T0)
    a.limits = Limits(100, rate=Rate(5, 10 * S, 5))
    a.round(T0 + 5 * S)
    assert len(a.log) == 10  # 10 in the last 10 s already: none until 5 of them are older than 10 s
    a.round(T0 + 10 * S)
    assert len(a.log) == 15


def test_the_wake_is_the_first_chance_exactly_and_chances_are_whole_seconds() -> None:
    now = T0 + timedelta(milliseconds=250)
    d = decide(Limits(10, rate=Rate(1, 10 * S, 1)), Usage(), [cand("a"), cand("b", age=-1)], now, Recent([T0]))
    assert d.wake == T0 + 10 * S
    assert d.chances == {"a": T0 + 10 * S, "b": T0 + 20 * S}


def test_explain_names_the_rate_and_the_chance() -> None:
    limits = Limits(10, rate=Rate(10, 10 * S, 10), key_rate=Rate(2, 60 * S, 1))
    assert explain(WaitReason.RATE_LIMITED, "api", limits, None, T0 + 10 * S) == (
        'Queue "api" admits at most 10 per 10s (spec.rateLimit): its chance comes at 2026-03-01T12:00:10.000Z'
    )
    assert explain(WaitReason.KEY_RATE_LIMITED, "api", limits, "acme", None) == (
        'concurrency key "acme" is admitted at most 2 per 1m, burst 1 in queue "api" (spec.perKeyRateLimit)'
    )


def test_window_half_open_an_admission_exactly_a_period_later_is_allowed() -> None:
    w = Window(Rate(2, 10 * S, 2), [T0, T0 + S])
    assert w.next_chance(T0 + 2 * S) == T0 + 10 * S
    assert w.next_chance(T0 + 11 * S) == T0 + 11 * S


# -- properties ------------------------------------------------------------------------------------
rates = st.builds(
    lambda limit, period, burst_frac: Rate(limit, timedelta(seconds=period), max(1, round(limit * burst_frac))),
    st.integers(1, 6),
    st.integers(1, 20),
    st.floats(0, 1),
)


@settings(max_examples=300, deadline=None)
@given(
    rate=st.one_of(st.none(), rates),
    key_rate=st.one_of(st.none(), rates),
    changes=st.lists(st.one_of(st.none(), rates), min_size=0, max_size=2),
    rounds=st.lists(st.tuples(st.integers(0, 4000), st.booleans()), min_size=1, max_size=40),
    keys=st.lists(st.sampled_from([None, "acme", "globex"]), min_size=1, max_size=30),
)
def test_no_window_of_a_period_ever_holds_more_than_the_limit(
    rate: Rate | None,
    key_rate: Rate | None,
    changes: list[Rate | None],
    rounds: list[tuple[int, bool]],
    keys: list[str | None],
) -> None:
    """Rounds at random instants (two admitters racing are rounds in the order the queue's row lock lets
    them), pauses, and the limit changed between rounds: each admission respects the rate in force then."""
    a = Admitter(Limits(1000, rate=rate, key_rate=key_rate), [cand(f"r{i:02d}", key=k) for i, k in enumerate(keys)])
    in_force: list[tuple[datetime, Rate | None, Rate | None]] = []
    now = T0
    for i, (step_ms, paused) in enumerate(rounds):
        now += timedelta(milliseconds=step_ms)
        if changes and i == len(rounds) // 2:
            a.limits = Limits(1000, rate=changes[0], key_rate=changes[-1])
        a.limits = Limits(1000, rate=a.limits.rate, key_rate=a.limits.key_rate, paused=paused)
        before = len(a.log)
        a.round(now)
        in_force += [(now, a.limits.rate, a.limits.key_rate)] * (len(a.log) - before)
    times = [t for t, _, _ in a.log]
    for i, ((t, r, kr), (_, key, _)) in enumerate(zip(in_force, a.log, strict=True)):
        so_far = a.log[: i + 1]  # what had been admitted when this one was: a later, higher limit may add more
        if r is not None:
            assert sum(1 for u, _, _ in so_far if t - r.period < u) <= r.limit
            assert sum(1 for u, _, _ in so_far if t - r.burst_window < u) <= r.burst
        if kr is not None and key is not None:
            assert sum(1 for u, k, _ in so_far if k == key and t - kr.period < u) <= kr.limit
    if rate is not None and not changes:
        assert most_in_a_window(times, rate.period) <= rate.limit


@settings(max_examples=200, deadline=None)
@given(rate=rates, n=st.integers(1, 25))
def test_with_a_backlog_the_pace_is_the_limit_and_every_run_is_admitted_at_its_chance(rate: Rate, n: int) -> None:
    """Rounds run exactly when the store is told to wake: each run goes in at the chance it was told."""
    a = Admitter(Limits(1000, rate=rate), [cand(f"r{i:02d}", age=n - i) for i in range(n)])
    told: dict[str, datetime] = {}
    now: datetime | None = T0
    for _ in range(n + 1):
        if now is None:
            break
        d_chances = a.round(now)
        for uid, at in d_chances.items():
            assert told.setdefault(uid, at) == at  # nobody's chance moves
        recent = Recent([t for t, _, _ in a.log])
        now = decide(a.limits, Usage(), list(a.line.values()), now, recent).wake
    assert not a.line
    times = [t for t, _, _ in a.log]
    assert most_in_a_window(times, rate.period) <= rate.limit
    for t, _, uid in a.log:
        if uid in told:
            assert told[uid] - S < t <= told[uid]  # admitted within the second it was told (shown rounded up)
    if n >= 2 * rate.limit:
        # Full windows: in the first period exactly `limit` went in (the pace is the limit, not less).
        first = Counter(t < T0 + rate.period for t in times)
        assert first[True] == rate.limit
