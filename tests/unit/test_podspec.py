"""Rendering an attempt's pod: the team's template plus what Cairn guarantees."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cairn.api.task import TaskSpec
from cairn.domain import naming
from cairn.domain.podspec import TOKEN_DIR, TOKEN_FILE, TOKEN_VOLUME, RunRef, memory_limit, render_pod
from cairn.domain.quantity import to_bytes
from tests.unit.builders import IMAGE, NAMESPACE, RUN_UID, RUNTIME, task_spec

RUN = RunRef(namespace=NAMESPACE, name="video-42", uid=RUN_UID, task="transcode")
GiB = 2**30
MiB = 2**20

RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def render(spec: TaskSpec | None = None, attempt: int = 1, **kw: Any) -> dict[str, Any]:
    return render_pod(RUN, spec or task_spec(), attempt, RUNTIME, **kw)


def the_container(pod: dict[str, Any]) -> dict[str, Any]:
    containers = pod["spec"]["containers"]
    assert len(containers) == 1
    c: dict[str, Any] = containers[0]
    return c


def test_pod_never_restarts_its_container() -> None:
    assert render()["spec"]["restartPolicy"] == "Never"


def test_pod_name_is_the_deterministic_name_of_the_attempt() -> None:
    assert render(attempt=3)["metadata"]["name"] == "video-42-3"
    assert render(attempt=4)["metadata"]["name"] == "video-42-4"


def test_pod_of_a_long_run_name_gets_the_shortened_name() -> None:
    run = RunRef(NAMESPACE, "r" * 80, RUN_UID, "transcode")
    pod = render_pod(run, task_spec(), 2, RUNTIME)
    assert pod["metadata"]["name"] == naming.pod_name("r" * 80, 2)
    assert len(pod["metadata"]["name"]) <= 63


def test_pod_is_owned_by_its_taskrun_as_controller() -> None:
    meta = render()["metadata"]
    assert meta["namespace"] == NAMESPACE
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "cairn.dev/v1alpha1",
            "kind": "TaskRun",
            "name": "video-42",
            "uid": RUN_UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def test_pod_labels_find_the_run_task_and_attempt_and_keep_the_templates() -> None:
    spec = task_spec(
        template_metadata={"labels": {"team": "media", "cairn.dev/run": "spoofed"}, "annotations": {"a": "b"}}
    )
    meta = render(spec, attempt=2)["metadata"]
    assert meta["labels"] == {
        "team": "media",
        "cairn.dev/run": "video-42",  # Cairn's own labels win over the template's
        "cairn.dev/run-uid": RUN_UID,
        "cairn.dev/task": "transcode",
        "cairn.dev/attempt": "2",
        "app.kubernetes.io/managed-by": "cairn",
    }
    assert meta["annotations"] == {"a": "b", "cairn.dev/run": "video-42"}


def test_container_security_context_is_restricted() -> None:
    assert the_container(render())["securityContext"] == RESTRICTED_CONTAINER


def test_container_security_context_keeps_the_tasks_read_only_root_but_stays_restricted() -> None:
    spec = task_spec(container_fields={"securityContext": {"readOnlyRootFilesystem": True}})
    assert the_container(render(spec))["securityContext"] == {**RESTRICTED_CONTAINER, "readOnlyRootFilesystem": True}


def test_pod_security_context_is_non_root_with_runtime_default_seccomp() -> None:
    assert render()["spec"]["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def test_pod_security_context_keeps_the_users_and_groups_the_task_chose() -> None:
    spec = task_spec(pod_spec={"securityContext": {"runAsUser": 65532, "runAsGroup": 65533, "fsGroup": 2000}})
    assert render(spec)["spec"]["securityContext"] == {
        "runAsUser": 65532,
        "runAsGroup": 65533,
        "fsGroup": 2000,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


@pytest.mark.parametrize(
    ("where", "field", "value"),
    [
        ("container", "privileged", True),
        ("container", "allowPrivilegeEscalation", True),
        ("container", "capabilities", {"add": ["NET_ADMIN"]}),
        ("container", "runAsNonRoot", False),
        ("container", "runAsUser", 0),
        ("pod", "runAsNonRoot", False),
        ("pod", "runAsUser", 0),
        ("pod", "seccompProfile", {"type": "Unconfined"}),
    ],
)
def test_a_template_cannot_loosen_the_restricted_security_context(where: str, field: str, value: object) -> None:
    context = {"securityContext": {field: value}}
    with pytest.raises(ValidationError):
        if where == "container":
            task_spec(container_fields=context)
        else:
            task_spec(pod_spec=context)


@pytest.mark.parametrize("field", ["restartPolicy", "hostNetwork", "hostPID", "enableServiceLinks", "initContainers"])
def test_a_template_cannot_set_what_cairn_owns_on_the_pod(field: str) -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        task_spec(pod_spec={field: True})


def test_service_account_token_is_not_mounted_by_default() -> None:
    assert render()["spec"]["automountServiceAccountToken"] is False


def test_service_account_token_is_mounted_when_the_template_asks() -> None:
    spec = task_spec(pod_spec={"serviceAccountName": "uploader", "automountServiceAccountToken": True})
    pod_spec = render(spec)["spec"]
    assert pod_spec["automountServiceAccountToken"] is True
    assert pod_spec["serviceAccountName"] == "uploader"


def test_service_links_are_off() -> None:
    assert render()["spec"]["enableServiceLinks"] is False


def test_the_tasks_environment_comes_first_and_cairns_last_so_that_cairns_wins() -> None:
    spec = task_spec(
        container_fields={
            "env": [
                {"name": "LOG_LEVEL", "value": "debug"},
                {"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "api-key"}}},
            ]
        }
    )
    env = the_container(render(spec, attempt=4))["env"]
    # Kubernetes keeps the last of duplicate names: Cairn's variables come last so they always win.
    assert env == [
        {"name": "LOG_LEVEL", "value": "debug"},
        {"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "api-key"}}},
        {"name": "CAIRN_API_URL", "value": RUNTIME.api_url},
        {"name": "CAIRN_NAMESPACE", "value": NAMESPACE},
        {"name": "CAIRN_RUN", "value": "video-42"},
        {"name": "CAIRN_RUN_UID", "value": RUN_UID},
        {"name": "CAIRN_TASK", "value": "transcode"},
        {"name": "CAIRN_ATTEMPT", "value": "4"},
        {"name": "CAIRN_TOKEN_FILE", "value": TOKEN_FILE},
    ]


def test_run_token_is_a_projected_service_account_token_with_cairns_audience() -> None:
    pod = render()
    assert pod["spec"]["volumes"] == [
        {
            "name": TOKEN_VOLUME,
            "projected": {
                "sources": [
                    {"serviceAccountToken": {"audience": "cairn.dev", "expirationSeconds": 3600, "path": "token"}}
                ]
            },
        }
    ]
    assert the_container(pod)["volumeMounts"] == [{"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True}]
    assert f"{TOKEN_DIR}/token" == TOKEN_FILE


def test_run_token_volume_is_added_after_the_tasks_volumes() -> None:
    spec = task_spec(
        pod_spec={"volumes": [{"name": "scratch", "emptyDir": {}}]},
        container_fields={"volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]},
    )
    pod = render(spec)
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["scratch", TOKEN_VOLUME]
    assert [m["name"] for m in the_container(pod)["volumeMounts"]] == ["scratch", TOKEN_VOLUME]


def test_the_template_is_kept() -> None:
    spec = task_spec(
        pod_spec={"nodeSelector": {"gpu": "true"}, "priorityClassName": "batch", "terminationGracePeriodSeconds": 5},
        container_fields={"command": ["python", "-m", "transcode"], "args": ["--fast"], "imagePullPolicy": "Never"},
    )
    pod = render(spec)
    c = the_container(pod)
    assert (c["name"], c["image"], c["command"], c["args"], c["imagePullPolicy"]) == (
        "task",
        IMAGE,
        ["python", "-m", "transcode"],
        ["--fast"],
        "Never",
    )
    assert pod["spec"]["nodeSelector"] == {"gpu": "true"}
    assert pod["spec"]["priorityClassName"] == "batch"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 5


def test_termination_message_falls_back_to_the_log() -> None:
    assert the_container(render())["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_active_deadline_comes_from_attempt_timeout() -> None:
    assert render(task_spec(attemptTimeout="1h30m"))["spec"]["activeDeadlineSeconds"] == 5400


def test_active_deadline_below_a_second_is_one_second() -> None:
    assert render(task_spec(attemptTimeout="500ms"))["spec"]["activeDeadlineSeconds"] == 1


def test_no_attempt_timeout_means_no_active_deadline() -> None:
    assert "activeDeadlineSeconds" not in render()["spec"]


def test_rendering_does_not_change_the_task_spec() -> None:
    spec = task_spec(
        container_fields={"env": [{"name": "A", "value": "1"}], "memory": "1Gi", "memory_request": "512Mi"}
    )
    before = spec.wire()
    render(spec, memory_limit_bytes=2 * GiB)
    assert spec.wire() == before


# -- memory ----------------------------------------------------------------------------------------
def test_resources_are_the_templates_without_an_override() -> None:
    spec = task_spec(container_fields={"memory": "1Gi", "memory_request": "512Mi", "cpu": "250m"})
    assert the_container(render(spec))["resources"] == {
        "limits": {"memory": "1Gi"},
        "requests": {"memory": "512Mi", "cpu": "250m"},
    }


def test_memory_override_sets_the_limit_and_raises_the_request_in_proportion() -> None:
    spec = task_spec(container_fields={"memory": "1Gi", "memory_request": "512Mi", "cpu": "250m"})
    resources = the_container(render(spec, memory_limit_bytes=2 * GiB))["resources"]
    assert resources == {"limits": {"memory": "2Gi"}, "requests": {"memory": "1Gi", "cpu": "250m"}}


def test_memory_override_keeps_the_request_at_most_the_limit() -> None:
    spec = task_spec(container_fields={"memory": "1Gi", "memory_request": "1Gi"})
    resources = the_container(render(spec, memory_limit_bytes=3 * GiB))["resources"]
    assert to_bytes(resources["requests"]["memory"]) == 3 * GiB
    assert to_bytes(resources["limits"]["memory"]) == 3 * GiB


def test_memory_override_of_an_uneven_size_is_rounded_up_to_mebibytes() -> None:
    spec = task_spec(container_fields={"memory": "300Mi", "memory_request": "100Mi"})
    resources = the_container(render(spec, memory_limit_bytes=int(300 * MiB * 1.5)))["resources"]
    assert resources["limits"]["memory"] == "450Mi"
    assert resources["requests"]["memory"] == "150Mi"


def test_memory_override_without_a_template_limit_sets_the_limit_and_leaves_the_request() -> None:
    spec = task_spec(container_fields={"memory_request": "256Mi"})
    resources = the_container(render(spec, memory_limit_bytes=GiB))["resources"]
    assert resources == {"limits": {"memory": "1Gi"}, "requests": {"memory": "256Mi"}}


def test_memory_override_without_template_resources_adds_a_limit() -> None:
    assert the_container(render(memory_limit_bytes=GiB))["resources"] == {"limits": {"memory": "1Gi"}}


def test_memory_limit_of_a_task_reads_its_containers_limit_in_bytes() -> None:
    assert memory_limit(task_spec(container_fields={"memory": "512Mi"})) == 512 * MiB
    assert memory_limit(task_spec(container_fields={"memory_request": "512Mi"})) is None
    assert memory_limit(task_spec()) is None


def test_memory_override_never_sets_a_request_above_the_new_limit() -> None:
    # A template whose request exceeds its limit (the API server would refuse it) still renders a pod
    # whose request fits under the raised limit.
    spec = task_spec(container_fields={"memory": "1Gi", "memory_request": "2Gi"})
    resources = the_container(render(spec, memory_limit_bytes=2 * GiB))["resources"]
    assert resources == {"limits": {"memory": "2Gi"}, "requests": {"memory": "2Gi"}}


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=1, max_value=64 * 1024),
    st.integers(min_value=1, max_value=64 * 1024),
    st.integers(min_value=1, max_value=256 * 1024),
)
def test_memory_override_keeps_the_request_in_proportion_and_under_the_limit(
    limit_mi: int, request_mi: int, new_limit_mi: int
) -> None:
    request_mi = min(request_mi, limit_mi)
    spec = task_spec(container_fields={"memory": f"{limit_mi}Mi", "memory_request": f"{request_mi}Mi"})
    resources = the_container(render(spec, memory_limit_bytes=new_limit_mi * MiB))["resources"]
    new_limit = to_bytes(resources["limits"]["memory"])
    new_request = to_bytes(resources["requests"]["memory"])
    assert new_limit == new_limit_mi * MiB
    assert new_request <= new_limit
    exact = request_mi * MiB * new_limit_mi // limit_mi  # bytes, before rounding up to Mi
    assert exact <= new_request < exact + MiB


def test_a_task_in_a_kueue_local_queue_puts_its_pods_there_with_its_priority_class() -> None:
    labels = render(task_spec(kueue={"localQueue": "team-a", "priorityClass": "batch-low"}))["metadata"]["labels"]
    assert labels[naming.KUEUE_QUEUE_LABEL] == "team-a" and labels[naming.KUEUE_PRIORITY_LABEL] == "batch-low"
    plain = render(task_spec(kueue={"localQueue": "team-a"}))["metadata"]["labels"]
    assert plain[naming.KUEUE_QUEUE_LABEL] == "team-a" and naming.KUEUE_PRIORITY_LABEL not in plain
    assert naming.KUEUE_QUEUE_LABEL not in render()["metadata"]["labels"]


@pytest.mark.parametrize("bad", [{"localQueue": "Team_A"}, {"localQueue": ""}, {}, {"localQueue": "a", "x": 1}])
def test_a_kueue_local_queue_that_is_not_a_name_is_refused_naming_the_field(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as caught:
        task_spec(kueue=bad)
    assert "kueue" in str(caught.value)
