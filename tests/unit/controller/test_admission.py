"""The admission reconciler, against in-memory fakes: what a round hands on."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from cairn.controller.admission import AdmissionReconciler
from cairn.controller.deps import ADMISSION, QUEUE_STATUS, TASKRUNS
from cairn.store.base import RoundResult
from tests.unit.builders import NAMESPACE, T0
from tests.unit.controller.fakes import world

KEY = (NAMESPACE, "default")


@pytest.mark.parametrize(
    ("result", "runs", "next_round"),
    [
        (RoundResult(), [], None),
        (RoundResult(admitted=["a", "b"]), ["a", "b"], None),
        (RoundResult(admitted=["a"], reason_changed=["c"]), ["a", "c"], None),
        (RoundResult(reason_changed=["c"], next_due=T0 + timedelta(seconds=10)), ["c"], 10.003),
    ],
)
def test_a_round_reconciles_the_runs_it_admitted_or_whose_wait_changed_and_asks_for_the_next_round_when_due(
    result: RoundResult, runs: list[str], next_round: float | None
) -> None:
    w = world()
    w.store.rounds[KEY] = result
    asyncio.run(AdmissionReconciler(w.deps).reconcile(KEY))
    assert w.store.writes == [("admission_round", NAMESPACE, "default", T0)]
    assert [k for k, _ in w.enqueued.of(TASKRUNS)] == runs
    rounds = w.enqueued.of(ADMISSION)
    assert [k for k, _ in rounds] == ([] if next_round is None else [KEY])
    assert [round(a, 3) for _, a in rounds] == ([] if next_round is None else [next_round])
    assert w.enqueued.of(QUEUE_STATUS) == [(KEY, 0.5)]
