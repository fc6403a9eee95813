"""The progress listener, against in-memory fakes: a pod's progress mirrors into its run's status a
second later, and only for runs this operator serves."""

from __future__ import annotations

import asyncio

from cairn.controller.deps import TASKRUNS
from cairn.controller.progress import MIRROR_DELAY, ProgressListener
from tests.unit.builders import taskrun
from tests.unit.controller.fakes import body, world


def test_progress_of_a_known_run_reconciles_it_a_second_later_and_unknown_runs_are_ignored() -> None:
    w = world()
    w.cache.taskruns["mine"] = body(taskrun(uid="mine"))
    w.store.notifications = ["mine", "someone-elses", "mine"]
    asyncio.run(ProgressListener(w.deps).listen())
    assert w.enqueued.of(TASKRUNS) == [("mine", MIRROR_DELAY), ("mine", MIRROR_DELAY)]
    assert MIRROR_DELAY == 1.0
