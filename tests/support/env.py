"""Where the tests' cluster and database come from: the harness (default), or existing ones.

- `CAIRN_TEST_KUBECONFIG=path`: run against an existing cluster (e.g. kind) instead of starting one.
  Images must be loaded into it (`make images` writes OCI archives; `kind load image-archive` them),
  and tests that stop nodes or restart the API server are deselected with `-m "not harness"`.
- `CAIRN_TEST_DSN=postgresql://…`: use an existing PostgreSQL server (the role needs CREATEDB);
  each test still gets a database of its own.
- `CAIRN_TEST_HOST_IP`: with an existing cluster, the address at which pods reach the machine running
  the tests (the harness knows it: the host side of its bridge).

In CI none of these is set: the harness starts everything, and a part that cannot start fails the
run with its log tail. Nothing is ever skipped for want of a cluster or a database.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from harness.cluster import Cluster


@dataclass
class ClusterEnv:
    kubeconfig: Path
    host_ip: str
    harness: Cluster | None

    @property
    def managed(self) -> bool:
        return self.harness is not None

    def require_harness(self) -> Cluster:
        if self.harness is None:
            raise RuntimeError(
                "this test controls nodes or control-plane processes, which needs the harness's own cluster: "
                "unset CAIRN_TEST_KUBECONFIG, or deselect these tests with -m 'not harness'"
            )
        return self.harness


def external_kubeconfig() -> Path | None:
    value = os.environ.get("CAIRN_TEST_KUBECONFIG")
    return Path(value) if value else None


def external_dsn() -> str | None:
    return os.environ.get("CAIRN_TEST_DSN") or None
