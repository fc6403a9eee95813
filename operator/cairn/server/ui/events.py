"""Server-sent events for the dashboard's live parts: the run list, a run's page, an attempt's log."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

from aiohttp import web

LIVE_SECONDS = 1.0


async def send_events(
    request: web.Request, event: str, source: AsyncIterator[str], *, csp: str, dedupe: bool = True
) -> web.StreamResponse:
    """Server-sent events: each new item of `source` (an HTML fragment, or a log line), sent when it
    differs from the last; fragments are polled every LIVE_SECONDS until the client goes."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
    response.headers["Content-Security-Policy"] = csp
    await response.prepare(request)
    last = ""
    try:
        async for item in source:
            digest = hashlib.sha256(item.encode()).hexdigest()
            if not dedupe or digest != last:
                data = "\n".join(f"data: {line}" for line in item.split("\n"))
                await response.write(f"event: {event}\n{data}\n\n".encode())
                last = digest
            if dedupe:
                await asyncio.sleep(LIVE_SECONDS)
        await response.write(b"event: end\ndata: \n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return response
