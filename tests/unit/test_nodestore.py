"""A node's image store copied from the machine's: what containerd never changes is linked, what it
writes in place is copied, and the directories keep the attributes overlayfs reads."""

from __future__ import annotations

import os
from pathlib import Path

from harness.nodestore import _copy, seed

BLOB = "io.containerd.content.v1.content/blobs/sha256/abc"
LAYER = "io.containerd.snapshotter.v1.overlayfs/snapshots/1/fs/etc/passwd"
OPAQUE = "io.containerd.snapshotter.v1.overlayfs/snapshots/1/fs/etc"
DATABASES = ("io.containerd.metadata.v1.bolt/meta.db", "io.containerd.snapshotter.v1.overlayfs/metadata.db")


def _tree(root: Path) -> None:
    for rel in (BLOB, LAYER, *DATABASES):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    os.setxattr(root / OPAQUE, "trusted.overlay.opaque", b"y")  # a directory a layer made opaque
    os.chmod(root / OPAQUE, 0o700)
    (root / "io.containerd.snapshotter.v1.overlayfs/snapshots/1/fs/link").symlink_to("etc/passwd")


def test_immutable_files_are_linked_databases_copied_and_directory_attributes_kept(tmp_path: Path) -> None:
    src, dst = tmp_path / "store", tmp_path / "node"
    _tree(src)
    dst.mkdir()
    _copy(src, dst)
    for rel in (BLOB, LAYER):
        assert os.stat(src / rel).st_ino == os.stat(dst / rel).st_ino, rel  # one file, two names
    for rel in DATABASES:
        assert os.stat(src / rel).st_ino != os.stat(dst / rel).st_ino, rel  # containerd writes it in place
        assert (dst / rel).read_text() == rel
    assert os.getxattr(dst / OPAQUE, "trusted.overlay.opaque") == b"y"
    assert (os.stat(dst / OPAQUE).st_mode & 0o777) == 0o700
    link = dst / "io.containerd.snapshotter.v1.overlayfs/snapshots/1/fs/link"
    assert link.is_symlink() and os.readlink(link) == "etc/passwd"


def test_a_database_written_in_a_nodes_copy_leaves_the_machines_store_as_it_was(tmp_path: Path) -> None:
    src, dst = tmp_path / "store", tmp_path / "node"
    _tree(src)
    dst.mkdir()
    _copy(src, dst)
    (dst / DATABASES[0]).write_text("changed by the node's containerd")
    assert (src / DATABASES[0]).read_text() == DATABASES[0]


def test_a_node_store_that_is_not_empty_is_left_as_it_is(tmp_path: Path) -> None:
    target = tmp_path / "node"
    (target / "io.containerd.metadata.v1.bolt").mkdir(parents=True)
    assert seed(target, []) is False
    assert [p.name for p in target.iterdir()] == ["io.containerd.metadata.v1.bolt"]
