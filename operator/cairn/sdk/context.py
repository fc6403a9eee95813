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

import asyncio
import contextvars
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, get_type_hints

from pydantic import TypeAdapter

from cairn.sdk.client import AsyncApi, CairnError, Encoded, SyncApi
from cairn.sdk.retry import StepRetry
from cairn.sdk.waits import ChildResult, ChildRun, Token, TokenResult, WaitSuspended

T = TypeVar("T")
RESULT_MAX_BYTES = 1024 * 1024
START_CHECK_SECONDS = 1.0  # an answer younger than this makes the start check of a new step redundant
BATCH_STEPS = 100  # at most this many steps in one write (POST /v1/steps/batch)
BATCH_BYTES = 1024 * 1024  # and their results at most this much JSON (the API takes bodies up to 2 MiB)
log = logging.getLogger("cairn.sdk")
_current_step: contextvars.ContextVar[str | None] = contextvars.ContextVar("cairn_step", default=None)


class Stopping(BaseException):
    """Raised where a new step would start after the pod was told to stop (SIGTERM: preempted,
    drained, evicted, deleted). The steps recorded stand and the next pod goes on from there. A
    BaseException, so that `except Exception` in task code does not swallow it."""


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
        suspend_after: float = 5.0,
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
        self._kinds: dict[str, str] = {}  # what each name was used for: a step, a sleep, a token wait, ...
        self._api = api
        self._aapi_factory = aapi_factory
        self._aapi: AsyncApi | None = None
        self.executed: list[str] = []  # steps this attempt executed (not replayed)
        self.suspend_after = suspend_after  # a sleep longer than this ends the pod (the Task's suspendAfter)
        # Told to stop (SIGTERM): no new step starts; the ones in progress finish and are recorded.
        self._stop_requested = False
        self._in_steps = 0
        # Async steps waiting for their write, and the task writing them (see _record_together).
        self._pending: list[tuple[dict[str, Any], asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        # When the API last answered a call of this attempt (GET /v1/run just did, if there is an API).
        self._confirmed: float | None = time.monotonic() if api is not None else None

    # -- keys ------------------------------------------------------------------------------------
    def _next_key(self, name: str, kind: str = "step") -> str:
        if not name or "#" in name:
            raise ValueError(f"step name {name!r} must be non-empty and contain no '#'")
        before = self._kinds.setdefault(name, kind)
        if before != kind:
            raise ValueError(
                f"step name {name!r} is already used for a {before} in this run: give the {kind} its own name"
            )
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
        return json.loads(Context.encode_text(key, value, adapter))

    @staticmethod
    def encode_text(key: str, value: Any, adapter: TypeAdapter[Any] | None = None) -> str:
        """`value` as the compact JSON text it is recorded as, or StepResultError naming `key`."""
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
        return text

    @staticmethod
    def _decode(value: Any, adapter: TypeAdapter[Any] | None) -> Any:
        return adapter.validate_python(value) if adapter is not None else value

    def _replay(self, key: str, adapter: TypeAdapter[Any] | None) -> tuple[bool, Any]:
        if key in self._recorded:
            return True, self._decode(self._recorded[key], adapter)
        return False, None

    def _remember(self, key: str, answer: Mapping[str, Any], adapter: TypeAdapter[Any] | None, sent: Any = None) -> Any:
        # A step recorded now is answered without its result (it is what was sent); one recorded
        # before, with the first result, which stands.
        recorded = answer.get("result", sent)
        self._recorded[key] = recorded
        self._order.append(key)
        return self._decode(recorded, adapter)

    # -- stopping --------------------------------------------------------------------------------
    def request_stop(self) -> bool:
        """The pod was told to stop: start no new step. True if a step is in progress (let it finish
        and be recorded within the grace period); False if there is none, or this is the second time
        of asking (stop now)."""
        again = self._stop_requested
        self._stop_requested = True
        return self._in_steps > 0 and not again

    def _check_stop(self, key: str) -> None:
        if self._stop_requested:
            done = ", ".join(self.executed) or "none"
            raise Stopping(f"told to stop (SIGTERM) before step {key!r}; steps this pod executed and recorded: {done}")

    # -- sync steps ------------------------------------------------------------------------------
    def step(self, name: str, fn: Callable[..., T], *args: Any, retry: StepRetry | None = None, **kwargs: Any) -> T:
        """Run `fn(*args, **kwargs)` as step `name` unless it was recorded; return its result. With
        `retry`, a failing `fn` is tried again in this pod with backoff before the attempt fails."""
        key = self._next_key(name)
        adapter = _adapter(fn)
        done, value = self._replay(key, adapter)
        if done:
            return value  # type: ignore[no-any-return]
        if self._api is not None and not self._just_confirmed():
            check = self._sync("POST", "/v1/steps/start", {"key": key})
            if check.get("recorded"):
                return self._remember(key, check, adapter)  # type: ignore[no-any-return]
        self._check_stop(key)
        self._in_steps += 1
        try:
            return self._run_step(key, adapter, fn, args, kwargs, retry)
        finally:
            self._in_steps -= 1

    def _run_step(
        self,
        key: str,
        adapter: TypeAdapter[Any] | None,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retry: StepRetry | None,
    ) -> T:
        started = datetime.now(UTC)
        tries = 0
        while True:
            tries += 1
            token = _current_step.set(key)
            try:
                result = fn(*args, **kwargs)
                break
            except Exception as e:
                if retry is None or not retry.retries(e, tries):
                    raise
                wait = retry.delay(tries)
                log.warning(
                    "step %s: try %d of %d failed (%s: %s); retrying in %.1fs",
                    key,
                    tries,
                    retry.max_attempts,
                    type(e).__name__,
                    e,
                    wait,
                )
                time.sleep(wait)
            finally:
                _current_step.reset(token)
        if inspect.isawaitable(result):
            raise CairnError(f"step {key!r}: {fn!r} is async; use `await ctx.astep(...)`")
        text = self.encode_text(key, result, adapter)
        self.executed.append(key)
        if self._api is None:
            return self._remember(key, {"result": json.loads(text)}, adapter)  # type: ignore[no-any-return]
        # The body around the result's text, so that a large result is not encoded a second time.
        extra = f',"tries":{tries}' if tries > 1 else ""
        body = Encoded(f'{{"key":{json.dumps(key)},"result":{text},"startedAt":"{started.isoformat()}"{extra}}}')
        answer = self._sync("POST", "/v1/steps", body)
        return self._remember(key, answer, adapter, json.loads(text))  # type: ignore[no-any-return]

    # -- async steps -----------------------------------------------------------------------------
    def astep(
        self, name: str, fn: Callable[..., Awaitable[T]], *args: Any, retry: StepRetry | None = None, **kwargs: Any
    ) -> Awaitable[T]:
        """`await ctx.astep(name, async_fn, ...)`. The key is taken when astep is called, so steps
        started together (asyncio.gather) keep the order they were called in. `retry` as for step."""
        key = self._next_key(name)
        adapter = _adapter(fn)
        return self._astep(key, adapter, fn, args, kwargs, retry)

    async def _astep(
        self,
        key: str,
        adapter: TypeAdapter[Any] | None,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retry: StepRetry | None = None,
    ) -> T:
        done, value = self._replay(key, adapter)
        if done:
            return value  # type: ignore[no-any-return]
        api = self._async_api()
        if api is not None and not self._just_confirmed():
            check = await self._acall(api, "POST", "/v1/steps/start", {"key": key})
            if check.get("recorded"):
                return self._remember(key, check, adapter)  # type: ignore[no-any-return]
        self._check_stop(key)
        self._in_steps += 1
        try:
            return await self._run_astep(key, adapter, fn, args, kwargs, retry, api)
        finally:
            self._in_steps -= 1

    async def _run_astep(
        self,
        key: str,
        adapter: TypeAdapter[Any] | None,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retry: StepRetry | None,
        api: AsyncApi | None,
    ) -> T:
        started = datetime.now(UTC)
        tries = 0
        while True:
            tries += 1
            token = _current_step.set(key)
            try:
                result = await fn(*args, **kwargs)
                break
            except Exception as e:
                if retry is None or not retry.retries(e, tries):
                    raise
                wait = retry.delay(tries)
                log.warning(
                    "step %s: try %d of %d failed (%s: %s); retrying in %.1fs",
                    key,
                    tries,
                    retry.max_attempts,
                    type(e).__name__,
                    e,
                    wait,
                )
                await asyncio.sleep(wait)
            finally:
                _current_step.reset(token)
        encoded = self.encode(key, result, adapter)
        self.executed.append(key)
        if api is None:
            return self._remember(key, {"result": encoded}, adapter)  # type: ignore[no-any-return]
        body = {"key": key, "result": encoded, "startedAt": started.isoformat()}
        if tries > 1:
            body["tries"] = tries
        answer = await self._record_together(api, body)
        return self._remember(key, answer, adapter, encoded)  # type: ignore[no-any-return]

    # -- calls ------------------------------------------------------------------------------------
    def _sync(self, method: str, path: str, body: Any = None) -> Any:
        assert self._api is not None
        answer = self._api.call(method, path, body)
        self._confirmed = time.monotonic()
        return answer

    async def _acall(self, api: AsyncApi, method: str, path: str, body: Any = None) -> Any:
        answer = await api.call(method, path, body)
        self._confirmed = time.monotonic()
        return answer

    async def _record_together(self, api: AsyncApi, body: dict[str, Any]) -> Any:
        """Record an async step, in one write with the steps that finish with it: those of the same tick
        of the event loop, and those that finish while an earlier write is on its way (POST
        /v1/steps/batch; alone, POST /v1/steps). Its answer, or the error of its write."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        self._pending.append((body, answer))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush(api))
        return await answer

    async def _flush(self, api: AsyncApi) -> None:
        await asyncio.sleep(0)  # the steps finishing in this same tick join the write
        while self._pending:
            group: list[tuple[dict[str, Any], asyncio.Future[Any]]] = []
            size = 0
            while self._pending and len(group) < BATCH_STEPS:
                n = len(json.dumps(self._pending[0][0].get("result"), separators=(",", ":")))
                if group and size + n > BATCH_BYTES:
                    break
                group.append(self._pending.pop(0))
                size += n
            try:
                if len(group) == 1:
                    answers = [await self._acall(api, "POST", "/v1/steps", group[0][0])]
                else:
                    doc = await self._acall(api, "POST", "/v1/steps/batch", {"steps": [b for b, _ in group]})
                    answers = doc["steps"]
            except BaseException as e:
                # Every step of the write hears why it failed; a cancellation or an exit goes on up.
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(e)
                if not isinstance(e, Exception):
                    raise
                continue
            for (_, fut), doc_ in zip(group, answers, strict=True):
                if not fut.done():
                    fut.set_result(doc_)

    def _just_confirmed(self) -> bool:
        """Whether the API answered a call of this attempt within START_CHECK_SECONDS. Writes are fenced
        to the current attempt, so no other attempt can record a step meanwhile: what the start check
        (POST /v1/steps/start) adds is learning, before the work, that this pod was superseded, and an
        answer this fresh already said it was not. A new step then costs one round trip, not two."""
        return self._confirmed is not None and time.monotonic() - self._confirmed < START_CHECK_SECONDS

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
            self._sync("PUT", "/v1/state", {"state": encoded, "note": note})

    async def asave_state(self, state: Any, note: str | None = None) -> None:
        encoded = self.encode("state", state, None)
        self.state = encoded
        api = self._async_api()
        if api is not None:
            await self._acall(api, "PUT", "/v1/state", {"state": encoded, "note": note})

    async def aclose(self) -> None:
        if self._aapi is not None:
            await self._aapi.close()

    # -- durable waits -----------------------------------------------------------------------------
    def sleep(self, name: str, duration: float | timedelta) -> None:
        """Sleep durably for `duration` (seconds or a timedelta). Longer than the Task's suspendAfter,
        the pod ends and gives its slot back, and a new pod resumes the run when the time has come;
        shorter, it sleeps in place. Recorded as step `name#n`: once over, it is never slept again."""
        seconds = duration.total_seconds() if isinstance(duration, timedelta) else float(duration)
        if seconds < 0:
            raise ValueError(f"sleep {name!r}: the duration {seconds}s is negative")
        self._sleep(self._next_key(name, "sleep"), datetime.now(UTC) + timedelta(seconds=seconds))

    def sleep_until(self, name: str, when: datetime) -> None:
        """Sleep durably until `when` (a timezone-aware datetime), as `sleep` does."""
        if when.tzinfo is None:
            raise ValueError(f"sleep_until {name!r}: give a timezone-aware datetime, e.g. datetime(..., tzinfo=UTC)")
        key = self._next_key(name, "sleep")
        if key not in self._recorded and when < datetime.now(UTC) - timedelta(seconds=1):
            raise ValueError(f"sleep_until {name!r} ({key}): {when.isoformat()} is in the past")
        self._sleep(key, when)

    def _sleep(self, key: str, until: datetime) -> None:
        if key in self._recorded:
            return
        left = (until - datetime.now(UTC)).total_seconds()
        if self._api is None or left <= self.suspend_after:
            time.sleep(max(0.0, left))
            if self._api is not None:
                answer = self._sync("POST", "/v1/steps", {"key": key, "result": None})
                self._remember(key, answer, None)
            else:
                self._remember(key, {"result": None}, None)
            return
        self._wait(
            key, {"key": key, "kind": "sleep", "until": until.isoformat()}, f"sleeping until {until.isoformat()}"
        )

    def _wait(self, key: str, body: dict[str, Any], what: str, path: str = "/v1/waits") -> Any:
        """Register the wait: its result if it is over, else this pod ends (WaitSuspended)."""
        assert self._api is not None
        answer = self._sync("POST", path, body)
        if answer.get("done"):
            return self._remember(key, answer, None)
        raise WaitSuspended(f"{what} (step {key}): this pod ends; the run resumes in a new pod when the wait is over")

    def create_token(self, name: str, *, timeout: float | timedelta | None = None, tags: Iterable[str] = ()) -> Token:
        """A wait token for an approval or any external event (recorded: a retried attempt gets the same
        one). Hand its `url` or `id` to whoever completes it; then `wait_for_token`."""
        key = self._next_key(name, "token")
        if key not in self._recorded:
            if self._api is None:
                raise CairnError(f"create_token {name!r}: wait tokens need Cairn (run the task in a TaskRun)")
            seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
            body: dict[str, Any] = {"key": key, "tags": list(tags)}
            if seconds is not None:
                body["timeoutSeconds"] = seconds
            self._remember(key, self._sync("POST", "/v1/tokens", body), None)
        doc = self._recorded[key]
        timeout_at = datetime.fromisoformat(doc["timeout"]) if doc.get("timeout") else None
        return Token(id=doc["id"], url=doc["url"], timeout=timeout_at)

    def wait_for_token(self, name: str, token: Token | str, type: type[T] | None = None) -> TokenResult[T]:
        """Wait (durably, with no pod) until the token is completed or times out. With `type` (a pydantic
        model or any type pydantic knows), the data is validated into it."""
        key = self._next_key(name, "token wait")
        token_id = token.id if isinstance(token, Token) else token
        if key not in self._recorded:
            if self._api is None:
                raise CairnError(f"wait_for_token {name!r}: wait tokens need Cairn (run the task in a TaskRun)")
            self._wait(key, {"key": key, "kind": "token", "token": token_id}, f"waiting for token {token_id}")
        doc = self._recorded[key] or {}
        data = doc.get("data")
        if type is not None and doc.get("ok"):
            data = TypeAdapter(type).validate_python(data)
        return TokenResult(ok=bool(doc.get("ok")), data=data, timed_out=bool(doc.get("timedOut")))

    # -- child runs -------------------------------------------------------------------------------
    def trigger(self, name: str, task: str, payload: Any = None, **options: Any) -> str:
        """Start a child run of `task` and go on (its name is returned; a retried attempt never starts a
        second one). Options: queue, priority, concurrency_key, parent_close_policy ("Cancel" or "Abandon")."""
        key = self._next_key(name, "child run")
        if key not in self._recorded:
            self._remember(key, self._children(key, [self._child(task, payload, options)], False, options), None)
        return str(self._recorded[key]["runs"][0])

    def trigger_and_wait(
        self,
        name: str,
        task: str,
        payload: Any = None,
        type: type[T] | None = None,
        **options: Any,
    ) -> ChildResult[T]:
        """Start a child run and wait for it with no pod held; its result (typed with `type`), or how it
        failed: check `ok`, nothing is raised."""
        return self.batch_trigger_and_wait(name, [self._child(task, payload, options)], type=type, **options)[0]

    def batch_trigger_and_wait(
        self,
        name: str,
        items: Iterable[ChildRun | Mapping[str, Any]],
        type: type[T] | None = None,
        **options: Any,
    ) -> list[ChildResult[T]]:
        """Fan out: one child run per item (a ChildRun, or a dict with task, payload, ...), then wait for
        all of them with no pod held. Results in the order of `items`."""
        key = self._next_key(name, "child run")
        if key not in self._recorded:
            children = [i if isinstance(i, ChildRun) else ChildRun(**dict(i)) for i in items]
            if not children:
                raise ValueError(f"batch_trigger_and_wait {name!r}: no items")
            body = self._children_body(key, children, True, options)
            self._wait(key, body, f"waiting for {len(children)} child run(s)", path="/v1/children")
        adapter = TypeAdapter(type) if type is not None else None
        out: list[ChildResult[T]] = []
        for doc in self._recorded[key] or []:
            result = doc.get("result")
            if adapter is not None and doc.get("ok"):
                result = adapter.validate_python(result)
            out.append(ChildResult(run=doc["run"], phase=doc["phase"], ok=bool(doc.get("ok")), result=result))
        return out

    @staticmethod
    def _child(task: str, payload: Any, options: Mapping[str, Any]) -> ChildRun:
        return ChildRun(
            task=task,
            payload=payload,
            queue=options.get("queue"),
            priority=int(options.get("priority", 0)),
            concurrency_key=options.get("concurrency_key"),
        )

    def _children_body(
        self, key: str, children: list[ChildRun], wait: bool, options: Mapping[str, Any]
    ) -> dict[str, Any]:
        unknown = set(options) - {"queue", "priority", "concurrency_key", "parent_close_policy"}
        if unknown:
            raise TypeError(f"step {key!r}: unknown option(s) {', '.join(sorted(unknown))}")
        if self._api is None:
            raise CairnError(f"step {key!r}: child runs need Cairn (run the task in a TaskRun)")
        for c in children:
            self.encode(key, c.payload)  # a payload that is not JSON fails here, naming the step
        return {
            "key": key,
            "wait": wait,
            "items": [c.wire() for c in children],
            "parentClosePolicy": options.get("parent_close_policy", "Cancel"),
        }

    def _children(self, key: str, children: list[ChildRun], wait: bool, options: Mapping[str, Any]) -> Any:
        body = self._children_body(key, children, wait, options)
        assert self._api is not None
        return self._sync("POST", "/v1/children", body)
