"""A small client for Cairn's trigger API, for applications that start runs from code.

    from cairn.sdk.trigger import TriggerClient

    client = TriggerClient("http://cairn-api.cairn-system.svc:8080", token_file=SA_TOKEN)
    run = client.trigger("media", "transcode", {"url": url}, idempotency_key=upload_id)
    done = client.wait("media", run["name"])          # {"phase": "Succeeded", "result": {...}, ...}

The token is any Kubernetes identity allowed to create (and get) taskruns in the namespace. Requests
are retried when the API is briefly unavailable; with an idempotency key a retried trigger never
makes a second run.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from cairn.sdk.client import ApiRefused, CairnError, retry_after

FINAL = ("Succeeded", "Failed", "Cancelled")


class QueueAtCapacity(ApiRefused):
    """The run's queue holds spec.maxQueued waiting runs: it was not created. Retrying at once makes it
    worse; try again later (or slow the producer)."""

    def __init__(self, message: str, queued: int, max_queued: int) -> None:
        super().__init__(message)
        self.queued = queued
        self.max_queued = max_queued


def _error_of(response: httpx.Response) -> str | None:
    try:
        doc = response.json()
    except ValueError:
        return None
    return doc.get("error") if isinstance(doc, dict) else None


class TriggerClient:
    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        token_file: str | None = None,
        timeout: float = 30.0,
        retry_seconds: float = 60.0,
    ) -> None:
        if not token and not token_file:
            raise ValueError("give a token or a token_file (e.g. the pod's service-account token)")
        self.token, self.token_file = token, token_file
        self.retry_seconds = retry_seconds
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout, trust_env=False)

    def _headers(self) -> dict[str, str]:
        token = self.token
        if token is None and self.token_file:
            with open(self.token_file) as f:
                token = f.read().strip()
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.2
        while True:
            wait = 0.0
            try:
                response = self.http.request(method, path, headers=self._headers(), json=body)
                if response.status_code == 429 and _error_of(response) == "QueueAtCapacity":
                    doc = response.json()
                    raise QueueAtCapacity(doc.get("message", ""), doc.get("queued", 0), doc.get("maxQueued", 0))
                if response.status_code == 429:  # this client is over its pace: come back when told
                    problem, wait = "HTTP 429: over this client's pace of requests", retry_after(response)
                elif response.status_code < 500:
                    if response.status_code >= 400:
                        raise ApiRefused(f"{response.status_code}: {response.json().get('message', response.text)}")
                    return response.json()
                else:
                    problem = f"HTTP {response.status_code}"
            except httpx.TransportError as e:
                problem = str(e)
            if time.monotonic() > deadline:
                raise CairnError(f"the trigger API is unavailable ({problem})")
            time.sleep(max(delay, wait))
            delay = min(delay * 2, 5.0)

    def trigger(
        self,
        namespace: str,
        task: str,
        payload: Any = None,
        *,
        priority: int = 0,
        concurrency_key: str | None = None,
        queue: str | None = None,
        idempotency_key: str | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"task": task, "payload": payload, "priority": priority}
        for key, value in (
            ("concurrencyKey", concurrency_key),
            ("queue", queue),
            ("idempotencyKey", idempotency_key),
            ("name", name),
        ):
            if value is not None:
                body[key] = value
        run: dict[str, Any] = self._call("POST", f"/v1/namespaces/{namespace}/taskruns", body)
        return run

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        run: dict[str, Any] = self._call("GET", f"/v1/namespaces/{namespace}/taskruns/{name}")
        return run

    def wait(self, namespace: str, name: str, *, timeout: float = 3600.0, poll: float = 1.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run = self.get(namespace, name)
            if run["phase"] in FINAL:
                return run
            if time.monotonic() > deadline:
                raise CairnError(f"run {namespace}/{name} is still {run['phase']} after {timeout:.0f}s")
            time.sleep(poll)

    def close(self) -> None:
        self.http.close()
