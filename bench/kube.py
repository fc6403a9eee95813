"""A small Kubernetes client for the benchmarks: plain JSON over httpx with the cluster admin's
certificate, and watches that stamp each event with the wall-clock time its line arrived.

Why not lightkube here: the figures are client-side latencies taken from watch events, so the
client must add as little as possible between a line arriving and its timestamp (no model
parsing), and bulk creation must not be limited by a client-side rate limit.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from harness.controlplane import ControlPlane

Body = dict[str, Any]
EventHandler = Callable[[float, str, Body], None]


class KubeError(RuntimeError):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text[:500]}")
        self.status = status


def _tls(cp: ControlPlane) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cp.ca.cert_path))
    ctx.load_cert_chain(str(cp.admin.cert), str(cp.admin.key))
    return ctx


class Api:
    """JSON requests to the API server as cluster admin. Thread-safe (one httpx pool)."""

    def __init__(self, cp: ControlPlane, *, connections: int = 32) -> None:
        self.cp = cp
        self.tls = _tls(cp)
        self.http = httpx.Client(
            base_url=cp.server,
            verify=self.tls,
            timeout=httpx.Timeout(60, connect=10),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            trust_env=False,
        )

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, body: Any = None, *, ok: Iterable[int] = ()) -> Body:
        headers = {"Content-Type": "application/merge-patch+json" if method == "PATCH" else "application/json"}
        content = json.dumps(body).encode() if body is not None else None
        resp = self.http.request(method, path, content=content, headers=headers)
        if resp.status_code >= 400 and resp.status_code not in ok:
            raise KubeError(resp.status_code, resp.text)
        data = resp.json() if resp.content else {}
        assert isinstance(data, dict)
        return data

    def create(self, path: str, body: Body) -> Body:
        return self.request("POST", path, body)

    def get(self, path: str) -> Body:
        return self.request("GET", path)

    def patch(self, path: str, body: Body) -> Body:
        return self.request("PATCH", path, body)

    def delete(self, path: str) -> None:
        self.request("DELETE", path, ok=(404,))

    def items(self, path: str, selector: str | None = None) -> list[Body]:
        items: list[dict[str, Any]] = []
        params: dict[str, str] = {"limit": "2000"}
        if selector:
            params["labelSelector"] = selector
        while True:
            resp = self.http.get(path, params=params)
            if resp.status_code >= 400:
                raise KubeError(resp.status_code, resp.text)
            page = resp.json()
            items.extend(page.get("items") or [])
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                return items
            params["continue"] = cont

    def create_many(self, path_of: Callable[[Body], str], bodies: list[Body], *, threads: int = 16) -> float:
        """Create every body, `threads` requests in flight; returns the seconds it took."""
        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for future in [pool.submit(self._create_retrying, path_of(b), b) for b in bodies]:
                future.result()
        return time.monotonic() - t0

    def _create_retrying(self, path: str, body: Body, attempts: int = 5) -> None:
        """A create that survives a dropped connection (seen once in ten thousand under load): try
        again; an AlreadyExists after a retry means the first try got through."""
        for attempt in range(attempts):
            try:
                self.create(path, body)
                return
            except httpx.TransportError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
            except KubeError as e:
                if e.status == 409 and attempt > 0:
                    return
                raise

    def namespace(self, name: str, labels: dict[str, str] | None = None) -> str:
        self.create(
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}},
        )
        # The service account the pods use is made by a controller: wait for it.
        deadline = time.monotonic() + 60
        while True:
            try:
                self.get(f"/api/v1/namespaces/{name}/serviceaccounts/default")
                return name
            except KubeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


class Watcher:
    """Lists then watches a collection in a thread of its own; calls `handler(t, type, object)` for
    every event, `t` being time.time() when its line arrived (listed objects come as "LISTED")."""

    def __init__(self, api: Api, path: str, handler: EventHandler, *, selector: str | None = None) -> None:
        self.api = api
        self.path = path
        self.handler = handler
        self.selector = selector
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._http = httpx.Client(
            base_url=api.cp.server, verify=api.tls, timeout=httpx.Timeout(None, connect=10), trust_env=False
        )
        self._thread = threading.Thread(target=self._run, name=f"watch {path}", daemon=True)

    def start(self) -> Watcher:
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError(f"the watch of {self.path} did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            self._http.close()
        self._thread.join(5)

    def _run(self) -> None:
        rv = ""
        while not self._stop.is_set():
            try:
                if not rv:
                    params = {"labelSelector": self.selector} if self.selector else {}
                    resp = self._http.get(self.path, params=params)
                    page = resp.json()
                    now = time.time()
                    for item in page.get("items") or []:
                        self.handler(now, "LISTED", item)
                    rv = page["metadata"]["resourceVersion"]
                rv = self._watch(rv)
            except Exception as e:  # noqa: BLE001 - reconnect; a benchmark times out if it never comes back
                self._error = e
                if self._stop.is_set():
                    return
                time.sleep(0.2)

    def _watch(self, rv: str) -> str:
        params = {
            "watch": "1",
            "resourceVersion": rv,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "600",
        }
        if self.selector:
            params["labelSelector"] = self.selector
        with self._http.stream("GET", self.path, params=params) as resp:
            self._ready.set()
            for line in resp.iter_lines():
                t = time.time()
                if not line:
                    continue
                event = json.loads(line)
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    return ""  # resourceVersion too old: list again
                rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                if kind != "BOOKMARK":
                    self.handler(t, kind, obj)
        return rv


# -- metrics ------------------------------------------------------------------------------------------
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_metrics(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def scrape(url: str, *, tls: ssl.SSLContext | None = None) -> Samples:
    verify: ssl.SSLContext | bool = True
    if tls is not None:
        verify = tls
    with httpx.Client(verify=verify, timeout=10, trust_env=False) as client:
        resp = client.get(url)
        resp.raise_for_status()
        return parse_metrics(resp.text)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and want <= set(lbls))


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (n, lbls), v in samples.items():
        if n == name:
            key = dict(lbls).get(label, "")
            out[key] = out.get(key, 0.0) + v
    return out


def controller_manager_tls(cp: ControlPlane) -> ssl.SSLContext:
    """The admin's certificate, for kube-controller-manager's own serving port (self-signed: loopback)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(str(cp.admin.cert), str(cp.admin.key))
    return ctx
