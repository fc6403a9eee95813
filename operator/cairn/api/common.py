"""Building blocks shared by the three kinds: model configuration, durations, conditions, metadata."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler
from pydantic.alias_generators import to_camel
from pydantic_core import CoreSchema, core_schema

GROUP = "cairn.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Sizes users meet in errors: keep them round and documented.
PAYLOAD_MAX_BYTES = 256 * 1024
RESULT_STATUS_MAX_BYTES = 4 * 1024
CONDITION_MESSAGE_MAX = 1024

_DURATION = re.compile(r"^([0-9]+([.][0-9]+)?(ms|s|m|h))+$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
DURATION_PATTERN = _DURATION.pattern
DURATION_HELP = "a duration such as 30s, 5m, 1h30m or 500ms"
MAX_DURATION = timedelta(days=3660)


def parse_duration(value: str) -> timedelta:
    """Go-style duration (what Kubernetes users write): 30s, 5m, 1h30m, 500ms."""
    if not _DURATION.fullmatch(value):
        raise ValueError(f"{value!r} is not {DURATION_HELP}")
    total = 0.0
    for number, _frac, unit in re.findall(r"([0-9]+([.][0-9]+)?)(ms|s|m|h)", value):
        total += float(number) * _UNIT_SECONDS[unit]
    if total > MAX_DURATION.total_seconds():
        raise ValueError(f"{value!r} is longer than {MAX_DURATION.days} days")
    return timedelta(seconds=total)


class GoDuration(str):
    """A duration as the user wrote it (it stays that text on the wire and in status), parsed once,
    when it is read: `.delta`. Nothing downstream parses durations again."""

    delta: timedelta

    def __new__(cls, value: str) -> GoDuration:
        self = super().__new__(cls, value)
        self.delta = parse_duration(value)
        return self

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(
            cls, core_schema.str_schema(), serialization=core_schema.plain_serializer_function_ser_schema(str)
        )


def duration_rules(path: str = "self") -> list[dict[str, str]]:
    return [{"rule": f"{path}.matches('{DURATION_PATTERN}')", "message": f"must be {DURATION_HELP}"}]


def Duration(description: str, **kw: Any) -> Any:
    """A field holding a Go-style duration string, validated in the CRD (CEL) and in Python."""
    extra: dict[str, Any] = {"x-kubernetes-validations": duration_rules()}
    return Field(description=f"{description} Written as {DURATION_HELP}.", json_schema_extra=extra, **kw)


DurationStr = GoDuration


def cel(*rule_message_pairs: str, field_paths: dict[int, str] | None = None) -> ConfigDict:
    """Model configuration adding CEL validation rules (x-kubernetes-validations) to its CRD schema.

    Arguments alternate rule, message. `field_paths` maps a rule's index to the field it blames, so
    the error names that field."""
    pairs = list(zip(rule_message_pairs[::2], rule_message_pairs[1::2], strict=True))
    rules: list[dict[str, str]] = []
    for i, (rule, message) in enumerate(pairs):
        entry = {"rule": rule, "message": message}
        if field_paths and i in field_paths:
            entry["fieldPath"] = field_paths[i]
        rules.append(entry)
    return ConfigDict(json_schema_extra={"x-kubernetes-validations": rules})  # type: ignore[dict-item]


def exactly_one(*fields: str) -> str:
    """CEL: exactly one of these optional fields is set (cheap to evaluate, unlike a list filter)."""
    return " + ".join(f"(has(self.{f}) ? 1 : 0)" for f in fields) + " == 1"


class Model(BaseModel):
    """Base of every spec and status model: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
    )

    def wire(self) -> dict[str, Any]:
        """The JSON-ready dict as Kubernetes stores it (camelCase, unset fields left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ObjectMeta(BaseModel):
    """The parts of Kubernetes object metadata Cairn reads. Kubernetes owns this: other fields pass."""

    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=True, frozen=True)

    name: str
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


# Conditions are a list keyed by type (one entry per type), as Kubernetes declares them.
CONDITIONS_LIST: dict[str, Any] = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}


class Condition(Model):
    """A Kubernetes condition: one aspect of the object's state, with the reason it has it."""

    type: str = Field(description="The aspect, in PascalCase: Admitted, Ready, Succeeded, TaskFound, ...")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="Why, in one PascalCase word (e.g. QueueFull, BackoffLimitExceeded).")
    message: str = Field("", description="Why, for a person.", max_length=CONDITION_MESSAGE_MAX)
    last_transition_time: str = Field(description="When status last changed (RFC 3339).")
    observed_generation: int | None = Field(None, description="The generation of the spec this reflects.")
