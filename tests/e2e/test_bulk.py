"""Acting on many runs by selector with the CLI: a dry run lists and changes nothing, off a terminal
nothing happens without --yes, then `cairn cancel -l` cancels exactly the runs chosen and `cairn rerun
--task --phase` makes one new run of each."""

from __future__ import annotations

from typing import Any

from lightkube import Client

from cairn.k8s.resources import TaskRunResource
from tests.e2e.test_cli import cli
from tests.support.env import ClusterEnv
from tests.support.kube import as_dict
from tests.support.runs import StepCounter, get_run, make_task, wait_phase

SLOW = """
def main(ctx):
    ctx.step("hold", lambda: hit(ctx, "hold") or time.sleep(300))
    return "done"
"""


def _run(kube: Client, ns: str, name: str, team: str) -> None:
    body: dict[str, Any] = {
        "apiVersion": "cairn.dev/v1alpha1",
        "kind": "TaskRun",
        "metadata": {"name": name, "namespace": ns, "labels": {"team": team}},
        "spec": {"taskRef": {"name": "slow"}},
    }
    kube.create(TaskRunResource.from_dict(body))


def test_runs_chosen_by_selector_are_cancelled_and_rerun_only_after_a_yes(
    cluster_env: ClusterEnv, kube: Client, ns: str, counter: StepCounter
) -> None:
    make_task(kube, ns, "slow", SLOW, counter=counter)
    for name, team in (("x-1", "x"), ("x-2", "x"), ("y-1", "y")):
        _run(kube, ns, name, team)
    for name in ("x-1", "x-2", "y-1"):
        wait_phase(kube, ns, name, ("Running",), timeout=120)

    dry = cli(cluster_env, ns, "cancel", "-l", "team=x", "--dry-run")
    assert dry.code == 0, dry.err
    assert "2 run(s) to cancel: x-1, x-2" in dry.out and "(dry run: nothing changed)" in dry.out
    unasked = cli(cluster_env, ns, "cancel", "-l", "team=x")
    assert unasked.code == 4 and "2 run(s) match: add --yes to cancel them" in unasked.err
    assert not any(get_run(kube, ns, n)["spec"].get("cancel") for n in ("x-1", "x-2", "y-1"))

    done = cli(cluster_env, ns, "cancel", "-l", "team=x", "--yes")
    assert done.code == 0, done.err
    assert "x-1: cancellation requested" in done.out and "x-2: cancellation requested" in done.out
    for name in ("x-1", "x-2"):
        assert wait_phase(kube, ns, name, timeout=120)["phase"] == "Cancelled"
    assert get_run(kube, ns, "y-1")["status"]["phase"] == "Running"  # not chosen: untouched

    reran = cli(cluster_env, ns, "rerun", "--task", "slow", "--phase", "Cancelled", "--yes")
    assert reran.code == 0, reran.err
    assert "2 run(s) to rerun: x-1, x-2" in reran.out
    made = {
        as_dict(r)["metadata"]["annotations"]["cairn.dev/rerun-of"]
        for r in kube.list(TaskRunResource, namespace=ns)
        if (as_dict(r)["metadata"].get("annotations") or {}).get("cairn.dev/rerun-of")
    }
    assert made == {"x-1", "x-2"}

    # Everything of the task made in the last hour: the ended ones are left as they are.
    everything = cli(cluster_env, ns, "cancel", "--task", "slow", "--since", "1h", "--yes")
    assert everything.code == 0, everything.err
    assert "x-1: already ended (Cancelled): left as it is" in everything.out
    assert "y-1: cancellation requested" in everything.out
    assert counter.count("y-1", "hold") == 1
