"""The checkpoint API: what a task pod calls to read its payload and recorded steps, and to record
steps, saved state and its result. Every call carries the pod's projected token (auth.py)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cairn import faults, metrics
from cairn.api.common import GoDuration
from cairn.domain.storable import Unstorable, check_text, storable_json
from cairn.server.auth import Caller, TokenVerifier
from cairn.server.errors import ApiError, bad_request, conflict, forbidden, gone, json_response, too_large
from cairn.store.base import PodIdentity
from cairn.store.postgres import PostgresStore

STEP_MAX_BYTES = 1024 * 1024  # a step's result, the saved state, the final result
KEY_MAX = 256


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class StepStart(_Body):
    key: str = Field(min_length=1, max_length=KEY_MAX)


class StepRecord(_Body):
    key: str = Field(min_length=1, max_length=KEY_MAX)
    result: Any = None
    started_at: datetime | None = Field(None, alias="startedAt")
    tries: int | None = Field(None, ge=1, le=1000, description="Tries it took (a step retried in its pod).")

    @field_validator("started_at")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        # Stored in UTC (PostgreSQL refuses some offsets a datetime may carry); no zone: UTC.
        if value is None:
            return None
        try:
            return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
        except (OverflowError, ValueError) as e:
            raise ValueError("is out of range: give a time in UTC, e.g. 2026-12-01T12:00:00Z") from e


BATCH_MAX = 100


class StepBatch(_Body):
    steps: list[StepRecord] = Field(min_length=1, max_length=BATCH_MAX)


class StateSave(_Body):
    state: Any
    note: str | None = Field(None, max_length=256)


class ResultRecord(_Body):
    result: Any = None


def storable(value: Any, what: str) -> str:
    """`value` as the JSON stored for it, or a 422 saying what PostgreSQL would refuse in it."""
    try:
        return storable_json(value, what)
    except Unstorable as e:
        raise ApiError(422, "InvalidBody", str(e)) from e


def _size(value: Any, what: str) -> str:
    """`value` as compact JSON (what is stored: encoded once), or 422 (unstorable) or 413 over the cap."""
    text = storable(value, what)
    size = len(text)  # ASCII
    if size > STEP_MAX_BYTES:
        raise too_large(
            f"{what} is {size} bytes of JSON, over the cap of {STEP_MAX_BYTES}: store large data "
            "elsewhere (a volume, object storage) and record its location"
        )
    return text


def _key(key: str) -> str:
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        raise bad_request("a step key may not contain control characters")
    return key


async def _parse(request: web.Request, model: type[_Body]) -> Any:
    if request.content_type != "application/json":
        raise ApiError(415, "UnsupportedMediaType", "send the body as application/json")
    try:
        raw = await request.read()
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad_request(f"the body is not valid JSON: {e}") from e
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ApiError(422, "InvalidBody", f"{where}: {first['msg']}") from e


ATTEMPTS_CACHED = 10_000


class Checkpoints:
    def __init__(self, store: PostgresStore, verifier: TokenVerifier) -> None:
        self.store = store
        self.verifier = verifier
        # The attempt each pod (token) was resolved to. A pod belongs to one attempt for life, and a
        # step write is fenced by the store on the run's current attempt and state, so recording a
        # step need not resolve the pod again: only a refused write does, to say why (409/410).
        self._attempts: dict[Caller, PodIdentity] = {}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/run", self.get_run),
            web.post("/v1/steps/start", self.start_step),
            web.post("/v1/steps", self.record_step),
            web.post("/v1/steps/batch", self.record_steps),
            web.put("/v1/state", self.save_state),
            web.put("/v1/result", self.record_result),
        ]

    async def _who(self, request: web.Request) -> tuple[Caller, PodIdentity]:
        caller = await self.verifier.verify(request.headers.get("Authorization"))
        return caller, await self._identity(caller)

    async def _identity(self, caller: Caller) -> PodIdentity:
        """The caller's attempt, if it may still act for its run; else the 4xx that says why."""
        identity = await self.store.resolve_pod(caller.namespace, caller.pod)
        if identity is None:
            raise forbidden(f"pod {caller.namespace}/{caller.pod} is not an attempt of any Cairn run")
        if identity.state == "finished":
            raise gone(f"run {identity.run_name} has ended: its credentials no longer work")
        if identity.attempt != identity.current_attempt or identity.state != "admitted":
            raise conflict(
                f"attempt {identity.attempt} of run {identity.run_name} has been superseded by attempt "
                f"{identity.current_attempt}: this pod must stop"
            )
        return identity

    async def get_run(self, request: web.Request) -> web.Response:
        caller, who = await self._who(request)
        context = await self.store.run_context(who.run_uid)
        if context is None:
            raise gone(f"run {who.run_name} no longer exists")
        payload_text, steps, state, suspend_after = context
        try:
            payload = json.loads(payload_text) if payload_text is not None else None
        except json.JSONDecodeError as e:
            raise bad_request(f"the run's payload is not JSON: {e}") from e
        return json_response(
            {
                "run": {"namespace": caller.namespace, "name": who.run_name, "uid": who.run_uid},
                "attempt": who.attempt,
                "payload": payload,
                "steps": [{"key": k, "result": r} for k, r in steps],
                "state": state,
                # A durable sleep longer than this ends the pod (the SDK sleeps shorter ones in place).
                "suspendAfterSeconds": GoDuration(suspend_after or "5s").delta.total_seconds(),
            }
        )

    async def start_step(self, request: web.Request) -> web.Response:
        _caller, who = await self._who(request)
        body: StepStart = await _parse(request, StepStart)
        # The store answers whether it was recorded meanwhile (by this attempt, e.g. a retried call):
        # that one step, not the run's whole history.
        key = _key(body.key)
        recorded, result = await self.store.step_result(who.run_uid, key)
        if recorded:
            return json_response({"recorded": True, "result": result})
        return json_response({"recorded": False})

    async def record_step(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        caller = await self.verifier.verify(request.headers.get("Authorization"))
        who = self._attempts.get(caller)
        if who is None:
            who = await self._identity(caller)
            if len(self._attempts) >= ATTEMPTS_CACHED:
                self._attempts.clear()
            self._attempts[caller] = who
            checked = True
        else:
            checked = False
        try:
            body: StepRecord = await _parse(request, StepRecord)
            key = _key(body.key)
            text = _size(body.result, f"the result of step {key!r}")
        except ApiError:
            if not checked:
                await self._identity(caller)  # an ended or superseded attempt hears that first
            raise
        write = await self.store.record_step(
            who.run_uid, who.attempt, key, body.result, body.started_at, body.tries, text=text
        )
        faults.point("api.after_checkpoint_commit")
        if not write.allowed:
            self._attempts.pop(caller, None)
            await self._identity(caller)  # says why: the run ended (410) or the attempt was superseded (409)
            raise conflict(f"attempt {who.attempt} of run {who.run_name} may no longer record steps")
        metrics.CHECKPOINT_SECONDS.observe(time.perf_counter() - started)
        if write.inserted:  # the result is the one just sent: not sent back
            return json_response({"key": key, "recorded": True, "first": True}, status=201)
        return json_response({"key": key, "recorded": True, "first": False, "result": write.result})

    async def record_steps(self, request: web.Request) -> web.Response:
        """Steps that finished together, in one write (and one round trip): each as POST /v1/steps."""
        started = time.perf_counter()
        caller = await self.verifier.verify(request.headers.get("Authorization"))
        who = self._attempts.get(caller)
        if who is None:
            who = await self._identity(caller)
            if len(self._attempts) >= ATTEMPTS_CACHED:
                self._attempts.clear()
            self._attempts[caller] = who
        try:
            body: StepBatch = await _parse(request, StepBatch)
            keys = [_key(s.key) for s in body.steps]
            if len(set(keys)) != len(keys):
                raise ApiError(422, "InvalidBody", "steps: each key once per batch")
            for s in body.steps:
                _size(s.result, f"the result of step {s.key!r}")
        except ApiError:
            await self._identity(caller)  # an ended or superseded attempt hears that first
            raise
        writes = await self.store.record_steps(
            who.run_uid, who.attempt, [(s.key, s.result, s.started_at, s.tries) for s in body.steps]
        )
        faults.point("api.after_checkpoint_commit")
        if not writes or not writes[0].allowed:
            self._attempts.pop(caller, None)
            await self._identity(caller)
            raise conflict(f"attempt {who.attempt} of run {who.run_name} may no longer record steps")
        metrics.CHECKPOINT_SECONDS.observe(time.perf_counter() - started)
        return json_response(
            {
                "steps": [
                    {"key": k, "recorded": True, "first": True}
                    if w.inserted
                    else {"key": k, "recorded": True, "first": False, "result": w.result}
                    for k, w in zip(keys, writes, strict=True)
                ]
            }
        )

    async def save_state(self, request: web.Request) -> web.Response:
        _caller, who = await self._who(request)
        body: StateSave = await _parse(request, StateSave)
        _size(body.state, "the saved state")
        if body.note is not None:
            try:
                check_text(body.note, "the note")
            except Unstorable as e:
                raise ApiError(422, "InvalidBody", str(e)) from e
        if not await self.store.save_state(who.run_uid, who.attempt, body.state, body.note):
            raise conflict(f"attempt {who.attempt} of run {who.run_name} may no longer save state")
        return web.Response(status=204)

    async def record_result(self, request: web.Request) -> web.Response:
        _caller, who = await self._who(request)
        body: ResultRecord = await _parse(request, ResultRecord)
        _size(body.result, "the result")
        if not await self.store.record_result(who.run_uid, who.attempt, body.result):
            raise conflict(f"attempt {who.attempt} of run {who.run_name} may no longer record a result")
        return web.Response(status=204)
