"""The images the cluster runs, built without Docker or a registry and cached by content:

- `localhost/pause:local`: the pod sandbox, a static C program;
- `localhost/busybox:local`: a 2 MB image for smoke tests;
- `localhost/cairn-task:<version>`: Debian bookworm (debootstrap) with Python and Cairn's SDK,
  installed from the local wheel: the base of task images;
- `localhost/cairn-operator:<version>`: the same base with the operator's dependencies;
- `localhost/cairn-examples:<version>`: the task image plus `examples/`, for the demo and tests;
- `localhost/cairn-node:<version>`: Debian trixie (debootstrap) with Node.js 20, the TypeScript SDK
  (`@cairn-dev/sdk`, built by hack/build-typescript.sh) and the TypeScript example: the base of
  Node.js task images;
- `localhost/cairn-postgres:15`: Debian bookworm's PostgreSQL 15 run as a non-root user, the Helm
  chart's bundled database (images/postgres/).

Each layer is cached under its inputs' hash, so only what changed is rebuilt. The Dockerfiles in
`images/` read the same inputs (package list, passwd, pip command) for users who build with Docker.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness import config
from harness.hostdirs import machine_lock
from harness.oci import FileEntry, ImageConfig, Layer, layer_at, layer_from_dir, layer_from_files, write_image
from harness.procs import HarnessError, run

IMAGES = config.CACHE / "images"
LAYERS = IMAGES / "layers"
SRC = config.REPO / "images"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
SITE_PACKAGES = "usr/local/lib/python3.11/dist-packages"
# The pip command both build paths use to put Python packages into the image (see images/*/Dockerfile).
PIP_TARGET_ARGS = [
    "--target",
    "{target}",
    "--only-binary=:all:",
    "--platform",
    "manylinux2014_x86_64",
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
    "--abi",
    "cp311",
    "--no-compile",
    "--disable-pip-version-check",
    "--quiet",
]
RUNTIME_USER = "65532:65532"
# Emptied after debootstrap: package caches, logs and documentation an image does not need.
DEBIAN_PRUNE = (
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "var/log",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
)
VERSION = "0.1.0"

PAUSE = "localhost/pause:local"
BUSYBOX = "localhost/busybox:local"
TASK = f"localhost/cairn-task:{VERSION}"
OPERATOR = f"localhost/cairn-operator:{VERSION}"
EXAMPLES = f"localhost/cairn-examples:{VERSION}"
COREDNS = f"localhost/coredns:{config.COREDNS_VERSION}"
POSTGRES = "localhost/cairn-postgres:15"
NODE = f"localhost/cairn-node:{VERSION}"


@dataclass(frozen=True)
class Image:
    name: str
    archive: Path
    digest: str


def _hash(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:16]


def _image(name: str, layers: list[Layer], cfg: ImageConfig) -> Image:
    key = _hash(name, *(layer.digest for layer in layers), repr(cfg))
    out = IMAGES / f"{name.split('/')[-1].replace(':', '-')}-{key}.oci.tar"
    digest_file = out.with_suffix(".digest")
    if not out.exists() or not digest_file.exists():
        digest = write_image(name, layers, cfg, out)
        digest_file.write_text(digest)
    return Image(name, out, digest_file.read_text())


def _layer_path(kind: str, key: str) -> Path:
    LAYERS.mkdir(parents=True, exist_ok=True)
    return LAYERS / f"{kind}-{key}.tar"


# -- pause and busybox -------------------------------------------------------------------------------
def pause_image() -> Image:
    src = SRC / "pause" / "pause.c"
    key = _hash(src.read_bytes(), run(["gcc", "--version"]).splitlines()[0])
    layer_file = _layer_path("pause", key)
    if not layer_file.exists():
        with tempfile.TemporaryDirectory() as tmp:
            binary = Path(tmp) / "pause"
            run(["gcc", "-static", "-Os", "-s", "-o", str(binary), str(src)])
            layer_from_files([FileEntry("pause", source=binary, mode=0o755)], layer_file)
    return _image(PAUSE, [layer_at(layer_file)], ImageConfig(entrypoint=["/pause"], env=[]))


def busybox_image() -> Image:
    busybox = config.system_bin("busybox")
    key = _hash(busybox.read_bytes())
    layer_file = _layer_path("busybox", key)
    if not layer_file.exists():
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "rootfs"
            (root / "bin").mkdir(parents=True)
            (root / "tmp").mkdir(mode=0o1777)
            (root / "tmp").chmod(0o1777)
            (root / "etc").mkdir()
            shutil.copy2(SRC / "base" / "passwd", root / "etc" / "passwd")
            shutil.copy2(SRC / "base" / "group", root / "etc" / "group")
            shutil.copy2(busybox, root / "bin" / "busybox")
            for applet in run([str(busybox), "--list"]).split():
                if applet != "busybox":
                    (root / "bin" / applet).symlink_to("busybox")
            layer_from_dir(root, layer_file)
    return _image(BUSYBOX, [layer_at(layer_file)], ImageConfig(cmd=["/bin/sh"], env=["PATH=/bin"]))


def coredns_image() -> Image:
    binary = config.tool_bin("coredns", config.COREDNS_VERSION)
    layer_file = _layer_path("coredns", _hash(binary.read_bytes()))
    if not layer_file.exists():
        layer_from_files([FileEntry("coredns", source=binary, mode=0o755)], layer_file)
    return _image(COREDNS, [layer_at(layer_file)], ImageConfig(entrypoint=["/coredns"], env=[], user=RUNTIME_USER))


# -- Debian base and Python layers -------------------------------------------------------------------
def debian_packages() -> list[str]:
    lines = (SRC / "base" / "packages.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def debootstrap_argv(rootfs: str) -> list[str]:
    return [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(debian_packages())}",
        "bookworm",
        rootfs,
        DEBIAN_MIRROR,
    ]


def debian_base_layer() -> Layer:
    key = _hash(
        " ".join(debootstrap_argv("ROOTFS")),
        (SRC / "base" / "passwd").read_bytes(),
        (SRC / "base" / "group").read_bytes(),
        "v2",
    )
    layer_file = _layer_path("debian", key)
    if layer_file.exists():
        return layer_at(layer_file)
    print(f"[images] debootstrap bookworm ({', '.join(debian_packages())}): about a minute, once", flush=True)
    with tempfile.TemporaryDirectory(prefix="cairn-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        _debootstrap(debootstrap_argv(str(root)), root)
        _as_cairn_base(root)
        return layer_from_dir(root, layer_file)


def _as_cairn_base(root: Path) -> None:
    """A debootstrapped tree made a base of Cairn's images: Debian's caches and docs emptied, Cairn's
    passwd and group (the runtime user 65532), and that user's home."""
    for junk in DEBIAN_PRUNE:
        target = root / junk
        if target.exists():
            shutil.rmtree(target)
            target.mkdir()
    shutil.copy2(SRC / "base" / "passwd", root / "etc" / "passwd")
    shutil.copy2(SRC / "base" / "group", root / "etc" / "group")
    home = root / "home" / "cairn"
    home.mkdir(parents=True, exist_ok=True)
    shutil.chown(home, 65532, 65532)


def build_wheel() -> Path:
    """The Cairn wheel from this checkout (what `pip install cairn` would install)."""
    out = config.CACHE / "wheels"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "--quiet",
                "-w",
                tmp,
                str(config.REPO),
            ],
            timeout=300,
            # The zip's entries dated to a fixed time: the same checkout makes the same wheel, and so
            # the same images (an image that changed with each build was imported anew each time).
            env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"},
        )
        wheel = next(Path(tmp).glob("cairn-*.whl"))
        target = out / wheel.name
        shutil.copy2(wheel, target)
    return target


def pip_target_argv(target: Path, *requirements: str, no_deps: bool = False) -> list[str]:
    args = [a.replace("{target}", str(target)) for a in PIP_TARGET_ARGS]
    return [sys.executable, "-m", "pip", "install", *args, *(["--no-deps"] if no_deps else []), *requirements]


def _python_layer(kind: str, key: str, *requirements: str, no_deps: bool = False) -> Layer:
    layer_file = _layer_path(kind, key)
    if layer_file.exists():
        return layer_at(layer_file)
    with tempfile.TemporaryDirectory(prefix="cairn-site-") as tmp:
        root = Path(tmp)
        site = root / SITE_PACKAGES
        site.mkdir(parents=True)
        run(pip_target_argv(site, *requirements, no_deps=no_deps), timeout=900)
        shutil.rmtree(site / "bin", ignore_errors=True)
        # Precompiled, hash-checked bytecode: valid whatever the file times in the layer say.
        subprocess.run(
            [
                sys.executable,
                "-m",
                "compileall",
                "-q",
                "-j0",
                "--invalidation-mode",
                "unchecked-hash",
                str(site),
            ],
            check=False,
            capture_output=True,
        )
        return layer_from_dir(root, layer_file)


def dependency_requirements(extra: str | None) -> list[str]:
    """The third-party requirements of cairn (and of one extra), read from pyproject.toml."""
    import tomllib

    project = tomllib.loads((config.REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    if extra:
        reqs += [r for r in project["optional-dependencies"][extra] if not r.startswith("cairn")]
    return reqs


def deps_layer(extra: str | None) -> Layer:
    reqs = dependency_requirements(extra)
    return _python_layer(f"deps-{extra or 'sdk'}", _hash(*reqs), *reqs)


def cairn_layer(wheel: Path) -> Layer:
    return _python_layer("cairn", _hash(wheel.read_bytes()), str(wheel), no_deps=True)


def example_files() -> list[Path]:
    """Everything under examples/ but bytecode (the Dockerfiles' .dockerignore excludes the same)."""
    return sorted(
        p
        for p in (config.REPO / "examples").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


def examples_layer() -> Layer:
    files = example_files()
    key = _hash(*(str(p.relative_to(config.REPO)).encode() + p.read_bytes() for p in files))
    entries = [FileEntry(f"app/{p.relative_to(config.REPO)}", source=p) for p in files]
    return layer_from_files(entries, _layer_path("examples", key))


def python_config(cmd: list[str]) -> ImageConfig:
    return ImageConfig(
        entrypoint=["/usr/bin/tini", "--"],
        cmd=cmd,
        env=[
            "PATH=/usr/local/bin:/usr/bin:/bin",
            "PYTHONUNBUFFERED=1",
            "PYTHONDONTWRITEBYTECODE=1",
            "PYTHONPATH=/app",
        ],
        user=RUNTIME_USER,
        workdir="/app",
    )


@dataclass(frozen=True)
class PythonRecipe:
    """A Python image: the Debian base, the dependencies of `extra`, the Cairn wheel, maybe examples."""

    name: str
    extra: str | None
    cmd: list[str]
    examples: bool = False
    dockerfile: str | None = None  # where its Dockerfile lives, for users who build with Docker


RECIPES = [
    PythonRecipe(TASK, None, ["python3", "-m", "cairn.run"], dockerfile="images/task/Dockerfile"),
    PythonRecipe(
        EXAMPLES, None, ["python3", "-m", "cairn.run"], examples=True, dockerfile="images/examples/Dockerfile"
    ),
    PythonRecipe(OPERATOR, "operator", ["python3", "-m", "cairn", "operator"], dockerfile="images/operator/Dockerfile"),
]


def python_image(recipe: PythonRecipe, wheel: Path) -> Image:
    layers = [debian_base_layer(), deps_layer(recipe.extra), cairn_layer(wheel)]
    if recipe.examples:
        layers.append(examples_layer())
    return _image(recipe.name, layers, python_config(recipe.cmd))


# -- Node.js tasks ---------------------------------------------------------------------------------------
TS_SDK = config.REPO / "sdks" / "typescript"
TS_TASKS = TS_SDK / "build" / "tasks"
# ES modules resolve a bare import ("@cairn-dev/sdk") through node_modules directories up to the root,
# never through NODE_PATH: a package at /node_modules is found from /app and from a ConfigMap at /tasks.
NODE_SDK_DIR = "node_modules/@cairn-dev/sdk"


@dataclass(frozen=True)
class NodeRecipe:
    name: str = NODE
    src: str = "images/node"
    dockerfile: str = "images/node/Dockerfile"
    suite: str = "trixie"

    def packages(self) -> list[str]:
        lines = (config.REPO / self.src / "packages.txt").read_text().splitlines()
        return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]

    def debootstrap_argv(self, rootfs: str) -> list[str]:
        include = ",".join(self.packages())
        return ["debootstrap", "--variant=minbase", f"--include={include}", self.suite, rootfs, DEBIAN_MIRROR]

    def config(self) -> ImageConfig:
        return ImageConfig(
            entrypoint=["/usr/bin/tini", "--"],
            cmd=["cairn-run"],
            env=["PATH=/usr/local/bin:/usr/bin:/bin", "NODE_OPTIONS=--enable-source-maps"],
            user=RUNTIME_USER,
            workdir="/app",
        )


NODE_RECIPE = NodeRecipe()


def typescript_inputs() -> str:
    """A hash of everything the TypeScript build reads: when it matches the last build's, its outputs
    are current (every cluster start builds the images; tsc need not run again each time)."""
    roots = [TS_SDK / "src", config.REPO / "examples" / "typescript", config.REPO / "tests" / "e2e" / "typescript"]
    files = [p for root in roots for p in sorted(root.rglob("*")) if p.is_file() and "node_modules" not in p.parts]
    files += [*sorted(TS_SDK.glob("*.json")), config.REPO / "operator/cairn/server/openapi.yaml"]
    files.append(config.REPO / "hack" / "build-typescript.sh")
    return _hash(*(str(p.relative_to(config.REPO)).encode() + p.read_bytes() for p in files))


def build_typescript() -> None:
    """The SDK's dist/ and the compiled TypeScript tasks, from this checkout (tsc: a few seconds), unless
    the last build was made from the same inputs and its outputs are all there."""
    stamp = TS_SDK / "build" / ".inputs"
    key = typescript_inputs()
    outputs = [TS_SDK / "dist" / "run.js", TS_TASKS / "examples" / "typescript" / "process-video.js"]
    if stamp.exists() and stamp.read_text() == key and all(p.exists() for p in outputs):
        return
    run(["bash", str(config.REPO / "hack" / "build-typescript.sh")], timeout=600)
    stamp.write_text(key)


def node_rootfs_layer(recipe: NodeRecipe = NODE_RECIPE) -> Layer:
    key = _hash(
        " ".join(recipe.debootstrap_argv("ROOTFS")),
        " ".join(DEBIAN_PRUNE),
        (SRC / "base" / "passwd").read_bytes(),
        (SRC / "base" / "group").read_bytes(),
        "v1",
    )
    layer_file = _layer_path("node", key)
    if layer_file.exists():
        return layer_at(layer_file)
    print(f"[images] debootstrap {recipe.suite} ({', '.join(recipe.packages())}): about a minute, once", flush=True)
    with tempfile.TemporaryDirectory(prefix="cairn-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        _debootstrap(recipe.debootstrap_argv(str(root)), root)
        _as_cairn_base(root)
        return layer_from_dir(root, layer_file)


def _tree(base: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in base.rglob("*") if p.is_file() and p.name.endswith(suffixes))


def node_sdk_layer() -> Layer:
    """The SDK as npm would install it (package.json and dist/), and `cairn-run` on the PATH."""
    files = [TS_SDK / "package.json", *_tree(TS_SDK / "dist", (".js", ".js.map", ".d.ts"))]
    key = _hash(*(str(p.relative_to(TS_SDK)).encode() + p.read_bytes() for p in files), "v1")
    layer_file = _layer_path("node-sdk", key)
    if layer_file.exists():
        return layer_at(layer_file)
    with tempfile.TemporaryDirectory(prefix="cairn-node-sdk-") as tmp:
        root = Path(tmp)
        for p in files:
            target = root / NODE_SDK_DIR / p.relative_to(TS_SDK)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, target)
        (root / NODE_SDK_DIR / "dist" / "run.js").chmod(0o755)
        (root / "usr" / "local" / "bin").mkdir(parents=True)
        (root / "usr" / "local" / "bin" / "cairn-run").symlink_to(f"/{NODE_SDK_DIR}/dist/run.js")
        return layer_from_dir(root, layer_file)


def node_examples_layer() -> Layer:
    """examples/typescript: its manifests and package.json, and process-video.ts compiled to .js."""
    src = config.REPO / "examples" / "typescript"
    built = TS_TASKS / "examples" / "typescript"
    entries = [FileEntry(f"app/examples/typescript/{p.name}", source=p) for p in _tree(built, (".js", ".js.map"))]
    entries += [FileEntry(f"app/examples/typescript/{p.name}", source=p) for p in _tree(src, (".yaml", ".json"))]
    key = _hash(*(e.path.encode() + Path(e.source or "").read_bytes() for e in entries))
    return layer_from_files(entries, _layer_path("node-examples", key))


def node_image(recipe: NodeRecipe = NODE_RECIPE) -> Image:
    build_typescript()
    return _image(recipe.name, [node_rootfs_layer(recipe), node_sdk_layer(), node_examples_layer()], recipe.config())


# -- the bundled PostgreSQL of the Helm chart ----------------------------------------------------------
@dataclass(frozen=True)
class PostgresRecipe:
    """Debian's PostgreSQL 15 alone (no Python): a debootstrap of the packages in `images/postgres/`,
    its own passwd (postgres is uid 999, like the official image), and an entrypoint script that
    initialises an empty data directory and runs postgres in the foreground."""

    name: str = POSTGRES
    src: str = "images/postgres"
    dockerfile: str = "images/postgres/Dockerfile"
    uid: int = 999
    entrypoint: str = "/usr/local/bin/cairn-postgres"
    data_dir: str = "/var/lib/postgresql/data"
    # Emptied: Debian's junk, the cluster the package's postinst creates, and the snakeoil TLS key
    # that every copy of the image would otherwise share.
    prune: tuple[str, ...] = (
        *DEBIAN_PRUNE,
        "var/lib/postgresql/15",
        "etc/postgresql/15",
        "etc/ssl/private",
        "usr/share/i18n",
    )
    # Removed (globs): the snakeoil certificate; JIT (LLVM and z3 are 130 MB; postgres runs without
    # them, with jit unavailable); the Perl of Debian's pg_ctlcluster tooling, which the entrypoint does
    # not use (perl-base stays). About 370 MB -> 170 MB.
    remove: tuple[str, ...] = (
        "etc/ssl/certs/ssl-cert-snakeoil.pem",
        "usr/lib/x86_64-linux-gnu/libLLVM-*",
        "usr/lib/x86_64-linux-gnu/libz3.so*",
        "usr/lib/postgresql/15/lib/llvmjit*",
        "usr/lib/postgresql/15/lib/bitcode",
        "usr/lib/x86_64-linux-gnu/perl/5.*",
        "usr/share/perl/5.*",
        "usr/lib/x86_64-linux-gnu/libperl.so*",
    )

    def packages(self) -> list[str]:
        lines = (config.REPO / self.src / "packages.txt").read_text().splitlines()
        return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]

    def debootstrap_argv(self, rootfs: str) -> list[str]:
        return [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(self.packages())}",
            "bookworm",
            rootfs,
            DEBIAN_MIRROR,
        ]

    def config(self) -> ImageConfig:
        return ImageConfig(
            entrypoint=[self.entrypoint],
            env=["PATH=/usr/lib/postgresql/15/bin:/usr/bin:/bin", f"PGDATA={self.data_dir}/pgdata"],
            user=f"{self.uid}:{self.uid}",
        )


POSTGRES_RECIPE = PostgresRecipe()


def _debootstrap(argv: list[str], root: Path) -> None:
    try:
        run(argv, timeout=900)
    except HarnessError as e:
        log = root / "debootstrap" / "debootstrap.log"
        raise HarnessError(f"{e}\n{log.read_text()[-3000:] if log.exists() else ''}") from e


def postgres_rootfs_layer(recipe: PostgresRecipe = POSTGRES_RECIPE) -> Layer:
    src = config.REPO / recipe.src
    key = _hash(
        " ".join(recipe.debootstrap_argv("ROOTFS")),
        " ".join(recipe.prune + recipe.remove),
        (src / "passwd").read_bytes(),
        (src / "group").read_bytes(),
        recipe.data_dir,
        "v1",
    )
    layer_file = _layer_path("postgres", key)
    if layer_file.exists():
        return layer_at(layer_file)
    print(f"[images] debootstrap bookworm ({', '.join(recipe.packages())}): about a minute, once", flush=True)
    with tempfile.TemporaryDirectory(prefix="cairn-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        _debootstrap(recipe.debootstrap_argv(str(root)), root)
        for junk in recipe.prune:
            target = root / junk
            if target.exists():
                shutil.rmtree(target)
                target.mkdir()
        for pattern in recipe.remove:
            for path in root.glob(pattern):
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        shutil.copy2(src / "passwd", root / "etc" / "passwd")
        shutil.copy2(src / "group", root / "etc" / "group")
        # Where the chart mounts the volume; writable by anyone so that a bare `docker run -v` works too
        # (initdb creates $PGDATA below it with mode 0700).
        data = root / recipe.data_dir.lstrip("/")
        data.mkdir(parents=True, exist_ok=True)
        data.chmod(0o777)
        return layer_from_dir(root, layer_file)


def postgres_image(recipe: PostgresRecipe = POSTGRES_RECIPE) -> Image:
    script = (config.REPO / recipe.src / "entrypoint.sh").read_bytes()
    entry = layer_from_files(
        [FileEntry(recipe.entrypoint.lstrip("/"), data=script, mode=0o755)],
        _layer_path("postgres-entrypoint", _hash(script, recipe.entrypoint)),
    )
    return _image(recipe.name, [postgres_rootfs_layer(recipe), entry], recipe.config())


def build_all() -> list[Image]:
    # One build at a time on the machine (two clusters, test workers or a dev cluster may start
    # together): the second waits, then finds every layer cached.
    with machine_lock(IMAGES / ".build.lock"):
        wheel = build_wheel()
        return [
            pause_image(),
            busybox_image(),
            coredns_image(),
            *(python_image(r, wheel) for r in RECIPES),
            node_image(),
            postgres_image(),
        ]


def build_minimal(dns: bool = True) -> list[Image]:
    with machine_lock(IMAGES / ".build.lock"):
        return [pause_image(), busybox_image(), *([coredns_image()] if dns else [])]
