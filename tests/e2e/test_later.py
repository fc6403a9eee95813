"""Runs for later and runs with a time to live, on a real cluster: a delayed run (the CLI's --delay)
and a run with notBefore (a manifest) wait holding nothing and start after their time; a run that
cannot start within expireAfter ends Failed with reason Expired, with no pod, and takes nothing from
the run holding the queue."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import Any

from lightkube import Client

from cairn.domain.timefmt import format_time, parse_time
from cairn.k8s.resources import QueueResource
from tests.e2e.test_cli import cli
from tests.support.builders import queue_body
from tests.support.env import ClusterEnv
from tests.support.kube import wait_for
from tests.support.runs import create_run, get_run, make_task, pods_of, seconds_between, status, wait_phase

QUICK = "def main(ctx):\n    return ctx.run_name\n"
HOLD = "def main(ctx):\n    time.sleep(float(ctx.payload['seconds']))\n"


def _delayed(kube: Client, ns: str, name: str) -> dict[str, Any] | None:
    st = status(kube, ns, name)
    return st if st.get("reason") == "Delayed" else None


def test_runs_for_later_wait_holding_nothing_and_start_after_their_time(
    cluster_env: ClusterEnv, kube: Client, ns: str
) -> None:
    make_task(kube, ns, "quick", QUICK)
    res = cli(cluster_env, ns, "trigger", "quick", "--name", "later", "--delay", "12s")
    assert res.code == 0, res.err
    at = (datetime.now(UTC) + timedelta(seconds=10)).replace(microsecond=0)
    create_run(kube, ns, "quick", "at-time", notBefore=format_time(at))
    create_run(kube, ns, "quick", "now")
    assert wait_phase(kube, ns, "now")["phase"] == "Succeeded"  # nothing holds the queue meanwhile
    for name in ("later", "at-time"):
        st = wait_for(f"{name} to say it waits", functools.partial(_delayed, kube, ns, name))
        assert st["phase"] == "Queued" and "not admitted before" in st["message"], st
        assert pods_of(kube, ns, name) == []
    assert "(spec.delay 12s)" in status(kube, ns, "later")["message"]
    assert f"not admitted before {format_time(at)} (spec.notBefore)" in status(kube, ns, "at-time")["message"]
    for name, seconds in (("later", 12), ("at-time", 0)):
        done = wait_phase(kube, ns, name, timeout=120)
        assert done["phase"] == "Succeeded", done
        created = get_run(kube, ns, name)["metadata"]["creationTimestamp"]
        if seconds:
            assert seconds_between(created, done["startTime"]) >= seconds - 1, (created, done["startTime"])
    assert parse_time(status(kube, ns, "at-time")["startTime"]) >= at


def test_a_run_that_cannot_start_within_expire_after_ends_expired_with_no_pod(kube: Client, ns: str) -> None:
    body = queue_body("one", concurrencyLimit=1)
    body["metadata"]["namespace"] = ns  # type: ignore[index]
    kube.create(QueueResource.from_dict(body))
    make_task(kube, ns, "hold", HOLD, queue="one")
    create_run(kube, ns, "hold", "holder", payload={"seconds": 25})
    wait_phase(kube, ns, "holder", ("Running",))
    create_run(kube, ns, "hold", "impatient", payload={"seconds": 0}, expireAfter="6s")
    done = wait_phase(kube, ns, "impatient", timeout=60)
    assert (done["phase"], done["reason"]) == ("Failed", "Expired"), done
    assert "not started within expireAfter (6s)" in done["message"]
    assert not done.get("attempts") and pods_of(kube, ns, "impatient") == []
    assert status(kube, ns, "holder")["phase"] == "Running"  # it took nothing from the run holding the slot
    assert wait_phase(kube, ns, "holder", timeout=90)["phase"] == "Succeeded"
