"""The CRDs are generated from the pydantic models and documented in full."""

from __future__ import annotations

from typing import Any

import pytest

from cairn.api import crd
from harness import config


def test_crds_directory_matches_the_models() -> None:
    for name, text in crd.crd_files().items():
        path = config.REPO / "crds" / name
        assert path.exists(), f"crds/{name} is missing: run `make crds`"
        assert path.read_text() == text, f"crds/{name} is out of date: run `make crds`"


def _undocumented(schema: dict[str, Any], path: str) -> list[str]:
    missing = []
    for name, prop in schema.get("properties", {}).items():
        where = f"{path}.{name}"
        if name not in ("apiVersion", "kind", "metadata") and not prop.get("description", "").strip():
            missing.append(where)
        missing += _undocumented(prop, where)
    if "items" in schema:
        missing += _undocumented(schema["items"], f"{path}[]")
    return missing


@pytest.mark.parametrize("info", crd.KINDS, ids=lambda k: k.kind)
def test_every_field_has_a_description_for_kubectl_explain(info: crd.KindInfo) -> None:
    schema = crd.crd(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert _undocumented(schema, info.kind.lower()) == []


@pytest.mark.parametrize("info", crd.KINDS, ids=lambda k: k.kind)
def test_schemas_are_structural(info: crd.KindInfo) -> None:
    """Every node has a type (or is int-or-string / free-form), and no $ref or nullable anyOf is left."""
    schema = crd.crd(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

    def walk(node: dict[str, Any], path: str) -> None:
        assert "$ref" not in node, path
        if not node.get("x-kubernetes-int-or-string"):
            assert "anyOf" not in node, path
            assert "type" in node, path
        for name, prop in node.get("properties", {}).items():
            walk(prop, f"{path}.{name}")
        if "items" in node:
            walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{path}{{}}")

    walk(schema, info.kind)
