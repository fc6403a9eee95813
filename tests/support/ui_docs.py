"""The commands of docs/ui.md, for the tests that run them as written: only the page's namespace names
(and the local port of its port-forward) are replaced by the test's."""

from __future__ import annotations

import hashlib
import hmac
import re
import shlex
from pathlib import Path

from harness import config
from tests.support.kube import kubectl

PAGE = config.REPO / "docs" / "ui.md"


def _commands(heading: str, names: dict[str, str]) -> list[list[str]]:
    """The kubectl commands of the one sh block under `heading`, as argv, with `names` replaced."""
    text = PAGE.read_text()
    assert f"\n{heading}\n" in text, f"docs/ui.md has no {heading!r}"
    section = re.split(r"\n#{2,3} ", text.split(f"\n{heading}\n", 1)[1], maxsplit=1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) == 1, f"docs/ui.md: one sh block under {heading!r}, not {len(blocks)}"
    out = []
    for line in blocks[0].strip().splitlines():
        words = shlex.split(line, comments=True)
        for page_name, ours in names.items():
            words = [re.sub(rf"(?<![\w-]){re.escape(page_name)}(?=$|:)", ours, w) for w in words]
        assert words[0] == "kubectl", f"docs/ui.md runs kubectl only: {line}"
        out.append(words)
    return out


def person_token(kubeconfig: Path, namespace: str) -> str:
    """docs/ui.md's ServiceAccount, Role and RoleBinding for a person who runs tasks in `namespace`
    (the page's `demo`), and the token its last command prints."""
    printed = ""
    for words in _commands("## Who sees what", {"demo": namespace}):
        printed = kubectl(kubeconfig, *words[1:]).stdout
    token = printed.strip()
    assert token.count(".") == 2, f"docs/ui.md's last command printed no token: {printed!r}"
    return token


def port_forward(namespace: str, port: int) -> list[str]:
    """docs/ui.md's port-forward to the API (the page's release namespace `cairn-system`), to `port`."""
    (words,) = _commands("## Opening it", {"cairn-system": namespace})
    assert words[1:] == ["-n", namespace, "port-forward", "svc/cairn-api", "8080:8080"], words
    return [*words[:-1], f"{port}:8080"]


def laptop_script(namespace: str, server: str, port: int) -> str:
    """docs/ui.md's `cairn ui` block, for bash: the page's namespace, server and port replaced."""
    text = PAGE.read_text()
    section = text.split("\n### On your machine: `cairn ui`\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert "cairn ui -n demo --server http://localhost:8080" in block and "--port 8081" in block, block
    block = block.replace("http://localhost:8080", server).replace("--port 8081", f"--port {port}")
    return re.sub(r"(?<![\w-])demo(?![\w-])", namespace, block)


def csrf(token: str) -> str:
    """The form token the dashboard derives from a sign-in token (server/ui/auth.py)."""
    return hmac.new(token.encode(), b"cairn-ui-csrf", hashlib.sha256).hexdigest()
