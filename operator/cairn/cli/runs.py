"""Reading runs: `runs` (a table), `get RUN` (one run, or the object as JSON/YAML), `describe RUN`."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from cairn.cli.errors import CliError, ExitCode
from cairn.cli.history import Server, Token, archived_runs, connect_history, describe_archived
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
    archived: Annotated[
        bool,
        typer.Option(
            "--archived",
            help="Runs whose TaskRun was deleted, from PostgreSQL (kept for their Task's checkpointRetention), "
            "through Cairn's API (--server). Filters: --task, --phase (Succeeded, Failed, Cancelled, Deleted), "
            "--since, -l.",
        ),
    ] = False,
    history_all: Annotated[
        bool, typer.Option("--history", help="Like --archived, but every run in history, live ones too.")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", metavar="WHEN", help="With --archived: created since (24h, 7d, or RFC 3339).", show_default=False
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            metavar="WHEN",
            help="With --archived: created before (24h, 7d, or RFC 3339).",
            show_default=False,
        ),
    ] = None,
    label: Annotated[
        str | None,
        typer.Option("-l", "--selector", metavar="K=V[,K=V]", help="With --archived: by label.", show_default=False),
    ] = None,
    server: Server = None,
    token: Token = None,
    output: OutputFormat = None,
    namespace: Namespace = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """List runs: name, task, phase, attempt (of maxAttempts), steps completed (the last), queue, age.
    With --archived, the runs whose TaskRun was deleted (their records are kept in PostgreSQL)."""
    if archived or history_all:
        if all_namespaces:
            raise CliError(ExitCode.INVALID, "--archived lists one namespace at a time (history is read per namespace)")
        archived_runs(
            namespace, context, kubeconfig, server, token,
            task=task, phase=phase, since=since, until=until, label=label, everything=history_all, output=output,
        )  # fmt: skip
        return
    if since is not None or until is not None or label is not None:
        raise CliError(ExitCode.INVALID, "--since, --until and -l go with --archived (or --history)")
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
    archived: Annotated[
        bool,
        typer.Option("--archived", help="Describe the run from history (its TaskRun may be deleted): --server."),
    ] = False,
    server: Server = None,
    token: Token = None,
    namespace: Namespace = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Show a run in full: its fields, a timeline of its attempts with the steps each ran (when each
    started and ended, on which node, why it ended), its conditions and its recent events. A run whose
    TaskRun was deleted is described from history (--archived, or when a server is given)."""
    if not archived:
        try:
            with session(namespace, context, kubeconfig) as kube:
                body = kube.get_run(run)
                model = as_run(body)
                events = kube.events_of(model.metadata.uid) if model.metadata.uid else []
            console().print(describe_text(model, events, utcnow()))
            return
        except CliError as e:
            if e.code is not ExitCode.NOT_FOUND or not (server or os.environ.get("CAIRN_SERVER")):
                raise
            missing: CliError | None = e
    else:
        missing = None
    client = connect_history(server, token, namespace, context, kubeconfig)
    try:
        console().print(describe_archived(client, run))
    except CliError as e:
        # Neither a TaskRun nor in history: say what kubectl would (the TaskRun is not there).
        if e.code is ExitCode.NOT_FOUND and missing is not None:
            raise missing from None
        raise
    finally:
        client.close()
