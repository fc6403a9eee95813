"""The CLI's view of Kubernetes: which cluster and namespace (kubectl's rules), one lightkube Client,
and every failure turned into a CliError that says what went wrong and where.

Loading follows kubectl: `--kubeconfig`, else `$KUBECONFIG` (a list of files, merged: the first file
that defines a name wins), else `~/.kube/config`, else the pod's service account (in-cluster).
`--context` picks a context; `-n` overrides the context's namespace (itself defaulting to `default`)."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from lightkube import ApiError, Client, ConfigError, KubeConfig
from lightkube.config.kubeconfig import SingleConfig
from lightkube.resources.core_v1 import Event, Pod
from lightkube.types import PatchType
from pydantic import ValidationError

from cairn.api.taskrun import TaskRun
from cairn.cli.errors import CliError, ExitCode
from cairn.domain import naming
from cairn.k8s.resources import QueueResource, TaskResource, TaskRunResource

FIELD_MANAGER = "cairn-cli"
DEFAULT_KUBECONFIG = Path("~/.kube/config")
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# Paths a kubeconfig may give relative to its own file.
_RELATIVE_PATH_KEYS = ("certificate-authority", "client-certificate", "client-key", "tokenFile")


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


def kubeconfig_files(explicit: str | None, env: dict[str, str] | None = None) -> list[Path]:
    """The kubeconfig files to read, in precedence order (empty: use the in-cluster service account)."""
    env = dict(os.environ) if env is None else env
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise CliError(ExitCode.UNREACHABLE, f"the kubeconfig {explicit} does not exist")
        return [path]
    listed = [Path(p).expanduser() for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    if listed:
        existing = [p for p in listed if p.is_file()]
        if not existing:
            raise CliError(ExitCode.UNREACHABLE, f"none of the files in KUBECONFIG exists: {env['KUBECONFIG']}")
        return existing
    default = DEFAULT_KUBECONFIG.expanduser()
    if default.is_file():
        return [default]
    if (SERVICE_ACCOUNT / "token").is_file():
        return []
    raise CliError(
        ExitCode.UNREACHABLE,
        f"no kubeconfig: {DEFAULT_KUBECONFIG} does not exist and KUBECONFIG is not set",
        hint="pass --kubeconfig FILE, or set KUBECONFIG",
    )


def _absolute(entry: dict[str, Any], base: Path) -> dict[str, Any]:
    out = dict(entry)
    for key in _RELATIVE_PATH_KEYS:
        value = out.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            out[key] = str(base / value)
    return out


def merge_kubeconfigs(documents: list[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    """Merge kubeconfig documents as kubectl does: the first file that defines a cluster, context or
    user by a name wins, and the first current-context set wins. Relative paths become absolute."""
    merged: dict[str, Any] = {"clusters": [], "contexts": [], "users": []}
    seen: dict[str, set[str]] = {"clusters": set(), "contexts": set(), "users": set()}
    inner = {"clusters": "cluster", "contexts": "context", "users": "user"}
    for path, doc in documents:
        if not merged.get("current-context") and doc.get("current-context"):
            merged["current-context"] = doc["current-context"]
        for section, key in inner.items():
            for item in doc.get(section) or []:
                name = item.get("name")
                if name is None or name in seen[section]:
                    continue
                seen[section].add(name)
                body = item.get(key) or {}
                if section != "contexts":
                    body = _absolute(body, path.parent)
                merged[section].append({"name": name, key: body})
    return merged


def load_kubeconfig(explicit: str | None) -> tuple[KubeConfig, str]:
    """The kubeconfig to use and a description of where it came from (for error messages)."""
    files = kubeconfig_files(explicit)
    if not files:
        try:
            return KubeConfig.from_service_account(), "the in-cluster service account"
        except (ConfigError, KeyError) as e:
            raise CliError(ExitCode.UNREACHABLE, f"cannot use the in-cluster service account: {e}") from e
    documents = []
    for path in files:
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise CliError(ExitCode.UNREACHABLE, f"cannot read the kubeconfig {path}: {e}") from e
        if not isinstance(doc, dict):
            raise CliError(ExitCode.UNREACHABLE, f"the kubeconfig {path} is not a YAML mapping")
        documents.append((path, doc))
    source = ", ".join(str(p) for p in files)
    merged = merge_kubeconfigs(documents)
    if not merged["contexts"]:
        raise CliError(ExitCode.UNREACHABLE, f"the kubeconfig {source} has no contexts")
    try:
        return KubeConfig.from_dict(merged, fname=files[0]), source
    except (ConfigError, KeyError, TypeError, ValueError) as e:
        raise CliError(ExitCode.UNREACHABLE, f"the kubeconfig {source} is not usable: {e}") from e


def select_context(config: KubeConfig, context: str | None, source: str) -> SingleConfig:
    try:
        single = config.get(context)
    except (ConfigError, KeyError) as e:
        known = ", ".join(sorted(config.contexts)) or "none"
        if context is None:
            raise CliError(
                ExitCode.UNREACHABLE,
                f"the kubeconfig {source} sets no current context",
                hint=f"pass --context (contexts: {known})",
            ) from e
        raise CliError(
            ExitCode.UNREACHABLE, f"there is no context {context!r} in {source}", hint=f"contexts: {known}"
        ) from e
    assert single is not None  # get() without a default raises rather than return None
    return single


def check_files(single: SingleConfig) -> None:
    """Say which file a context names that does not exist (the TLS layer says only 'No such file')."""
    named = {
        "certificate-authority": single.cluster.certificate_auth,
        "client-certificate": single.user.client_cert if single.user else None,
        "client-key": single.user.client_key if single.user else None,
    }
    for key, value in named.items():
        if value and not Path(single.abs_file(value)).is_file():
            raise CliError(
                ExitCode.UNREACHABLE,
                f"the context {single.context_name!r} names a {key} file that does not exist: {single.abs_file(value)}",
            )


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
            raise CliError(
                ExitCode.NOT_FOUND,
                f"task {name!r} not found in namespace {self.namespace!r}",
                hint=f"tasks there: {', '.join(names)}" if names else "there are no tasks in that namespace",
            ) from e

    def task_names(self) -> list[str]:
        with self.calls("listing tasks"):
            tasks = _items(self.client.list(TaskResource, namespace=self.namespace))
        return sorted(str(t["metadata"]["name"]) for t in tasks)

    def list_queues(self, all_namespaces: bool = False) -> list[dict[str, Any]]:
        with self.calls("listing queues"):
            return _items(self.client.list(QueueResource, namespace="*" if all_namespaces else self.namespace))

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
