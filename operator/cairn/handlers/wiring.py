"""The kopf handlers. Each does one thing: hand what the watch saw to the controller (which parses,
asks the domain and applies), so no business rule lives here.

Why event handlers and not kopf's change handlers: change handlers keep their progress in the
objects (annotations or status) and may need finalizers; Cairn keeps its own state in PostgreSQL and
in status, reconciles from the level (what is), and never writes a user's spec or metadata.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

from cairn.api.common import GROUP, VERSION
from cairn.config import Settings
from cairn.controller.operator import Operator
from cairn.domain import naming

log = logging.getLogger(__name__)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config: Settings = memo["config"]
    # kopf keeps nothing in our objects: no finalizers of its own (our group's name in case one is
    # ever needed), progress and diff-base annotations under our prefix (unused by event handlers).
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=f"kopf.{GROUP}")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=f"kopf.{GROUP}")
    # Silent watch stalls are a known kopf failure: bound every watch request.
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 60
    settings.posting.enabled = False  # Cairn posts its own events, about runs, not handlers
    settings.peering.standalone = True  # admission is serialised in PostgreSQL, not by peering
    settings.scanning.disabled = True
    # Our event handlers only update the cache and queue a reconcile, so a per-object worker has no
    # reason to wait for more events: with kopf's 5 s idle timeout, 64 workers admitted ~13 new
    # objects a second (a burst of 10,000 TaskRuns took 13 minutes to be seen).
    settings.queueing.worker_limit = 256
    settings.queueing.idle_timeout = 0.5
    op = Operator(config)
    await op.start()
    memo["operator"] = op


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    op: Operator | None = memo.get("operator")
    if op is not None:
        await op.stop()


@kopf.on.login()
def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo | None:
    config: Settings = memo["config"]
    if config.kubeconfig:
        os.environ["KUBECONFIG"] = config.kubeconfig
        return kopf.login_with_kubeconfig(**kwargs)
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.event(GROUP, VERSION, "taskruns")
async def taskrun_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    memo["operator"].on_taskrun(event.get("type"), event["object"])


@kopf.on.event(GROUP, VERSION, "tasks")
async def task_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    memo["operator"].on_task(event.get("type"), event["object"])


@kopf.on.event(GROUP, VERSION, "queues")
async def queue_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    memo["operator"].on_queue(event.get("type"), event["object"])


@kopf.on.event("", "v1", "pods", labels={naming.LABEL_RUN_UID: kopf.PRESENT})
async def pod_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    memo["operator"].on_pod(event.get("type"), event["object"])
