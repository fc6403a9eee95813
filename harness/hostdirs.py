"""Host directories the harness needs and a new machine lacks, made safely by many at once.

Each node bind-mounts its own directories over paths that kubelet and containerd hard-code
(/var/lib/kubelet, /run/containerd, …), so those targets must exist on the host; `ip netns` needs
/run/netns as a shared mount. Two nodes of one cluster start side by side, and two clusters (slots)
or two processes may start at once: every check-then-create here happens under one machine-wide
lock, a directory that appears meanwhile is not an error, and each directory (parents included)
and mount the harness made is recorded so that the last harness to stop removes exactly those and
nothing that was there before it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from harness.procs import run

# flock() serialises open file descriptions, so it orders threads of one process too; the thread
# locks (one per lock file) only spare a thread from holding a descriptor while it waits.
_thread_locks: dict[Path, threading.Lock] = {}
_registry_lock = threading.Lock()


@contextlib.contextmanager
def machine_lock(path: Path) -> Iterator[None]:
    """An exclusive lock held by one thread of one process on the machine at a time (blocking)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _registry_lock:
        local = _thread_locks.setdefault(path.resolve(), threading.Lock())
    with local:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the last descriptor releases the flock


def is_mountpoint(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


class HostDirs:
    """The directories (and self bind mounts) the harness made on the host, in a record under `state`."""

    def __init__(self, state: Path) -> None:
        self.record = state / "created-host-paths"
        self.lock = state / "host-paths.lock"

    def _read(self) -> list[str]:
        try:
            return [ln for ln in self.record.read_text().splitlines() if ln]
        except FileNotFoundError:
            return []

    def _write(self, entries: list[str]) -> None:
        tmp = self.record.with_name(f"{self.record.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text("".join(f"{e}\n" for e in entries))
        tmp.replace(self.record)

    def ensure(self, dirs: Iterable[Path], shared_mounts: Iterable[Path] = ()) -> list[str]:
        """Make each directory (with its parents) and each shared mount that is missing; returns what
        this call made. Safe to call from many threads and processes at once, and again."""
        with machine_lock(self.lock):
            entries = self._read()
            made: list[str] = []
            try:
                for d in [*dirs, *shared_mounts]:
                    for path in [*reversed(Path(d).parents), Path(d)]:
                        try:
                            os.mkdir(path)
                        except FileExistsError:
                            continue
                        made.append(f"dir {path}")
                for m in shared_mounts:
                    if self._make_shared_mount(Path(m)):
                        made.append(f"mount {m}")
            finally:  # what was made before a failure is recorded too, so that it is removed
                if made:
                    self._write(entries + made)
            return made

    @staticmethod
    def _make_shared_mount(path: Path) -> bool:
        """Make `path` a shared mount of itself, as `ip netns add` does for /run/netns (and under the
        same lock it takes, a flock on the directory, so the two never stack two mounts)."""
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            made = not is_mountpoint(path)
            if made:
                run(["mount", "--rbind", str(path), str(path)])
            run(["mount", "--make-rshared", str(path)])
            return made
        finally:
            os.close(fd)

    def remove(self, others_in_use: Callable[[], bool]) -> list[str]:
        """Undo what `ensure` recorded (mounts first, deepest directories first), unless another
        harness is still using them. What cannot be removed yet (a directory someone has filled, a
        busy mount) stays recorded, for the next harness out to try again."""
        with machine_lock(self.lock):
            entries = self._read()
            if not entries or others_in_use():
                return []
            removed: list[str] = []
            for entry in reversed(entries):
                kind, _, path = entry.partition(" ")
                if kind == "mount":
                    if not is_mountpoint(Path(path)):
                        removed.append(entry)  # already gone
                    elif not any(Path(path).iterdir()):
                        run(["umount", path], check=False)
                        if not is_mountpoint(Path(path)):
                            removed.append(entry)
                    continue
                if not os.path.lexists(path):
                    removed.append(entry)
                    continue
                with contextlib.suppress(OSError):
                    os.rmdir(path)
                    removed.append(entry)
            left = [e for e in entries if e not in removed]
            if left:
                self._write(left)
            else:
                self.record.unlink(missing_ok=True)
            return removed
