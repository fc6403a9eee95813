"""The OCI image writer: deterministic layers, a layout that `ctr images import` accepts, and the
Dockerfiles rendered from the same recipes. (That the images run on real nodes is proved by
tests/integration/test_nodes.py.)"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from harness import config, dockerfiles, images
from harness.oci import FileEntry, ImageConfig, layer_from_dir, layer_from_files, write_image


def _tree(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tool").write_bytes(b"#!/bin/sh\necho hi\n")
    (root / "bin" / "tool").chmod(0o755)
    (root / "bin" / "alias").symlink_to("tool")
    (root / "etc").mkdir()
    (root / "etc" / "conf").write_text("x=1\n")
    return root


def test_the_same_tree_gives_the_same_layer_digest_whatever_the_file_times(tmp_path: Path) -> None:
    a = _tree(tmp_path / "a")
    b = _tree(tmp_path / "b")
    (b / "etc" / "conf").touch()  # a different mtime must not matter
    assert layer_from_dir(a, tmp_path / "a.tar").digest == layer_from_dir(b, tmp_path / "b.tar").digest


def test_a_layer_holds_files_owned_by_root_with_their_modes_and_links(tmp_path: Path) -> None:
    layer = layer_from_dir(_tree(tmp_path / "root"), tmp_path / "l.tar")
    with tarfile.open(layer.path) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {"bin", "bin/alias", "bin/tool", "etc", "etc/conf"}
    assert all(m.uid == 0 and m.gid == 0 and m.mtime == 0 for m in members.values())
    assert members["bin/tool"].mode & 0o777 == 0o755
    assert members["bin/alias"].issym() and members["bin/alias"].linkname == "tool"


def test_a_changed_file_changes_the_digest(tmp_path: Path) -> None:
    one = layer_from_files([FileEntry("app/x", data=b"1")], tmp_path / "1.tar")
    two = layer_from_files([FileEntry("app/x", data=b"2")], tmp_path / "2.tar")
    assert one.digest != two.digest


def test_an_image_archive_is_an_oci_layout_naming_the_image(tmp_path: Path) -> None:
    layer = layer_from_files([FileEntry("pause", data=b"\x7fELF", mode=0o755)], tmp_path / "l.tar")
    out = tmp_path / "img.tar"
    digest = write_image("localhost/thing:1.0", [layer], ImageConfig(entrypoint=["/pause"], user="65532"), out)
    with tarfile.open(out) as tar:
        names = set(tar.getnames())

        def read(name: str) -> dict[str, object]:
            f = tar.extractfile(name)
            assert f is not None
            data = json.loads(f.read())
            assert isinstance(data, dict)
            return data

        index = read("index.json")
        manifest = read(f"blobs/sha256/{digest[7:]}")
        config_digest = manifest["config"]["digest"]  # type: ignore[index]
        config = read(f"blobs/sha256/{config_digest[7:]}")
    assert "oci-layout" in names and f"blobs/sha256/{layer.digest[7:]}" in names
    entry = index["manifests"][0]  # type: ignore[index]
    assert entry["digest"] == digest
    assert entry["annotations"]["io.containerd.image.name"] == "localhost/thing:1.0"
    assert config["rootfs"] == {"type": "layers", "diff_ids": [layer.digest]}
    assert config["config"]["Entrypoint"] == ["/pause"]  # type: ignore[index]
    assert config["config"]["User"] == "65532"  # type: ignore[index]


def test_an_untagged_image_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="explicit tag"):
        write_image("localhost/thing", [], ImageConfig(), tmp_path / "x.tar")


@pytest.mark.parametrize("recipe", images.RECIPES, ids=lambda r: r.name)
def test_each_committed_dockerfile_matches_the_recipe_the_harness_builds_from(
    recipe: images.PythonRecipe,
) -> None:
    assert recipe.dockerfile is not None
    committed = (config.REPO / recipe.dockerfile).read_text()
    assert committed == dockerfiles.render(recipe), (
        f"{recipe.dockerfile} is out of date: run `python -m harness.dockerfiles`"
    )


def test_the_committed_node_dockerfile_matches_the_recipe_the_harness_builds_from() -> None:
    recipe = images.NODE_RECIPE
    committed = (config.REPO / recipe.dockerfile).read_text()
    assert committed == dockerfiles.render_node(recipe), (
        f"{recipe.dockerfile} is out of date: run `python -m harness.dockerfiles`"
    )


def test_the_python_images_run_as_a_non_root_user_under_tini() -> None:
    cfg = images.python_config(["python3"])
    assert cfg.user == "65532:65532"
    assert cfg.entrypoint == ["/usr/bin/tini", "--"]
    assert "tini" in images.debian_packages()
