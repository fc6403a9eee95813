"""The task's side of Cairn: `ctx.step` runs a function once per run and returns its recorded result
on every later attempt.

    def main(ctx: Context) -> dict:
        page = ctx.step("fetch", fetch, ctx.payload["url"])      # recorded as fetch#0
        for item in page["items"]:
            ctx.step("process", process, item)                   # process#0, process#1, ...
        return {"done": len(page["items"])}

Guarantees: a step whose result was recorded never runs again for this run; a step runs at least once
(a pod can die after the work and before the record: give external systems `ctx.idempotency_key()`).
"""

from __future__ import annotations

import contextvars
import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar, get_type_hints

from pydantic import TypeAdapter

from cairn.sdk.client import AsyncApi, CairnError, SyncApi

T = TypeVar("T")
RESULT_MAX_BYTES = 1024 * 1024
_current_step: contextvars.ContextVar[str | None] = contextvars.ContextVar("cairn_step", default=None)


class StepResultError(CairnError):
    """A step's result cannot be recorded (not JSON, or too large). Raised at the step, by name."""


class Fatal(CairnError):
    """Raise to end the run now: the runner exits with code 2, which examples map to FailRun."""


def _adapter(fn: Callable[..., Any]) -> TypeAdapter[Any] | None:
    """A pydantic adapter for the function's return annotation, if it has one."""
    try:
        hints = get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations: treat the result as plain JSON
        return None
    ret = hints.get("return")
    if ret is None or ret is type(None):
        return None
    try:
        return TypeAdapter(ret)
    except Exception:  # noqa: BLE001 - not a type pydantic understands: plain JSON
        return None


class Context:
    """One attempt of one run, as the task sees it."""

    def __init__(
        self,
        *,
        run: Mapping[str, Any],
        attempt: int,
        payload: Any,
        steps: list[tuple[str, Any]],
        state: Any,
        api: SyncApi | None,
        aapi_factory: Callable[[], AsyncApi] | None = None,
        schedule: str | None = None,
        fire_time: datetime | None = None,
    ) -> None:
        self.run_name: str = run.get("name", "")
        # A run a Schedule started: which one, and the fire time it was started for (else None).
        self.schedule = schedule
        self.fire_time = fire_time
        self.run_uid: str = run.get("uid", "")
        self.namespace: str = run.get("namespace", "")
        self.attempt = attempt
        self.payload = payload
        self.state = state
        self._recorded: dict[str, Any] = dict(steps)
        self._order = [k for k, _ in steps]
        self._occurrences: dict[str, int] = {}
        self._api = api
        self._aapi_factory = aapi_factory
        self._aapi: AsyncApi | None = None
        self.executed: list[str] = []  # steps this attempt executed (not replayed)

    # -- keys ------------------------------------------------------------------------------------
    def _next_key(self, name: str) -> str:
        if not name or "#" in name:
            raise ValueError(f"step name {name!r} must be non-empty and contain no '#'")
        n = self._occurrences.get(name, 0)
        self._occurrences[name] = n + 1
        return f"{name}#{n}"

    def idempotency_key(self, step: str | None = None) -> str:
        """run uid + step key: the same on every attempt, so an external system can deduplicate."""
        key = step or _current_step.get()
        if key is None:
            raise CairnError("idempotency_key() outside a step needs the step key, e.g. 'charge#0'")
        return f"{self.run_uid}:{key}"

    @property
    def completed_steps(self) -> list[str]:
        return list(self._order)

    # -- results ---------------------------------------------------------------------------------
    @staticmethod
    def encode(key: str, value: Any, adapter: TypeAdapter[Any] | None = None) -> Any:
        """`value` as the JSON it is recorded as, or StepResultError naming `key`."""
        try:
            plain = adapter.dump_python(value, mode="json") if adapter is not None else value
            text = json.dumps(plain, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as e:
            raise StepResultError(
                f"step {key!r} returned a value that cannot be recorded as JSON: {e} "
                "(return JSON types, or annotate the function with a pydantic type)"
            ) from e
        if len(text.encode()) > RESULT_MAX_BYTES:
            raise StepResultError(
                f"step {key!r} returned {len(text.encode())} bytes of JSON, over the cap of "
                f"{RESULT_MAX_BYTES}: record a reference (a path, a URL) instead"
            )
        return json.loads(text)

    @staticmethod
    def _decode(value: Any, adapter: TypeAdapter[Any] | None) -> Any:
        return adapter.validate_python(value) if adapter is not None else value

    def _replay(self, key: str, adapter: TypeAdapter[Any] | None) -> tuple[bool, Any]:
        if key in self._recorded:
            return True, self._decode(self._recorded[key], adapter)
        return False, None

    def _remember(self, key: str, answer: Mapping[str, Any], adapter: TypeAdapter[Any] | None) -> Any:
        recorded = answer.get("result")
        self._recorded[key] = recorded
        self._order.append(key)
        return self._decode(recorded, adapter)

    # -- sync steps ------------------------------------------------------------------------------
    def step(self, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(*args, **kwargs)` as step `name` unless it was recorded; return its result."""
        key = self._next_key(name)
        adapter = _adapter(fn)
        done, value = self._replay(key, adapter)
        if done:
            return value  # type: ignore[no-any-return]
        if self._api is not None:
            check = self._api.call("POST", "/v1/steps/start", {"key": key})
            if check.get("recorded"):
                return self._remember(key, check, adapter)  # type: ignore[no-any-return]
        started = datetime.now(UTC)
        token = _current_step.set(key)
        try:
            result = fn(*args, **kwargs)
        finally:
            _current_step.reset(token)
        if inspect.isawaitable(result):
            raise CairnError(f"step {key!r}: {fn!r} is async; use `await ctx.astep(...)`")
        encoded = self.encode(key, result, adapter)
        self.executed.append(key)
        if self._api is None:
            return self._remember(key, {"result": encoded}, adapter)  # type: ignore[no-any-return]
        answer = self._api.call("POST", "/v1/steps", {"key": key, "result": encoded, "startedAt": started.isoformat()})
        return self._remember(key, answer, adapter)  # type: ignore[no-any-return]

    # -- async steps -----------------------------------------------------------------------------
    def astep(self, name: str, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> Awaitable[T]:
        """`await ctx.astep(name, async_fn, ...)`. The key is taken when astep is called, so steps
        started together (asyncio.gather) keep the order they were called in."""
        key = self._next_key(name)
        adapter = _adapter(fn)
        return self._astep(key, adapter, fn, args, kwargs)

    async def _astep(
        self,
        key: str,
        adapter: TypeAdapter[Any] | None,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        done, value = self._replay(key, adapter)
        if done:
            return value  # type: ignore[no-any-return]
        api = self._async_api()
        if api is not None:
            check = await api.call("POST", "/v1/steps/start", {"key": key})
            if check.get("recorded"):
                return self._remember(key, check, adapter)  # type: ignore[no-any-return]
        started = datetime.now(UTC)
        token = _current_step.set(key)
        try:
            result = await fn(*args, **kwargs)
        finally:
            _current_step.reset(token)
        encoded = self.encode(key, result, adapter)
        self.executed.append(key)
        if api is None:
            return self._remember(key, {"result": encoded}, adapter)  # type: ignore[no-any-return]
        answer = await api.call("POST", "/v1/steps", {"key": key, "result": encoded, "startedAt": started.isoformat()})
        return self._remember(key, answer, adapter)  # type: ignore[no-any-return]

    def _async_api(self) -> AsyncApi | None:
        if self._aapi is None and self._aapi_factory is not None:
            self._aapi = self._aapi_factory()
        return self._aapi

    # -- state -----------------------------------------------------------------------------------
    def save_state(self, state: Any, note: str | None = None) -> None:
        """Save explicit progress (e.g. the index reached in a long loop); `ctx.state` on the next
        attempt. `note` (e.g. "processed 1200 of 5000") shows in `kubectl get` and `cairn describe`."""
        encoded = self.encode("state", state, None)
        self.state = encoded
        if self._api is not None:
            self._api.call("PUT", "/v1/state", {"state": encoded, "note": note})

    async def asave_state(self, state: Any, note: str | None = None) -> None:
        encoded = self.encode("state", state, None)
        self.state = encoded
        api = self._async_api()
        if api is not None:
            await api.call("PUT", "/v1/state", {"state": encoded, "note": note})

    async def aclose(self) -> None:
        if self._aapi is not None:
            await self._aapi.close()
