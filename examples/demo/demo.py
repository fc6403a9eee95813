"""The crash-and-resume demo: five slow steps, one per item. Kill the pod after the third step and
the next attempt runs the fourth and fifth only (`make demo` does exactly that)."""

from __future__ import annotations

import hashlib
import os
import socket
import time

from cairn.sdk import Context, Fatal

STEP_SECONDS = float(os.environ.get("DEMO_STEP_SECONDS", "3"))


def process(item: str) -> dict[str, object]:
    time.sleep(STEP_SECONDS)  # stands for real work: a download, an LLM call, a transcode
    return {"item": item, "digest": hashlib.sha256(item.encode()).hexdigest()[:12], "pod": socket.gethostname()}


def main(ctx: Context) -> dict[str, object]:
    items = (ctx.payload or {}).get("items")
    if not isinstance(items, list) or not items:
        raise Fatal("the payload needs a non-empty list 'items'")
    print(f"attempt {ctx.attempt}: steps already recorded: {ctx.completed_steps or 'none'}", flush=True)
    results = []
    for item in items:
        result = ctx.step("process", process, str(item))
        print(f"attempt {ctx.attempt}: {item} -> {result['digest']} (ran in pod {result['pod']})", flush=True)
        results.append(result)
    return {"processed": len(results), "pods": sorted({str(r["pod"]) for r in results})}
