"""Admission decided on a snapshot of one queue: order, limits never exceeded, no head-of-line blocking."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from cairn.domain.admission import Candidate, Decision, Limits, Usage, WaitReason, decide, explain, next_due, order
from tests.unit.builders import T0


def cand(
    uid: str,
    *,
    priority: int = 0,
    age: int = 0,
    key: str | None = None,
    not_before: datetime | None = None,
    started: bool = False,
) -> Candidate:
    """A candidate created `age` seconds before T0."""
    return Candidate(
        uid=uid,
        priority=priority,
        created=T0 - timedelta(seconds=age),
        key=key,
        not_before=not_before,
        started=started,
    )


# -- order -----------------------------------------------------------------------------------------
def test_order_is_higher_priority_first_then_oldest_then_uid() -> None:
    cs = [
        cand("low-old", priority=-5, age=100),
        cand("b-mid", priority=0, age=10),
        cand("a-mid", priority=0, age=10),
        cand("high-new", priority=10, age=1),
        cand("mid-old", priority=0, age=50),
    ]
    assert [c.uid for c in order(cs)] == ["high-new", "mid-old", "a-mid", "b-mid", "low-old"]


def test_admission_follows_the_order() -> None:
    cs = [cand("young", age=1), cand("old", age=9), cand("urgent", priority=100, age=0)]
    d = decide(Limits(2), Usage(), cs, T0)
    assert d.admitted == ["urgent", "old"]
    assert d.waiting == {"young": WaitReason.QUEUE_FULL}


# -- decide ----------------------------------------------------------------------------------------
def test_decide_admits_as_many_as_there_are_free_slots_at_once() -> None:
    cs = [cand(f"r{i}", age=100 - i) for i in range(10)]
    d = decide(Limits(concurrency_limit=10), Usage(total=4), cs, T0)
    assert d.admitted == ["r0", "r1", "r2", "r3", "r4", "r5"]
    assert d.waiting == {f"r{i}": WaitReason.QUEUE_FULL for i in range(6, 10)}


def test_decide_admits_everything_when_there_is_room() -> None:
    d = decide(Limits(concurrency_limit=100), Usage(), [cand("a"), cand("b", age=1)], T0)
    assert d == Decision(["b", "a"], {})


def test_decide_full_key_does_not_block_the_runs_of_other_keys_behind_it() -> None:
    cs = [
        cand("acme-1", key="acme", age=50),
        cand("acme-2", key="acme", age=40),
        cand("globex-1", key="globex", age=30),
        cand("nokey", age=20),
    ]
    d = decide(Limits(concurrency_limit=10, per_key_limit=1), Usage(total=1, by_key={"acme": 1}), cs, T0)
    assert d.admitted == ["globex-1", "nokey"]
    assert d.waiting == {"acme-1": WaitReason.KEY_FULL, "acme-2": WaitReason.KEY_FULL}


def test_decide_counts_runs_admitted_in_the_same_round_against_their_key() -> None:
    cs = [cand("a1", key="a", age=3), cand("a2", key="a", age=2), cand("a3", key="a", age=1)]
    d = decide(Limits(concurrency_limit=10, per_key_limit=2), Usage(), cs, T0)
    assert d.admitted == ["a1", "a2"]
    assert d.waiting == {"a3": WaitReason.KEY_FULL}


def test_decide_runs_without_a_key_ignore_the_per_key_limit() -> None:
    cs = [cand(f"r{i}", age=10 - i) for i in range(3)]
    d = decide(Limits(concurrency_limit=5, per_key_limit=1), Usage(total=1, by_key={"x": 1}), cs, T0)
    assert d.admitted == ["r0", "r1", "r2"]


def test_decide_paused_queue_admits_nothing_and_says_paused() -> None:
    cs = [cand("a"), cand("b", key="k")]
    d = decide(Limits(concurrency_limit=10, paused=True), Usage(), cs, T0)
    assert d == Decision([], {"a": WaitReason.QUEUE_PAUSED, "b": WaitReason.QUEUE_PAUSED})


def test_decide_missing_queue_admits_nothing_and_says_missing() -> None:
    d = decide(None, Usage(), [cand("a"), cand("b")], T0)
    assert d == Decision([], {"a": WaitReason.QUEUE_MISSING, "b": WaitReason.QUEUE_MISSING})


def test_decide_run_backing_off_waits_until_not_before_and_others_pass_it() -> None:
    cs = [cand("retry", age=100, not_before=T0 + timedelta(seconds=5), started=True), cand("fresh", age=1)]
    d = decide(Limits(1), Usage(), cs, T0)
    assert d.admitted == ["fresh"]
    assert d.waiting == {"retry": WaitReason.BACKING_OFF}


def test_a_run_for_later_waits_as_delayed_until_its_time_and_holds_nothing() -> None:
    later = cand("later", age=100, not_before=T0 + timedelta(minutes=10))
    d = decide(Limits(2), Usage(), [later, cand("now", age=1)], T0)
    assert d == Decision(["now"], {"later": WaitReason.DELAYED})
    assert next_due([later], T0) == T0 + timedelta(minutes=10)
    assert decide(Limits(2), Usage(), [later], T0 + timedelta(minutes=10)).admitted == ["later"]


@given(
    delays=st.lists(st.integers(-60, 60), min_size=1, max_size=20),
    now=st.integers(-60, 60),
    limit=st.integers(1, 5),
)
def test_no_run_is_ever_admitted_before_its_not_before(delays: list[int], now: int, limit: int) -> None:
    runs = [cand(f"r{i}", age=i, not_before=T0 + timedelta(seconds=d)) for i, d in enumerate(delays)]
    at = T0 + timedelta(seconds=now)
    d = decide(Limits(limit), Usage(), runs, at)
    by_uid = {c.uid: c for c in runs}
    assert all(by_uid[u].not_before is None or by_uid[u].not_before <= at for u in d.admitted)  # type: ignore[operator]
    due = [c for c in runs if c.not_before is not None and c.not_before <= at]
    assert len(d.admitted) == min(limit, len(due))  # and every one that is due and fits is admitted


def test_decide_run_whose_backoff_ends_now_is_admitted() -> None:
    d = decide(
        Limits(1), Usage(), [cand("retry", not_before=T0), cand("past", age=5, not_before=T0 - timedelta(1))], T0
    )
    assert d.admitted == ["past"]
    assert d.waiting == {"retry": WaitReason.QUEUE_FULL}


def test_decide_after_lowering_the_limit_below_usage_admits_nothing() -> None:
    cs = [cand("a"), cand("b", priority=1000)]
    d = decide(Limits(concurrency_limit=2), Usage(total=5), cs, T0)
    assert d == Decision([], {"b": WaitReason.QUEUE_FULL, "a": WaitReason.QUEUE_FULL})


def test_decide_full_queue_reports_queue_full_before_key_full() -> None:
    d = decide(Limits(1, per_key_limit=1), Usage(total=1, by_key={"k": 1}), [cand("a", key="k")], T0)
    assert d.waiting == {"a": WaitReason.QUEUE_FULL}


def test_decide_of_an_empty_queue_is_empty() -> None:
    assert decide(Limits(3), Usage(), [], T0) == Decision([], {})


def test_next_due_is_the_earliest_future_not_before() -> None:
    cs = [
        cand("a", not_before=T0 + timedelta(seconds=30)),
        cand("b", not_before=T0 + timedelta(seconds=10)),
        cand("c", not_before=T0 - timedelta(seconds=10)),
        cand("d"),
    ]
    assert next_due(cs, T0) == T0 + timedelta(seconds=10)


def test_next_due_without_backing_off_candidates_is_none() -> None:
    assert next_due([cand("a"), cand("b", not_before=T0)], T0) is None


def test_explain_says_why_a_run_waits() -> None:
    limits = Limits(concurrency_limit=4, per_key_limit=2)
    assert explain(WaitReason.QUEUE_FULL, "gpu", limits, None) == 'Queue "gpu" is full: all 4 slots are in use'
    assert (
        explain(WaitReason.KEY_FULL, "gpu", limits, "acme")
        == 'concurrency key "acme" already has 2 runs holding slots in queue "gpu"'
    )
    assert explain(WaitReason.QUEUE_PAUSED, "gpu", limits, None) == (
        'Queue "gpu" is paused (spec.paused): the run is admitted when it is resumed'
    )
    assert explain(WaitReason.QUEUE_MISSING, "gpu", None, None).startswith(
        'Queue "gpu" does not exist in this namespace'
    )
    assert explain(WaitReason.BACKING_OFF, "gpu", limits, None) == "waiting out the delay before the next attempt"


# -- properties ------------------------------------------------------------------------------------
NAMED_KEYS = ["acme", "globex", "initech"]
KEYS: list[str | None] = [None, *NAMED_KEYS]


@st.composite
def snapshots(draw: st.DrawFn) -> tuple[Limits, Usage, list[Candidate]]:
    limit = draw(st.integers(min_value=1, max_value=8))
    per_key = draw(st.one_of(st.none(), st.integers(min_value=1, max_value=limit)))
    by_key = {k: draw(st.integers(min_value=0, max_value=4)) for k in NAMED_KEYS}
    total = sum(by_key.values()) + draw(st.integers(min_value=0, max_value=4))  # runs without a key hold slots too
    n = draw(st.integers(min_value=0, max_value=20))
    candidates = [
        Candidate(
            uid=f"run-{i:02d}",
            priority=draw(st.integers(min_value=-2, max_value=2)),
            created=T0 - timedelta(seconds=draw(st.integers(min_value=0, max_value=5))),
            key=draw(st.sampled_from(KEYS)),
            not_before=draw(
                st.one_of(st.none(), st.integers(min_value=-3, max_value=3).map(lambda s: T0 + timedelta(seconds=s)))
            ),
        )
        for i in range(n)
    ]
    paused = draw(st.integers(0, 4)) == 0  # one snapshot in five is of a paused queue
    return Limits(limit, per_key, paused), Usage(total, by_key), candidates


def _admissible(c: Candidate, limits: Limits, total: int, by_key: Counter[str | None], now: datetime) -> bool:
    due = c.not_before is None or c.not_before <= now
    key_ok = limits.per_key_limit is None or c.key is None or by_key[c.key] < limits.per_key_limit
    return due and total < limits.concurrency_limit and key_ok and not limits.paused


@settings(max_examples=200, deadline=None)
@given(snapshots())
def test_decide_never_exceeds_the_concurrency_limit_or_a_key_limit(snap: tuple[Limits, Usage, list[Candidate]]) -> None:
    limits, usage, candidates = snap
    d = decide(limits, usage, candidates, T0)
    by_uid = {c.uid: c for c in candidates}
    if usage.total >= limits.concurrency_limit:
        assert d.admitted == []
    else:
        assert usage.total + len(d.admitted) <= limits.concurrency_limit
    if limits.per_key_limit is not None:
        added = Counter(by_uid[u].key for u in d.admitted if by_uid[u].key is not None)
        for key, n in added.items():
            assert key is not None
            assert usage.by_key.get(key, 0) + n <= max(limits.per_key_limit, usage.by_key.get(key, 0))
            assert usage.by_key.get(key, 0) < limits.per_key_limit


@settings(max_examples=200, deadline=None)
@given(snapshots())
def test_decide_accounts_for_every_candidate_exactly_once(snap: tuple[Limits, Usage, list[Candidate]]) -> None:
    limits, usage, candidates = snap
    d = decide(limits, usage, candidates, T0)
    assert len(d.admitted) == len(set(d.admitted))
    assert set(d.admitted).isdisjoint(d.waiting)
    assert set(d.admitted) | set(d.waiting) == {c.uid for c in candidates}
    if limits.paused:
        assert d.admitted == []
        assert set(d.waiting.values()) <= {WaitReason.QUEUE_PAUSED}


@settings(max_examples=200, deadline=None)
@given(snapshots())
def test_decide_leaves_no_admissible_run_behind(snap: tuple[Limits, Usage, list[Candidate]]) -> None:
    limits, usage, candidates = snap
    d = decide(limits, usage, candidates, T0)
    by_uid = {c.uid: c for c in candidates}
    total = usage.total + len(d.admitted)
    by_key: Counter[str | None] = Counter(usage.by_key)
    by_key.update(by_uid[u].key for u in d.admitted)
    full = total >= limits.concurrency_limit or limits.paused
    for uid in d.waiting:
        assert full or not _admissible(by_uid[uid], limits, total, by_key, T0), uid


@settings(max_examples=200, deadline=None)
@given(snapshots())
def test_decide_admits_no_run_behind_one_that_waits_for_a_full_queue(
    snap: tuple[Limits, Usage, list[Candidate]],
) -> None:
    limits, usage, candidates = snap
    d = decide(limits, usage, candidates, T0)
    position = {c.uid: i for i, c in enumerate(order(candidates))}
    first_full = min((position[u] for u, r in d.waiting.items() if r is WaitReason.QUEUE_FULL), default=None)
    if first_full is not None:
        assert all(position[u] < first_full for u in d.admitted)


@settings(max_examples=200, deadline=None)
@given(snapshots())
def test_decide_gives_the_right_reason_to_each_waiting_run(snap: tuple[Limits, Usage, list[Candidate]]) -> None:
    limits, usage, candidates = snap
    d = decide(limits, usage, candidates, T0)
    by_uid = {c.uid: c for c in candidates}
    for uid, reason in d.waiting.items():
        c = by_uid[uid]
        if reason is WaitReason.BACKING_OFF:
            assert c.not_before is not None and c.not_before > T0
        elif reason is WaitReason.KEY_FULL:
            assert limits.per_key_limit is not None and c.key is not None
        elif reason is WaitReason.QUEUE_FULL:
            assert c.not_before is None or c.not_before <= T0


@settings(max_examples=100, deadline=None)
@given(snapshots(), st.randoms(use_true_random=False))
def test_decide_does_not_depend_on_the_order_candidates_are_listed(
    snap: tuple[Limits, Usage, list[Candidate]], rnd: object
) -> None:
    import random

    assert isinstance(rnd, random.Random)
    limits, usage, candidates = snap
    shuffled = list(candidates)
    rnd.shuffle(shuffled)
    assert decide(limits, usage, shuffled, T0) == decide(limits, usage, candidates, T0)


# -- a queue over time -----------------------------------------------------------------------------
class QueueModel(RuleBasedStateMachine):
    """A model of one queue in the store: runs arrive, are admitted in rounds, finish, retry after a
    backoff, are cancelled or deleted; the queue's limits change, it is paused and resumed, and the
    operator restarts (its view of usage rebuilt from the runs that hold a slot)."""

    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.limits: Limits | None = Limits(3, None)
        self.queued: dict[str, Candidate] = {}
        self.held: dict[str, str | None] = {}  # uid -> key
        self.total = 0  # the usage counters, kept incrementally as the store's queue row does
        self.by_key: Counter[str] = Counter()
        self.serial = 0
        self.rounds = 0

    @initialize(limit=st.integers(min_value=1, max_value=5), per_key=st.sampled_from([None, 1, 1, 2, 3]))
    def start(self, limit: int, per_key: int | None) -> None:
        self.limits = Limits(limit, per_key if per_key is None else min(per_key, limit))

    # -- arrivals and departures
    @rule(runs=st.lists(st.tuples(st.integers(-1, 1), st.sampled_from(KEYS)), min_size=1, max_size=6))
    def arrive(self, runs: list[tuple[int, str | None]]) -> None:
        for priority, key in runs:
            self.serial += 1
            uid = f"run-{self.serial:03d}"
            self.queued[uid] = Candidate(uid, priority, self.now, key)

    def _release(self, uid: str) -> None:
        key = self.held.pop(uid)
        self.total -= 1
        if key is not None:
            self.by_key[key] -= 1

    @precondition(lambda self: bool(self.held))
    @rule(pick=st.integers(min_value=0))
    def complete(self, pick: int) -> None:
        self._release(sorted(self.held)[pick % len(self.held)])

    @precondition(lambda self: bool(self.held))
    @rule(pick=st.integers(min_value=0), delay=st.integers(min_value=0, max_value=20))
    def fail_and_retry_after_backoff(self, pick: int, delay: int) -> None:
        uid = sorted(self.held)[pick % len(self.held)]
        key = self.held[uid]
        self._release(uid)
        self.queued[uid] = Candidate(uid, 0, self.now - timedelta(hours=1), key, self.now + timedelta(seconds=delay))

    @precondition(lambda self: bool(self.queued))
    @rule(pick=st.integers(min_value=0))
    def cancel_queued(self, pick: int) -> None:
        del self.queued[sorted(self.queued)[pick % len(self.queued)]]

    @precondition(lambda self: bool(self.held))
    @rule(pick=st.integers(min_value=0))
    def delete_running(self, pick: int) -> None:
        self._release(sorted(self.held)[pick % len(self.held)])

    # -- the queue
    @rule(limit=st.integers(min_value=1, max_value=6), per_key=st.sampled_from([None, 1, 2, 2, 4]))
    def change_limits(self, limit: int, per_key: int | None) -> None:
        paused = self.limits.paused if self.limits else False
        self.limits = Limits(limit, per_key if per_key is None else min(per_key, limit), paused)

    @precondition(lambda self: self.limits is not None)
    @rule(paused=st.booleans())
    def pause_or_resume(self, paused: bool) -> None:
        assert self.limits is not None
        self.limits = Limits(self.limits.concurrency_limit, self.limits.per_key_limit, paused)

    @precondition(lambda self: self.limits is not None)
    @rule()
    def delete_queue(self) -> None:
        self.limits = None

    @precondition(lambda self: self.limits is None)
    @rule(limit=st.integers(min_value=1, max_value=6))
    def recreate_queue(self, limit: int) -> None:
        self.limits = Limits(limit)

    @rule(seconds=st.integers(min_value=1, max_value=15))
    def time_passes(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule()
    def restart(self) -> None:
        rebuilt = Counter(k for k in self.held.values() if k is not None)
        assert (len(self.held), +rebuilt) == (self.total, +self.by_key)
        self.total, self.by_key = len(self.held), rebuilt

    # -- an admission round
    @rule()
    def admission_round(self) -> None:
        self.rounds += 1
        usage = Usage(self.total, dict(self.by_key))
        held_before = self.total
        d = decide(self.limits, usage, list(self.queued.values()), self.now)
        assert set(d.admitted) <= set(self.queued)
        assert set(d.admitted) | set(d.waiting) == set(self.queued)

        limits = self.limits
        if limits is None or limits.paused:
            assert d.admitted == []
        elif held_before >= limits.concurrency_limit:
            assert d.admitted == [], "admission added a slot while the queue was at or over its limit"
        else:
            assert held_before + len(d.admitted) <= limits.concurrency_limit

        for uid in d.admitted:
            c = self.queued.pop(uid)
            if limits is not None and limits.per_key_limit is not None and c.key is not None:
                assert self.by_key[c.key] < limits.per_key_limit
            self.held[uid] = c.key
            self.total += 1
            if c.key is not None:
                self.by_key[c.key] += 1

        # Liveness: every run still queued has a reason that holds now.
        if limits is not None and not limits.paused:
            for c in self.queued.values():
                due = c.not_before is None or c.not_before <= self.now
                key_full = (
                    limits.per_key_limit is not None
                    and c.key is not None
                    and self.by_key[c.key] >= limits.per_key_limit
                )
                assert not due or self.total >= limits.concurrency_limit or key_full, c

    @invariant()
    def usage_matches_the_runs_holding_slots(self) -> None:
        assert self.total == len(self.held)
        assert +self.by_key == +Counter(k for k in self.held.values() if k is not None)
        assert set(self.held).isdisjoint(self.queued)


QueueModel.TestCase.settings = settings(max_examples=150, stateful_step_count=50, deadline=None)
test_queue_over_time_never_overspends_and_never_leaves_an_admissible_run_waiting = QueueModel.TestCase
