"""docs/queues.md shows manifests the API accepts: every YAML block parses and validates as its kind."""

from __future__ import annotations

import re

import yaml

from cairn.api.queue import Queue
from cairn.api.taskrun import TaskRun
from harness import config

PAGE = config.REPO / "docs" / "queues.md"
MODELS = {"Queue": Queue, "TaskRun": TaskRun}


def test_every_manifest_on_the_queues_page_is_valid() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", PAGE.read_text(), flags=re.S)
    kinds = []
    for block in blocks:
        doc = yaml.safe_load(block)
        MODELS[doc["kind"]].model_validate(doc)
        kinds.append(doc["kind"])
    assert kinds == ["Queue", "TaskRun"]
    queue = Queue.model_validate(yaml.safe_load(blocks[0]))
    assert queue.spec.rate_limit is not None and queue.spec.rate_limit.burst == 5
    assert queue.spec.max_queued == 1000
