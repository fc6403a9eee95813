"""Kubernetes helpers for tests: clients, kubectl, waiting on conditions."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from lightkube import Client, KubeConfig

from harness import config

T = TypeVar("T")


def client(kubeconfig: Path, namespace: str | None = None) -> Client:
    return Client(
        KubeConfig.from_file(str(kubeconfig)),
        namespace=namespace,
        trust_env=False,
        field_manager="cairn-tests",
    )


def as_dict(obj: Any) -> dict[str, Any]:
    """A lightkube object as the plain JSON-like dict the API server returned."""
    data = obj.to_dict()
    assert isinstance(data, dict)
    return data


def server_ssl(kube: Client) -> ssl.SSLContext:
    """An SSL context trusting the cluster's CA (from the client's kubeconfig)."""
    cluster = kube.config.cluster
    ctx = ssl.create_default_context()
    if cluster.certificate_auth_data:
        ctx.load_verify_locations(cadata=base64.b64decode(cluster.certificate_auth_data).decode())
    elif cluster.certificate_auth:
        ctx.load_verify_locations(cafile=str(cluster.certificate_auth))
    return ctx


def kubectl(
    kubeconfig: Path, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [str(config.kubectl()), f"--kubeconfig={kubeconfig}", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and res.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({res.returncode}):\n{res.stdout}{res.stderr}")
    return res


def kubectl_json(kubeconfig: Path, *args: str) -> dict[str, object]:
    out = kubectl(kubeconfig, *args, "-o", "json").stdout
    data = json.loads(out)
    assert isinstance(data, dict)
    return data


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60, interval: float = 0.2) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` and the last value seen."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
        except Exception as e:  # noqa: BLE001 - a probe may race with object creation; keep polling
            value, last = None, e
        if value:
            return value
        if value is not None:
            last = value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")
        time.sleep(interval)
