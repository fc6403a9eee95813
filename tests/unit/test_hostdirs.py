"""The host directories the nodes bind-mount over are made safely by many at once, and removed by
the last harness out, exactly those it made (the race that failed `make demo` on a new machine)."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

from harness.hostdirs import HostDirs
from harness.node import NODE_MOUNTS


def _targets(root: Path) -> list[Path]:
    return [root / target.lstrip("/") for target in NODE_MOUNTS]


def _ensure_all(state: Path, root: Path, errors: list[BaseException], barrier: threading.Barrier) -> None:
    barrier.wait()
    try:
        HostDirs(state).ensure(_targets(root))
    except BaseException as e:  # noqa: BLE001 - the test reports every failure
        errors.append(e)


def test_bind_targets_made_by_sixteen_nodes_at_once_are_each_made_once_and_none_fails(tmp_path: Path) -> None:
    root, state = tmp_path / "host", tmp_path / "state"
    (root / "var/lib").mkdir(parents=True)  # present on any machine; /etc/cni, /run/netns are not
    errors: list[BaseException] = []
    barrier = threading.Barrier(16)
    threads = [threading.Thread(target=_ensure_all, args=(state, root, errors, barrier)) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert all(p.is_dir() for p in _targets(root))
    record = (state / "created-host-paths").read_text().splitlines()
    assert len(record) == len(set(record)), "a directory was recorded twice"
    made = {Path(line.removeprefix("dir ")) for line in record}
    assert set(_targets(root)) <= made
    assert root / "etc/cni" in made, "parents the harness made are recorded too"
    assert root / "var/lib" not in made and root / "var" not in made, "what was there before is not ours"


def _ensure_in_process(state: str, root: str) -> None:
    HostDirs(Path(state)).ensure(_targets(Path(root)))


def test_bind_targets_made_by_four_processes_at_once_are_recorded_once(tmp_path: Path) -> None:
    root, state = tmp_path / "host", tmp_path / "state"
    root.mkdir()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_ensure_in_process, args=(str(state), str(root))) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    record = (state / "created-host-paths").read_text().splitlines()
    assert len(record) == len(set(record)) >= len(NODE_MOUNTS)


def test_the_last_harness_out_removes_what_it_made_and_nothing_else(tmp_path: Path) -> None:
    root, state = tmp_path / "host", tmp_path / "state"
    (root / "var/log").mkdir(parents=True)
    (root / "var/log/keep.log").write_text("a file that was here before\n")
    dirs = HostDirs(state)
    made = dirs.ensure(_targets(root))
    assert made, "nothing was made"

    assert dirs.remove(lambda: True) == [], "another harness still uses them"
    assert all(p.is_dir() for p in _targets(root))

    removed = dirs.remove(lambda: False)
    assert sorted(removed) == sorted(made)
    assert not any(p.exists() for p in _targets(root))
    assert not (root / "etc").exists() and not (root / "run").exists()
    assert (root / "var/log/keep.log").read_text() == "a file that was here before\n"
    assert not (state / "created-host-paths").exists()
    assert dirs.ensure(_targets(root)) != [], "made again after removal"


def test_a_directory_filled_meanwhile_is_left_in_place(tmp_path: Path) -> None:
    root, state = tmp_path / "host", tmp_path / "state"
    dirs = HostDirs(state)
    dirs.ensure(_targets(root))
    (root / "var/lib/kubelet/someone-elses").write_text("x")
    removed = dirs.remove(lambda: False)
    assert (root / "var/lib/kubelet/someone-elses").exists()
    assert f"dir {root / 'var/lib/kubelet'}" not in removed
    assert f"dir {root / 'var/lib/containerd'}" in removed
    # Still recorded as the harness's: the next harness out tries again once it is empty.
    left = (state / "created-host-paths").read_text().splitlines()
    assert f"dir {root / 'var/lib/kubelet'}" in left and f"dir {root / 'var/lib/containerd'}" not in left
    (root / "var/lib/kubelet/someone-elses").unlink()
    assert f"dir {root / 'var/lib/kubelet'}" in dirs.remove(lambda: False)
    assert not root.exists() and not (state / "created-host-paths").exists()
