"""TokenCompletion: completing a wait token the Kubernetes way, governed by RBAC (who may `create
tokencompletions` in the run's namespace), recorded in the audit log, and drivable by kubectl or a
GitOps commit. The operator completes the token once and writes the outcome to status."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from cairn.api.common import PAYLOAD_MAX_BYTES, Model, ObjectMeta, cel

TOKEN_PATTERN = r"^tok-[0-9a-f]{16}$"  # noqa: S105 - an id's shape, not a secret


def _json_text(value: str | None) -> str | None:
    if value is not None:
        try:
            json.loads(value)
        except json.JSONDecodeError as e:
            raise ValueError(f"is not JSON: {e.msg} at character {e.pos}") from e
    return value


class TokenCompletionSpec(Model):
    """Which token to complete, with what data (immutable)."""

    model_config = cel("self == oldSelf", "a TokenCompletion is immutable: create another", field_paths={})

    token: str = Field(
        pattern=TOKEN_PATTERN,
        description="The token's id, e.g. tok-0123456789abcdef (cairn tokens list shows them). It must belong "
        "to a run in this namespace.",
    )
    data: Annotated[str | None, AfterValidator(_json_text)] = Field(
        None,
        max_length=PAYLOAD_MAX_BYTES,
        description="What the waiting run receives, as JSON text, e.g. '{\"approved\": true}'. Unset: null.",
    )


class TokenCompletionStatus(Model):
    """How completing the token went."""

    outcome: Literal["Completed", "AlreadyCompleted", "TimedOut", "RunEnded", "NotFound", "InvalidData"] | None = Field(
        None,
        description="Completed (this object completed it), AlreadyCompleted (an earlier completion stands), "
        "TimedOut, RunEnded (its run is over), NotFound (no such token in this namespace), InvalidData (data "
        "is not JSON).",
    )
    message: str | None = Field(None, max_length=1024, description="What happened, for a person.")
    completion_time: str | None = Field(None, description="When the operator handled it.")


class TokenCompletion(Model):
    api_version: Literal["cairn.dev/v1alpha1"] = "cairn.dev/v1alpha1"
    kind: Literal["TokenCompletion"] = "TokenCompletion"
    metadata: ObjectMeta
    spec: TokenCompletionSpec
    status: TokenCompletionStatus | None = None
