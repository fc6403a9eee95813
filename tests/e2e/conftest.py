"""End-to-end fixtures: a namespace with a default Queue, and Cairn running."""

from __future__ import annotations

import pytest
from lightkube import Client

from cairn.k8s.resources import QueueResource
from tests.support.builders import queue_body
from tests.support.cairn import CairnProcesses


@pytest.fixture
def ns(kube: Client, namespace: str, cairn: CairnProcesses) -> str:
    """A namespace with Cairn running and a Queue "default" (limit 10)."""
    body = queue_body("default", concurrencyLimit=10)
    body["metadata"]["namespace"] = namespace  # type: ignore[index]
    kube.create(QueueResource.from_dict(body))
    return namespace
