"""`python -m cairn.run module:function`: run a task function as the container's command.

In a pod (CAIRN_API_URL set) it reads the payload and the recorded steps from the checkpoint API,
runs the function, records its result, and exits 0. Outside Cairn it runs locally, recording in
memory: `python -m cairn.run my_module:main --payload '{"n": 3}'`.

Exit codes: 0 success, or the pod stopped for a durable wait (the run resumes in a new pod);
1 the task raised; 2 the task raised cairn.sdk.Fatal, or the payload/arguments
are unusable; 3 a step's result could not be recorded; 75 the attempt was superseded or the run ended
(this pod should simply stop); 143 told to stop by SIGTERM (preempted, drained, evicted, deleted): a
step in progress was let finish and be recorded first, and the next pod goes on from there.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib
import inspect
import io
import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable
from datetime import datetime
from typing import Any

from cairn.sdk.client import AsyncApi, CairnError, Endpoint, RunEnded, Superseded, SyncApi
from cairn.sdk.context import Context, Fatal, StepResultError, Stopping
from cairn.sdk.waits import WaitSuspended

EXIT_FAILED, EXIT_FATAL, EXIT_UNRECORDABLE, EXIT_STOP, EXIT_TERMINATED = 1, 2, 3, 75, 143


def _load(target: str) -> Callable[..., Any]:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise SystemExit(f"cairn.run: expected module:function, got {target!r}")
    module = importlib.import_module(module_name)
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise SystemExit(f"cairn.run: {module_name} has no function {attr!r}")
    return fn  # type: ignore[no-any-return]


def _context(args: argparse.Namespace) -> tuple[Context, SyncApi | None]:
    if not os.environ.get("CAIRN_API_URL"):
        payload = json.loads(args.payload) if args.payload else None
        return Context(
            run={"name": "local", "uid": "local", "namespace": "local"},
            attempt=1,
            payload=payload,
            steps=[],
            state=None,
            api=None,
        ), None
    endpoint = Endpoint.from_env()
    api = SyncApi(endpoint)
    info = api.call("GET", "/v1/run")
    steps = [(s["key"], s["result"]) for s in info["steps"]]
    ctx = Context(
        run=info["run"],
        attempt=info["attempt"],
        payload=info["payload"],
        steps=steps,
        state=info.get("state"),
        api=api,
        aapi_factory=lambda: AsyncApi(endpoint),
        schedule=os.environ.get("CAIRN_SCHEDULE"),
        fire_time=_fire_time(os.environ.get("CAIRN_FIRE_TIME")),
        suspend_after=float(info.get("suspendAfterSeconds", 5.0)),
    )
    return ctx, api


def _fire_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _one_stream() -> None:
    """In a pod: stderr into stdout's pipe, both flushed at each line. containerd reads a container's
    two pipes apart and writes the log in the order it read them, so a line on stderr (the SDK's, a
    traceback) could land before a stdout line written earlier; one pipe keeps the order of writing."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(sys.stdout.fileno(), sys.stderr.fileno())
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cairn.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("target", help="module:function, e.g. examples.hello.hello:main")
    parser.add_argument("--payload", help="JSON payload when running locally (outside Cairn)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # As PID 1 (without tini) SIGTERM would be ignored: turn it into an orderly stop.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(EXIT_TERMINATED))
    if os.environ.get("CAIRN_API_URL"):
        _one_stream()
    sys.path.insert(0, os.getcwd())
    fn = _load(args.target)
    ctx, api = _context(args)
    signal.signal(signal.SIGTERM, functools.partial(_terminated, ctx))
    print(
        f"cairn: run {ctx.run_name} attempt {ctx.attempt}: {len(ctx.completed_steps)} steps already recorded",
        file=sys.stderr,
        flush=True,
    )
    try:
        result = asyncio.run(_async(fn, ctx)) if inspect.iscoroutinefunction(fn) else fn(ctx)
        encoded = Context.encode("result", result)
        if api is not None:
            api.call("PUT", "/v1/result", {"result": encoded})
        else:
            print(json.dumps(encoded, indent=2))
    except Stopping as e:
        print(f"cairn: {e}", file=sys.stderr, flush=True)
        return EXIT_TERMINATED
    except WaitSuspended as e:
        print(f"cairn: {e}", file=sys.stderr, flush=True)
        return 0
    except (Superseded, RunEnded) as e:
        print(f"cairn: stopping: {e}", file=sys.stderr, flush=True)
        return EXIT_STOP
    except StepResultError as e:
        print(f"cairn: {e}", file=sys.stderr, flush=True)
        return EXIT_UNRECORDABLE
    except Fatal as e:
        print(f"cairn: fatal: {e}", file=sys.stderr, flush=True)
        return EXIT_FATAL
    except CairnError as e:
        print(f"cairn: {e}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    except Exception as e:  # noqa: BLE001 - the task's own failure: report it as the attempt's message
        traceback.print_exc()
        print(f"{type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    finally:
        if api is not None:
            api.close()
    executed = ", ".join(ctx.executed) or "none"
    print(f"cairn: attempt {ctx.attempt} done; steps executed in this attempt: {executed}", file=sys.stderr, flush=True)
    return 0


def _terminated(ctx: Context, *_: object) -> None:
    """SIGTERM (the pod is preempted, drained, evicted or deleted): a step in progress may finish
    and be recorded within the pod's grace period, and no new one starts; with none in progress, or
    at a second SIGTERM, stop at once. The next pod goes on from the last recorded step."""
    if not ctx.request_stop():
        sys.exit(EXIT_TERMINATED)
    print(
        "cairn: SIGTERM: the step in progress finishes and is recorded, then this pod stops",
        file=sys.stderr,
        flush=True,
    )


async def _async(fn: Callable[..., Any], ctx: Context) -> Any:
    try:
        return await fn(ctx)
    finally:
        await ctx.aclose()


if __name__ == "__main__":
    sys.exit(main())
