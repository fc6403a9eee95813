"""The one reading of the wall clock. Everything that decides takes the time as an argument (the
domain) or a `Clock` (the controller, the CLI), so that tests can pass their own."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)
