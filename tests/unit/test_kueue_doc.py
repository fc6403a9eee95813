"""docs/kueue.md's Task is one the API accepts, and its pods carry what the page says they carry;
its Kueue manifests are applied to the real Kueue by tests/e2e/test_kueue.py."""

from __future__ import annotations

import re

import yaml

from cairn.api.task import Task
from cairn.domain import naming
from cairn.domain.podspec import RunRef, render_pod
from harness import config
from tests.unit.builders import RUNTIME

PAGE = config.REPO / "docs" / "kueue.md"


def test_the_kueue_pages_task_is_valid_and_its_pods_name_the_local_queue_and_priority_class() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", PAGE.read_text(), flags=re.S)
    docs = [d for block in blocks for d in yaml.safe_load_all(block) if d]
    assert [d["kind"] for d in docs] == [
        "Task",
        "ResourceFlavor",
        "ClusterQueue",
        "LocalQueue",
        "WorkloadPriorityClass",
    ]
    task = Task.model_validate(docs[0])
    assert task.spec.kueue is not None
    pod = render_pod(RunRef("demo", "r1", "uid-1", "render"), task.spec, 1, RUNTIME)
    labels = pod["metadata"]["labels"]
    assert labels[naming.KUEUE_QUEUE_LABEL] == "team-a" == docs[3]["metadata"]["name"]
    assert labels[naming.KUEUE_PRIORITY_LABEL] == "batch-low" == docs[4]["metadata"]["name"]
