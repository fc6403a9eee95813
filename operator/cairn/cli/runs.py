"""Reading runs: `runs` (a table), `get RUN` (one run, or the object as JSON/YAML), `describe RUN`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cairn.cli.kube import as_run
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
from cairn.cli.render import Output, as_list, dump, runs_table
from cairn.cli.timeline import describe as describe_text
from cairn.clock import utcnow

RunName = Annotated[str, typer.Argument(metavar="RUN", help="The TaskRun's name.", show_default=False)]


def print_runs(bodies: list[dict[str, Any]], output: Output | None, *, namespace_column: bool) -> None:
    out = console()
    if output in (Output.JSON, Output.YAML):
        out.print(dump(bodies[0] if len(bodies) == 1 else as_list(bodies), output))
        return
    models = [as_run(b) for b in bodies]
    if output is Output.NAME:
        for run in models:
            out.print(run.metadata.name)
        return
    show(out, runs_table(models, utcnow(), wide=output is Output.WIDE, namespace=namespace_column))


def runs(
    all_namespaces: AllNamespaces = False,
    task: Annotated[
        str | None, typer.Option("--task", metavar="TASK", help="Only runs of this task.", show_default=False)
    ] = None,
    phase: Annotated[
        str | None,
        typer.Option(
            "--phase",
            metavar="PHASE",
            help="Only runs in this phase (Queued, Starting, Running, Failed, ...).",
            show_default=False,
        ),
    ] = None,
    output: OutputFormat = None,
    namespace: Namespace = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """List runs: name, task, phase, attempt (of maxAttempts), steps completed (the last), queue, age."""
    with session(namespace, context, kubeconfig) as kube:
        bodies = kube.list_runs(all_namespaces)
        where = "in any namespace" if all_namespaces else f"in namespace {kube.namespace!r}"
    if task is not None:
        bodies = [b for b in bodies if (b.get("spec") or {}).get("taskRef", {}).get("name") == task]
    if phase is not None:
        bodies = [b for b in bodies if ((b.get("status") or {}).get("phase") or "").lower() == phase.lower()]
    if listed_as_data(bodies, output, "runs", where):
        return
    print_runs(bodies, output, namespace_column=all_namespaces)


def get(
    run: RunName,
    output: OutputFormat = None,
    namespace: Namespace = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Show one run as a table row (-o wide for more), or the whole object (-o json, -o yaml)."""
    with session(namespace, context, kubeconfig) as kube:
        body = kube.get_run(run)
    print_runs([body], output, namespace_column=False)


def describe(
    run: RunName,
    namespace: Namespace = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Show a run in full: its fields, a timeline of its attempts with the steps each ran (when each
    started and ended, on which node, why it ended), its conditions and its recent events."""
    with session(namespace, context, kubeconfig) as kube:
        body = kube.get_run(run)
        model = as_run(body)
        events = kube.events_of(model.metadata.uid) if model.metadata.uid else []
    console().print(describe_text(model, events, utcnow()))
