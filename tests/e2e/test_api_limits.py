"""The API under bad clients: a body declared too large is refused before it is read, a body or
headers that trickle in are cut off, a client that leaves is logged as gone (not as an error), and a
client over its pace gets 429 with Retry-After — which the SDK waits out."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lightkube import Client

from cairn.sdk.client import Endpoint, SyncApi
from tests.support.cairn import CairnProcesses
from tests.support.kube import wait_for
from tests.support.runs import create_run, make_task, pods_of, wait_phase
from tests.support.tokens import pod_token

BODY_SECONDS, IDLE_SECONDS = 3, 8  # the harness's CAIRN_API_BODY_SECONDS and CAIRN_API_IDLE_SECONDS


@pytest.fixture
def token(kube: Client, ns: str) -> str:
    make_task(kube, ns, "wait", "def main(ctx):\n    time.sleep(900)\n")
    create_run(kube, ns, "wait", "r1")
    wait_phase(kube, ns, "r1", ("Running",))
    pod = wait_for("the pod", lambda: next((p for p in pods_of(kube, ns, "r1") if p["metadata"].get("uid")), None))
    return pod_token(kube, pod)


def _connect(cairn: CairnProcesses) -> socket.socket:
    sock = socket.create_connection((cairn.host_ip, cairn.api_port), timeout=IDLE_SECONDS + 10)
    return sock


def _answer(sock: socket.socket) -> bytes:
    """What the API sent until it closed the connection (b"" if it closed without a word)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _request_head(token: str, length: int) -> bytes:
    return (
        f"POST /v1/steps HTTP/1.1\r\nHost: cairn\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def _served(cairn: CairnProcesses) -> bool:
    return httpx.get(f"{cairn.api_url}/healthz", timeout=5, trust_env=False).status_code == 200


def test_a_body_declared_over_the_limit_is_refused_at_once_without_being_read(
    cairn: CairnProcesses, token: str
) -> None:
    with _connect(cairn) as sock:
        t0 = time.monotonic()
        sock.sendall(_request_head(token, 5_000_000) + b'{"key": "a#0"')
        answer = _answer(sock)
        took = time.monotonic() - t0
    head = answer.split(b"\r\n", 1)[0]
    assert head == b"HTTP/1.1 413 Request Entity Too Large", answer[:300]
    assert b"declared as 5000000 bytes (Content-Length)" in answer, answer[-300:]
    assert took < BODY_SECONDS, f"answered after {took:.1f}s: the body was waited for"


def test_a_body_that_trickles_in_gets_408_and_others_are_served_meanwhile(cairn: CairnProcesses, token: str) -> None:
    with _connect(cairn) as sock:
        t0 = time.monotonic()
        sock.sendall(_request_head(token, 100) + b'{"key": ')
        assert _served(cairn)  # the slow client holds nothing others need
        answer = _answer(sock)
        took = time.monotonic() - t0
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert f"did not arrive within {BODY_SECONDS}s".encode() in answer
    assert BODY_SECONDS - 0.5 <= took < BODY_SECONDS + 5, took


def test_a_client_sending_its_headers_slowly_is_cut_off(cairn: CairnProcesses) -> None:
    with _connect(cairn) as sock:
        t0 = time.monotonic()
        sock.sendall(b"POST /v1/steps HTTP/1.1\r\nHost: cairn\r\n")
        closed = False
        for _ in range(IDLE_SECONDS + 10):  # one header byte a second: slowloris
            try:
                sock.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            sock.settimeout(1.0)
            try:
                if sock.recv(1024) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
        took = time.monotonic() - t0
    assert closed, "the API kept a connection whose headers never ended"
    assert took < IDLE_SECONDS + 3, took
    assert _served(cairn)


def test_a_client_that_leaves_midway_is_logged_as_gone_not_as_an_error(cairn: CairnProcesses, token: str) -> None:
    assert cairn.api is not None
    log = Path(cairn.api.log)
    start = log.stat().st_size
    with _connect(cairn) as sock:
        sock.sendall(_request_head(token, 1000) + b'{"key": "a#0", "result": ')
        time.sleep(0.5)
    wait_for("the API to log the client as gone", lambda: b"went away" in log.read_bytes()[start:], timeout=15)
    written = log.read_bytes()[start:].decode(errors="replace")
    assert "Traceback" not in written and '"level": "error"' not in written, written[-2000:]
    assert _served(cairn)


@pytest.fixture
def paced(cairn: CairnProcesses) -> Iterator[CairnProcesses]:
    """The API restarted with a pace of 2 requests a second per client (burst 5: at most 5 in any 3 s,
    so that the 8 calls below fall in one window even on a busy machine); then as before."""
    cairn.overrides.update({"CAIRN_API_CLIENT_RATE": "2", "CAIRN_API_CLIENT_BURST": "5"})
    cairn.restart_api(kill=False)
    try:
        yield cairn
    finally:
        for key in ("CAIRN_API_CLIENT_RATE", "CAIRN_API_CLIENT_BURST"):
            cairn.overrides.pop(key, None)
        cairn.restart_api(kill=False)


def test_a_client_over_its_pace_gets_429_and_the_sdk_waits_it_out(
    paced: CairnProcesses, token: str, tmp_path: Path
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    answers = [httpx.get(f"{paced.api_url}/v1/run", headers=headers, timeout=10, trust_env=False) for _ in range(8)]
    codes = [a.status_code for a in answers]
    assert codes[:5] == [200] * 5 and 429 in codes[5:], codes
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["error"] == "TooManyRequests" and int(refused.headers["Retry-After"]) >= 1
    # Another client is not held back by this one's pace: its (bad) token is judged, not paced.
    other = httpx.get(f"{paced.api_url}/v1/run", headers={"Authorization": "Bearer nope"}, timeout=10, trust_env=False)
    assert other.status_code == 401, other.text

    token_file = tmp_path / "token"
    token_file.write_text(token)
    api = SyncApi(Endpoint(url=paced.api_url, token_file=str(token_file), retry_seconds=60))
    t0 = time.monotonic()
    try:
        runs = [api.call("GET", "/v1/run") for _ in range(8)]
    finally:
        api.close()
    took = time.monotonic() - t0
    assert all(r["run"]["name"] == "r1" for r in runs), runs[:2]
    assert took >= 1.0, f"8 calls at 2/s took {took:.2f}s: the SDK did not wait for its turn"
