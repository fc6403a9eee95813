"""Supervised child processes: started in their own session, logged to a file, stopped for certain.

Every process the harness starts goes through `Proc`, so teardown can be total: SIGTERM to the
process group, then SIGKILL, and a readiness wait that fails with the process's own log tail.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class HarnessError(RuntimeError):
    """A part of the test environment could not start or stop; the message carries its log tail."""


# Every process started through Proc is appended here (pid and start time), so that a harness that
# died without tearing down can be cleaned up by the next one on the same slot.
_registry: Path | None = None


def set_registry(path: Path | None) -> None:
    global _registry
    _registry = path


def start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def kill_registered(path: Path) -> None:
    """SIGKILL the sessions of processes recorded in a registry (skipping recycled pids)."""
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        pid_s, _, started = line.partition(" ")
        pid = int(pid_s)
        if start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            kill_session(pid)
    path.unlink(missing_ok=True)


def tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no log file)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Proc:
    name: str
    argv: Sequence[str]
    log: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    user: str | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Proc:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ if self.env is None else self.env)
        with open(self.log, "ab") as logf:  # the child keeps its own copy of the descriptor
            self.popen = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.cwd,
                start_new_session=True,
                user=self.user,
                group=self.user,
                extra_groups=[] if self.user else None,
            )
        if _registry is not None:
            with open(_registry, "a") as reg:
                reg.write(f"{self.popen.pid} {start_time(self.popen.pid)}\n")
        return self

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise HarnessError(f"{self.name} was never started")
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        # Children that left the group but kept the session are killed too.
        kill_session(self.popen.pid)

    def kill(self) -> None:
        """SIGKILL, as a crash would: no chance to clean up."""
        self.stop(timeout=10, sig=signal.SIGKILL)

    def wait_ready(self, check: Callable[[], bool], timeout: float, what: str = "ready") -> None:
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            if not self.alive():
                code = self.popen.returncode if self.popen else None
                raise HarnessError(
                    f"{self.name} exited with code {code} before it was {what}; "
                    f"last lines of {self.log}:\n{tail(self.log)}"
                )
            try:
                if check():
                    return
            except Exception:  # noqa: S110, BLE001 - not ready yet; the timeout reports the log
                pass
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"{self.name} was not {what} after {timeout:.0f}s; last lines of {self.log}:\n{tail(self.log)}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def tail(self, lines: int = 40) -> str:
        return tail(self.log, lines)


def kill_session(sid: int) -> None:
    """SIGKILL every process whose session id is `sid` (a process started with start_new_session)."""
    for pid in pids_where(lambda p: _session_of(p) == sid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _session_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[3])


def pids_where(pred: Callable[[int], bool]) -> list[int]:
    me = os.getpid()
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me and pred(int(entry)):
            out.append(int(entry))
    return out


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 120, **kw: object) -> str:
    """Run a short command; on failure raise with its output."""
    res = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kw,  # type: ignore[call-overload]
    )
    if check and res.returncode != 0:
        raise HarnessError(f"`{' '.join(map(str, argv))}` failed ({res.returncode}):\n{res.stdout}{res.stderr}")
    return str(res.stdout)
