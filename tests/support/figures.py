"""Figures the tests measure (an observed maximum, an admission rate, a fault scenario's counts),
printed and gathered for the run's summary: pytest hides a passing test's output, and CI's log
should show them."""

from __future__ import annotations

import os
import re

FIGURES: list[tuple[str, str]] = []


def report(line: str) -> None:
    """Print `line` now and list it, under the current test's name, at the end of the run."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" ", 1)[0]  # less " (call)"
    test = re.sub(r"@(chart|tests/[^@\s]+)$", "", test)  # less pytest-xdist's "@group"
    print(line)
    FIGURES.append((test, line.strip()))
