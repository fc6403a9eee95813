"""The store with "committed, then the connection fails" faults (Temporal's ExecuteAndTimeout): each
write runs and commits, then its caller sees a connection error, as when a database or its network
dies between the commit and the answer. Only used when a test switches `store.after_commit` on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import psycopg

from cairn import faults
from cairn.store.postgres import PostgresStore

P = ParamSpec("P")
R = TypeVar("R")
WRITES = (
    "register_run",
    "admission_round",
    "requeue",
    "finish",
    "forget",
    "begin_attempt",
    "end_attempt",
    "record_step",
    "save_state",
    "record_result",
    "upsert_queue",
)


def _committed_then_lost(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    @wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        result = await method(*args, **kwargs)
        try:
            faults.point("store.after_commit")
        except faults.FaultInjected as e:
            raise psycopg.OperationalError(f"the connection was lost after the commit ({e})") from e
        return result

    return wrapper


class FaultyStore(PostgresStore):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in WRITES:
            setattr(self, name, _committed_then_lost(getattr(self, name)))


def make_store(dsn: str, **kwargs: Any) -> PostgresStore:
    """The real store, or its faulty twin when a test asked for store faults."""
    return FaultyStore(dsn, **kwargs) if faults.enabled("store.after_commit") else PostgresStore(dsn, **kwargs)
