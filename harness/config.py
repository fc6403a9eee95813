"""Versions, cache locations and binary lookup for the harness."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

K8S_VERSION = os.environ.get("K8S_VERSION", "v1.33.13")
KWOK_VERSION = os.environ.get("KWOK_VERSION", "v0.7.0")
HELM_VERSION = os.environ.get("HELM_VERSION", "v3.17.4")
COREDNS_VERSION = os.environ.get("COREDNS_VERSION", "v1.12.4")
KUEUE_VERSION = os.environ.get("KUEUE_VERSION", "v0.17.0")

CACHE = Path(os.environ.get("CAIRN_CACHE", str(Path.home() / ".cache" / "cairn")))
REPO = Path(__file__).resolve().parent.parent


class MissingBinaryError(RuntimeError):
    """A binary the harness needs is not installed: `hack/setup.sh` installs or builds it."""


def k8s_bin(name: str) -> Path:
    path = CACHE / "k8s" / K8S_VERSION / name
    if not os.access(path, os.X_OK):
        raise MissingBinaryError(f"{path} is missing: run `hack/setup.sh` (it builds Kubernetes {K8S_VERSION})")
    return path


def tool_bin(name: str, version: str) -> Path:
    path = CACHE / "tools" / f"{name}-{version}" / name
    if not os.access(path, os.X_OK):
        raise MissingBinaryError(f"{path} is missing: run `hack/setup.sh` (it builds {name} {version})")
    return path


def system_bin(name: str, *extra_dirs: str) -> Path:
    found = shutil.which(name, path=os.pathsep.join([*extra_dirs, os.environ.get("PATH", ""), "/usr/sbin"]))
    if not found:
        raise MissingBinaryError(f"`{name}` is not installed: run `hack/setup.sh` (it installs Debian's packages)")
    return Path(found)


def kubectl() -> Path:
    return k8s_bin("kubectl")
