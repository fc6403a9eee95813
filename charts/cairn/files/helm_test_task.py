"""The task `helm test` runs: three recorded steps, each adding one more than the last (1 + 2 + 3)."""

from __future__ import annotations

from typing import Any


def add(i: int) -> int:
    return i + 1


def main(ctx: Any) -> dict[str, int]:
    steps = int((ctx.payload or {}).get("steps", 3))
    total = sum(ctx.step("add", add, i) for i in range(steps))
    return {"total": total}
