"""A nightly report: started by a Schedule, it reads the fire time it was started for (not the time it
happens to run, which is later after an outage) and reports on the day before it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cairn.sdk import Context


def gather(day: str) -> dict[str, object]:
    # A real report would query a warehouse here; the day is what makes it idempotent.
    return {"day": day, "orders": sum(ord(c) for c in day) % 1000}


def main(ctx: Context) -> dict[str, object]:
    fired = ctx.fire_time or datetime.now(UTC)  # run by hand (cairn run local): today
    day = (fired - timedelta(days=1)).date().isoformat()
    figures = ctx.step("gather", gather, day)
    return {"schedule": ctx.schedule, "fire_time": fired.isoformat(), "report": figures}
