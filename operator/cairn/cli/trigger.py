"""Starting runs: `trigger TASK` (a new TaskRun), `rerun RUN` (the same again), and `wait RUN`
(follow one to its end). With --wait, cairn exits with the run's outcome: 0 Succeeded, 1 Failed,
2 Cancelled."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from pydantic import ValidationError

from cairn.api.common import GROUP
from cairn.api.task import DEFAULT_QUEUE
from cairn.api.taskrun import ForkFrom, TaskRevision, TaskRun, TaskRunSpec
from cairn.cli.bulk import DryRun, PhaseFilter, Selector, Since, TaskFilter, Yes, confirm, each, selected
from cairn.cli.errors import CliError, ExitCode
from cairn.cli.follow import follow
from cairn.cli.kube import Kube, as_run
from cairn.cli.options import Context, Kubeconfig, Namespace, OutputFormat, Timeout, console, session
from cairn.cli.payload import read_payload
from cairn.cli.progress import outcome_code
from cairn.cli.render import Output, dump
from cairn.clock import utcnow
from cairn.domain.lifecycle import steps_to_copy
from cairn.domain.rerun import rerun_body, run_body

Wait = Annotated[
    bool,
    typer.Option(
        "--wait",
        "-w",
        help="Follow the run to its end, then exit with its outcome: 0 Succeeded, 1 Failed, 2 Cancelled.",
    ),
]
Name = Annotated[
    str | None,
    typer.Option(
        "--name",
        metavar="NAME",
        help="The new TaskRun's name (default: the task's name and a random suffix).",
        show_default=False,
    ),
]


def build_spec(
    task: str,
    payload: str | None,
    priority: int,
    key: str | None,
    queue: str | None,
    *,
    delay: str | None = None,
    not_before: str | None = None,
    expire_after: str | None = None,
) -> TaskRunSpec:
    """The new run's spec, validated here so that mistakes are reported before anything is sent."""
    try:
        return TaskRunSpec.model_validate(
            {
                "taskRef": {"name": task},
                "payload": payload,
                "priority": priority,
                "concurrencyKey": key,
                "queue": queue,
                "delay": delay,
                "notBefore": not_before,
                "expireAfter": expire_after,
            }
        )
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'spec'}: {err['msg']}" for err in e.errors(include_url=False)
        )
        raise CliError(ExitCode.INVALID, f"the run is not valid: {problems}") from e


def create_and_report(
    kube: Kube, body: dict[str, Any], output: Output | None, *, wait: bool, timeout: float | None
) -> None:
    """Create the run, say so (or print it as asked), and follow it if asked; exits with its outcome."""
    created = kube.create_run(body)
    name = created["metadata"]["name"]
    out = console()
    if output is Output.NAME:
        out.print(name)
    elif output in (Output.JSON, Output.YAML):
        out.print(dump(created, output))
    else:
        out.print(f"taskrun.{GROUP}/{name} created")
    if wait:
        follow_to_end(kube, name, stderr=output is not None, timeout=timeout)


def follow_to_end(kube: Kube, name: str, *, stderr: bool, timeout: float | None) -> None:
    """Follow the run (to stderr when stdout carries an object) and exit with its outcome."""
    out = console(stderr=stderr)
    try:
        ended = follow(kube, name, out, live=out.is_terminal, timeout=timeout)
    except KeyboardInterrupt:
        console(stderr=True).print(f"stopped following: run {name} goes on (cairn cancel {name} stops it)")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    raise typer.Exit(outcome_code(ended))


def trigger(
    task: Annotated[
        str, typer.Argument(metavar="TASK", help="The Task to run (in the namespace).", show_default=False)
    ],
    payload: Annotated[
        str | None,
        typer.Option("--payload", "-p", metavar="JSON", help="The run's input: JSON text.", show_default=False),
    ] = None,
    payload_file: Annotated[
        str | None,
        typer.Option(
            "--payload-file",
            metavar="FILE",
            help="Read the payload (JSON) from this file; - reads stdin.",
            show_default=False,
        ),
    ] = None,
    priority: Annotated[
        int,
        typer.Option(
            "--priority", metavar="N", help="Higher runs are admitted first (-1000 to 1000).", min=-1000, max=1000
        ),
    ] = 0,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            metavar="KEY",
            help="Concurrency key (e.g. a tenant id) for the queue's perKeyLimit.",
            show_default=False,
        ),
    ] = None,
    queue: Annotated[
        str | None,
        typer.Option(
            "--queue", metavar="QUEUE", help="Run through this Queue instead of the Task's.", show_default=False
        ),
    ] = None,
    delay: Annotated[
        str | None,
        typer.Option(
            "--delay",
            metavar="DURATION",
            help="A run for later: not admitted until this long from now (e.g. 10m, 1h30m).",
            show_default=False,
        ),
    ] = None,
    not_before: Annotated[
        str | None,
        typer.Option(
            "--not-before",
            metavar="TIME",
            help="A run for later: not admitted before this time (RFC 3339, e.g. 2026-12-24T18:00:00Z).",
            show_default=False,
        ),
    ] = None,
    expire_after: Annotated[
        str | None,
        typer.Option(
            "--expire-after",
            metavar="DURATION",
            help="If it has not started this long from now, it ends Failed with reason Expired.",
            show_default=False,
        ),
    ] = None,
    name: Name = None,
    wait: Wait = False,
    timeout: Timeout = None,
    output: OutputFormat = None,
    namespace: Namespace = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Start a run of TASK. Checks that the payload is JSON and that the Task exists, then creates a
    TaskRun. With --wait, follows it to its end and exits with its outcome (0 Succeeded, 1 Failed,
    2 Cancelled)."""
    text = read_payload(payload, payload_file)
    spec = build_spec(task, text, priority, key, queue, delay=delay, not_before=not_before, expire_after=expire_after)
    with session(namespace, context, kubeconfig) as kube:
        found = kube.get_task(task)
        kube.require_queue(queue or (found.get("spec") or {}).get("queue") or DEFAULT_QUEUE)
        create_and_report(kube, run_body(name, task, spec), output, wait=wait, timeout=timeout)


def rerun(
    run: Annotated[
        str | None,
        typer.Argument(metavar="[RUN]", help="The TaskRun to run again (or select several).", show_default=False),
    ] = None,
    from_step: Annotated[
        str | None,
        typer.Option(
            "--from-step",
            metavar="KEY",
            help="Fork: start from this step of RUN (e.g. transcode#0); the steps RUN recorded before it are "
            "copied, not run again. A key RUN did not record is refused with the list of those it did.",
            show_default=False,
        ),
    ] = None,
    payload: Annotated[
        str | None,
        typer.Option("--payload", "-p", metavar="JSON", help="Run with this payload instead.", show_default=False),
    ] = None,
    payload_file: Annotated[
        str | None,
        typer.Option(
            "--payload-file",
            metavar="FILE",
            help="Read the new payload from this file; - reads stdin.",
            show_default=False,
        ),
    ] = None,
    latest_task: Annotated[
        bool,
        typer.Option(
            "--latest-task",
            help="Run the Task as it is now. A plain rerun always does; a fork (--from-step) otherwise runs the "
            "Task as RUN had it, so that it behaves like RUN.",
        ),
    ] = False,
    selector: Selector = None,
    task_filter: TaskFilter = None,
    phase: PhaseFilter = None,
    since: Since = None,
    dry_run: DryRun = False,
    yes: Yes = False,
    name: Name = None,
    wait: Wait = False,
    timeout: Timeout = None,
    output: OutputFormat = None,
    namespace: Namespace = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Start a new run with RUN's task, payload, priority, concurrency key and queue (--payload: another
    payload). With --from-step KEY, a fork: the new run starts at that step, with the steps RUN recorded
    before it copied (TaskRun spec.from). The new run is annotated cairn.dev/rerun-of=RUN. With --wait,
    as for trigger. Several at once: -l, --task, --phase, --since (lists them; --yes or a confirmation;
    --dry-run)."""
    text = read_payload(payload, payload_file) if payload is not None or payload_file is not None else None
    filters = (selector, task_filter, phase, since)
    if run is None or any(f is not None for f in filters):
        if run is not None:
            raise CliError(ExitCode.INVALID, "give RUN or a selection (-l, --task, --phase, --since), not both")
        if all(f is None for f in filters):
            raise CliError(ExitCode.INVALID, "which runs? give RUN, or select them with -l, --task, --phase or --since")
        if wait or name:
            raise CliError(ExitCode.INVALID, "--wait and --name are for one run: give RUN")
        with session(namespace, context, kubeconfig) as kube:
            names = selected(kube, selector, task_filter, phase, since, utcnow())
            if not names:
                console(stderr=True).print(f"No runs match in namespace {kube.namespace!r}.")
                return
            if confirm("rerun", names, dry_run=dry_run, yes=yes):
                each(
                    kube,
                    names,
                    "rerunning",
                    lambda one: (
                        "rerun as " + _rerun_one(kube, one, text, from_step, latest_task, None)["metadata"]["name"]
                    ),
                )
        return
    with session(namespace, context, kubeconfig) as kube:
        created = _rerun_one(kube, run, text, from_step, latest_task, name, create=False)
        create_and_report(kube, created, output, wait=wait, timeout=timeout)


def _rerun_one(
    kube: Kube,
    run: str,
    text: str | None,
    from_step: str | None,
    latest_task: bool,
    name: str | None,
    *,
    create: bool = True,
) -> dict[str, Any]:
    """The rerun of `run` (created, unless `create` is False: then its body)."""
    old = as_run(kube.get_run(run))
    task = old.spec.task_ref.name
    kube.get_task(task)
    fork = fork_from(old, run, from_step, latest_task) if from_step is not None else None
    body = rerun_body(run, old.spec, payload=text, fork=fork, name=name)
    return kube.create_run(body) if create else body


def fork_from(old: TaskRun, run: str, step: str, latest_task: bool) -> ForkFrom:
    """spec.from for a fork of `old` at `step`, refused here when its status shows the step was never
    recorded (all its steps are listed there unless it has more than the status keeps)."""
    status = old.status
    shown = [s.key for s in (status.steps or [])] if status else []
    total = status.progress.steps_completed if status and status.progress else len(shown)
    if steps_to_copy(shown, step) is None and total <= len(shown):
        raise CliError(
            ExitCode.INVALID,
            f"run {run} recorded no step {step!r}; its steps: {', '.join(shown) or 'none'}",
            hint=f"cairn rerun {run} --from-step {shown[-1]}" if shown else None,
        )
    try:
        return ForkFrom(run=run, step=step, task_revision=TaskRevision.CURRENT if latest_task else TaskRevision.SOURCE)
    except ValidationError as e:
        raise CliError(
            ExitCode.INVALID, f"--from-step {step!r} is not a step key: give name#occurrence, e.g. transcode#0"
        ) from e


def wait(
    run: Annotated[str, typer.Argument(metavar="RUN", help="The TaskRun to follow.", show_default=False)],
    timeout: Timeout = None,
    namespace: Namespace = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Follow a run to its end (as trigger --wait does) and exit with its outcome: 0 Succeeded,
    1 Failed, 2 Cancelled."""
    with session(namespace, context, kubeconfig) as kube:
        follow_to_end(kube, run, stderr=False, timeout=timeout)
