"""`cairn logs RUN`: the logs of every attempt's pod, in order, each under a header; `--attempt N` for
one attempt (printed bare); `-f` follows the current attempt, then the next ones as they start, until
the run ends."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.console import Console

from cairn.api.taskrun import Attempt, StepEntry, TaskRun
from cairn.cli.errors import CliError, ExitCode
from cairn.cli.kube import Kube, as_run
from cairn.cli.options import Context, Kubeconfig, Namespace, console, session
from cairn.cli.progress import finished
from cairn.cli.render import attempt_outcome, attempt_seconds, elapsed

POLL_SECONDS = 0.5


def attempt_header(a: Attempt, pod: dict[str, Any] | None = None) -> str:
    node = a.node or ((pod or {}).get("spec") or {}).get("nodeName")
    where = f" on {node}" if node else ""
    return f"==> attempt {a.number}: pod {a.pod}{where} <=="


def attempt_footer(a: Attempt, steps: Sequence[StepEntry] = ()) -> str:
    took = attempt_seconds(a, steps)
    return f"<== attempt {a.number} ended{f' after {elapsed(took)}' if took is not None else ''}: {attempt_outcome(a)}"


def container_of(pod: dict[str, Any]) -> str | None:
    containers = (pod.get("spec") or {}).get("containers") or []
    return containers[0].get("name") if containers else None


def waiting_reason(pod: dict[str, Any]) -> str:
    """Why the pod's container is not running yet (e.g. ContainerCreating, ImagePullBackOff)."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting")
        if waiting:
            return str(waiting.get("reason") or "waiting")
    return str((pod.get("status") or {}).get("phase") or "Pending")


def container_started(pod: dict[str, Any]) -> bool:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        state = status.get("state") or {}
        if "running" in state or "terminated" in state:
            return True
    return False


class LogPrinter:
    """Prints each attempt's log once, remembering how many lines it printed, so following an attempt
    through a dropped stream never prints a line twice."""

    def __init__(self, kube: Kube, out: Console, *, headers: bool) -> None:
        self.kube = kube
        self.out = out
        self.headers = headers
        self.printed: dict[int, int] = {}
        self.done: set[int] = set()
        self.steps: list[StepEntry] = []  # the run's, for how long each attempt ran

    def note(self, text: str) -> None:
        self.out.print(f"({text})", style="dim")

    def start(self, a: Attempt, pod: dict[str, Any] | None) -> None:
        if a.number not in self.printed:
            self.printed[a.number] = 0
            if self.headers:
                self.out.print(attempt_header(a, pod), style="bold")

    def stream(self, a: Attempt, pod: dict[str, Any], *, follow: bool) -> None:
        skip = self.printed[a.number]
        for i, line in enumerate(self.kube.log_lines(a.pod, container_of(pod), follow=follow)):
            if i >= skip:
                self.out.print(line)
                self.printed[a.number] = i + 1

    def finish(self, a: Attempt, text: str | None = None) -> None:
        if text:
            self.note(text)
        if self.headers and a.finish_time:
            self.out.print(attempt_footer(a, self.steps), style="dim")
        self.done.add(a.number)

    def ended(self, a: Attempt, pod: dict[str, Any] | None) -> None:
        """All of an attempt that has ended."""
        self.start(a, pod)
        if pod is None:
            self.finish(a, f"pod {a.pod} no longer exists: its logs are gone")
        elif not container_started(pod):
            self.finish(a, f"the container never started: {waiting_reason(pod)}")
        else:
            self.stream(a, pod, follow=False)
            self.finish(a)

    def current(self, a: Attempt, pod: dict[str, Any] | None) -> None:
        """Follow an attempt in flight until its stream ends (the container stopped, or the stream dropped)."""
        if pod is None or not container_started(pod):
            return  # not there yet: the next round looks again
        self.start(a, pod)
        try:
            self.stream(a, pod, follow=True)
        except CliError as e:
            if e.code is not ExitCode.INVALID:  # 400: the container is between states; look again
                raise


def no_such_attempt(run: TaskRun, number: int) -> CliError:
    numbers = ", ".join(str(a.number) for a in (run.status.attempts if run.status else None) or []) or "none yet"
    return CliError(ExitCode.NOT_FOUND, f"run {run.metadata.name!r} has no attempt {number} (attempts: {numbers})")


def print_all(kube: Kube, run: TaskRun, attempt: int | None, out: Console) -> None:
    attempts = [a for a in (run.status.attempts if run.status else None) or [] if attempt in (None, a.number)]
    if not attempts:
        if attempt is not None:
            raise no_such_attempt(run, attempt)
        phase = run.status.phase if run.status else None
        console(stderr=True).print(f"run {run.metadata.name} has no attempt yet (phase {phase or 'Pending'})")
        return
    pods = kube.pods_of_run(run.metadata.uid or "")
    printer = LogPrinter(kube, out, headers=attempt is None)
    printer.steps = (run.status.steps if run.status else None) or []
    for a in attempts:
        pod = pods.get(a.number)
        if a.finish_time:
            printer.ended(a, pod)
        else:
            printer.start(a, pod)
            if pod is None or not container_started(pod):
                printer.note(f"no logs yet: {waiting_reason(pod) if pod else 'the pod is being created'}")
            else:
                printer.stream(a, pod, follow=False)


def follow_all(kube: Kube, name: str, attempt: int | None, out: Console) -> None:
    """Print ended attempts, follow the current one, pick up the next ones, until the run ends (or the
    chosen attempt ends)."""
    printer = LogPrinter(kube, out, headers=attempt is None)
    while True:
        run = as_run(kube.get_run(name))
        printer.steps = (run.status.steps if run.status else None) or []
        attempts = [a for a in (run.status.attempts if run.status else None) or [] if attempt in (None, a.number)]
        pods = kube.pods_of_run(run.metadata.uid or "") if attempts else {}
        for a in attempts:
            if a.number in printer.done:
                continue
            if a.finish_time:
                printer.ended(a, pods.get(a.number))
            else:
                printer.current(a, pods.get(a.number))
        if attempt is not None and attempt in printer.done:
            return
        if finished(run) and all(a.number in printer.done for a in attempts):
            if attempt is not None and not attempts:
                raise no_such_attempt(run, attempt)  # the run ended without that attempt
            return
        time.sleep(POLL_SECONDS)


def logs(
    run: Annotated[str, typer.Argument(metavar="RUN", help="The TaskRun.", show_default=False)],
    attempt: Annotated[
        int | None,
        typer.Option("--attempt", metavar="N", help="Only this attempt (1 is the first), without a header.", min=1),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Follow the current attempt, then the next ones, until the run ends.")
    ] = False,
    namespace: Namespace = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Print the logs of a run's attempts in order, each under a header naming its pod and node and
    followed by how it ended."""
    out = console()
    with session(namespace, context, kubeconfig) as kube:
        if follow:
            try:
                follow_all(kube, run, attempt, out)
            except KeyboardInterrupt:
                raise typer.Exit(ExitCode.INTERRUPTED) from None
        else:
            print_all(kube, as_run(kube.get_run(run)), attempt, out)
