"""Following a run to its end (`trigger --wait`, `rerun --wait`, `wait`): poll the TaskRun and show
each change, live on a terminal, line by line elsewhere. Polling the run's accumulated status (its
attempts and steps) means a change missed between two polls is still shown at the next one."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.live import Live

from cairn.api.taskrun import TaskRun
from cairn.cli.errors import CliError, ExitCode
from cairn.cli.kube import Kube, as_run
from cairn.cli.progress import changes, finished, live_view, summary
from cairn.clock import utcnow

POLL_SECONDS = 0.5
OUTAGE_SECONDS = 60.0  # keep polling through an API server outage this long


class Poller:
    """Reads the run, riding out short API server outages (a restart must not end a long wait)."""

    def __init__(
        self, kube: Kube, name: str, warn: Callable[[str], None], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.kube = kube
        self.name = name
        self.warn = warn
        self.clock = clock
        self.down_since: float | None = None
        self.seen = False

    def read(self) -> TaskRun | None:
        try:
            body = self.kube.get_run(self.name)
        except CliError as e:
            if e.code is ExitCode.NOT_FOUND and self.seen:
                raise CliError(ExitCode.NOT_FOUND, f"run {self.name!r} was deleted while being followed") from e
            if e.code is not ExitCode.UNREACHABLE:
                raise
            now = self.clock()
            if self.down_since is None:
                self.down_since = now
                self.warn(f"cannot read the run ({e.message}); retrying for up to {OUTAGE_SECONDS:.0f}s")
            elif now - self.down_since > OUTAGE_SECONDS:
                raise
            return None
        if self.down_since is not None:
            self.warn("reading the run again")
            self.down_since = None
        self.seen = True
        return as_run(body)


def follow(
    kube: Kube,
    name: str,
    out: Console,
    *,
    live: bool,
    timeout: float | None = None,
    poll: float = POLL_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> TaskRun:
    """Show the run until it ends; return it ended. Raises CliError(TIMEOUT) after `timeout` seconds."""
    deadline = None if timeout is None else clock() + timeout
    poller = Poller(kube, name, lambda text: out.print(f"warning: {text}", style="yellow"), clock)
    prev: TaskRun | None = None

    def next_sight() -> TaskRun | None:
        if deadline is not None and clock() > deadline:
            phase = prev.status.phase if prev and prev.status else None
            raise CliError(
                ExitCode.TIMEOUT,
                f"run {name!r} has not ended after {timeout:g}s (phase {phase or 'Pending'}); it goes on",
                hint=f"cairn wait {name} follows it again; cairn cancel {name} stops it",
            )
        return poller.read()

    if live:
        with Live(console=out, refresh_per_second=4, transient=False) as view:
            while True:
                run = next_sight()
                if run is not None:
                    prev = run
                    view.update(live_view(run, utcnow()))
                    if finished(run):
                        break
                time.sleep(poll)
    else:
        while True:
            run = next_sight()
            if run is not None:
                for line in changes(prev, run, utcnow()):
                    out.print(line)
                prev = run
                if finished(run):
                    break
            time.sleep(poll)
    assert prev is not None
    for line in summary(prev):
        out.print(line)
    return prev
