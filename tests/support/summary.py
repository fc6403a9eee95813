"""What the run's summary prints (the figures the tests measured, the fault suite's totals, the
harness's timings), gathered whether the tests run in this process or in pytest-xdist workers.

A worker's summary is never printed: each test's report carries what its worker measured since the
last report (as user properties, which xdist sends to the controller), and the controller adds it up.
"""

from __future__ import annotations

import os
import sys
from typing import Any, cast

import pytest

from tests.support.figures import FIGURES

TIMINGS: dict[str, float] = {}

_FIGURE, _TOTALS, _TIMINGS = "cairn-figure", "cairn-fault-totals", "cairn-harness-timings"
_shipped = 0
_figures: list[tuple[str, str]] = []
_totals: dict[str, dict[str, int]] = {}
_timings: dict[str, dict[str, float]] = {}
_busy: dict[str, dict[str, float]] = {}  # worker -> test file -> seconds spent in its tests


def _fault_totals() -> dict[str, int]:
    totals = getattr(sys.modules.get("tests.e2e.test_faults"), "TOTALS", None)
    return dict(totals) if totals and totals.get("scenarios") else {}


def attach(report: pytest.TestReport) -> None:
    """In a worker: put what was measured since the last report on this one."""
    global _shipped
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    for test, line in FIGURES[_shipped:]:
        report.user_properties.append((_FIGURE, [test, line]))
    _shipped = len(FIGURES)
    if totals := _fault_totals():
        report.user_properties.append((_TOTALS, [worker, totals]))
    if TIMINGS:
        report.user_properties.append((_TIMINGS, [worker, dict(TIMINGS)]))


def collect(report: pytest.TestReport) -> None:
    """In the controller: take what a worker's report carries, and the time its worker spent."""
    gateway = getattr(getattr(report, "node", None), "gateway", None)
    if gateway is not None:
        files = _busy.setdefault(str(gateway.id), {})
        path = report.nodeid.split("::", 1)[0]
        files[path] = files.get(path, 0.0) + report.duration
    for key, value in report.user_properties:
        pair = cast(list[Any], value)
        if key == _FIGURE:
            _figures.append((str(pair[0]), str(pair[1])))
        elif key == _TOTALS:
            _totals[str(pair[0])] = dict(pair[1])
        elif key == _TIMINGS:
            _timings[str(pair[0])] = dict(pair[1])


def write(terminalreporter: pytest.TerminalReporter, distributed: bool) -> None:
    figures = _figures if distributed else FIGURES
    totals: dict[str, int] = {}
    for part in _totals.values() if distributed else [_fault_totals()]:
        for key, value in part.items():
            totals[key] = totals.get(key, 0) + value
    timings: dict[str, dict[str, Any]] = _timings if distributed else ({"": TIMINGS} if TIMINGS else {})
    if totals:
        terminalreporter.section("fault suite")
        for key, value in totals.items():
            terminalreporter.write_line(f"{key:<40} {value}")
    if figures:
        terminalreporter.section("figures measured by the tests")
        for test, line in figures:
            terminalreporter.write_line(f"{test}\n    {line}")
    if timings:
        terminalreporter.section("harness timings")
        for worker, values in sorted(timings.items()):
            if worker:
                terminalreporter.write_line(f"[{worker}]")
            for key, value in values.items():
                terminalreporter.write_line(f"{key:<28} {value:7.1f}")
    if _busy:
        # How the workers shared the run: if one was busy much longer than the others, the order of
        # LONGEST_FIRST (tests/conftest.py) or the units of work need another look.
        terminalreporter.section("time each worker spent in tests (s), by file")
        for worker, files in sorted(_busy.items()):
            terminalreporter.write_line(f"[{worker}] {sum(files.values()):7.1f}")
            for path, seconds in sorted(files.items(), key=lambda kv: -kv[1]):
                terminalreporter.write_line(f"    {seconds:7.1f}  {path}")
