"""The README's "Using Cairn" commands, run as a new user would type them, in order, on the real
cluster: they must work as written (a run they create reaches Succeeded), so the README cannot drift."""

from __future__ import annotations

import re
import shlex

from lightkube import Client

from harness import config
from tests.support.cairn import CairnProcesses
from tests.support.env import ClusterEnv
from tests.support.kube import kubectl
from tests.support.runs import wait_phase


def _block_after(heading: str) -> list[str]:
    text = (config.REPO / "README.md").read_text()
    section = text.split(f"\n{heading}\n", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None, f"no sh block under {heading}"
    return [ln.split("#", 1)[0].strip() for ln in block.group(1).splitlines() if ln.split("#", 1)[0].strip()]


def test_the_readme_using_cairn_commands_work_as_written_and_the_run_they_create_succeeds(
    cluster_env: ClusterEnv, kube: Client, namespace: str, cairn: CairnProcesses
) -> None:
    commands = _block_after("## Using Cairn")
    assert len(commands) >= 4, commands
    outputs = []
    for line in commands:
        argv = shlex.split(line)
        assert argv[0] == "kubectl", f"the README's block runs kubectl only: {line}"
        args = [str(config.REPO / a) if a.startswith("examples/") else a for a in argv[1:]]
        res = kubectl(cluster_env.kubeconfig, "-n", namespace, *args)
        outputs.append((line, res.stdout))
    listing = next(out for line, out in outputs if line == "kubectl get taskruns")
    assert listing.split("\n")[0].split()[:4] == ["NAME", "TASK", "PHASE", "REASON"], listing
    runs = kubectl(cluster_env.kubeconfig, "-n", namespace, "get", "taskruns", "-o", "name").stdout.split()
    assert len(runs) == 1, runs
    final = wait_phase(kube, namespace, runs[0].split("/")[1])
    assert final["phase"] == "Succeeded", final
    explain = next(out for line, out in outputs if line.startswith("kubectl explain"))
    assert "payload" in explain.lower() and "DESCRIPTION" in explain, explain
