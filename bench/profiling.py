"""Sampling profiles of the operator and the API while a benchmark runs (py-spy, no restart, no
code change): collapsed stacks (`.txt`, one stack and its sample count a line: open it in
speedscope or any flame-graph tool) and a summary of where the time went (`.top.txt`)."""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME_LINE = re.compile(r":\d+\)$")


def py_spy() -> str:
    found = shutil.which("py-spy", path=f"{Path(sys.executable).parent}")
    found = found or shutil.which("py-spy")
    if found is None:
        raise RuntimeError("py-spy is not installed: it is in the dev extra (pip install -e '.[dev]')")
    return found


@contextlib.contextmanager
def profiled(pid: int | None, out: Path | None) -> Iterator[None]:
    """py-spy record on `pid` while the block runs, when `out` (a path without suffix) is given."""
    if out is None or pid is None:
        yield
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    stacks = out.with_suffix(".txt")
    argv = [py_spy(), "record", "--pid", str(pid), "--rate", "97", "--format", "raw", "--output", str(stacks)]
    with open(out.with_suffix(".log"), "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes what it has sampled
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if stacks.exists():
            out.with_suffix(".top.txt").write_text(summary(stacks.read_text()))


def _name(frame: str) -> str:
    """`func (path/to/module.py:123)` -> `func (module.py)`: lines merged, paths shortened."""
    frame = _FRAME_LINE.sub(")", frame)
    if "(" in frame:
        func, _, where = frame.partition(" (")
        where = where.rstrip(")")
        parts = where.split("/")
        if "site-packages" in parts:
            where = "/".join(parts[parts.index("site-packages") + 1 :])
        elif "cairn" in parts:
            where = "/".join(parts[parts.index("cairn") :])
        else:
            where = "/".join(parts[-2:])
        return f"{func} ({where})"
    return frame


def summary(collapsed: str, top: int = 40) -> str:
    """Self and inclusive time per function, from py-spy's collapsed stacks."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        m = _LINE.match(line.strip())
        if not m:
            continue
        count = int(m["count"])
        frames = [_name(f) for f in m["stack"].split(";") if f]
        if not frames:
            continue
        samples += count
        self_time[frames[-1]] += count
        for f in set(frames):
            inclusive[f] += count
        leaf = frames[-1]
        where = leaf.partition(" (")[2].split("/")[0].rstrip(")")
        packages[where] += count
    if not samples:
        return "no samples\n"

    def block(title: str, counter: Counter[str], n: int) -> list[str]:
        lines = [title]
        for name, count in counter.most_common(n):
            lines.append(f"  {100 * count / samples:5.1f}%  {name}")
        return lines

    out = [f"{samples} samples (97 a second; idle time included)", ""]
    out += block("self time (the function itself was running):", self_time, top)
    out += [""]
    out += block("inclusive time (the function or what it called):", inclusive, top)
    out += [""]
    out += block("self time by package/module:", packages, 20)
    return "\n".join(out) + "\n"
