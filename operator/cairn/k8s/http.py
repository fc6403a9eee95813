"""JSON requests to the API server over aiohttp: the pod creates on the path to a run's first pod.

Why not lightkube's client (httpx) for these: on the 2-core CI machine, the round trip of a pod create
(dry run) took 5.6 ms through httpx and 3.6 ms through aiohttp from a process that had been idle for a
quarter of a second, 2.3 ms and 1.6 ms back to back (aiohttp's HTTP parser is C; a Go client took
3.0 and 1.4). What the request carries is lightkube's: the kubeconfig's SSL context (CA, client
certificate) and its httpx authentication flow, which gives the Authorization header (a token, a token
file re-read after a 401, an exec plugin) -- one source of truth for credentials."""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx2
from lightkube import KubeConfig
from lightkube.config.client_adapter import user_auth, verify_cluster

TIMEOUT = aiohttp.ClientTimeout(total=60, connect=10)


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]

    @property
    def message(self) -> str:
        return str(self.body.get("message") or self.body.get("reason") or "")


class RequestFailed(Exception):
    """An answer the caller does not handle (a 5xx, a 429, a 401 after the credentials were refreshed)."""

    def __init__(self, method: str, path: str, answer: Answer) -> None:
        super().__init__(f"{method} {path}: {answer.status} {answer.message}")
        self.answer = answer


class JsonClient:
    def __init__(self, config: KubeConfig, *, field_manager: str) -> None:
        single = config.get()
        if single is None or single.user is None:
            raise ValueError("the kubeconfig names no current context with a user")
        self.server = single.cluster.server.rstrip("/")
        self.ssl: ssl.SSLContext = verify_cluster(single.cluster, single.user, single.abs_file, trust_env=False)
        self.auth = user_auth(single.user)
        self.field_manager = field_manager
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        # Made on first use: a session belongs to the running event loop.
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self.ssl, limit=32)
            self._session = aiohttp.ClientSession(connector=connector, timeout=TIMEOUT, trust_env=False)
        return self._session

    async def post(self, path: str, body: dict[str, Any]) -> Answer:
        data = json.dumps(body, separators=(",", ":")).encode()
        return await self.request("POST", f"{path}?fieldManager={self.field_manager}", data)

    async def request(self, method: str, path: str, data: bytes | None) -> Answer:
        url = self.server + path
        if self.auth is None:
            return await self._once(method, url, data, {})
        flow = self.auth.async_auth_flow(httpx2.Request(method, url))
        prepared = await flow.__anext__()
        while True:
            answer = await self._once(method, url, data, _auth_headers(prepared))
            try:
                # A flow that wants another try (a token file re-read after a 401) yields it.
                prepared = await flow.asend(httpx2.Response(answer.status, request=prepared))
            except StopAsyncIteration:
                return answer

    async def _once(self, method: str, url: str, data: bytes | None, headers: dict[str, str]) -> Answer:
        headers = {**headers, "Content-Type": "application/json", "Accept": "application/json"}
        async with self._http().request(method, url, data=data, headers=headers) as resp:
            raw = await resp.read()
            if resp.status < 400:
                return Answer(resp.status, {})  # what the caller needs of a success is that it was one
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = {"message": raw[:512].decode(errors="replace")}
            return Answer(resp.status, body if isinstance(body, dict) else {})

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _auth_headers(request: httpx2.Request) -> dict[str, str]:
    token = request.headers.get("Authorization")
    return {"Authorization": token} if token else {}
