"""RFC 3339 timestamps as Kubernetes writes them."""

from __future__ import annotations

from datetime import UTC, datetime


def format_time(t: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, e.g. 2026-11-24T05:54:04.123Z."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
