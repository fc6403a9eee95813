"""The arithmetic behind `make bench`'s steps and crash figures (the benchmarks never run in CI; what
they compute from their observations is checked here)."""

from __future__ import annotations

import json

from bench.crash import wasted_seconds
from bench.stats import Figure
from bench.steps_driver import VALUE_BYTES, value_of


def _log(*lines: tuple[str, str]) -> str:
    return "\n".join(f"2026-12-03T06:00:{sec}Z {text}" for sec, text in lines) + "\n"


def test_a_resumed_run_pays_only_the_killed_steps_partial_execution() -> None:
    first = _log(
        ("01.000000001", "step 7 begins"),
        ("03.000000000", "step 7 ends"),
        ("03.000100000", "step 8 begins"),
    )
    second = _log(("20.000000000", "step 8 begins"), ("22.000000000", "step 8 ends"))
    killed_at = _epoch("2026-12-03T06:00:04.000100+00:00")
    assert round(wasted_seconds({"p-1": first, "p-2": second}, killed_at), 3) == 1.0


def test_a_job_that_starts_again_pays_every_step_before_the_kill() -> None:
    first = _log(
        ("01.000000000", "step 1 begins"),
        ("03.000000000", "step 1 ends"),
        ("03.000000000", "step 2 begins"),
        ("04.500000000", "cairn: some other line"),
    )
    second = _log(
        ("20.000000000", "step 1 begins"),
        ("22.000000000", "step 1 ends"),
        ("22.000000000", "step 2 begins"),
        ("24.000000000", "step 2 ends"),
    )
    killed_at = _epoch("2026-12-03T06:00:04.500000+00:00")
    assert round(wasted_seconds({"j-a": first, "j-b": second}, killed_at), 3) == 3.5


def test_a_run_without_a_crash_wastes_nothing() -> None:
    only = _log(("01.000000000", "step 1 begins"), ("03.000000000", "step 1 ends"))
    assert wasted_seconds({"p-1": only}, None) == 0.0


def test_step_values_are_json_of_the_size_they_are_named_for() -> None:
    assert value_of(VALUE_BYTES["noop"]) is None
    for name in ("1KiB", "100KiB"):
        text = json.dumps(value_of(VALUE_BYTES[name]), separators=(",", ":"))
        assert len(text) == VALUE_BYTES[name], name


def test_a_ratio_target_is_met_only_when_cairn_over_the_peer_is_within_it() -> None:
    def fig(cairn: float, peer: float) -> Figure:
        return Figure("steps", "p50", "ms", [cairn], [peer], "DBOS", target=1.0, target_kind="ratio_max")

    assert fig(2.0, 4.0).met is True
    assert fig(4.0, 4.0).met is True
    assert fig(4.1, 4.0).met is False
    assert Figure("steps", "p50", "ms", [1.0], None, target=1.0, target_kind="ratio_max").met is False


def test_an_absolute_target_with_a_minimum_ratio_needs_both() -> None:
    def fig(cairn: float, job: float) -> Figure:
        return Figure("admission", "adm/s", "1/s", [cairn], [job], "Job", 20.0, "min", 1.0, "higher")

    assert fig(25.0, 21.0).met is True
    assert fig(25.0, 26.0).met is False  # >= 20, but slower than the Job controller
    assert fig(19.0, 10.0).met is False  # faster than the Job controller, but under 20/s
    assert Figure("admission", "adm/s", "1/s", [25.0], None, target=20.0, target_kind="min", min_ratio=1.0).met is False


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()
