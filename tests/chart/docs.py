"""The shell blocks of docs/helm.md, for tests that run them as written: only the page's namespace
names are replaced by the test's, and the repository's relative paths made absolute."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

from harness import config

PAGE = config.REPO / "docs" / "helm.md"
PAGE_NAMESPACES = ("cairn-system", "demo")


def sh_block(heading: str, index: int = 0) -> str:
    """The `index`-th ```sh block under the line `heading` (before the next heading of its level)."""
    text = PAGE.read_text()
    assert f"\n{heading}\n" in text, f"docs/helm.md has no {heading!r}"
    section = text.split(f"\n{heading}\n", 1)[1]
    level = heading.split(" ", 1)[0]
    section = re.split(rf"\n{re.escape(level)} ", section, maxsplit=1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) > index, f"docs/helm.md: no sh block {index} under {heading!r}"
    return str(blocks[index])


def substitute(block: str, namespaces: dict[str, str]) -> str:
    for page_name, ours in namespaces.items():
        assert page_name in PAGE_NAMESPACES, page_name
        block = re.sub(rf"(?<![\w-]){re.escape(page_name)}(?![\w-])", ours, block)
    return block


def commands(block: str, namespaces: dict[str, str]) -> list[list[str]]:
    """Each command of the block as argv (continuation lines joined, comments dropped)."""
    joined = substitute(block, namespaces).replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            out.append([str(config.REPO / w) if w.startswith(("charts/", "examples/")) else w for w in words])
    return out


def run_shell(block: str, namespaces: dict[str, str], kubeconfig: Path) -> subprocess.CompletedProcess[str]:
    """The block as a script for bash, with this cluster's kubeconfig and the harness's kubectl."""
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "PATH": f"{Path(config.kubectl()).parent}:{os.environ.get('PATH', '')}",
    }
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", substitute(block, namespaces)],
        capture_output=True,
        text=True,
        env=env,
        cwd=config.REPO,
        timeout=120,
        check=False,
    )
