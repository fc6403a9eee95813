"""One side of the steps benchmark, in a process of its own: workflows of steps that return a value of
a given size, one thread per workflow, timed step by step.

    python -m bench.steps_driver < spec.json    # writes the result to the spec's "out"

The spec says which side (`cairn`: Cairn's Python SDK, `ctx.step`, through the checkpoint API with a
pod-bound token per workflow; `dbos`: DBOS Transact, `@DBOS.step` inside `@DBOS.workflow`, configured
as its documentation says: a name and a `system_database_url`, every other setting its default) and a
list of phases, each a size, a number of steps per workflow and how many workflows run at once. Each
side runs in the same way: the threads wait on a barrier, each runs its workflow's steps one after the
other, and every step call is timed from the caller's side (for a step that returns a constant, the
whole of that time is the durability's overhead).

Both sides run here, in the same interpreter, with the same thread count: what one pays for the GIL
the other pays too.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

VALUE_BYTES = {"noop": 0, "1KiB": 1024, "100KiB": 100 * 1024}


def value_of(size: int) -> Any:
    """The step's result: nothing for a no-op, else a JSON object of about `size` bytes."""
    if size == 0:
        return None
    return {"data": "x" * (size - len('{"data":""}'))}


class Timing:
    """What the threads of one phase measured, gathered under a lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies_ms: list[float] = []
        self.begins: list[float] = []
        self.ends: list[float] = []

    def add(self, latencies_ms: list[float], begin: float, end: float) -> None:
        with self.lock:
            self.latencies_ms.extend(latencies_ms)
            self.begins.append(begin)
            self.ends.append(end)

    def result(self, name: str, cpu_s: float) -> dict[str, Any]:
        wall = max(self.ends) - min(self.begins)
        return {
            "name": name,
            "steps": len(self.latencies_ms),
            "latencies_ms": [round(v, 4) for v in self.latencies_ms],
            "wall_s": wall,
            "steps_per_s": len(self.latencies_ms) / wall if wall > 0 else None,
            "driver_cpu_s": cpu_s,
        }


def timed_loop(n: int, call: Callable[[], Any], timing: Timing) -> None:
    out = []
    begin = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        out.append((time.perf_counter() - t0) * 1000)
    timing.add(out, begin, time.perf_counter())


def run_threads(targets: list[Callable[[], None]]) -> None:
    barrier = threading.Barrier(len(targets))
    errors: list[BaseException] = []

    def body(fn: Callable[[], None]) -> None:
        barrier.wait()
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - reported to the parent below, by the main thread
            errors.append(e)

    threads = [threading.Thread(target=body, args=(fn,)) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


# -- Cairn ----------------------------------------------------------------------------------------
def cairn_side(spec: dict[str, Any]) -> list[dict[str, Any]]:
    from cairn.sdk.client import Endpoint, SyncApi
    from cairn.sdk.context import Context

    tokens: list[str] = spec["tokens"]
    scratch = Path(tempfile.mkdtemp(prefix="cairn-steps-"))
    contexts: list[Context] = []
    apis: list[SyncApi] = []
    for i, token in enumerate(tokens):
        path = scratch / f"token-{i}"
        path.write_text(token)
        api = SyncApi(Endpoint(url=spec["api_url"], token_file=str(path)))
        info = api.call("GET", "/v1/run")  # what cairn.run does at a pod's start
        contexts.append(
            Context(
                run=info["run"],
                attempt=info["attempt"],
                payload=info["payload"],
                steps=[(s["key"], s["result"]) for s in info["steps"]],
                state=info.get("state"),
                api=api,
            )
        )
        apis.append(api)
    results = []
    try:
        for phase in spec["phases"]:
            value = value_of(phase["size"])
            timing = Timing()
            name = f"{spec['prefix']}-{phase['name']}"

            def workflow(
                ctx: Context, n: int = phase["steps"], name: str = name, timing: Timing = timing, value: Any = value
            ) -> None:
                timed_loop(n, lambda: ctx.step(name, lambda: value), timing)

            cpu0 = time.process_time()
            run_threads([functools.partial(workflow, ctx) for ctx in contexts[: phase["workflows"]]])
            results.append(timing.result(phase["name"], time.process_time() - cpu0))
    finally:
        for api in apis:
            api.close()
    return results


# -- DBOS -----------------------------------------------------------------------------------------
def dbos_side(spec: dict[str, Any]) -> list[dict[str, Any]]:
    from dbos import DBOS, DBOSConfig

    timings: dict[str, Timing] = {}

    @DBOS.step()
    def produce(size: int) -> Any:
        return value_of(size)

    @DBOS.workflow()
    def steps(phase: str, n: int, size: int) -> None:
        timed_loop(n, lambda: produce(size), timings[phase])

    config: DBOSConfig = {"name": "cairn-bench", "system_database_url": spec["dsn"]}
    DBOS(config=config)
    DBOS.launch()
    results = []
    try:
        for phase in spec["phases"]:
            key = f"{spec['prefix']}-{phase['name']}"
            timings[key] = Timing()
            cpu0 = time.process_time()
            run_threads([functools.partial(steps, key, phase["steps"], phase["size"])] * phase["workflows"])
            results.append(timings[key].result(phase["name"], time.process_time() - cpu0))
    finally:
        DBOS.destroy()
    return results


class Retries(logging.Handler):
    """Counts the SDK's retries (a 429 or an unavailable API): a run with any measures the wrong thing."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def main() -> int:
    spec = json.load(sys.stdin)
    side = {"cairn": cairn_side, "dbos": dbos_side}[spec["side"]]
    retries = Retries()
    logging.getLogger("cairn.sdk").addHandler(retries)
    phases = side(spec)
    Path(spec["out"]).write_text(json.dumps({"side": spec["side"], "phases": phases, "retries": retries.count}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
