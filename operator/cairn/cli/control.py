"""Steering and watching the system: `cancel RUN` and `queues`."""

from __future__ import annotations

from typing import Annotated

import typer

from cairn.api.common import GROUP
from cairn.api.queue import Queue
from cairn.cli.bulk import DryRun, PhaseFilter, Selector, Since, TaskFilter, Yes, confirm, each, selected
from cairn.cli.errors import CliError, ExitCode
from cairn.cli.kube import Kube, as_run
from cairn.cli.options import (
    AllNamespaces,
    Context,
    Kubeconfig,
    Namespace,
    OutputFormat,
    Timeout,
    console,
    listed_as_data,
    session,
    show,
)
from cairn.cli.render import Output, queues_table
from cairn.cli.trigger import Wait, follow_to_end
from cairn.clock import utcnow


def cancel(
    run: Annotated[
        str | None,
        typer.Argument(metavar="[RUN]", help="The TaskRun to cancel (or select several).", show_default=False),
    ] = None,
    selector: Selector = None,
    task: TaskFilter = None,
    phase: PhaseFilter = None,
    since: Since = None,
    dry_run: DryRun = False,
    yes: Yes = False,
    wait: Wait = False,
    timeout: Timeout = None,
    namespace: Namespace = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Cancel a run: sets spec.cancel=true (a merge patch). The operator stops its pod and the run ends
    Cancelled. A run that has already ended is left as it is. With --wait, follows it to its end.
    Several at once: -l, --task, --phase, --since (lists them; --yes or a confirmation; --dry-run)."""
    if run is None or any(f is not None for f in (selector, task, phase, since)):
        if run is not None:
            raise CliError(ExitCode.INVALID, "give RUN or a selection (-l, --task, --phase, --since), not both")
        if all(f is None for f in (selector, task, phase, since)):
            raise CliError(ExitCode.INVALID, "which runs? give RUN, or select them with -l, --task, --phase or --since")
        if wait:
            raise CliError(ExitCode.INVALID, "--wait follows one run: give RUN")
        with session(namespace, context, kubeconfig) as kube:
            names = selected(kube, selector, task, phase, since, utcnow())
            if not names:
                console(stderr=True).print(f"No runs match in namespace {kube.namespace!r}.")
                return
            if confirm("cancel", names, dry_run=dry_run, yes=yes):
                each(kube, names, "cancelling", lambda name: _cancel_one(kube, name))
        return
    with session(namespace, context, kubeconfig) as kube:
        model = as_run(kube.get_run(run))
        phase = model.status.phase if model.status else None
        out = console()
        if phase is not None and phase.finished:
            out.print(f"run {run} already ended ({phase}): nothing to cancel")
            return
        if model.spec.cancel:
            out.print(f"taskrun.{GROUP}/{run} cancellation already requested")
        else:
            kube.cancel_run(run)
            out.print(f"taskrun.{GROUP}/{run} cancellation requested")
        if wait:
            follow_to_end(kube, run, stderr=False, timeout=timeout)


def _cancel_one(kube: Kube, name: str) -> str:
    model = as_run(kube.get_run(name))
    phase = model.status.phase if model.status else None
    if phase is not None and phase.finished:
        return f"already ended ({phase}): left as it is"
    if model.spec.cancel:
        return "cancellation already requested"
    kube.cancel_run(name)
    return "cancellation requested"


def queues(
    all_namespaces: AllNamespaces = False,
    output: OutputFormat = None,
    namespace: Namespace = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Usage per queue: concurrency limit, per-key limit, runs running and queued, paused, the age of the
    oldest queued run (-o wide adds admitted totals and whether the queue is active)."""
    with session(namespace, context, kubeconfig) as kube:
        bodies = kube.list_queues(all_namespaces)
        where = "in any namespace" if all_namespaces else f"in namespace {kube.namespace!r}"
    if listed_as_data(bodies, output, "queues", where):
        return
    out = console()
    try:
        models = [Queue.model_validate(b) for b in bodies]
    except ValueError as e:
        raise CliError(ExitCode.INTERNAL, f"a Queue does not match this version of cairn: {e}") from e
    if output is Output.NAME:
        for q in models:
            out.print(q.metadata.name)
        return
    show(out, queues_table(models, utcnow(), wide=output is Output.WIDE, namespace=all_namespaces))
