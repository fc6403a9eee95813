"""Choosing runs for bulk cancel and rerun: every filter given must accept a run; nothing happens without
--yes off a terminal; --dry-run changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from cairn.cli.bulk import confirm, labels_of, select, since_time
from cairn.cli.errors import CliError, ExitCode

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def body(
    name: str, *, task: str = "t", phase: str = "Failed", created: str = "2026-12-02T11:00:00Z", **labels: str
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "creationTimestamp": created, "labels": labels},
        "spec": {"taskRef": {"name": task}},
        "status": {"phase": phase},
    }


RUNS = [
    body("old", created="2026-11-01T00:00:00Z", team="a"),
    body("a1", team="a"),
    body("a2", team="a", phase="Succeeded"),
    body("b1", team="b", task="other"),
]


@pytest.mark.parametrize(
    ("filters", "names"),
    [
        ({"labels": {"team": "a"}}, ["old", "a1", "a2"]),
        ({"labels": {"team": "a"}, "phase": "failed"}, ["old", "a1"]),
        ({"task": "other"}, ["b1"]),
        ({"since": since_time("24h", NOW)}, ["a1", "a2", "b1"]),
        ({"labels": {"team": "a"}, "since": since_time("2026-12-02T00:00:00Z", NOW), "phase": "Failed"}, ["a1"]),
        ({"labels": {"team": "c"}}, []),
    ],
)
def test_a_run_is_chosen_only_when_every_given_filter_accepts_it(filters: dict[str, Any], names: list[str]) -> None:
    chosen = select(
        RUNS,
        labels=filters.get("labels"),
        task=filters.get("task"),
        phase=filters.get("phase"),
        since=filters.get("since"),
    )
    assert [b["metadata"]["name"] for b in chosen] == names


def test_bad_selections_name_the_option_and_the_form_it_wants() -> None:
    with pytest.raises(CliError, match=r"-l 'team': give key=value pairs"):
        labels_of("team")
    with pytest.raises(CliError, match=r"--since 'yesterday': give a duration ago"):
        since_time("yesterday", NOW)
    assert labels_of("team=a,tier=batch") == {"team": "a", "tier": "batch"}


def test_nothing_is_done_off_a_terminal_without_yes_and_a_dry_run_does_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(CliError) as refused:
        confirm("cancel", ["a1", "a2"], dry_run=False, yes=False)
    assert refused.value.code is ExitCode.INVALID and "add --yes to cancel them" in refused.value.message
    assert confirm("cancel", ["a1", "a2"], dry_run=True, yes=True) is False
    assert "(dry run: nothing changed)" in capsys.readouterr().out
    assert confirm("rerun", ["a1"], dry_run=False, yes=True) is True
