"""Which cluster, as kubectl decides it: `--kubeconfig`, else `$KUBECONFIG` (a list of files, merged:
the first file that defines a name wins), else `~/.kube/config`, else the pod's service account
(in-cluster); then `--context`, else the current context. Every problem is a CliError that names the
file or context at fault."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from lightkube import ConfigError, KubeConfig
from lightkube.config.kubeconfig import SingleConfig

from cairn.cli.errors import CliError, ExitCode

DEFAULT_KUBECONFIG = Path("~/.kube/config")
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# Paths a kubeconfig may give relative to its own file.
_RELATIVE_PATH_KEYS = ("certificate-authority", "client-certificate", "client-key", "tokenFile")


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
