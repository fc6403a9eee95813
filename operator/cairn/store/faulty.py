"""The store with "committed, then the connection fails" faults (Temporal's ExecuteAndTimeout): each
write runs and commits, then its caller sees a connection error, as when a database or its network
dies between the commit and the answer. Only used when a test switches `store.after_commit` on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import ParamSpec, TypeVar

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
    "register_wait",
    "suspend",
    "wake",
    "create_token",
    "complete_token",
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


def with_commit_faults(store: PostgresStore) -> PostgresStore:
    """The store itself, its writes wrapped when a test armed `store.after_commit` (else unchanged)."""
    if faults.enabled("store.after_commit"):
        for name in WRITES:
            setattr(store, name, _committed_then_lost(getattr(store, name)))
    return store
