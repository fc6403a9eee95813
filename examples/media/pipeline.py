"""A media pipeline: download -> transcode -> thumbnail, with files on a shared volume.

Each step writes its output under MEDIA_DIR/<run uid>/ and records where it is, with a checksum:
a new attempt (another pod, maybe another node) finds the files of the steps already done on the
volume and goes on from there. The "video" is raw 8-bit greyscale frames; "transcoding" halves its
resolution; the thumbnail is the first frame as a PGM image.

Payload: {"source": "clip-001", "width": 64, "height": 48, "frames": 24}. MEDIA_SOURCE_URL, when
set, is where `source` is downloaded from (GET <url>/<source>); otherwise a test pattern is made.

With `"renditions": [2, 4, 8]` the pipeline fans out: each rendition (the video scaled down by that
factor) is a child run of the Task media-rendition (`rendition` below), started and waited for with
no pod and no queue slot held by the parent; then the parent makes the thumbnail from the smallest.
"""

from __future__ import annotations

import hashlib
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

from cairn.sdk import ChildResult, Context, Fatal


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check(step: dict[str, Any]) -> Path:
    path = Path(step["path"])
    if not path.exists() or _sha(path) != step["sha256"]:
        raise RuntimeError(f"{path} is missing or changed: the media volume must outlive pods (use a PVC)")
    return path


def _pace() -> None:
    """MEDIA_STEP_SECONDS: pretend each step takes this long (demos and tests that interrupt a run)."""
    time.sleep(float(os.environ.get("MEDIA_STEP_SECONDS", "0")))


def download(work: Path, source: str, size: int) -> dict[str, Any]:
    _pace()
    target = work / "source.raw"
    url = os.environ.get("MEDIA_SOURCE_URL")
    if url:
        with urllib.request.urlopen(f"{url.rstrip('/')}/{source}", timeout=60) as response:  # noqa: S310
            data = response.read()
    else:
        data = bytes((i * 7 + i // 64) % 256 for i in range(size))  # a test pattern
    if len(data) != size:
        raise Fatal(f"{source} has {len(data)} bytes; {size} were expected for its declared size")
    target.write_bytes(data)
    return {"path": str(target), "bytes": len(data), "sha256": _sha(target)}


def scale(raw: Path, target: Path, width: int, height: int, frames: int, factor: int) -> dict[str, Any]:
    _pace()
    data = raw.read_bytes()
    out = bytearray()
    for f in range(frames):
        frame = data[f * width * height : (f + 1) * width * height]
        for y in range(0, height, factor):
            out += frame[y * width : (y + 1) * width : factor]
    target.write_bytes(bytes(out))
    return {"path": str(target), "width": width // factor, "height": height // factor, "sha256": _sha(target)}


def transcode(raw: Path, work: Path, width: int, height: int, frames: int) -> dict[str, Any]:
    return scale(raw, work / "half.raw", width, height, frames, 2)


def thumbnail(half: Path, work: Path, width: int, height: int) -> dict[str, Any]:
    _pace()
    first = half.read_bytes()[: width * height]
    target = work / "thumb.pgm"
    target.write_bytes(f"P5 {width} {height} 255\n".encode() + first)
    return {"path": str(target), "width": width, "height": height, "sha256": _sha(target)}


def main(ctx: Context) -> dict[str, Any]:
    p = ctx.payload or {}
    try:
        source, width, height, frames = str(p["source"]), int(p["width"]), int(p["height"]), int(p["frames"])
    except (KeyError, TypeError, ValueError) as e:
        raise Fatal(f"the payload needs source, width, height and frames: {e}") from e
    if width % 2 or height % 2:
        raise Fatal("unsupported format: width and height must be even")
    work = Path(os.environ.get("MEDIA_DIR", "/work")) / ctx.run_uid
    work.mkdir(parents=True, exist_ok=True)
    got = ctx.step("download", download, work, source, width * height * frames)
    if p.get("renditions"):
        return _fan_out(ctx, p, got, work, width, height, frames)
    half = ctx.step("transcode", transcode, _check(got), work, width, height, frames)
    thumb = ctx.step("thumbnail", thumbnail, _check(half), work, half["width"], half["height"])
    _check(thumb)
    return {
        "source": source,
        "transcoded": half["path"],
        "thumbnail": thumb["path"],
        "size": f"{half['width']}x{half['height']}",
    }


def _fan_out(
    ctx: Context, p: dict[str, Any], got: dict[str, Any], work: Path, width: int, height: int, frames: int
) -> dict[str, Any]:
    factors = [int(f) for f in p["renditions"]]
    if any(f < 1 or width % f or height % f for f in factors):
        raise Fatal(f"every rendition factor must divide {width}x{height}: {factors}")
    source = {"path": got["path"], "sha256": got["sha256"], "width": width, "height": height, "frames": frames}
    children = [{"task": "media-rendition", "payload": {**source, "factor": f, "work": str(work)}} for f in factors]
    done: list[ChildResult[dict[str, Any]]] = ctx.batch_trigger_and_wait("renditions", children)  # no pod meanwhile
    failed = [r.run for r in done if not r.ok]
    if failed:
        raise Fatal(f"renditions failed: {', '.join(failed)}")
    smallest = max(zip(factors, done, strict=True), key=lambda pair: pair[0])[1].result
    assert smallest is not None
    thumb = ctx.step("thumbnail", thumbnail, _check(smallest), work, smallest["width"], smallest["height"])
    _check(thumb)
    return {
        "source": str(p["source"]),
        "renditions": [f"{r.result['width']}x{r.result['height']}" for r in done if r.result],
        "thumbnail": thumb["path"],
    }


def rendition(ctx: Context) -> dict[str, Any]:
    """A child run of the fan-out: one rendition of the parent's download, on the same volume."""
    p = ctx.payload or {}
    raw = _check(p)
    factor = int(p["factor"])
    target = Path(p["work"]) / f"x{factor}.raw"
    return ctx.step("scale", scale, raw, target, int(p["width"]), int(p["height"]), int(p["frames"]), factor)
