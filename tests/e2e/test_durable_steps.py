"""The heart of Cairn: a run whose pod dies after step 3 resumes in a new pod at step 4. Steps 1-3
never run again; each step's executions are counted by a side channel the test owns."""

from __future__ import annotations

from typing import Any

import pytest
from lightkube import Client

from tests.support.cairn import CairnProcesses
from tests.support.env import ClusterEnv
from tests.support.kube import wait_for
from tests.support.runs import StepCounter, create_run, make_task, pods_of, wait_phase, wait_steps

FIVE_STEPS = """
def work(ctx, i, hold):
    hit(ctx, "step%d" % i)
    # The test crashes attempt 1 from outside during step 4: it holds there until then, so that the
    # crash lands in step 4 however slowly the test gets to it on a busy machine.
    time.sleep(180 if hold and i == 4 and ctx.attempt == 1 else float(os.environ.get("STEP_SECONDS", "1")))
    return {"i": i, "square": i * i}

def main(ctx):
    crash = (ctx.payload or {}).get("crash")
    results = []
    for i in range(1, 6):
        results.append(ctx.step("work", work, ctx, i, crash is None))
        if i == 3 and ctx.attempt == 1 and crash == "exit":
            print("crashing with exit code 1 after step 3")
            sys.exit(1)
        if i == 3 and ctx.attempt == 1 and crash == "oom":
            hog = bytearray(400 * 1024 * 1024)
            for j in range(0, len(hog), 4096):
                hog[j] = 1
    return {"sum": sum(r["square"] for r in results)}
"""


def _kill_container(env: ClusterEnv, kube: Client, ns: str, run: str) -> None:
    pod = pods_of(kube, ns, run)[0]
    env.require_harness().node(pod["spec"]["nodeName"]).kill_container(
        pod["status"]["containerStatuses"][0]["containerID"]
    )


def _crash(how: str, env: ClusterEnv, kube: Client, ns: str, run: str, cairn: CairnProcesses) -> None:
    if how == "sigkill":
        _kill_container(env, kube, ns, run)
    elif how == "node-stopped":
        cluster = env.require_harness()
        node = cluster.node(pods_of(kube, ns, run)[0]["spec"]["nodeName"])
        node.stop()
        try:
            wait_for(
                "a second attempt on the other node",
                lambda: any(
                    p["metadata"]["labels"]["cairn.dev/attempt"] == "2" and p["spec"].get("nodeName")
                    for p in pods_of(kube, ns, run)
                ),
                timeout=120,
            )
        finally:
            node.start(cluster.images)
            node.wait_ready()
    elif how == "operator-restarted":
        cairn.kill_operator()
        _kill_container(env, kube, ns, run)
        cairn.restart_operator()


CRASHES: dict[str, tuple[Any, str]] = {
    "sigkill": (None, "Error"),
    "node-stopped": (None, "NodeLost"),
    "oom-killed": ("oom", "OOMKilled"),
    "exit-code": ("exit", "Error"),
    "operator-restarted": (None, "Error"),
}


@pytest.mark.parametrize("how", list(CRASHES))
def test_a_run_killed_after_step_three_resumes_at_step_four_and_never_reruns_a_recorded_step(
    cluster_env: ClusterEnv, kube: Client, ns: str, counter: StepCounter, cairn: CairnProcesses, how: str
) -> None:
    crash_payload, first_reason = CRASHES[how]
    make_task(
        kube,
        ns,
        "five",
        FIVE_STEPS,
        counter=counter,
        env={"STEP_SECONDS": "1.5"},
        resources={"requests": {"memory": "64Mi"}, "limits": {"memory": "160Mi"}},
        retry={"maxAttempts": 3, "backoff": {"initialDelay": "1s", "maxDelay": "2s"}},
    )
    create_run(kube, ns, "five", "r1", payload={"crash": crash_payload})
    if crash_payload is None:
        wait_steps(kube, ns, "r1", 3)
        assert counter.count("r1", "step4") in (0, 1)  # step 4 may have begun: it is not recorded
        _crash(how, cluster_env, kube, ns, "r1", cairn)
    st = wait_phase(kube, ns, "r1", timeout=180)
    assert st["phase"] == "Succeeded", st
    assert st["attempts"][0]["reason"] == first_reason, st["attempts"]
    assert len(st["attempts"]) == 2
    # Recorded steps ran exactly once; the second attempt ran steps 4 and 5 (at least once: step 4
    # may have been cut short in attempt 1, before its record).
    for i in (1, 2, 3):
        assert counter.count("r1", f"step{i}") == 1, f"step {i} ran {counter.count('r1', f'step{i}')} times"
        assert counter.attempts[("r1", f"step{i}")] == [1]
    for i in (4, 5):
        assert 2 in counter.attempts[("r1", f"step{i}")]
    assert counter.attempts[("r1", "step5")] == [2]
    assert st["progress"]["stepsCompleted"] == 5
    assert st["result"].replace(" ", "") == '{"sum":55}'


def test_steps_in_a_loop_async_steps_and_typed_results_replay_with_their_types(
    kube: Client, ns: str, counter: StepCounter
) -> None:
    code = """
import asyncio
from datetime import date
from pydantic import BaseModel

class Weather(BaseModel):
    city: str
    day: date
    high: float

async def fetch(ctx, city) -> Weather:
    hit(ctx, "fetch-" + city)
    await asyncio.sleep(0.2)
    return Weather(city=city, day=date(2026, 11, 24), high=len(city) * 1.5)

async def main(ctx):
    cities = ["oslo", "lima", "pune"]
    forecasts = await asyncio.gather(*(ctx.astep("fetch", fetch, ctx, c) for c in cities))
    assert all(isinstance(f, Weather) for f in forecasts), forecasts
    assert forecasts[0].day == date(2026, 11, 24)
    if ctx.attempt == 1:
        sys.exit(1)  # fail once: the second attempt gets typed results back without fetching again
    return [f.city for f in forecasts]
"""
    make_task(kube, ns, "weather", code, counter=counter)
    create_run(kube, ns, "weather", "r1")
    st = wait_phase(kube, ns, "r1")
    assert st["phase"] == "Succeeded", st
    assert len(st["attempts"]) == 2
    assert st["result"].replace(" ", "") == '["oslo","lima","pune"]'
    for city in ("oslo", "lima", "pune"):
        assert counter.count("r1", f"fetch-{city}") == 1


def test_saved_state_carries_a_long_loop_across_attempts(kube: Client, ns: str, counter: StepCounter) -> None:
    code = """
def main(ctx):
    done = (ctx.state or {}).get("done", 0)
    for i in range(done, 10):
        hit(ctx, "item%d" % i)
        ctx.save_state({"done": i + 1}, note="processed %d of 10" % (i + 1))
        if ctx.attempt == 1 and i == 5:
            sys.exit(1)
    return ctx.state
"""
    make_task(kube, ns, "loop", code, counter=counter)
    create_run(kube, ns, "loop", "r1")
    st = wait_phase(kube, ns, "r1")
    assert st["phase"] == "Succeeded", st
    assert st["progress"]["state"] == "processed 10 of 10"
    assert all(counter.count("r1", f"item{i}") == 1 for i in range(10))


def test_an_unrecordable_result_fails_the_run_with_an_error_naming_the_step(kube: Client, ns: str) -> None:
    code = """
def main(ctx):
    ctx.step("ok", lambda: 1)
    ctx.step("clock", lambda: object())
"""
    make_task(kube, ns, "bad", code, retry={"maxAttempts": 1})
    create_run(kube, ns, "bad", "r1")
    st = wait_phase(kube, ns, "r1")
    assert st["phase"] == "Failed"
    message = st["attempts"][0]["message"]
    assert "step 'clock#0' returned a value that cannot be recorded as JSON" in message, message


def test_the_step_idempotency_key_is_the_same_on_every_attempt(kube: Client, ns: str, counter: StepCounter) -> None:
    code = """
def charge(ctx):
    hit(ctx, "key=" + ctx.idempotency_key())
    if ctx.attempt == 1:
        sys.exit(1)  # dies after the external call, before the record: the call is repeated
    return "charged"

def main(ctx):
    return ctx.step("charge", charge, ctx)
"""
    make_task(kube, ns, "pay", code, counter=counter)
    create_run(kube, ns, "pay", "r1")
    st = wait_phase(kube, ns, "r1")
    assert st["phase"] == "Succeeded"
    uid = _uid(kube, ns, "r1")
    assert counter.count("r1", f"key={uid}:charge#0") == 2  # the same key both times


def _uid(kube: Client, ns: str, name: str) -> str:
    from tests.support.runs import get_run

    return str(get_run(kube, ns, name)["metadata"]["uid"])
