"""The Grafana dashboard shipped in the chart graphs metrics Cairn actually exports."""

from __future__ import annotations

import json
import re

from prometheus_client.metrics import MetricWrapperBase

from cairn import metrics
from harness import config

DASHBOARD = config.REPO / "charts" / "cairn" / "dashboards" / "cairn.json"


def _exported() -> set[str]:
    names: set[str] = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            names.update(family.name for family in value.describe())
    return names


def test_every_dashboard_query_uses_a_metric_cairn_exports() -> None:
    doc = json.loads(DASHBOARD.read_text())
    exported = _exported()
    used: set[str] = set()
    for panel in doc["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"\bcairn_[a-z_]+", target["expr"]):
                used.add(re.sub(r"_(bucket|count|sum|total)$", "", name))
    assert used, "the dashboard graphs nothing"
    missing = {u for u in used if u not in exported}
    assert not missing, f"the dashboard queries metrics Cairn does not export: {sorted(missing)}"
    assert len(doc["panels"]) >= 10
