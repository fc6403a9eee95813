"""Kubernetes conditions: set one, keeping its transition time when its status does not change."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from cairn.api.common import CONDITION_MESSAGE_MAX, Condition
from cairn.domain.timefmt import format_time


def set_condition(
    conditions: list[Condition] | None,
    type_: str,
    status: Literal["True", "False", "Unknown"],
    reason: str,
    message: str,
    *,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    existing = {c.type: c for c in conditions or []}
    old = existing.get(type_)
    message = message[:CONDITION_MESSAGE_MAX]
    if old and (old.status, old.reason, old.message, old.observed_generation) == (
        status,
        reason,
        message,
        generation,
    ):
        return list(conditions or [])
    since = old.last_transition_time if old and old.status == status else format_time(now)
    existing[type_] = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )
    return list(existing.values())
