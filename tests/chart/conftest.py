"""Chart fixtures: one release of the chart (bundled PostgreSQL, cluster-wide mode) shared by the
tests of this package, installed the first time a test needs it and uninstalled at the end.

Cairn's operator watches every namespace in cluster-wide mode, as does the host operator that the
session-wide `cairn` fixture (tests/e2e) starts: two operators must not act on the same runs. So the
chart's tests run before any test that uses `cairn` (see pytest_collection_modifyitems), and the
release is gone before those start.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Generator, Iterator

import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Namespace, PersistentVolume

from tests.chart import docs
from tests.chart.release import Release, Storage, restricted_namespace, wait_gone
from tests.support.env import ClusterEnv
from tests.support.kube import kubectl

_releases: list[Release] = []


def _uses(item: pytest.Item, fixture: str) -> bool:
    return fixture in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Move the tests that install the chart before the first test that starts Cairn on the host."""
    first_host = next((item for item in items if _uses(item, "cairn")), None)
    if first_host is None:
        return
    late = [item for item in items[items.index(first_host) :] if _uses(item, "release")]
    if not late:
        return
    moved = set(map(id, late))
    rest = [item for item in items if id(item) not in moved]
    at = rest.index(first_host)
    items[:] = rest[:at] + late + rest[at:]


@pytest.fixture(scope="package")
def release(cluster_env: ClusterEnv, kube: Client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    suffix = secrets.token_hex(3)
    namespace = f"cairn-system-{suffix}"
    # docs/helm.md's quick start, as written, in a namespace of the test's own.
    quick_start = docs.commands(docs.sh_block("## Quick start"), {"cairn-system": namespace})
    kubectl_steps = [c for c in quick_start if c[0] == "kubectl"]
    install = next(c for c in quick_start if c[:2] == ["helm", "install"])
    for step in kubectl_steps:
        kubectl(cluster_env.kubeconfig, *step[1:])
    kubectl(cluster_env.kubeconfig, "label", "namespace", namespace, "cairn.dev/test=true")
    workspace = restricted_namespace(kube, f"cairn-work-{suffix}")
    values: dict[str, object] = {"operator": {"resyncInterval": 30, "sweepInterval": 5}}
    storage = None
    if cluster_env.managed:
        storage = Storage(kube, tmp_path_factory.mktemp("pgdata") / "volume").create()
        values["postgresql"] = {"persistence": {"storageClassName": storage.name}}
    rel = Release(kube, cluster_env.kubeconfig, namespace, workspace, values, storage.name if storage else None)
    _releases.append(rel)
    rel.adopt_existing_crds()
    try:
        rel.install(install)
        yield rel
    finally:
        # Also after a failed install, whose cluster-wide objects the namespaces' deletion would not remove.
        if rel.installed or "not found" not in rel.helm("status", rel.name, "-n", namespace, check=False):
            rel.helm("uninstall", rel.name, "-n", namespace, "--wait", "--timeout", "2m", check=False)
        for ns in (workspace, namespace):
            kube.delete(Namespace, ns)
        # Gone before later suites start an operator of their own that would see their runs.
        for ns in (workspace, namespace):
            wait_gone(kube, ns)
        if storage is not None:
            _wait_released(kube, storage.name)
            storage.delete()
        _releases.remove(rel)


def _wait_released(kube: Client, pv: str, timeout: float = 60) -> None:
    """The PersistentVolume's claim is gone (with the release's StatefulSet or its namespace)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = kube.get(PersistentVolume, pv).status
        if status is None or status.phase != "Bound":
            return
        time.sleep(0.5)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and "release" in getattr(item, "fixturenames", ()) and _releases:
        report.sections.append(("cairn release", _releases[0].diagnostics()))
    return report
