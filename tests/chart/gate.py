"""A gate the test holds: task code asks it whether to go on (GET /gate: "open" or "closed") and
reports each execution of a step to it (GET /hit?run=&what=&attempt=, the query of tests/support/runs'
`hit`). It listens on the host side of the nodes' network, where task pods reach the machine."""

from __future__ import annotations

import http.server
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, urlparse


class Gate:
    def __init__(self, host: str) -> None:
        self.opened = threading.Event()
        self.hits: Counter[tuple[str, str]] = Counter()
        self.attempts: dict[tuple[str, str], list[int]] = {}
        self._lock = threading.Lock()
        gate = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                if url.path == "/gate":
                    body = b"open" if gate.opened.is_set() else b"closed"
                else:
                    q = {k: v[0] for k, v in parse_qs(url.query).items()}
                    key = (q.get("run", ""), q.get("what", ""))
                    with gate._lock:
                        gate.hits[key] += 1
                        gate.attempts.setdefault(key, []).append(int(q.get("attempt", "0")))
                    body = b"ok"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        base = f"http://{host}:{self.server.server_address[1]}"
        self.gate_url = f"{base}/gate"
        self.hit_url = f"{base}/hit"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, run: str, what: str) -> int:
        with self._lock:
            return self.hits[(run, what)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def gate_at(host: str) -> Iterator[Gate]:
    gate = Gate(host)
    try:
        yield gate
    finally:
        gate.close()
