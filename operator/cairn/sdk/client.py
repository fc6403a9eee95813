"""The SDK's HTTP client for the checkpoint API: the pod's token on every call, and patience when
the API is briefly away (an operator upgrade must not fail running tasks)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger("cairn.sdk")
RETRYABLE_STATUS = {502, 503, 504}


class CairnError(Exception):
    """Base of the SDK's errors."""


class Superseded(CairnError):
    """A newer attempt of this run exists (this pod was presumed lost): stop, record nothing."""


class RunEnded(CairnError):
    """The run is over (cancelled, failed, or deleted): its credentials no longer work."""


class ApiRefused(CairnError):
    """The API refused a call (a 4xx other than the above): a bug in the task or the SDK."""


TOKEN_REREAD_SECONDS = 10.0  # the kubelet rotates a projected token long before the old one expires


class Encoded(str):
    """A request body already encoded as JSON (sent as it is)."""


@dataclass(frozen=True)
class Endpoint:
    url: str
    token_file: str
    retry_seconds: float = 300.0
    # (read at, token): the file is read again after TOKEN_REREAD_SECONDS, or at once after a 401.
    _token: dict[str, tuple[float, str]] = field(default_factory=dict, compare=False, repr=False)

    @staticmethod
    def from_env() -> Endpoint:
        return Endpoint(
            url=os.environ["CAIRN_API_URL"].rstrip("/"),
            token_file=os.environ.get("CAIRN_TOKEN_FILE", "/var/run/secrets/cairn.dev/token"),
            retry_seconds=float(os.environ.get("CAIRN_API_RETRY_SECONDS", "300")),
        )

    def headers(self) -> dict[str, str]:
        now = time.monotonic()
        cached = self._token.get("token")
        if cached is None or now - cached[0] > TOKEN_REREAD_SECONDS:
            with open(self.token_file) as f:
                cached = (now, f.read().strip())
            self._token["token"] = cached
        return {"Authorization": f"Bearer {cached[1]}", "Content-Type": "application/json"}

    def forget_token(self) -> bool:
        """After a 401: read the token file again on the next call. False if it was just read."""
        cached = self._token.pop("token", None)
        return cached is not None and time.monotonic() - cached[0] > 0.5


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        message = response.json().get("message", response.text)
    except ValueError:
        message = response.text
    if response.status_code == 409:
        raise Superseded(message)
    if response.status_code == 410:
        raise RunEnded(message)
    raise ApiRefused(f"{response.status_code}: {message}")


class _Patience:
    """Retries with backoff until the endpoint's retry window closes, then gives up loudly."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.deadline = time.monotonic() + endpoint.retry_seconds
        self.attempt = 0

    def delay(self, problem: str, at_least: float = 0.0) -> float:
        if time.monotonic() > self.deadline:
            raise CairnError(
                f"the checkpoint API at {self.endpoint.url} has been unreachable for "
                f"{self.endpoint.retry_seconds:.0f}s ({problem})"
            )
        delay = max(at_least, float(min(10.0, 0.2 * 2**self.attempt) * (0.5 + random.random())))
        self.attempt += 1
        log.warning("checkpoint API unavailable (%s); retrying in %.1fs", problem, delay)
        return delay


def retry_after(response: httpx.Response) -> float:
    """The seconds a 429 says to wait (Retry-After), at most a minute."""
    try:
        return min(60.0, max(0.0, float(response.headers.get("Retry-After", "1"))))
    except ValueError:
        return 1.0


def _answer(response: httpx.Response) -> tuple[bool, Any, float]:
    """(done, value, wait): done with the decoded body, or not done (retry, after at least `wait`
    seconds) with the problem. A 429 is the API pacing this pod: it says when to come back."""
    if response.status_code == 429:
        return False, "HTTP 429: this pod is over its pace of requests", retry_after(response)
    if response.status_code in RETRYABLE_STATUS:
        return False, f"HTTP {response.status_code}", 0.0
    _raise_for(response)
    return True, response.json() if response.content else None, 0.0


def _content(body: Any) -> str | None:
    if body is None:
        return None
    return str(body) if isinstance(body, Encoded) else json.dumps(body)


class SyncApi:
    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.http = httpx.Client(base_url=endpoint.url, timeout=httpx.Timeout(30.0, connect=5.0), trust_env=False)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        patience = _Patience(self.endpoint)
        while True:
            wait = 0.0
            try:
                response = self.http.request(method, path, headers=self.endpoint.headers(), content=_content(body))
                if response.status_code == 401 and self.endpoint.forget_token():
                    continue  # a token rotated since it was read: read it again
                done, value, wait = _answer(response)
                if done:
                    return value
            except httpx.TransportError as e:
                value = f"{type(e).__name__}: {e}"
            time.sleep(patience.delay(value, wait))

    def close(self) -> None:
        self.http.close()


class AsyncApi:
    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.http = httpx.AsyncClient(base_url=endpoint.url, timeout=httpx.Timeout(30.0, connect=5.0), trust_env=False)

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        patience = _Patience(self.endpoint)
        while True:
            wait = 0.0
            try:
                response = await self.http.request(
                    method, path, headers=self.endpoint.headers(), content=_content(body)
                )
                if response.status_code == 401 and self.endpoint.forget_token():
                    continue  # a token rotated since it was read: read it again
                done, value, wait = _answer(response)
                if done:
                    return value
            except httpx.TransportError as e:
                value = f"{type(e).__name__}: {e}"
            await asyncio.sleep(patience.delay(value, wait))

    async def close(self) -> None:
        await self.http.aclose()
