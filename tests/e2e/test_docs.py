"""Every command in docs/cli.md, run as written, in the page's order, on the real cluster: each must
exit as the page says (its `# exit N`, the `echo $?` after it, or 0 when it shows no error) and print
the first line the page shows, and every `error:` and `hint:` line it shows, so that the page cannot
drift from what the CLI does. Times, numbers, generated names, paths and the namespace may differ.

The page's tasks (flaky, sleepy, doomed) and its paused queue `held` are made first, as the page
describes them."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lightkube import Client

from cairn.k8s.resources import QueueResource
from harness import config
from harness.cairn import CairnProcesses
from harness.controlplane import free_port
from tests.e2e.test_cli import DOOMED, FAST_RETRY, FLAKY, SLEEPY, cairn_env, dead_kubeconfig
from tests.support.builders import queue_body
from tests.support.env import ClusterEnv
from tests.support.runs import make_task
from tests.support.tokens import service_account_token

PAGE = config.REPO / "docs" / "cli.md"


@dataclass
class Shown:
    """One `$ command` of the page, with what the page shows it printing."""

    line: int
    command: str
    output: list[str] = field(default_factory=list)
    exit_code: int | None = None  # None: 0 unless the page shows an error

    @property
    def expected_code(self) -> int | None:
        if self.exit_code is not None:
            return self.exit_code
        return None if any(_is_error(ln) for ln in self.output) else 0


def _is_error(line: str) -> bool:
    return line.startswith(("error:", "Error:", "Usage:"))


def shown_commands(text: str) -> list[Shown]:
    """The page's `$ ...` lines in its console blocks, in order, with the output below each."""
    commands: list[Shown] = []
    in_console, echo_pending = False, False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            in_console = line.strip() == "```console"
            echo_pending = False
            continue
        if not in_console:
            continue
        if line.startswith("$ "):
            command = line[2:].strip()
            if command == "echo $?":
                echo_pending = True
                continue
            shown = Shown(number, command)
            if (m := re.search(r"#\s*exit (\d+)\s*$", command)) is not None:
                shown.exit_code = int(m.group(1))
            commands.append(shown)
        elif echo_pending:
            commands[-1].exit_code = int(line.strip())
            echo_pending = False
        elif commands and line.strip():
            commands[-1].output.append(line.rstrip())
    return commands


def normalize(line: str, namespace: str) -> str:
    """What must match: the words, not the times, counts, generated names, paths, spacing, or the phase a
    run happened to be in when a timeout hit (Starting or Running, as fast as the machine is)."""
    line = line.replace(f"'{namespace}'", "'demo'").replace(f" {namespace} ", " demo ")
    line = re.sub(r"(?<![\w.-])/[^\s'\"]+", "/PATH", line)
    line = re.sub(r"\b([a-z][a-z0-9]*)-[a-z0-9]{5}\b", r"\1-XXXXX", line)
    line = re.sub(r"\(phase (Starting|Running)\)", "(phase P)", line)
    line = re.sub(r"\d+", "N", line)
    return re.sub(r"\s+", " ", line).strip()


def test_every_command_of_docs_cli_md_runs_as_the_page_shows(
    cluster_env: ClusterEnv, kube: Client, ns: str, tmp_path: Path, cairn: CairnProcesses
) -> None:
    commands = shown_commands(PAGE.read_text())
    assert len(commands) >= 30, f"only {len(commands)} commands found in {PAGE}"
    make_task(kube, ns, "flaky", FLAKY, retry=FAST_RETRY)
    make_task(kube, ns, "doomed", DOOMED, retry={**FAST_RETRY, "maxAttempts": 2})
    make_task(kube, ns, "sleepy", SLEEPY)
    held = queue_body("held", concurrencyLimit=2, perKeyLimit=1, paused=True)
    held["metadata"]["namespace"] = ns  # type: ignore[index]
    kube.create(QueueResource.from_dict(held))
    _files_the_page_uses(tmp_path)
    run = _Runner(cluster_env, ns, tmp_path)
    # `cairn steps` reads history through Cairn's API, as a reader the page's namespace allows.
    run.environ["CAIRN_SERVER"] = cairn.api_url
    run.environ["CAIRN_TOKEN"] = service_account_token(kube, ns, "reader", verbs=["get"])
    run.quietly("trigger", "flaky", "--name", "taken", "--wait")  # `logs taken --attempt 7` needs a run

    mismatches = []
    for shown in commands:
        code, out, err = run(shown.command)
        print(f"\n$ {shown.command}    # exit {code} (docs/cli.md:{shown.line})\n{out}{err}", end="")
        problems = []
        expected = shown.expected_code
        if expected is None and code == 0:
            problems.append("exited 0, but the page shows an error")
        elif expected is not None and code != expected:
            problems.append(f"exited {code}, the page says {expected}")
        actual = [ln for ln in (out.splitlines() or err.splitlines()) if ln.strip()]
        if shown.output and shown.output[0] != "...":  # "...": the page shortened it
            first = normalize(shown.output[0], ns)
            got = normalize(actual[0], ns) if actual else "(nothing)"
            if got != first:
                problems.append(
                    f"its first line is {actual[0] if actual else '(nothing)'!r}, the page shows {shown.output[0]!r}"
                )
        printed = {normalize(ln, ns) for ln in (out + err).splitlines()}
        for ln in shown.output:
            if ln.startswith(("error:", "hint:")) and normalize(ln, ns) not in printed:
                problems.append(f"it does not print {ln!r}")
        if problems:
            mismatches.append(f"docs/cli.md:{shown.line} `{shown.command}`: " + "; ".join(problems))
    assert not mismatches, "\n".join(mismatches)


def _files_the_page_uses(where: Path) -> None:
    """payload.json (not JSON: a comma is missing) and dead-kubeconfig (a cluster that is not there)."""
    (where / "payload.json").write_text('{\n  "n": 7\n  "m": 8\n}\n')
    dead_kubeconfig(where / "dead-kubeconfig", free_port())


class _Runner:
    """Runs a page's command line as a user's shell would, in this test's namespace and cluster."""

    def __init__(self, env: ClusterEnv, ns: str, cwd: Path) -> None:
        self.env, self.ns, self.cwd = env, ns, cwd
        bin_dir = Path(sys.executable).parent
        self.environ = {**cairn_env(), "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}

    def argv(self, command: str) -> list[str]:
        words = shlex.split(command, comments=True)
        if words[:2] == ["kubectl", "cairn"]:
            words = ["cairn", *words[2:]]
        assert words[0] == "cairn", f"docs/cli.md runs cairn only: {command}"
        words = [self.ns if i and words[i - 1] in ("-n", "--namespace") else w for i, w in enumerate(words)]
        if "--kubeconfig" not in words:
            words += ["--kubeconfig", str(self.env.kubeconfig)]
        if not {"-n", "--namespace", "-A", "--all-namespaces"} & set(words):
            words += ["-n", self.ns]
        return [sys.executable, "-m", "cairn", *words[1:]]

    def __call__(self, command: str) -> tuple[int, str, str]:
        proc = subprocess.run(
            self.argv(command),
            capture_output=True,
            text=True,
            timeout=240,
            env=self.environ,
            cwd=self.cwd,
            check=False,
        )
        return proc.returncode, proc.stdout, proc.stderr

    def quietly(self, *args: str) -> None:
        code, out, err = self(shlex.join(["cairn", *args]))
        assert code == 0, (args, out, err)
