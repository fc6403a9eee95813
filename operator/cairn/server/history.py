"""The history API: runs as PostgreSQL keeps them, also after their TaskRun objects are deleted (for
their retention). Any Kubernetes identity allowed (RBAC, asked through a SubjectAccessReview) to `get
taskruns` in a namespace may read its history: the same rule as for the TaskRun objects themselves."""

from __future__ import annotations

import base64
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from cairn.domain.timefmt import parse_time
from cairn.server.access import Access
from cairn.server.errors import ApiError, bad_request, json_response, not_found
from cairn.store.postgres import PostgresStore

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NAME = re.compile(r"^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$")
_LABEL = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_./]{0,252})=([-A-Za-z0-9_.]{0,63})$")
_SINCE = re.compile(r"^(\d+)(s|m|h|d)$")
PHASES = ("Succeeded", "Failed", "Cancelled", "Deleted", "Live")
MAX_LIMIT = 500


def _namespace(request: web.Request) -> str:
    namespace = request.match_info["namespace"]
    if len(namespace) > 63 or not _DNS_LABEL.match(namespace):
        raise bad_request(f"{namespace!r} is not a namespace name")
    return namespace


def _name(request: web.Request) -> str:
    name = request.match_info["name"]
    if len(name) > 253 or not _NAME.match(name):
        raise bad_request(f"{name!r} is not a TaskRun name")
    return name


def _time(value: str, field: str, now: datetime) -> datetime:
    """An RFC 3339 time, or a duration back from now (30m, 24h, 7d)."""
    ago = _SINCE.match(value)
    try:
        if ago:
            n, unit = int(ago.group(1)), ago.group(2)
            return now - timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[unit]: n})
        return parse_time(value)
    except (ValueError, OverflowError) as e:
        raise bad_request(
            f"{field}: give an RFC 3339 time (2026-12-01T00:00:00Z) or a duration ago (30m, 24h, 7d)"
        ) from e


def filters(query: dict[str, str], now: datetime) -> tuple[dict[str, Any], int]:
    """The list's filters and page size from its query string, each checked, naming the parameter."""
    known = {"task", "phase", "since", "until", "label", "archived", "limit", "after"}
    unknown = sorted(set(query) - known)
    if unknown:
        raise bad_request(f"unknown parameter(s) {', '.join(unknown)}: use {', '.join(sorted(known))}")
    out: dict[str, Any] = {}
    if "task" in query:
        if not _NAME.match(query["task"]):
            raise bad_request(f"task: {query['task']!r} is not a Task name")
        out["task"] = query["task"]
    if "phase" in query:
        if query["phase"] not in PHASES:
            raise bad_request(f"phase: {query['phase']!r} is not one of {', '.join(PHASES)}")
        out["phase"] = query["phase"]
    for field in ("since", "until"):
        if field in query:
            out[field] = _time(query[field], field, now)
    if "label" in query:
        labels: dict[str, str] = {}
        for part in query["label"].split(","):
            m = _LABEL.match(part.strip())
            if not m:
                raise bad_request(f"label: {part!r} is not key=value (several: a=1,b=2)")
            labels[m.group(1)] = m.group(2)
        out["labels"] = labels
    archived = query.get("archived", "false")
    if archived not in ("true", "false"):
        raise bad_request("archived: true or false")
    out["archived"] = archived == "true"
    try:
        limit = int(query.get("limit", "100"))
    except ValueError as e:
        raise bad_request("limit: a whole number from 1 to 500") from e
    if not 1 <= limit <= MAX_LIMIT:
        raise bad_request("limit: a whole number from 1 to 500")
    if "after" in query:
        out["after"] = _cursor(query["after"])
    return out, limit


def _cursor(text: str) -> tuple[datetime, str]:
    try:
        stamp, uid = base64.urlsafe_b64decode(text.encode() + b"==").decode().split("|", 1)
        return parse_time(stamp), str(uuid.UUID(uid))
    except (ValueError, UnicodeDecodeError, OverflowError) as e:
        raise bad_request("after: not a cursor this API gave (use the list's 'next')") from e


def _next(rows: list[dict[str, Any]], limit: int) -> str | None:
    if len(rows) < limit:
        return None
    last = rows[-1]
    return base64.urlsafe_b64encode(f"{last['createdAt']}|{last['uid']}".encode()).decode().rstrip("=")


class History:
    def __init__(self, store: PostgresStore, access: Access) -> None:
        self.store = store
        self.access = access

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/namespaces/{namespace}/history/runs", self.list),
            web.get("/v1/namespaces/{namespace}/history/runs/{name}", self.get),
            web.get("/v1/namespaces/{namespace}/history/runs/{name}/steps/{key}", self.step),
        ]

    async def _allowed(self, request: web.Request) -> str:
        namespace = _namespace(request)
        await self.access.check(request.headers.get("Authorization"), "get", namespace)
        return namespace

    async def list(self, request: web.Request) -> web.Response:
        namespace = await self._allowed(request)
        wanted, limit = filters(dict(request.query), datetime.now(UTC))
        rows = await self.store.history_runs(namespace, wanted, limit)
        return json_response({"runs": rows, "next": _next(rows, limit)})

    async def _run(self, namespace: str, name: str) -> dict[str, Any]:
        run = await self.store.history_run(namespace, name)
        if run is None:
            raise not_found(
                f'no run "{name}" in the history of namespace "{namespace}" (never made, or past its retention)'
            )
        return run

    async def get(self, request: web.Request) -> web.Response:
        namespace = await self._allowed(request)
        return json_response(await self._run(namespace, _name(request)))

    async def step(self, request: web.Request) -> web.Response:
        namespace = await self._allowed(request)
        run = await self._run(namespace, _name(request))
        key = request.match_info["key"]
        if not key or len(key) > 256 or "\x00" in key:
            raise bad_request("the step key must be 1 to 256 characters, e.g. transcode#0 (send # as %23)")
        recorded, result = await self.store.step_result(run["uid"], key)
        if not recorded:
            keys = ", ".join(s["key"] for s in run["steps"][:50]) or "none"
            raise ApiError(404, "NotFound", f'run "{run["name"]}" recorded no step "{key}"; its steps: {keys}')
        entry = next(s for s in run["steps"] if s["key"] == key)
        return json_response({**entry, "run": run["name"], "uid": run["uid"], "result": result})
