"""A deterministic stand-in for a chat model, for trying the agent example and for its tests.

    python -m examples.agent.fake_model --host 127.0.0.1 --port 8089

POST /v1/chat/completions answers the first question with two tool calls (search, calculate) and,
once it sees tool results, with an answer built from them. POST /v1/search returns fixed rows.
GET /calls returns how many calls of each kind it served (and with which idempotency keys).
"""

from __future__ import annotations

import argparse
import http.server
import json
import threading
import time
from collections import Counter
from typing import Any

CITIES = [
    {"city": "Lagos", "population_2015": 13.0, "population_2025": 16.5},
    {"city": "Dhaka", "population_2015": 17.6, "population_2025": 23.9},
    {"city": "Kinshasa", "population_2015": 11.6, "population_2025": 17.8},
]


class FakeModel:
    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay  # seconds per call: a real model takes its time
        self.calls: Counter[str] = Counter()
        self.keys: list[str] = []
        self.lock = threading.Lock()

    def chat(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        tool_results = [m for m in messages if m.get("role") == "tool"]
        if not tool_results:
            kind, message = (
                "plan",
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call-1",
                            "type": "function",
                            "function": {
                                "name": "search",
                                "arguments": json.dumps({"query": "city population growth"}),
                            },
                        },
                        {
                            "id": "call-2",
                            "type": "function",
                            "function": {
                                "name": "calculate",
                                "arguments": json.dumps({"expression": "(17.8-11.6)/11.6*100"}),
                            },
                        },
                    ],
                },
            )
        else:
            kind = "answer"
            rows = json.loads(tool_results[0]["content"]) if tool_results else []
            fastest = max(rows, key=lambda r: r["population_2025"] / r["population_2015"])["city"] if rows else "?"
            growth = tool_results[1]["content"] if len(tool_results) > 1 else "?"
            message = {"role": "assistant", "content": f"{fastest} grew fastest, by {growth}% in ten years."}
        with self.lock:
            self.calls[kind] += 1
        return {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}

    def serve(self, host: str, port: int) -> http.server.ThreadingHTTPServer:
        model = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _send(self, doc: Any) -> None:
                body = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                time.sleep(model.delay)
                length = int(self.headers.get("Content-Length", "0"))
                doc = json.loads(self.rfile.read(length) or b"{}")
                with model.lock:
                    model.keys.append(self.headers.get("Idempotency-Key", ""))
                if self.path == "/v1/chat/completions":
                    self._send(model.chat(doc.get("messages", [])))
                elif self.path == "/v1/search":
                    with model.lock:
                        model.calls["search"] += 1
                    self._send({"results": CITIES})
                else:
                    self.send_error(404)

            def do_GET(self) -> None:
                if self.path == "/calls":
                    with model.lock:
                        self._send({"calls": dict(model.calls), "keys": list(model.keys)})
                else:
                    self.send_error(404)

            def log_message(self, *args: object) -> None:
                pass

        return http.server.ThreadingHTTPServer((host, port), Handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--delay", type=float, default=1.0, help="seconds per call")
    args = parser.parse_args()
    server = FakeModel(args.delay).serve(args.host, args.port)
    print(f"fake model listening on http://{args.host}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
