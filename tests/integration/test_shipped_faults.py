"""Fault points cannot be switched on in Cairn as shipped: the wheel, and the operator's and tasks'
images built from it, ignore CAIRN_FAULTS. Only the harness's launcher (not shipped) arms them."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from cairn import faults
from harness import images

EVERY_POINT_CRASHES = ",".join(f"{name}=crash" for name in faults.POINTS)
PROBE = """
import sys
from cairn import faults
armed = [n for n in faults.POINTS if faults.enabled(n)]
for name in faults.POINTS:
    faults.point(name)
print(faults.__file__)
print(len(faults.POINTS), "points hit,", len(armed), "armed")
"""


def _probe(path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(path), "CAIRN_FAULTS": EVERY_POINT_CRASHES, "CAIRN_FAULTS_LOG": "/dev/null"}
    return subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=path, capture_output=True, text=True, timeout=60)


def test_the_shipped_wheel_and_image_layer_ignore_cairn_faults(tmp_path: Path) -> None:
    wheel = images.build_wheel()
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        z.extractall(tmp_path / "wheel")  # noqa: S202 - the wheel we just built
    assert "cairn/faults.py" in names
    assert not [n for n in names if n.startswith("harness/")], "the test harness (and its fault launcher) is shipped"

    layer = images.cairn_layer(wheel)  # the layer of the operator's and the tasks' images
    site = tmp_path / "image"
    with tarfile.open(layer.path) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(f"{images.SITE_PACKAGES}/cairn/")]
        tar.extractall(site, members=members, filter="data")
    assert members, f"no cairn package in the image layer {layer.path}"

    for where in (tmp_path / "wheel", site / images.SITE_PACKAGES):
        probe = _probe(where)
        assert probe.returncode == 0, f"a fault point fired in {where}: exit {probe.returncode}\n{probe.stderr}"
        located, counts = probe.stdout.splitlines()[-2:]
        assert located.startswith(str(where)), f"the probe imported cairn from {located}, not {where}"
        assert counts == f"{len(faults.POINTS)} points hit, 0 armed"


def test_the_harness_launcher_arms_the_points_it_is_given(tmp_path: Path) -> None:
    """The check above can fail: the same probe, with the harness's injector installed, crashes."""
    log = tmp_path / "faults.log"
    probe = (
        "from harness import faultinject\nfrom cairn import faults\n"
        f"faults.install(faultinject.EnvInjector('api.after_checkpoint_commit=crash:1', {str(log)!r}))\n"
        "faults.point('operator.after_slot_taken')\nfaults.point('api.after_checkpoint_commit')\nprint('survived')\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 137 and "survived" not in done.stdout, (done.returncode, done.stdout, done.stderr)
    assert log.read_text().split()[1:] == ["api.after_checkpoint_commit", "crash"]
    again = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "survived" in again.stdout, "crash:1 counts the hits of earlier processes"
