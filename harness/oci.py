"""A small OCI image writer: turns root-filesystem layers into an OCI image archive that
`ctr images import` loads, with no Docker engine and no registry.

Layers are uncompressed tars written deterministically (sorted entries, owner 0:0, mtime 0), so the
same inputs always give the same digests: the digest doubles as a cache key, and identical base
layers are stored once by containerd.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"


@dataclass(frozen=True)
class FileEntry:
    """One file to place in a layer, from bytes or from a file on disk."""

    path: str
    data: bytes | None = None
    source: Path | None = None
    mode: int = 0o644


@dataclass(frozen=True)
class ImageConfig:
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: list[str] = field(
        default_factory=lambda: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    )
    user: str = ""
    workdir: str = ""
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Layer:
    path: Path  # the uncompressed layer tar
    digest: str  # sha256:..., which is also its diff_id (uncompressed)
    size: int


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def _walk(root: Path) -> Iterator[Path]:
    """Every path under root, parents before children, in a stable order; the root itself excluded."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(dirnames + filenames):
            yield base / name


def layer_from_dir(root: Path, out: Path, *, prefix: str = "") -> Layer:
    """A layer holding the tree under `root` (placed under `prefix` in the image)."""
    if out.exists():
        return layer_at(out)
    tmp = _tmp_beside(out)
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in _walk(root):
            if stat.S_ISSOCK(path.lstat().st_mode):
                continue
            arcname = str(Path(prefix.lstrip("/")) / path.relative_to(root)) if prefix else str(path.relative_to(root))
            info = tar.gettarinfo(str(path), arcname=arcname)
            if info is None:  # sockets and other types tar cannot hold
                continue
            info = _normalise(info)
            if info.isreg():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    tmp.rename(out)
    return layer_at(out)


def layer_from_files(files: Iterable[FileEntry], out: Path) -> Layer:
    """A layer holding the given files (their parent directories are added, mode 0755)."""
    if out.exists():
        return layer_at(out)
    tmp = _tmp_beside(out)
    entries = sorted(files, key=lambda e: e.path)
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for entry in entries:
            parts = Path(entry.path.lstrip("/")).parts
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(_normalise(info))
            data = entry.data if entry.data is not None else Path(entry.source or "").read_bytes()
            info = tarfile.TarInfo("/".join(parts))
            info.size = len(data)
            info.mode = entry.mode
            tar.addfile(_normalise(info), io.BytesIO(data))
    tmp.rename(out)
    return layer_at(out)


def layer_at(path: Path) -> Layer:
    """The layer already written at `path`."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return Layer(path, f"sha256:{h.hexdigest()}", path.stat().st_size)


def _blob(data: bytes) -> tuple[str, bytes]:
    return f"sha256:{hashlib.sha256(data).hexdigest()}", data


def write_image(name: str, layers: list[Layer], config: ImageConfig, out: Path) -> str:
    """Write an OCI image archive (a tar of an OCI layout) for `name` (e.g. localhost/pause:local).

    Returns the manifest digest. `ctr -n k8s.io images import` keeps `name` from the annotations.
    """
    if ":" not in name.rsplit("/", 1)[-1]:
        raise ValueError(f"image name {name!r} needs an explicit tag (untagged images are pulled Always)")
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            k: v
            for k, v in {
                "Entrypoint": config.entrypoint,
                "Cmd": config.cmd,
                "Env": config.env,
                "User": config.user or None,
                "WorkingDir": config.workdir or None,
                "Labels": config.labels or None,
            }.items()
            if v is not None
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
        "history": [{"created_by": "cairn harness oci writer"} for _ in layers],
    }
    config_digest, config_bytes = _blob(json.dumps(image_config, sort_keys=True, separators=(",", ":")).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": [{"mediaType": MEDIA_LAYER, "digest": layer.digest, "size": layer.size} for layer in layers],
    }
    manifest_digest, manifest_bytes = _blob(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())
    tag = name.rsplit(":", 1)[1]
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [
            {
                "mediaType": MEDIA_MANIFEST,
                "digest": manifest_digest,
                "size": len(manifest_bytes),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    tmp = _tmp_beside(out)
    with tarfile.open(tmp, "w") as tar:

        def add(arcname: str, data: bytes) -> None:
            info = _normalise(tarfile.TarInfo(arcname))
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add("index.json", json.dumps(index, sort_keys=True).encode())
        add(f"blobs/sha256/{config_digest[7:]}", config_bytes)
        add(f"blobs/sha256/{manifest_digest[7:]}", manifest_bytes)
        for layer in layers:
            info = _normalise(tarfile.TarInfo(f"blobs/sha256/{layer.digest[7:]}"))
            info.size = layer.size
            with open(layer.path, "rb") as f:
                tar.addfile(info, f)
    tmp.rename(out)
    return manifest_digest


def _tmp_beside(out: Path) -> Path:
    """A file of this process's own next to `out`: written whole, then renamed over it (atomic), so
    two processes building the same cached file never interleave and a reader never sees half of it."""
    return out.with_name(f"{out.name}.{os.getpid()}.{threading.get_ident()}.tmp")
