"""Session fixtures: one real cluster (control plane + two real nodes) and one real PostgreSQL for the
whole run, a fresh namespace and a fresh database for each test. See tests/support/env.py for how to
point the suite at an existing cluster or database instead."""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace

from harness.cluster import Cluster
from harness.postgres import Postgres, create_database, drop_database
from tests.support import summary
from tests.support.cairn import CairnProcesses
from tests.support.crds import install_crds
from tests.support.env import ClusterEnv, external_dsn, external_kubeconfig
from tests.support.kube import client
from tests.support.runs import StepCounter, counter_at
from tests.support.summary import TIMINGS


@pytest.fixture(scope="session")
def cluster_env() -> Iterator[ClusterEnv]:
    ext = external_kubeconfig()
    if ext is not None:
        yield ClusterEnv(ext, os.environ.get("CAIRN_TEST_HOST_IP", ""), None)
        return
    t0 = time.monotonic()
    cluster = Cluster(nodes=2).start()
    TIMINGS["cluster start (s)"] = time.monotonic() - t0
    TIMINGS.update({f"  {k} (s)": v for k, v in cluster.timings.items()})
    try:
        yield ClusterEnv(cluster.kubeconfig, cluster.slot.host_ip, cluster)
    finally:
        t1 = time.monotonic()
        cluster.stop()
        TIMINGS["cluster stop (s)"] = time.monotonic() - t1


@pytest.fixture(scope="session")
def kube(cluster_env: ClusterEnv) -> Client:
    return client(cluster_env.kubeconfig)


@pytest.fixture(scope="session")
def crds(cluster_env: ClusterEnv) -> Path:
    """Cairn's CRDs, installed from crds/ (the generated files a user applies)."""
    install_crds(cluster_env.kubeconfig)
    return cluster_env.kubeconfig


@pytest.fixture
def namespace(kube: Client, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of the test's own, labelled for the restricted Pod Security Standard."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    name = f"{stem}-{secrets.token_hex(3)}"
    kube.create(
        Namespace(
            metadata=ObjectMeta(
                name=name,
                labels={
                    "cairn.dev/test": "true",
                    "pod-security.kubernetes.io/enforce": "restricted",
                },
            )
        )
    )
    yield name
    kube.delete(Namespace, name)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Postgres | None]:
    """The harness's PostgreSQL (None when CAIRN_TEST_DSN points at an existing one)."""
    if external_dsn() is not None:
        yield None
        return
    t0 = time.monotonic()
    server = Postgres().start()
    TIMINGS["postgres start (s)"] = time.monotonic() - t0
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_admin_dsn(pg_server: Postgres | None) -> str:
    return pg_server.dsn if pg_server is not None else str(external_dsn())


@pytest.fixture(scope="session")
def pg_template(pg_admin_dsn: str) -> str:
    """A template database that each test's database is cloned from."""
    name = f"cairn_template_{secrets.token_hex(4)}"
    create_database(pg_admin_dsn, name)
    return name


@pytest.fixture
def database(pg_admin_dsn: str, pg_template: str) -> Iterator[str]:
    """The DSN of an empty database of the test's own, cloned from the template."""
    name = f"t_{secrets.token_hex(6)}"
    dsn = create_database(pg_admin_dsn, name, template=pg_template)
    yield dsn
    drop_database(pg_admin_dsn, name)


@pytest.fixture
def pg(database: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(database, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def cairn(
    cluster_env: ClusterEnv, crds: Path, pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CairnProcesses]:
    """Cairn's operator and API running against the session's cluster and a database of their own."""
    dsn = create_database(pg_admin_dsn, f"cairn_e2e_{secrets.token_hex(4)}")
    procs = CairnProcesses(cluster_env.kubeconfig, dsn, cluster_env.host_ip, tmp_path_factory.mktemp("cairn"))
    procs.start_api()
    procs.start_operator()
    _cairn_for_reports.append(procs)
    try:
        yield procs
    finally:
        procs.stop()


@pytest.fixture
def counter(cluster_env: ClusterEnv) -> Iterator[StepCounter]:
    """A side channel the test owns: task code reports each execution of each step to it."""
    with counter_at(cluster_env.host_ip) as c:
        yield c


_cairn_for_reports: list[CairnProcesses] = []


# Units of work by how long they take (longest first), so that side by side (pytest-xdist, one cluster
# per worker) the long ones start first and the workers end together; an entry is a test file or the
# start of a test's node id. Measured with --durations (seconds on the 2-core CI machine, two workers):
# PostgreSQL chaos 239, the 1,000-run burst 160, durable steps 157, the operator killed ten times 101,
# the CLI 99, the other fault scenarios 44-89 each, the 200 runs through a limit of 5 on a simulated
# node ~110, nodes 64, operator restarts 58, examples 57, e2e lifecycle 57, the other queue tests 10-36.
LONGEST_FIRST: list[str] = [
    f"tests/{name}"
    for name in (
        "e2e/test_faults.py::test_postgresql_restarted_every_few_seconds_loses_nothing",
        "e2e/test_queue_burst.py",
        "e2e/test_durable_steps.py",
        "e2e/test_faults.py::test_the_operator_killed_ten_times_at_random_loses_nothing",
        "e2e/test_cli.py",
        "e2e/test_queues.py::test_two_hundred_runs",
        "e2e/test_operators.py",
        "e2e/test_faults.py",
        "integration/test_nodes.py",
        "e2e/test_operator_restarts.py",
        "e2e/test_examples.py",
        "e2e/test_ui.py",
        "e2e/test_schedules.py",
        "e2e/test_waits.py",
        "e2e/test_typescript.py",
        "e2e/test_kueue.py",
        "e2e/test_disruptions.py",
        "e2e/test_fork.py",
        "e2e/test_history.py",
        "e2e/test_bulk.py",
        "e2e/test_pace.py",
        "e2e/test_docs.py",
        "e2e/test_lifecycle.py",
        "e2e/test_queues.py",
        "e2e/test_checkpoint_api.py",
        "e2e/test_observability.py",
        "integration/test_store.py",
    )
]

# Files whose tests share nothing but the session's cluster and Cairn: each test is a unit of its own,
# so that two workers can share their long tests.
SPLIT_BY_TEST = {
    "tests/e2e/test_faults.py",
    "tests/e2e/test_queues.py",
    "tests/e2e/test_schedules.py",
    "tests/e2e/test_waits.py",
    "tests/e2e/test_operators.py",
    "tests/e2e/test_pace.py",
}


def _unit_of_work(nodeid: str) -> str:
    """What one pytest-xdist worker takes whole: a test file, one test of a file in SPLIT_BY_TEST, or
    all the chart's files together (their cluster-wide operator must be gone before a worker starts
    Cairn's own: tests/chart/conftest.py)."""
    path = nodeid.split("::", 1)[0]
    if path.startswith("tests/chart/"):
        return "tests/chart"
    return nodeid if path in SPLIT_BY_TEST else path


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """The order of the run: the harness lifecycle test first (it checks the host paths every harness
    shares, which it can do only while no other harness, the session's cluster included, is running),
    then the chart's files, then every other unit of work, longest first; within a unit, the order is kept."""

    def rank(item: pytest.Item) -> int:
        unit = _unit_of_work(item.nodeid)
        if unit == "tests/integration/test_harness_lifecycle.py":
            return -2
        if unit == "tests/chart":
            return -1
        return next((i for i, start in enumerate(LONGEST_FIRST) if unit.startswith(start)), len(LONGEST_FIRST))

    items.sort(key=rank)  # stable


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Workers take whole units of work (_unit_of_work), in the run's order (--no-loadscope-reorder)."""
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

    class ByUnitOfWork(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return _unit_of_work(nodeid)

    return ByUnitOfWork(config, log)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and "cairn" in getattr(item, "fixturenames", ()) and _cairn_for_reports:
        report.sections.append(("cairn logs", _cairn_for_reports[0].log_tail(80)))
    if hasattr(item.config, "workerinput"):  # a pytest-xdist worker: its controller prints the summary
        summary.attach(report)
    return report


def _distributed(config: pytest.Config) -> bool:
    """This process is the controller of pytest-xdist workers."""
    return config.getoption("dist", "no") != "no" and not hasattr(config, "workerinput")


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    if _distributed(config):
        config.pluginmanager.register(_Collector(), "cairn-summary-collector")


class _Collector:
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        summary.collect(report)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    summary.write(terminalreporter, _distributed(terminalreporter.config))


def harness_cluster(env: ClusterEnv) -> Cluster:
    return env.require_harness()
