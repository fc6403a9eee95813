"""The chart as rendered, without a cluster: lint, RBAC, security contexts, CRDs, values and schema."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cairn.api.crd import crd_files
from harness import config
from tests.chart.helm import CHART, Doc, helm, of_kind, one, pod_specs, render, template, values_yaml

# Value sets every structural test renders: the default, the namespaced mode with everything optional
# switched on, and an external database.
MODES: dict[str, dict[str, Any]] = {
    "default": {},
    "namespaced": {
        "watchNamespaces": ["team-a", "team-b"],
        "networkPolicy": {"enabled": True, "tasks": {"namespaces": ["team-a"]}},
        "metrics": {"serviceMonitor": {"enabled": True}, "grafanaDashboard": {"enabled": True}},
        "tests": {"namespace": "team-b"},
    },
    "external-db": {
        "postgresql": {"enabled": False},
        "database": {"existingSecret": "cairn-db", "existingSecretKey": "uri"},
        "networkPolicy": {"enabled": True, "kubeAPI": {"cidrs": ["10.0.0.1/32"]}},
    },
}


@pytest.fixture(scope="module", params=list(MODES))
def rendered(request: pytest.FixtureRequest) -> list[Doc]:
    return template(MODES[request.param])


# -- lint and template -------------------------------------------------------------------------------
def test_helm_lint_strict_is_clean_in_every_mode() -> None:
    for name, values in MODES.items():
        res = helm("lint", "--strict", str(CHART), "-f", "-", input=values_yaml(values))
        out = res.stdout + res.stderr
        assert "[WARNING]" not in out and "[ERROR]" not in out, f"{name}:\n{out}"
        assert "1 chart(s) linted, 0 chart(s) failed" in out


def test_helm_template_renders_one_object_per_document_with_labels(rendered: list[Doc]) -> None:
    assert len(rendered) > 10
    for doc in rendered:
        meta = doc["metadata"]
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm", meta["name"]
        assert meta["labels"]["app.kubernetes.io/part-of"] == "cairn", meta["name"]
    names = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in rendered]
    assert len(names) == len(set(names)), "two objects with the same kind, namespace and name"


def test_the_default_install_has_every_component() -> None:
    docs = template()
    assert {d["metadata"]["name"] for d in of_kind(docs, "Deployment")} == {"cairn-operator", "cairn-api"}
    assert [d["metadata"]["name"] for d in of_kind(docs, "StatefulSet")] == ["cairn-postgresql"]
    assert {d["metadata"]["name"] for d in of_kind(docs, "Service")} == {
        "cairn-api",
        "cairn-operator-metrics",
        "cairn-postgresql",
    }
    assert len(of_kind(docs, "CustomResourceDefinition")) == 5
    assert of_kind(docs, "NetworkPolicy") == [] and of_kind(docs, "ServiceMonitor") == []
    assert one(docs, "PodDisruptionBudget", "cairn-api")["spec"]["minAvailable"] == 1


def test_the_operator_rolls_as_a_standby_first_with_probes_on_kopfs_healthz() -> None:
    operator = one(template(), "Deployment", "cairn-operator")
    assert operator["spec"]["replicas"] == 1
    assert one(template({"operator": {"replicas": 2}}), "Deployment", "cairn-operator")["spec"]["replicas"] == 2
    # The new pod starts as a standby; the old one gives the lease up as it stops.
    assert operator["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    container = operator["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["python3", "-m", "cairn", "operator"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}, probe
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8081, "metrics": 9090}
    env = {e["name"]: e for e in container["env"]}
    assert env["CAIRN_LIVENESS_PORT"]["value"] == "8081"
    assert env["CAIRN_METRICS_PORT"]["value"] == "9090"
    assert env["CAIRN_NAMESPACES"]["value"] == ""
    assert env["CAIRN_API_URL"]["value"] == "http://cairn-api.cairn-system.svc:8080"
    assert (env["CAIRN_LEADER_NAMESPACE"]["value"], env["CAIRN_LEADER_LEASE"]["value"]) == (
        "cairn-system",
        "cairn-operator",
    )
    assert env["CAIRN_LEADER_LEASE_SECONDS"]["value"] == "10"
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def test_the_api_scales_and_rolls_without_losing_capacity() -> None:
    docs = template({"api": {"replicas": 3}})
    api = one(docs, "Deployment", "cairn-api")
    assert api["spec"]["replicas"] == 3
    assert api["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    container = api["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["python3", "-m", "cairn", "api"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    service = one(docs, "Service", "cairn-api")
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"http": 8080, "metrics": 9090}
    assert of_kind(template({"api": {"replicas": 1}}), "PodDisruptionBudget") == []


def test_metrics_ports_and_service_monitors_follow_the_values() -> None:
    docs = template({"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}})
    monitors = of_kind(docs, "ServiceMonitor")
    assert {m["metadata"]["name"] for m in monitors} == {"cairn-operator", "cairn-api"}
    for m in monitors:
        assert m["metadata"]["labels"]["release"] == "prom"
        assert m["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
        component = m["metadata"]["labels"]["app.kubernetes.io/component"]
        assert m["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == component
    dashboard = one(template({"metrics": {"grafanaDashboard": {"enabled": True}}}), "ConfigMap", "cairn-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["cairn.json"]) == json.loads((CHART / "dashboards" / "cairn.json").read_text())
    assert [c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"] == "cairn-dashboard"] == []
    off = template({"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}})
    assert of_kind(off, "ServiceMonitor") == []
    operator = one(off, "Deployment", "cairn-operator")["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"]: e.get("value") for e in operator["env"]}["CAIRN_METRICS_PORT"] == "0"
    assert [p["name"] for p in operator["ports"]] == ["health"]


# -- RBAC --------------------------------------------------------------------------------------------
OPERATOR_RULES = {
    ("cairn.dev", "tasks"): {"get", "list", "watch"},
    ("cairn.dev", "taskruns"): {"get", "list", "watch", "delete", "create", "patch"},
    ("cairn.dev", "queues"): {"get", "list", "watch"},
    ("cairn.dev", "schedules"): {"get", "list", "watch"},
    ("cairn.dev", "tokencompletions"): {"get", "list", "watch"},
    ("cairn.dev", "taskruns/status"): {"patch"},
    ("cairn.dev", "queues/status"): {"patch"},
    ("cairn.dev", "schedules/status"): {"patch"},
    ("cairn.dev", "tokencompletions/status"): {"patch"},
    ("", "pods"): {"get", "list", "watch", "create", "delete", "patch"},
    ("", "events"): {"create"},
}
API_REVIEW_RULES = {
    ("authentication.k8s.io", "tokenreviews"): {"create"},
    ("authorization.k8s.io", "subjectaccessreviews"): {"create"},
}
API_RUN_RULES = {
    ("cairn.dev", "taskruns"): {"create", "get", "list", "watch", "patch"},
    ("cairn.dev", "tasks"): {"get"},
    ("cairn.dev", "queues"): {"get", "patch"},
    ("cairn.dev", "tokencompletions"): {"create"},
    ("cairn.dev", "schedules"): {"list", "patch"},
    ("", "pods"): {"list"},
    ("", "pods/log"): {"get"},
    ("", "events"): {"list"},
}
# The API without the dashboard's actions (ui.readOnly), and without the dashboard (ui.enabled false).
API_READ_ONLY_RULES = {
    ("cairn.dev", "taskruns"): {"create", "get", "list", "watch"},
    ("cairn.dev", "tasks"): {"get"},
    ("cairn.dev", "queues"): {"get"},
    ("cairn.dev", "schedules"): {"list"},
    ("", "pods"): {"list"},
    ("", "pods/log"): {"get"},
    ("", "events"): {"list"},
}
API_NO_UI_RULES = {
    ("cairn.dev", "taskruns"): {"create", "get", "list", "watch"},
    ("cairn.dev", "tasks"): {"get"},
    ("cairn.dev", "queues"): {"get"},
}
LEASE_RULES = {("coordination.k8s.io", "leases"): {"create", "get", "update"}}

TEST_RULES = {(g, r): {"create", "get", "delete"} for g, r in [("cairn.dev", "queues"), ("cairn.dev", "tasks")]} | {
    ("cairn.dev", "taskruns"): {"create", "get", "delete"}
}


def _rules(role: Doc) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs; fails on anything not a plain list of names."""
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def _roles(docs: list[Doc]) -> list[Doc]:
    return of_kind(docs, "Role", "ClusterRole")


def test_rbac_has_no_wildcards_and_no_secrets(rendered: list[Doc]) -> None:
    assert _roles(rendered)
    for role in _roles(rendered):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(field, []), f"{role['metadata']['name']}: wildcard in {field}: {rule}"
                assert not any("*" in v for v in rule.get(field, [])), rule
            assert "nonResourceURLs" not in rule
            # The database password reaches pods through secretKeyRef (resolved by the kubelet): no
            # Cairn identity reads Secrets; if one ever must, only by resourceNames.
            if "secrets" in rule["resources"]:
                assert rule.get("resourceNames"), f"{role['metadata']['name']} reads Secrets without resourceNames"
        for key in _rules(role):
            assert key[1] not in ("secrets", "pods/exec", "pods/attach", "serviceaccounts/token"), (role, key)
            assert key[1] not in ("roles", "clusterroles", "rolebindings", "clusterrolebindings"), (role, key)


def test_cluster_wide_mode_grants_exactly_the_operator_and_api_rules() -> None:
    docs = template()
    roles = [r for r in of_kind(docs, "Role") if "helm.sh/hook" not in r["metadata"].get("annotations", {})]
    assert [(r["metadata"]["name"], r["metadata"]["namespace"]) for r in roles] == [
        ("cairn-operator-lease", "cairn-system")
    ]
    assert _rules(roles[0]) == LEASE_RULES
    assert _rules(one(docs, "ClusterRole", "cairn-operator")) == OPERATOR_RULES
    assert _rules(one(docs, "ClusterRole", "cairn-api-reviews")) == API_REVIEW_RULES | API_RUN_RULES
    for name, sa in (("cairn-operator", "cairn-operator"), ("cairn-api-reviews", "cairn-api")):
        binding = one(docs, "ClusterRoleBinding", name)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": "cairn-system"}]
    assert _rules(one(docs, "Role", "cairn-test")) == TEST_RULES


@pytest.mark.parametrize(
    ("ui", "rules", "mode"),
    [
        ({"enabled": True, "readOnly": True}, API_READ_ONLY_RULES, "read-only"),
        ({"enabled": False}, API_NO_UI_RULES, "off"),
        ({}, API_RUN_RULES, "on"),
    ],
)
def test_the_dashboard_values_set_its_mode_and_the_api_rules_it_needs(
    ui: dict[str, bool], rules: dict[tuple[str, str], set[str]], mode: str
) -> None:
    docs = template({"ui": ui})
    assert _rules(one(docs, "ClusterRole", "cairn-api-reviews")) == API_REVIEW_RULES | rules
    api = one(docs, "Deployment", "cairn-api")["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"]: e.get("value") for e in api["env"]}["CAIRN_UI"] == mode


def test_namespaced_mode_grants_roles_in_each_watched_namespace_and_only_reviews_cluster_wide() -> None:
    docs = template({"watchNamespaces": ["team-a", "team-b"], "tests": {"namespace": "team-b"}})
    cluster_roles = of_kind(docs, "ClusterRole")
    assert [c["metadata"]["name"] for c in cluster_roles] == ["cairn-api-reviews"]
    assert _rules(cluster_roles[0]) == API_REVIEW_RULES
    for ns in ("team-a", "team-b"):
        operator = [
            r
            for r in of_kind(docs, "Role")
            if r["metadata"]["namespace"] == ns and r["metadata"]["name"] == "cairn-operator"
        ]
        api = [
            r
            for r in of_kind(docs, "Role")
            if r["metadata"]["namespace"] == ns and r["metadata"]["name"] == "cairn-api"
        ]
        assert len(operator) == 1 and _rules(operator[0]) == OPERATOR_RULES, ns
        assert len(api) == 1 and _rules(api[0]) == API_RUN_RULES, ns
        bindings = [b for b in of_kind(docs, "RoleBinding") if b["metadata"]["namespace"] == ns]
        assert {(b["roleRef"]["name"], b["subjects"][0]["name"], b["subjects"][0]["namespace"]) for b in bindings} >= {
            ("cairn-operator", "cairn-operator", "cairn-system"),
            ("cairn-api", "cairn-api", "cairn-system"),
        }
    operator_env = one(docs, "Deployment", "cairn-operator")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {e["name"]: e.get("value") for e in operator_env}["CAIRN_NAMESPACES"] == "team-a,team-b"
    assert {r["metadata"]["namespace"] for r in of_kind(docs, "Role") if r["metadata"]["name"] == "cairn-test"} == {
        "team-b"
    }


def test_every_rbac_rule_in_the_templates_is_commented() -> None:
    rules = 0
    for path in sorted((CHART / "templates").rglob("*.yaml")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.lstrip().startswith("- apiGroups:"):
                rules += 1
                assert lines[i - 1].strip().startswith("#"), f"{path.name}:{i + 1}: a rule without a comment above it"
    # the status subresources of four kinds share one rule; the lease's two rules; the API's three for
    # triggers, four for the dashboard's reads and two for its actions; + helm test's
    assert rules == len(OPERATOR_RULES) - 3 + 2 + len(API_REVIEW_RULES) + 3 + 4 + 2 + 1


def test_rbac_create_false_renders_no_rbac() -> None:
    docs = [
        d for d in template({"rbac": {"create": False}}) if "helm.sh/hook" not in d["metadata"].get("annotations", {})
    ]
    assert of_kind(docs, "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding") == []


# -- security ----------------------------------------------------------------------------------------
def test_every_pod_meets_the_restricted_pod_security_standard(rendered: list[Doc]) -> None:
    specs = list(pod_specs(rendered))
    assert len(specs) >= 3
    for what, spec in specs:
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True, what
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}, what
        assert pod_sc.get("runAsUser", 1) != 0, what
        assert spec["enableServiceLinks"] is False, what
        assert "automountServiceAccountToken" in spec, f"{what}: the token must be an explicit choice"
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(key), (what, key)
        for volume in spec.get("volumes", []):
            assert set(volume) - {"name"} <= {"configMap", "emptyDir", "projected", "secret", "persistentVolumeClaim"}
        for container in spec.get("initContainers", []) + spec["containers"]:
            sc = container["securityContext"]
            where = f"{what}/{container['name']}"
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["runAsNonRoot"] is True, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert not sc.get("privileged"), where
            assert "ports" not in container or all("hostPort" not in p for p in container["ports"]), where
            assert container.get("resources", {}).get("limits", {}).get("memory"), f"{where}: no memory limit"


def test_only_pods_that_call_the_kubernetes_api_get_a_token() -> None:
    docs = template()
    tokens = {what: spec["automountServiceAccountToken"] for what, spec in pod_specs(docs)}
    assert tokens == {
        "Deployment/cairn-operator": True,
        "Deployment/cairn-api": True,
        "StatefulSet/cairn-postgresql": False,
        "Pod/cairn-test": True,
    }
    for sa in of_kind(docs, "ServiceAccount"):
        assert sa["automountServiceAccountToken"] is False, sa["metadata"]["name"]


def test_the_database_password_is_never_a_value_and_is_generated_into_a_secret() -> None:
    docs = template()
    secret = one(docs, "Secret", "cairn-postgresql")
    password = base64.b64decode(secret["data"]["password"]).decode()
    assert re.fullmatch(r"[A-Za-z0-9]{32}", password)
    assert password not in (CHART / "values.yaml").read_text()
    assert base64.b64decode(one(template(), "Secret", "cairn-postgresql")["data"]["password"]).decode() != password
    for what, spec in pod_specs(docs):
        for container in spec.get("initContainers", []) + spec["containers"]:
            for env in container.get("env", []):
                assert password not in json.dumps(env), f"{what}: the password in a pod spec"
    # The operator, the API and the database take it from the Secret by reference.
    refs = {
        (what, c["name"], e["name"]): e["valueFrom"]["secretKeyRef"]
        for what, spec in pod_specs(docs)
        for c in spec.get("initContainers", []) + spec["containers"]
        for e in c.get("env", [])
        if "valueFrom" in e
    }
    assert all(ref == {"name": "cairn-postgresql", "key": "password"} for ref in refs.values()), refs
    assert ("StatefulSet/cairn-postgresql", "postgresql", "POSTGRES_PASSWORD") in refs
    assert ("Deployment/cairn-operator", "operator", "PGPASSWORD") in refs
    assert ("Deployment/cairn-api", "wait-for-database", "PGPASSWORD") in refs


def test_an_external_database_comes_from_an_existing_secret_and_no_postgresql_is_rendered() -> None:
    docs = template(MODES["external-db"])
    assert of_kind(docs, "StatefulSet") == [] and of_kind(docs, "Secret") == []
    env = one(docs, "Deployment", "cairn-operator")["spec"]["template"]["spec"]["containers"][0]["env"]
    dsn = next(e for e in env if e["name"] == "CAIRN_DATABASE_URL")
    assert dsn["valueFrom"] == {"secretKeyRef": {"name": "cairn-db", "key": "uri"}}
    assert "PGPASSWORD" not in {e["name"] for e in env}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"postgresql": {"enabled": False}}, "no database: set database.existingSecret"),
        ({"database": {"existingSecret": "db"}}, "set postgresql.enabled=false to use it"),
        ({"watchNamespaces": ["a"], "tests": {"namespace": "b"}}, 'tests.namespace "b" is not watched'),
    ],
)
def test_contradictory_values_fail_with_a_message(values: dict[str, Any], message: str) -> None:
    res = render(values, check=False)
    assert res.returncode != 0
    assert message in res.stderr


def test_keeping_the_bundled_database_keeps_its_volume_and_password() -> None:
    kept = template({"postgresql": {"persistence": {"keepOnUninstall": True}}})
    sts = one(kept, "StatefulSet", "cairn-postgresql")
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
    assert one(kept, "Secret", "cairn-postgresql")["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    default = template()
    assert (
        one(default, "StatefulSet", "cairn-postgresql")["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"]
        == "Delete"
    )
    assert "annotations" not in one(default, "Secret", "cairn-postgresql")["metadata"]


# -- network policies ----------------------------------------------------------------------------------
def test_network_policies_confine_each_component() -> None:
    docs = template(MODES["namespaced"])
    policies = {(p["metadata"]["namespace"], p["metadata"]["name"]): p["spec"] for p in of_kind(docs, "NetworkPolicy")}
    assert set(policies) == {
        ("cairn-system", "cairn-operator"),
        ("cairn-system", "cairn-api"),
        ("cairn-system", "cairn-postgresql"),
        ("team-a", "cairn-tasks"),
    }
    for spec in policies.values():
        assert spec["policyTypes"] == ["Ingress", "Egress"]

    def egress_ports(spec: Doc) -> set[int]:
        return {p["port"] for rule in spec["egress"] for p in rule.get("ports", [])}

    assert egress_ports(policies[("cairn-system", "cairn-operator")]) == {53, 443, 6443, 5432}
    assert egress_ports(policies[("cairn-system", "cairn-api")]) == {53, 443, 6443, 5432}
    postgres = policies[("cairn-system", "cairn-postgresql")]
    assert postgres["egress"] == []
    sources = [
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for peer in postgres["ingress"][0]["from"]
    ]
    assert sources == ["operator", "api"]
    tasks = policies[("team-a", "cairn-tasks")]
    assert tasks["podSelector"] == {"matchExpressions": [{"key": "cairn.dev/run-uid", "operator": "Exists"}]}
    assert tasks["ingress"] == []
    assert egress_ports(tasks) == {53, 8080}
    api_peer = tasks["egress"][1]["to"][0]
    assert api_peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "cairn-system"}
    assert api_peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "api"
    assert of_kind(template(), "NetworkPolicy") == []


# -- CRDs ----------------------------------------------------------------------------------------------
def test_the_charts_crds_are_the_generated_crds() -> None:
    generated = crd_files()
    chart_files = {p.name: p.read_text() for p in sorted((CHART / "files" / "crds").glob("*.yaml"))}
    repo_files = {p.name: p.read_text() for p in sorted((config.REPO / "crds").glob("*.yaml"))}
    assert repo_files == generated, "crds/ is out of date: run `make crds`"
    assert chart_files == generated, (
        "charts/cairn/files/crds/ is out of date: run `python -m cairn.api.crd charts/cairn/files/crds`"
    )
    rendered = {d["metadata"]["name"]: d for d in of_kind(template(), "CustomResourceDefinition")}
    for text in generated.values():
        source = yaml.safe_load(text)
        ours = rendered[source["metadata"]["name"]]
        assert ours["spec"] == source["spec"]
        assert ours["metadata"]["labels"].items() >= source["metadata"]["labels"].items()
        assert ours["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}


def test_crds_can_be_switched_off_deleted_on_uninstall_or_annotated() -> None:
    assert of_kind(template({"crds": {"enabled": False}}), "CustomResourceDefinition") == []
    for crd in of_kind(template({"crds": {"keep": False}}), "CustomResourceDefinition"):
        assert "annotations" not in crd["metadata"]
    prune = {"argocd.argoproj.io/sync-options": "Prune=false"}
    for crd in of_kind(template({"crds": {"annotations": prune}}), "CustomResourceDefinition"):
        assert crd["metadata"]["annotations"] == {**prune, "helm.sh/resource-policy": "keep"}


# -- values and schema -----------------------------------------------------------------------------------
def _leaves(values: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in FREE_FORM:
            out += _leaves(value, f"{path}.")
        else:
            out.append(path)
    return out


# Values that are Kubernetes objects or maps in their own right (documented as a whole).
FREE_FORM = {"podSecurityContext", "containerSecurityContext", "resources", "labels"}


def test_every_value_is_documented_in_values_yaml() -> None:
    text = (CHART / "values.yaml").read_text()
    lines = text.splitlines()
    values = yaml.safe_load(text)
    for leaf in _leaves(values):
        key = leaf.split(".")[-1]
        depth = leaf.count(".")
        pattern = re.compile(rf"^{'  ' * depth}{re.escape(key)}:")
        found = [i for i, line in enumerate(lines) if pattern.match(line)]
        assert found, f"{leaf} not found in values.yaml"
        documented = False
        for i in found:
            j = i - 1
            while j >= 0 and lines[j].strip().startswith("#"):
                if lines[j].strip().startswith("# --"):
                    documented = True
                j -= 1
        assert documented, f"{leaf} has no `# --` comment in values.yaml"


def _schema_keys(schema: dict[str, Any], prefix: str = "") -> set[str]:
    out = set()
    for key, sub in schema.get("properties", {}).items():
        out.add(f"{prefix}{key}")
        if sub.get("additionalProperties") is False:
            out |= _schema_keys(sub, f"{prefix}{key}.")
    return out


def _value_keys(values: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> set[str]:
    out = set()
    for key, value in values.items():
        out.add(f"{prefix}{key}")
        sub = schema.get("properties", {}).get(key, {})
        if isinstance(value, dict) and sub.get("additionalProperties") is False:
            out |= _value_keys(value, sub, f"{prefix}{key}.")
    return out


def test_the_schema_declares_exactly_the_values_and_is_closed_everywhere() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert _schema_keys(schema) - {"global"} == _value_keys(values, schema)

    def closed(node: dict[str, Any], path: str) -> None:
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path} accepts unknown keys"
            for key, sub in node["properties"].items():
                closed(sub, f"{path}.{key}")

    closed(schema, "values")
    for path in _schema_keys(schema):
        node: dict[str, Any] = schema
        for part in path.split("."):
            node = node["properties"][part]
        if node.get("additionalProperties") is not False:  # a value, not a group of values
            assert node.get("description") or "$ref" in node, f"{path} has no description in the schema"


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"operater": {"workers": 2}}, "Additional property operater is not allowed"),
        ({"operator": {"wrokers": 2}}, "operator: Additional property wrokers is not allowed"),
        ({"postgresql": {"persistence": {"sise": "2Gi"}}}, "Additional property sise is not allowed"),
        ({"api": {"resources": {"limit": {"memory": "1Gi"}}}}, "Additional property limit is not allowed"),
        ({"crds": {"enabled": "yes"}}, "Invalid type. Expected: boolean"),
        ({"watchNamespaces": ["Team_A"]}, "Does not match pattern"),
        ({"logging": {"format": "xml"}}, "must be one of the following"),
    ],
)
def test_the_schema_rejects_unknown_keys_and_bad_values(values: dict[str, Any], complaint: str) -> None:
    res = render(values, check=False)
    assert res.returncode != 0, f"{values} was accepted"
    assert complaint in res.stderr, res.stderr


def test_notes_and_docs_name_what_to_do_next() -> None:
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    for needle in ("rollout status", "helm test", "examples/hello/task.yaml", "docs/helm.md"):
        assert needle in notes
    helm_doc = (config.REPO / "docs" / "helm.md").read_text()
    for leaf in _leaves(yaml.safe_load((CHART / "values.yaml").read_text())):
        assert f"| `{leaf}` |" in helm_doc, f"the values table of docs/helm.md has no row for {leaf}"


def test_the_helm_test_script_is_in_the_chart_as_shipped() -> None:
    docs = template()
    cm = one(docs, "ConfigMap", "cairn-test")
    assert cm["data"]["helm_test.py"].rstrip() == (CHART / "files" / "helm_test.py").read_text().rstrip()
    assert cm["data"]["helm_test_task.py"].rstrip() == (CHART / "files" / "helm_test_task.py").read_text().rstrip()
    pod = one(docs, "Pod", "cairn-test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    hooks = [d for d in docs if "helm.sh/hook" in d["metadata"].get("annotations", {})]
    assert {d["kind"] for d in hooks} == {"ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Pod"}
    for d in hooks:
        assert d["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = Path(config.REPO / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', project, re.M)
    assert version is not None
    assert chart["appVersion"] == version.group(1)
    assert chart["apiVersion"] == "v2" and chart["type"] == "application"


def test_the_scripts_the_chart_ships_type_check_strictly() -> None:
    """charts/cairn/files/*.py are outside the packages `make lint` type-checks: check them here."""
    scripts = sorted(str(p) for p in (CHART / "files").glob("*.py"))
    assert len(scripts) == 2
    res = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--explicit-package-bases", "--no-incremental", *scripts],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"MYPYPATH": str(config.REPO / "operator"), "PATH": "/usr/bin:/bin"},
        cwd=config.REPO,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def _gitops_page_manifest(kind: str) -> Doc:
    text = (config.REPO / "docs" / "gitops.md").read_text()
    found = [
        doc
        for block in re.findall(r"```yaml\n(.*?)```", text, re.S)
        for doc in yaml.safe_load_all(block)
        if isinstance(doc, dict) and doc.get("kind") == kind
    ]
    assert len(found) == 1, f"docs/gitops.md shows {len(found)} {kind} manifests"
    return found[0]


@pytest.mark.parametrize("kind", ["Application", "HelmRelease"])
def test_the_gitops_pages_argo_cd_and_flux_manifests_install_this_chart_with_values_it_accepts(kind: str) -> None:
    """Argo CD and Flux are not run here: what docs/gitops.md gives them (the chart's path and its
    values) is checked the way they use it, `helm template` against values.schema.json."""
    spec = _gitops_page_manifest(kind)["spec"]
    if kind == "Application":
        path, values = spec["source"]["path"], spec["source"]["helm"]["valuesObject"]
        namespace = spec["destination"]["namespace"]
    else:
        path, values, namespace = spec["chart"]["spec"]["chart"], spec["values"], "cairn-system"
    assert (config.REPO / path).resolve() == CHART.resolve(), path
    docs = template(values, namespace=namespace)
    assert of_kind(docs, "StatefulSet") == []  # the bundled PostgreSQL is off, as the page says
    secrets = {
        ref["secretKeyRef"]["name"]
        for _, pod in pod_specs(docs)
        for c in pod.get("containers", [])
        for e in c.get("env", [])
        if (ref := e.get("valueFrom"))
        if "secretKeyRef" in ref
    }
    assert values["database"]["existingSecret"] in secrets, secrets
