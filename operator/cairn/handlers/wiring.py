"""The kopf handlers. Each does one thing: hand what the watch saw to the controller (which parses,
asks the domain and applies), so no business rule lives here.

Why event handlers and not kopf's change handlers: change handlers keep their progress in the
objects (annotations or status) and may need finalizers; Cairn keeps its own state in PostgreSQL and
in status, reconciles from the level (what is), and never writes a user's spec or metadata.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import Any

import kopf
from lightkube import AsyncClient

from cairn import metrics
from cairn.api.common import GROUP
from cairn.config import Settings
from cairn.controller import leader, registry
from cairn.controller.runtime import Runtime, start_operator
from cairn.k8s.client import load_config
from cairn.k8s.lease import LeaseStore

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
    # Kinds watched only for Cairn's own objects (pods) are selected by the API server: kopf filters a
    # handler's labels in the operator, after parsing and diffing every pod of the namespace (a Job's
    # pods included), on the loop that creates Cairn's pods.
    for watch in registry.WATCHES:
        if watch.present:
            settings.watching.label_selectors[watch.group or "v1", watch.plural] = ",".join(watch.present)
    # Our event handlers only update the cache and queue a reconcile, so a per-object worker has no
    # reason to wait for more events: with kopf's 5 s idle timeout, 64 workers admitted ~13 new
    # objects a second (a burst of 10,000 TaskRuns took 13 minutes to be seen).
    settings.queueing.worker_limit = 256
    settings.queueing.idle_timeout = 0.5
    runtime = memo["runtime"] = await start_operator(config, start=not config.leader_election)
    if config.leader_election:
        # A warm standby: its watches fill the cache and the work queues, but no worker or loop runs
        # (nothing is written) until it holds the lease. kopf's /healthz answers meanwhile.
        elector = leader.Elector(
            LeaseStore(
                AsyncClient(load_config(config.kubeconfig), trust_env=False, field_manager="cairn-operator"),
                config.leader_namespace or os.environ.get("POD_NAMESPACE") or "default",
                config.leader_lease,
                config.leader_lease_seconds,
            ),
            config.leader_identity or socket.gethostname(),
            leader.timing_for(config.leader_lease_seconds),
        )
        memo["elector"] = elector
        memo["leading"] = asyncio.create_task(_lead(elector, runtime))
    else:
        metrics.LEADER.set(1)


async def _lead(elector: leader.Elector, runtime: Runtime) -> None:
    await elector.acquire()
    metrics.LEADER.set(1)
    runtime.start()
    log.info("operator started as the leader", extra={"waited_seconds": round(elector.waited, 1)})
    await elector.keep(_stop_at_once)


def _stop_at_once(reason: str) -> None:
    """The lease is lost: end the process now, before a new leader starts (no cleanup that writes)."""
    log.critical("%s: stopping, so that only the new leader acts", reason)
    logging.shutdown()
    os._exit(1)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        await runtime.stop()
    elector: leader.Elector | None = memo.get("elector")
    if elector is not None:
        memo["leading"].cancel()
        with contextlib.suppress(Exception):  # a standby takes over at once instead of after the lease
            await elector.lease.release(elector.me)


@kopf.on.login()
def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo | None:
    config: Settings = memo["config"]
    if config.kubeconfig:
        os.environ["KUBECONFIG"] = config.kubeconfig
        return kopf.login_with_kubeconfig(**kwargs)
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


def _watch(watch: registry.Watch) -> None:
    async def handler(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        memo["runtime"].intake(watch.plural, event.get("type"), event["object"])

    labels = {label: kopf.PRESENT for label in watch.present} or None
    kopf.on.event(watch.group, watch.version, watch.plural, labels=labels, id=f"watch-{watch.plural}")(handler)


for _w in registry.WATCHES:
    _watch(_w)
