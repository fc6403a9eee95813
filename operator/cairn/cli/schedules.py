"""Schedules: `schedules` (list), and `schedule trigger | backfill | pause | resume NAME`."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

import typer
from pydantic import ValidationError

from cairn.api.common import GROUP
from cairn.api.schedule import Schedule
from cairn.cli.errors import EXIT_CODES_HELP, CliError, ExitCode
from cairn.cli.kube import Kube
from cairn.cli.options import (
    AllNamespaces,
    Context,
    Kubeconfig,
    Namespace,
    OutputFormat,
    console,
    listed_as_data,
    session,
    show,
)
from cairn.cli.render import Output, schedules_table
from cairn.clock import utcnow
from cairn.domain.schedule import backfill as backfill_runs
from cairn.domain.schedule import run_body
from cairn.domain.timefmt import format_time

EPILOG = "\b\n" + EXIT_CODES_HELP
app = typer.Typer(
    help="Act on one Schedule: start a run now, backfill fire times, pause or resume it.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
POLL_SECONDS = 0.5


class BackfillPolicy(StrEnum):
    ALLOW = "Allow"
    BUFFER_ALL = "BufferAll"


Name = Annotated[str, typer.Argument(metavar="SCHEDULE", help="The Schedule.", show_default=False)]


def _schedule(kube: Kube, name: str) -> Schedule:
    try:
        return Schedule.model_validate(kube.get_schedule(name))
    except ValidationError as e:
        raise CliError(ExitCode.INVALID, f"schedule {name!r} cannot be evaluated: {e.errors()[0]['msg']}") from e


def _when(value: str, option: str) -> datetime:
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise CliError(
            ExitCode.INVALID,
            f"{option} {value!r} is not a time",
            hint=f"write it as RFC 3339, e.g. {option} 2026-12-01T00:00:00Z",
        ) from e
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def schedules(
    all_namespaces: AllNamespaces = False,
    output: OutputFormat = None,
    namespace: Namespace = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """The schedules: cron expressions, time zone, suspended or not, the last and next fire times, runs going."""
    with session(namespace, context, kubeconfig) as kube:
        bodies = kube.list_schedules(all_namespaces)
        where = "in any namespace" if all_namespaces else f"in namespace {kube.namespace!r}"
    if listed_as_data(bodies, output, "schedules", where):
        return
    out = console()
    models = []
    for b in bodies:
        try:
            models.append(Schedule.model_validate(b))
        except ValidationError:
            console(stderr=True).print(f"schedule {b['metadata']['name']} cannot be evaluated (see kubectl describe)")
    if output is Output.NAME:
        for s in models:
            out.print(s.metadata.name)
        return
    show(out, schedules_table(models, utcnow(), namespace=all_namespaces))


@app.command(epilog=EPILOG)
def trigger(
    name: Name,
    namespace: Namespace = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Start a run of the schedule now, outside its cron times (overlapPolicy does not apply)."""
    with session(namespace, context, kubeconfig) as kube:
        created = kube.create_run(run_body(_schedule(kube, name), utcnow(), manual=True))
    console().print(f"taskrun.{GROUP}/{created['metadata']['name']} created")


@app.command(epilog=EPILOG)
def backfill(
    name: Name,
    start: Annotated[str, typer.Option("--from", help="The first time (RFC 3339), included.", show_default=False)],
    end: Annotated[str, typer.Option("--to", help="The last time (RFC 3339), included.", show_default=False)],
    most: Annotated[int, typer.Option("--max", min=1, max=10000, help="Create at most this many runs.")] = 100,
    overlap: Annotated[
        BackfillPolicy,
        typer.Option(
            "--overlap-policy",
            help=(
                "Allow: start them all now (the queue limits how many run at once). BufferAll: one after "
                "another, oldest first, each when no run of the schedule is going (the command waits)."
            ),
        ),
    ] = BackfillPolicy.ALLOW,
    namespace: Namespace = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Start a run for every fire time of the schedule in [--from, --to] that has none yet (runs are named
    after their fire time: a second identical backfill starts none). The runs go through the queue like
    any other, which limits how many run at once."""
    first, last = _when(start, "--from"), _when(end, "--to")
    if last < first:
        raise CliError(ExitCode.INVALID, f"--to {end} is before --from {start}")
    out = console()
    with session(namespace, context, kubeconfig) as kube:
        s = _schedule(kube, name)
        existing = {str(r["metadata"]["name"]) for r in kube.runs_of_schedule(name)}
        bodies, had, more = backfill_runs(s, existing, first, last, most)
        created = 0
        for body in bodies:
            if overlap is BackfillPolicy.BUFFER_ALL:
                _wait_until_idle(kube, name)
            try:
                kube.create_run(body)
                created += 1
                if overlap is BackfillPolicy.BUFFER_ALL:
                    out.print(f"started {body['metadata']['name']} ({created} of {len(bodies)})")
            except CliError as e:
                if e.code is not ExitCode.REFUSED or "already exists" not in e.message:
                    raise
                had += 1
    out.print(
        f"schedule {name}: {created} run(s) created for fire times from {format_time(first)} to "
        f"{format_time(last)}; {had} fire time(s) had a run already"
    )
    if more:
        raise CliError(
            ExitCode.REFUSED,
            f"the range holds more fire times than --max {most}: the first {most} without a run were started",
            hint="run the same backfill again to go on, or raise --max",
        )


def _wait_until_idle(kube: Kube, name: str) -> None:
    """Until no run of the schedule is going (BufferAll)."""
    while True:
        going = [
            r
            for r in kube.runs_of_schedule(name)
            if ((r.get("status") or {}).get("phase") or "Queued") not in ("Succeeded", "Failed", "Cancelled")
        ]
        if not going:
            return
        time.sleep(POLL_SECONDS)


def _suspend(name: str, value: bool, namespace: str | None, context: str | None, kubeconfig: str | None) -> None:
    with session(namespace, context, kubeconfig) as kube:
        _schedule(kube, name)  # it exists, and is one
        kube.patch_schedule(name, {"suspend": value})
    console().print(f"schedule.{GROUP}/{name} {'paused' if value else 'resumed'}")


@app.command(epilog=EPILOG)
def pause(name: Name, namespace: Namespace = None, context: Context = None, kubeconfig: Kubeconfig = None) -> None:
    """Suspend the schedule (spec.suspend=true): no runs start; runs going on finish."""
    _suspend(name, True, namespace, context, kubeconfig)


@app.command(epilog=EPILOG)
def resume(name: Name, namespace: Namespace = None, context: Context = None, kubeconfig: Kubeconfig = None) -> None:
    """Resume the schedule (spec.suspend=false): fire times missed meanwhile within catchupWindow run."""
    _suspend(name, False, namespace, context, kubeconfig)
