"""Following a run (`trigger --wait`, `wait`) against a scripted sequence of sights of the run: each
change printed once, an API server outage ridden out, a deleted run and a timeout reported. The
cluster side is a stand-in for cairn.cli.kube.Kube's one read (`get_run`); the e2e tests follow real
runs."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any, cast

import pytest
from rich.console import Console

from cairn.cli import follow
from cairn.cli.errors import CliError, ExitCode
from cairn.cli.kube import Kube
from tests.unit.test_cli_render import run_dict, running_in_attempt_1


class Sights:
    """Answers get_run with the next scripted sight: a run body, or a CliError to raise."""

    def __init__(self, sights: list[dict[str, Any] | CliError]) -> None:
        self._sights: Iterator[dict[str, Any] | CliError] = iter(sights)
        self.reads = 0

    def get_run(self, name: str) -> dict[str, Any]:
        self.reads += 1
        sight = next(self._sights)
        if isinstance(sight, CliError):
            raise sight
        return sight


def console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=500, color_system=None, highlight=False, markup=False), buffer


def unreachable() -> CliError:
    return CliError(ExitCode.UNREACHABLE, "could not connect to the Kubernetes API server at https://10.0.0.1:6443")


def test_each_change_is_printed_once_and_the_ended_run_is_returned() -> None:
    flight = running_in_attempt_1().model_dump(mode="json", by_alias=True, exclude_none=True)
    sights = Sights([flight, flight, run_dict()])
    out, buffer = console()
    ended = follow.follow(cast(Kube, sights), "r1", out, live=False, poll=0)
    text = buffer.getvalue()
    assert ended.status is not None and ended.status.phase == "Succeeded"
    assert text.count("step fetch#0 completed (attempt 1)") == 1
    assert text.count("attempt 1 started") == 1 and "step publish#0 completed (attempt 2)" in text
    assert text.splitlines()[-2:] == [
        "run r1 Succeeded after 2 attempts in 7.2s: attempt 2 completed",
        'result: {"square": 49, "published": 49}',
    ]


def test_an_api_server_outage_is_ridden_out() -> None:
    sights = Sights([unreachable(), unreachable(), run_dict()])
    out, buffer = console()
    ended = follow.follow(cast(Kube, sights), "r1", out, live=False, poll=0)
    assert ended.status is not None and ended.status.phase == "Succeeded"
    text = buffer.getvalue()
    assert "warning: cannot read the run (could not connect to the Kubernetes API server" in text
    assert "warning: reading the run again" in text


def test_an_outage_longer_than_a_minute_ends_the_wait() -> None:
    readings = iter([0.0, 30.0, 59.0, 61.0])  # one reading per failed read
    out, buffer = console()
    sights = Sights([unreachable()] * 4)
    with pytest.raises(CliError) as info:
        follow.follow(cast(Kube, sights), "r1", out, live=False, poll=0, clock=lambda: next(readings))
    assert info.value.code is ExitCode.UNREACHABLE and sights.reads == 4
    assert buffer.getvalue().count("warning: cannot read the run") == 1


def test_a_run_deleted_while_followed_and_one_that_never_was() -> None:
    gone = CliError(ExitCode.NOT_FOUND, "run 'r1' not found in namespace 'demo'")
    flight = running_in_attempt_1().model_dump(mode="json", by_alias=True, exclude_none=True)
    out, _ = console()
    with pytest.raises(CliError) as info:
        follow.follow(cast(Kube, Sights([flight, gone])), "r1", out, live=False, poll=0)
    assert info.value.message == "run 'r1' was deleted while being followed"
    with pytest.raises(CliError) as info:
        follow.follow(cast(Kube, Sights([gone])), "r1", out, live=False, poll=0)
    assert info.value.message == "run 'r1' not found in namespace 'demo'"


def test_the_timeout_says_the_run_goes_on() -> None:
    flight = running_in_attempt_1().model_dump(mode="json", by_alias=True, exclude_none=True)
    out, _ = console()
    with pytest.raises(CliError) as info:
        follow.follow(cast(Kube, Sights([flight] * 1000)), "r1", out, live=False, timeout=0.05, poll=0.01)
    assert info.value.code is ExitCode.TIMEOUT
    assert info.value.message == "run 'r1' has not ended after 0.05s (phase Running); it goes on"
    assert info.value.hint == "cairn wait r1 follows it again; cairn cancel r1 stops it"
