"""The CLI's view of Kubernetes: one lightkube Client for the chosen context and namespace (`-n`, else
the context's, else `default`; see kubeconfig.py for which context), every read and write the CLI makes,
and every failure turned into a CliError that says what went wrong and where."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from lightkube import ApiError, Client, ConfigError
from lightkube.resources.core_v1 import Event, Pod
from lightkube.resources.core_v1 import Namespace as NamespaceResource
from lightkube.types import PatchType
from pydantic import ValidationError

from cairn.api.taskrun import TaskRun
from cairn.cli.errors import CliError, ExitCode
from cairn.cli.kubeconfig import check_files, load_kubeconfig, select_context
from cairn.domain import naming
from cairn.k8s.resources import (
    QueueResource,
    ScheduleResource,
    TaskResource,
    TaskRunResource,
    TokenCompletionResource,
)

FIELD_MANAGER = "cairn-cli"


def _transport_errors() -> tuple[type[Exception], ...]:
    """What lightkube raises when it cannot talk to the server (httpx2 since lightkube 1.0, httpx before)."""
    found: list[type[Exception]] = []
    for module in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(module).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


TRANSPORT_ERRORS = _transport_errors()


@dataclass(frozen=True)
class Target:
    """The kubectl-style options every command takes."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None


def connect(target: Target) -> Kube:
    config, source = load_kubeconfig(target.kubeconfig)
    single = select_context(config, target.context, source)
    check_files(single)
    namespace = target.namespace or single.namespace
    try:
        client = Client(single, namespace=namespace, trust_env=False, field_manager=FIELD_MANAGER)
    except (ConfigError, OSError) as e:  # e.g. a certificate file that does not exist
        raise CliError(ExitCode.UNREACHABLE, f"the context {single.context_name!r} is not usable: {e}") from e
    return Kube(client, namespace, single.cluster.server, single.context_name)


def _items(objs: Any) -> list[dict[str, Any]]:
    return [obj.to_dict() for obj in objs]


class Kube:
    """Every read and write the CLI makes, each turning failures into a CliError."""

    def __init__(self, client: Client, namespace: str, server: str, context: str) -> None:
        self.client = client
        self.namespace = namespace
        self.server = server
        self.context = context

    # -- error mapping -------------------------------------------------------------------------

    def api_error(self, e: ApiError, doing: str) -> CliError:
        code = e.status.code or 0
        message = e.status.message or str(e)
        if code == 401:
            return CliError(
                ExitCode.REFUSED,
                f"the API server at {self.server} did not accept the credentials of context {self.context!r} "
                "(401 Unauthorized)",
            )
        if code == 403:
            return CliError(ExitCode.REFUSED, f"{doing}: forbidden: {message}")
        if code == 404:
            if "could not find the requested resource" in message:
                return CliError(
                    ExitCode.NOT_FOUND,
                    f"{doing}: the cluster at {self.server} does not know Cairn's resources",
                    hint="install Cairn's CRDs (crds/ or the Helm chart)",
                )
            return CliError(ExitCode.NOT_FOUND, f"{doing}: {message}")
        if code in (400, 422):
            return CliError(ExitCode.INVALID, f"{doing}: {message}")
        if code >= 500:
            return CliError(ExitCode.UNREACHABLE, f"{doing}: the API server at {self.server} failed: {message}")
        return CliError(ExitCode.REFUSED, f"{doing}: {message} ({code})")

    @contextmanager
    def calls(self, doing: str) -> Iterator[None]:
        """Map what lightkube raises inside the block to a CliError naming the server and `doing`."""
        try:
            yield
        except ApiError as e:
            raise self.api_error(e, doing) from e
        except TRANSPORT_ERRORS as e:
            raise CliError(
                ExitCode.UNREACHABLE,
                f"could not connect to the Kubernetes API server at {self.server} (context {self.context!r}): "
                f"{e or type(e).__name__}",
                hint="is the cluster running, and is this the right kubeconfig and context?",
            ) from e
        except (ConfigError, OSError) as e:
            raise CliError(ExitCode.UNREACHABLE, f"the context {self.context!r} is not usable: {e}") from e

    def _not_found(self, kind: str, name: str) -> CliError:
        return CliError(ExitCode.NOT_FOUND, f"{kind} {name!r} not found in namespace {self.namespace!r}")

    def _get(self, resource: Any, kind: str, name: str) -> dict[str, Any]:
        try:
            with self.calls(f"reading {kind} {name}"):
                obj = self.client.get(resource, name, namespace=self.namespace)
        except CliError as e:
            cause = e.__cause__
            if isinstance(cause, ApiError) and cause.status.details is not None and cause.status.details.name:
                raise self._not_found(kind, name) from cause
            raise
        body: dict[str, Any] = obj.to_dict()
        return body

    # -- TaskRuns --------------------------------------------------------------------------------

    def get_run(self, name: str) -> dict[str, Any]:
        return self._get(TaskRunResource, "run", name)

    def list_runs(self, all_namespaces: bool = False) -> list[dict[str, Any]]:
        with self.calls("listing runs"):
            return _items(self.client.list(TaskRunResource, namespace="*" if all_namespaces else self.namespace))

    def create_run(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"].get("name") or body["metadata"].get("generateName", "") + "…"
        try:
            with self.calls(f"creating run {name}"):
                obj = self.client.create(TaskRunResource.from_dict(body), namespace=self.namespace)
        except CliError as e:
            cause = e.__cause__
            if isinstance(cause, ApiError) and cause.status.code == 409:
                raise CliError(
                    ExitCode.REFUSED,
                    f"a run named {name!r} already exists in namespace {self.namespace!r}",
                    hint="choose another --name, or leave --name out to get a generated one",
                ) from cause
            if isinstance(cause, ApiError) and cause.status.code == 404 and "namespaces" in str(cause):
                raise CliError(ExitCode.NOT_FOUND, f"namespace {self.namespace!r} not found") from cause
            raise
        created: dict[str, Any] = obj.to_dict()
        return created

    def cancel_run(self, name: str) -> dict[str, Any]:
        with self.calls(f"cancelling run {name}"):
            obj = self.client.patch(
                TaskRunResource,
                name,
                {"spec": {"cancel": True}},
                namespace=self.namespace,
                patch_type=PatchType.MERGE,
            )
        body: dict[str, Any] = obj.to_dict()  # type: ignore[no-untyped-call]
        return body

    # -- Tasks and Queues ------------------------------------------------------------------------

    def get_task(self, name: str) -> dict[str, Any]:
        try:
            return self._get(TaskResource, "task", name)
        except CliError as e:
            if e.code is not ExitCode.NOT_FOUND or "Cairn's resources" in e.message:
                raise
            names = self.task_names()
            if not names and not self.namespace_exists():
                raise CliError(
                    ExitCode.NOT_FOUND,
                    f"namespace {self.namespace!r} not found",
                    hint="check -n/--namespace, or your context's namespace",
                ) from e
            raise CliError(
                ExitCode.NOT_FOUND,
                f"task {name!r} not found in namespace {self.namespace!r}",
                hint=f"tasks there: {', '.join(names)}" if names else "there are no tasks in that namespace",
            ) from e

    def namespace_exists(self) -> bool:
        """False only when the API server says there is no such namespace (a user who may not read
        namespaces is given the benefit of the doubt)."""
        try:
            with self.calls(f"reading namespace {self.namespace}"):
                self.client.get(NamespaceResource, self.namespace)
        except CliError as e:
            return not (isinstance(e.__cause__, ApiError) and e.__cause__.status.code == 404)
        return True

    def require_queue(self, name: str) -> None:
        """Refuse a run that would wait forever in a Queue that does not exist, or that the Queue would
        reject: it holds spec.maxQueued waiting runs (by its status; the operator has the last word)."""
        try:
            found = self._get(QueueResource, "queue", name)
        except CliError as e:
            if e.code is ExitCode.REFUSED:
                return  # may create runs but not read Queues: it cannot tell, so it does not refuse
            if e.code is not ExitCode.NOT_FOUND:
                raise
            queues = sorted(str(q["metadata"]["name"]) for q in self.list_queues())
            raise CliError(
                ExitCode.NOT_FOUND,
                f"queue {name!r} not found in namespace {self.namespace!r}: a run there would wait until it is created",
                hint=(f"queues there: {', '.join(queues)}; " if queues else "")
                + "create it (see examples/queue.yaml), or choose one with --queue",
            ) from e
        cap = (found.get("spec") or {}).get("maxQueued")
        depth = (found.get("status") or {}).get("queued", 0)
        if cap is not None and depth >= cap:
            raise CliError(
                ExitCode.REFUSED,
                f"queue {name!r} is full: {depth} runs wait in it and its maxQueued is {cap}; the run was not created",
                hint="try again when the queue has drained, or raise the Queue's spec.maxQueued",
            )

    def task_names(self) -> list[str]:
        with self.calls("listing tasks"):
            tasks = _items(self.client.list(TaskResource, namespace=self.namespace))
        return sorted(str(t["metadata"]["name"]) for t in tasks)

    def list_queues(self, all_namespaces: bool = False) -> list[dict[str, Any]]:
        with self.calls("listing queues"):
            return _items(self.client.list(QueueResource, namespace="*" if all_namespaces else self.namespace))

    # -- Schedules -------------------------------------------------------------------------------

    def get_schedule(self, name: str) -> dict[str, Any]:
        return self._get(ScheduleResource, "schedule", name)

    def list_schedules(self, all_namespaces: bool = False) -> list[dict[str, Any]]:
        with self.calls("listing schedules"):
            return _items(self.client.list(ScheduleResource, namespace="*" if all_namespaces else self.namespace))

    def patch_schedule(self, name: str, spec: dict[str, Any]) -> None:
        with self.calls(f"changing schedule {name}"):
            self.client.patch(
                ScheduleResource, name, {"spec": spec}, namespace=self.namespace, patch_type=PatchType.MERGE
            )

    def runs_of_schedule(self, name: str) -> list[dict[str, Any]]:
        with self.calls(f"listing the runs of schedule {name}"):
            labels: dict[str, Any] = {naming.LABEL_SCHEDULE: naming.label_value(name)}
            return _items(self.client.list(TaskRunResource, namespace=self.namespace, labels=labels))

    # -- wait tokens -----------------------------------------------------------------------------

    def create_token_completion(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.calls("creating a TokenCompletion"):
            obj = self.client.create(TokenCompletionResource.from_dict(body), namespace=self.namespace)
        created: dict[str, Any] = obj.to_dict()
        return created

    def get_token_completion(self, name: str) -> dict[str, Any]:
        return self._get(TokenCompletionResource, "tokencompletion", name)

    # -- pods, logs, events ----------------------------------------------------------------------

    def pods_of_run(self, uid: str) -> dict[int, dict[str, Any]]:
        """The run's pods by attempt number."""
        with self.calls("listing the run's pods"):
            pods = _items(self.client.list(Pod, namespace=self.namespace, labels={naming.LABEL_RUN_UID: uid}))
        out: dict[int, dict[str, Any]] = {}
        for pod in pods:
            attempt = (pod.get("metadata", {}).get("labels") or {}).get(naming.LABEL_ATTEMPT, "")
            if attempt.isdigit():
                out[int(attempt)] = pod
        return out

    def log_lines(self, pod: str, container: str | None, *, follow: bool) -> Iterator[str]:
        """The pod's log lines (without newlines). Raises CliError, including for a pod whose container
        has not started (code INVALID: the API server answers 400)."""
        with self.calls(f"reading the logs of pod {pod}"):
            yield from self.client.log(
                pod, namespace=self.namespace, container=container, follow=follow, newlines=False
            )

    def events_of(self, uid: str) -> list[dict[str, Any]]:
        with self.calls("listing events"):
            return _items(self.client.list(Event, namespace=self.namespace, fields={"involvedObject.uid": uid}))

    def close(self) -> None:
        self.client.close()


def as_run(body: dict[str, Any]) -> TaskRun:
    """A TaskRun body as the model (the CLI and the operator share these models)."""
    try:
        return TaskRun.model_validate(body)
    except ValidationError as e:
        name = (body.get("metadata") or {}).get("name", "?")
        raise CliError(
            ExitCode.INTERNAL,
            f"run {name!r} does not match this version of cairn's TaskRun model: {e.error_count()} error(s), "
            f"first: {e.errors()[0]['loc']}: {e.errors()[0]['msg']}",
            hint="is the operator a different version? `-o yaml` shows the object as stored",
        ) from e
