"""What the API does before a handler sees a request: refuse a body that says it is too large
(413 from Content-Length, before reading it), give a slow body a deadline (408), pace each client
(429 with Retry-After), and count a client that went away as that, not as an error.

Slow headers are bounded by the server's idle timeout (aiohttp's keep-alive timer runs from the
connection's start until a request's headers are complete): see `handler_args`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import limits
from aiohttp import web
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from cairn import metrics
from cairn.server.errors import ApiError, json_response, too_large

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CLIENT_GONE = (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError)


def handler_args(idle_seconds: float) -> dict[str, Any]:
    """aiohttp's connection settings: a connection that has not sent a whole request's headers within
    `idle_seconds` of opening (or of its last answer) is closed: a slowloris client holds nothing."""
    return {"keepalive_timeout": idle_seconds, "lingering_time": 1.0}


def client_key(request: web.Request) -> str:
    """Who is calling, for pacing: their credential (a pod's or a user's token; the secret of a wait
    token's URL), else their address. Hashed: keys are kept in memory."""
    credential = request.headers.get("Authorization") or (
        request.match_info.get("secret") if request.match_info else None
    )
    if credential:
        return hashlib.sha256(credential.encode(errors="replace")).hexdigest()
    return f"addr:{request.remote or '?'}"


class Pace:
    """At most `burst` requests from one client in any window of burst/rate seconds (on average
    `rate` per second); rate 0: no pacing."""

    def __init__(self, rate: float, burst: int) -> None:
        self.item: limits.RateLimitItem | None = None
        if rate > 0:
            self.item = limits.RateLimitItemPerSecond(max(1, burst), max(1, math.ceil(burst / rate)))
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    async def admit(self, key: str) -> float | None:
        """None: go ahead; else the seconds until this client may try again."""
        if self.item is None or await self.limiter.hit(self.item, key):
            return None
        stats = await self.limiter.get_window_stats(self.item, key)
        return max(0.1, stats.reset_time - time.time())


def make_guard(*, max_body: int, body_seconds: float, pace: Pace) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/v1/"):
            wait = await pace.admit(client_key(request))
            if wait is not None:
                metrics.API_THROTTLED.inc()
                response = json_response(
                    {
                        "error": "TooManyRequests",
                        "message": f"this client is over its pace of requests; retry in {wait:.1f}s",
                    },
                    status=429,
                )
                response.headers["Retry-After"] = str(math.ceil(wait))
                return response
        declared = request.content_length
        if declared is not None and declared > max_body:
            response = too_large(
                f"the request body is declared as {declared} bytes (Content-Length), over the limit of {max_body}"
            ).response()
            response.force_close()  # the body is not read: the connection cannot carry another request
            return response
        if request.body_exists:
            try:
                async with asyncio.timeout(body_seconds):
                    await request.read()  # kept by aiohttp: the handler's read() returns it at once
            except TimeoutError:
                response = ApiError(
                    408, "RequestTimeout", f"the request body did not arrive within {body_seconds:g}s"
                ).response()
                response.force_close()
                return response
            except CLIENT_GONE:
                return _gone(request)
        try:
            return await handler(request)
        except CLIENT_GONE:
            return _gone(request)

    return guard


def _gone(request: web.Request) -> web.StreamResponse:
    metrics.API_CLIENTS_GONE.inc()
    log.info("client %s went away during %s %s", request.remote, request.method, request.path)
    response = web.Response(status=499)
    response.force_close()
    return response
