"""docs/forks.md shows a manifest the API accepts, and says what a fork of it would do."""

from __future__ import annotations

import re

import yaml

from cairn.api.taskrun import TaskRevision, TaskRun
from harness import config


def test_the_fork_manifest_on_the_forks_page_is_a_valid_taskrun() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", (config.REPO / "docs" / "forks.md").read_text(), flags=re.S)
    assert len(blocks) == 1
    run = TaskRun.model_validate(yaml.safe_load(blocks[0]))
    assert run.spec.from_ is not None
    assert (run.spec.from_.run, run.spec.from_.step, run.spec.from_.task_revision) == (
        "report-1",
        "work#3",
        TaskRevision.SOURCE,
    )
