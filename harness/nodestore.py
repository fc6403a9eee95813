"""One containerd image store per machine, from which every node's store is seeded by hard links.

Each node runs a containerd of its own, and importing the harness's images into it took most of a
node's start: about 0.8 GB read, stored and unpacked per node, four nodes at once when two test
workers start their clusters (40 s of a 55 s cluster start in CI). The images are imported once
here instead, into a store kept in the cache; a node's store is then a copy of it in which the files
that never change (content blobs and unpacked layers) are hard links, and everything containerd
writes in place (its bolt databases) is a real copy. A node that removes an image unlinks its own
names only.

Where the cache and the node's directory are on different filesystems no link is possible: the
node then imports its images itself, as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from harness import config
from harness.hostdirs import machine_lock
from harness.images import Image
from harness.procs import HarnessError, Proc, pids_where, run

STORE = config.CACHE / "node-store"
NAMESPACE = "k8s.io"  # the CRI's: the kubelet sees only images in it
# Immutable once written: linked, not copied. Every other file is copied.
LINKED = ("io.containerd.content.v1.content/blobs", "io.containerd.snapshotter.v1.overlayfs/snapshots")
# The containerd that imports: no CRI (no kubelet talks to it), nothing but a unix socket.
CONFIG = """version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.tracing",
  "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{state}/containerd.sock"
[debug]
  level = "warn"
"""


def seed(target: Path, images: Sequence[Image]) -> bool:
    """Fill `target` (a node's /var/lib/containerd, its containerd not running) with a store holding
    exactly `images`. False: not done (another filesystem, or `target` not empty); the node imports
    what it lacks itself."""
    # A store per set of image names (a full cluster's, a minimal one's): each removes older builds
    # of its own images, never the images of another set.
    key = hashlib.sha256("\n".join(sorted(i.name for i in images)).encode()).hexdigest()[:12]
    store = STORE / key
    target.mkdir(parents=True, exist_ok=True)
    if any(target.iterdir()):
        return False  # a store already there is the node's own
    store.mkdir(parents=True, exist_ok=True)
    if os.stat(store).st_dev != os.stat(target).st_dev:
        return False  # no hard link across filesystems
    with machine_lock(store / ".lock"):
        _update(store, images)
        _copy(store / "root", target)
    return True


def _update(store: Path, images: Sequence[Image]) -> None:
    """Remove what is not wanted (older builds), so that a node's copy holds nothing else; then
    import what the store lacks.

    In that order, each removal waited for (--sync): an import that replaced an image of the same
    name let containerd's garbage collector take the old image's layers while the new one, which
    shares some of them, was being unpacked ("parent snapshot ... does not exist")."""
    wanted = {(image.name, image.digest) for image in images}
    with _containerd(store) as ctr:
        stale = sorted({name for name, digest in _held(ctr) if (name, digest) not in wanted})
        if stale:
            ctr("images", "rm", "--sync", *stale)
        held = _held(ctr)
        for image in images:
            if (image.name, image.digest) not in held:
                ctr("images", "import", str(image.archive))
        missing = sorted(f"{name}@{digest}" for name, digest in wanted - _held(ctr))
        if missing:
            raise HarnessError(f"the node image store lacks {missing} after importing them")


def _held(ctr: _Ctr) -> set[tuple[str, str]]:
    return images_listed(ctr("images", "ls"))


def images_listed(listing: str) -> set[tuple[str, str]]:
    """(name, manifest digest) of each image in the output of `ctr images ls`."""
    rows = listing.splitlines()[1:]
    return {(cols[0], cols[2]) for cols in (row.split() for row in rows) if len(cols) >= 3}


class _Ctr:
    def __init__(self, sock: Path) -> None:
        self.sock = sock

    def __call__(self, *args: str) -> str:
        return run(["ctr", "--address", str(self.sock), "--namespace", NAMESPACE, *args], timeout=600)


@contextlib.contextmanager
def _containerd(store: Path) -> Iterator[_Ctr]:
    root = store / "root"
    root.mkdir(parents=True, exist_ok=True)
    conf = store / "containerd.toml"
    _kill_leftover(conf)
    # The state (its socket) in a short path of its own: a unix socket's path has at most 107 bytes.
    state = Path(tempfile.mkdtemp(prefix="cairn-store-"))
    conf.write_text(CONFIG.format(root=root, state=state))
    proc = Proc("node-store-containerd", [str(config.system_bin("containerd")), "--config", str(conf)], store / "log")
    proc.start()
    ctr = _Ctr(state / "containerd.sock")
    try:
        proc.wait_ready(lambda: ctr.sock.exists() and ctr("version") != "", 30, "serving")
        yield ctr
    finally:
        proc.stop()
        shutil.rmtree(state, ignore_errors=True)


def _kill_leftover(conf: Path) -> None:
    """A containerd of this store that a killed harness left holds its database's lock."""
    marker = str(conf).encode()
    for pid in pids_where(lambda p: _cmdline_has(p, marker)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)


def _cmdline_has(pid: int, marker: bytes) -> bool:
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _copy(src: Path, dst: Path) -> None:
    for top, dirs, files in os.walk(src):
        rel = Path(top).relative_to(src)
        out = dst / rel
        out.mkdir(exist_ok=True)
        shutil.copystat(top, out)  # mode, times and extended attributes (overlay's opaque directories)
        os.chown(out, os.stat(top).st_uid, os.stat(top).st_gid)
        linked = any(str(rel) == p or str(rel).startswith(p + "/") for p in LINKED)
        for name in files:
            s, d = Path(top) / name, out / name
            if linked:
                os.link(s, d, follow_symlinks=False)
            elif os.path.islink(s):
                os.symlink(os.readlink(s), d)
            else:
                shutil.copy2(s, d, follow_symlinks=False)
        for name in list(dirs):
            if os.path.islink(Path(top) / name):  # os.walk lists a link to a directory as a directory
                os.symlink(os.readlink(Path(top) / name), out / name)
                dirs.remove(name)
