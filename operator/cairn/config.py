"""The operator's and the API's settings, from the environment (CAIRN_*)."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from cairn.api.common import GoDuration


def env_name(field: str) -> str:
    """The environment variable that sets a Settings field."""
    return f"CAIRN_{field.upper()}"


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: SecretStr = Field(description="PostgreSQL DSN (CAIRN_DATABASE_URL).")
    api_url: str = Field("http://cairn-api:8080", description="Where task pods reach the checkpoint API.")
    public_url: str | None = Field(
        None,
        description="Where systems outside the cluster reach the API (the base of wait tokens' completion URLs); "
        "unset: api_url.",
    )
    kubeconfig: str | None = Field(None, description="A kubeconfig file; unset: in-cluster service account.")
    namespaces: list[str] = Field(default_factory=list, description="Namespaces to watch; empty: all.")
    token_audience: str = Field("cairn.dev", description="Audience of the pods' projected tokens.")
    workers: int = Field(8, ge=1, description="Concurrent reconciles.")
    kube_qps: float = Field(50, ge=0, description="Client-side Kubernetes API requests per second.")
    kube_burst: int = Field(100, ge=1, description="Kubernetes API requests allowed in a burst above kube_qps.")
    event_qps: float = Field(5, ge=0, description="Kubernetes Events written per second, at most.")
    sweep_interval: float = Field(30, gt=0, description="Seconds between sweeps for leaked slots.")
    orphan_grace: float = Field(
        30, ge=0, description="Seconds a run must have been registered before a sweep may reclaim its slot."
    )
    resync_interval: float = Field(300, gt=0, description="Seconds between full re-reconciles of every run.")
    liveness_port: int = Field(8081, ge=0, le=65535, description="kopf's /healthz port (0: off).")
    metrics_port: int = Field(9090, ge=0, le=65535, description="Prometheus /metrics port (0: off).")
    api_port: int = Field(8080, ge=1, le=65535, description="The checkpoint/trigger API's port.")
    api_host: str = Field("0.0.0.0", description="The API's bind address.")  # noqa: S104 - a server in a pod
    log_format: str = Field("json", pattern="^(json|text)$", description="Log lines as `json` or `text`.")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR.")
    retention_default: GoDuration = Field(
        GoDuration("168h"), description="Checkpoint retention for runs deleted before finishing."
    )

    @property
    def dsn(self) -> str:
        return self.database_url.get_secret_value()

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            key = env_name(name)
            if key in env and env[key] != "":
                raw = env[key]
                values[name] = [n.strip() for n in raw.split(",") if n.strip()] if name == "namespaces" else raw
        values.update(overrides)
        return cls.model_validate(values)


def settings_table() -> str:
    """The settings as a Markdown table (docs/configuration.md is this, checked by a test)."""
    rows = ["| variable | default | what it sets |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        if field.is_required():
            default = "(required)"
        elif field.default_factory is not None:
            default = "(empty)"
        else:
            default = f"`{field.default}`" if field.default is not None else "(unset)"
        rows.append(f"| `{env_name(name)}` | {default} | {field.description or ''} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(settings_table(), end="")
