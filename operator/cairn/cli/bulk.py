"""Acting on many runs at once: `cairn cancel` and `cairn rerun` by selector (-l, --task, --phase,
--since). The runs chosen are listed first; nothing happens without --yes, or a "y" at the prompt on a
terminal (--dry-run only lists them); long work shows a progress bar on a terminal and one line per run
elsewhere."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cairn.cli.errors import CliError, ExitCode
from cairn.cli.kube import Kube
from cairn.cli.options import console
from cairn.domain.timefmt import parse_time

_SINCE = re.compile(r"^(\d+)(s|m|h|d)$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

Selector = Annotated[
    str | None,
    typer.Option(
        "-l",
        "--selector",
        metavar="K=V[,K=V]",
        help="Runs with these labels (several runs at once).",
        show_default=False,
    ),
]
TaskFilter = Annotated[
    str | None, typer.Option("--task", metavar="TASK", help="Runs of this Task (several at once).", show_default=False)
]
PhaseFilter = Annotated[
    str | None,
    typer.Option("--phase", metavar="PHASE", help="Runs in this phase (several at once).", show_default=False),
]
Since = Annotated[
    str | None,
    typer.Option("--since", metavar="WHEN", help="Runs created since (30m, 24h, 7d, or RFC 3339).", show_default=False),
]
DryRun = Annotated[bool, typer.Option("--dry-run", help="List the runs it would act on; change nothing.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Act without asking (for scripts).")]


def since_time(value: str, now: datetime) -> datetime:
    ago = _SINCE.match(value)
    try:
        if ago:
            return now - timedelta(**{_UNITS[ago.group(2)]: int(ago.group(1))})
        return parse_time(value)
    except (ValueError, OverflowError) as e:
        raise CliError(
            ExitCode.INVALID, f"--since {value!r}: give a duration ago (30m, 24h, 7d) or an RFC 3339 time"
        ) from e


def labels_of(selector: str) -> dict[str, str]:
    out = {}
    for part in selector.split(","):
        key, eq, value = part.strip().partition("=")
        if not eq or not key:
            raise CliError(ExitCode.INVALID, f"-l {selector!r}: give key=value pairs, e.g. -l team=media,tier=batch")
        out[key] = value
    return out


def select(
    bodies: list[dict[str, Any]],
    *,
    labels: dict[str, str] | None,
    task: str | None,
    phase: str | None,
    since: datetime | None,
) -> list[dict[str, Any]]:
    """The runs every given filter accepts, oldest first."""
    chosen = []
    for b in bodies:
        meta, spec, status = b["metadata"], b.get("spec") or {}, b.get("status") or {}
        if labels and any((meta.get("labels") or {}).get(k) != v for k, v in labels.items()):
            continue
        if task and (spec.get("taskRef") or {}).get("name") != task:
            continue
        if phase and (status.get("phase") or "").lower() != phase.lower():
            continue
        created = meta.get("creationTimestamp")
        if since and (not created or parse_time(created) < since):
            continue
        chosen.append(b)
    return sorted(chosen, key=lambda b: (b["metadata"].get("creationTimestamp") or "", b["metadata"]["name"]))


def confirm(verb: str, names: list[str], *, dry_run: bool, yes: bool) -> bool:
    """List what would be done; True when it should be done now."""
    out = console()
    shown = names[:20]
    more = f" and {len(names) - 20} more" if len(names) > 20 else ""
    out.print(f"{len(names)} run(s) to {verb}: {', '.join(shown)}{more}")
    if dry_run:
        out.print("(dry run: nothing changed)")
        return False
    if yes:
        return True
    if not out.is_terminal:
        raise CliError(
            ExitCode.INVALID,
            f"{len(names)} run(s) match: add --yes to {verb} them (or --dry-run to list them only)",
        )
    return typer.confirm(f"{verb.capitalize()} these {len(names)} run(s)?", default=False)


def each(kube: Kube, names: list[str], what: str, act: Callable[[str], str]) -> list[tuple[str, str]]:
    """Apply `act` to every run, with a progress bar on a terminal; (run, what happened), in order.
    A failure on one run is reported and the rest go on."""
    out = console()
    done: list[tuple[str, str]] = []
    failed = 0

    def one(name: str) -> str:
        nonlocal failed
        try:
            return act(name)
        except CliError as e:
            failed += 1
            return f"error: {e.message}"

    if out.is_terminal and len(names) > 1:
        columns = (TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=out, transient=True) as bar:
            job = bar.add_task(what, total=len(names))
            for name in names:
                done.append((name, one(name)))
                bar.advance(job)
    else:
        for name in names:
            result = one(name)
            done.append((name, result))
            out.print(f"{name}: {result}")
    if out.is_terminal:
        for name, result in done:
            out.print(f"{name}: {result}")
    if failed:
        raise CliError(ExitCode.REFUSED, f"{failed} of {len(names)} run(s) could not be handled (listed above)")
    return done


def selected(
    kube: Kube, selector: str | None, task: str | None, phase: str | None, since: str | None, now: datetime
) -> list[str]:
    bodies = kube.list_runs()
    chosen = select(
        bodies,
        labels=labels_of(selector) if selector else None,
        task=task,
        phase=phase,
        since=since_time(since, now) if since else None,
    )
    return [b["metadata"]["name"] for b in chosen]
