"""Reading an attempt's pod as the API server reports it, and classifying how the attempt ended."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from cairn.domain import naming
from cairn.domain.termination import MESSAGE_MAX, Outcome, PodView, StillRunning, Termination, classify, missing
from tests.unit.builders import T0, condition, pod_json, terminated

START_TIMEOUT = timedelta(minutes=5)
SCHEDULED = frozenset({("PodScheduled", "True"), ("Initialized", "True")})  # pod_json's default conditions

# A pod killed for exceeding its memory limit, as `kubectl get pod -o json` printed it (trimmed of
# managedFields), from a kubelet v1.33.
OOM_POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "creationTimestamp": "2026-03-01T12:00:00Z",
        "labels": {
            "app.kubernetes.io/managed-by": "cairn",
            "cairn.dev/attempt": "2",
            "cairn.dev/run": "video-42",
            "cairn.dev/run-uid": "5f0c6a2e-9d1b-4c53-8e6a-3f7b2d1c0a99",
            "cairn.dev/task": "transcode",
        },
        "name": "video-42-2",
        "namespace": "media",
        "ownerReferences": [
            {
                "apiVersion": "cairn.dev/v1alpha1",
                "blockOwnerDeletion": True,
                "controller": True,
                "kind": "TaskRun",
                "name": "video-42",
                "uid": "5f0c6a2e-9d1b-4c53-8e6a-3f7b2d1c0a99",
            }
        ],
        "resourceVersion": "48213",
        "uid": "c1d2e3f4-0000-4000-8000-000000000002",
    },
    "spec": {
        "automountServiceAccountToken": False,
        "containers": [
            {
                "env": [{"name": "CAIRN_ATTEMPT", "value": "2"}],
                "image": "registry.example/tasks/transcode:1.4.2",
                "imagePullPolicy": "IfNotPresent",
                "name": "task",
                "resources": {"limits": {"memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                    "runAsNonRoot": True,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }
        ],
        "dnsPolicy": "ClusterFirst",
        "enableServiceLinks": False,
        "nodeName": "worker-b",
        "preemptionPolicy": "PreemptLowerPriority",
        "priority": 0,
        "restartPolicy": "Never",
        "schedulerName": "default-scheduler",
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "serviceAccountName": "default",
        "terminationGracePeriodSeconds": 30,
        "tolerations": [
            {
                "effect": "NoExecute",
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "tolerationSeconds": 300,
            }
        ],
    },
    "status": {
        "conditions": [
            {
                "lastProbeTime": None,
                "lastTransitionTime": "2026-03-01T12:00:09Z",
                "status": "False",
                "type": "PodReadyToStartContainers",
            },
            {
                "lastProbeTime": None,
                "lastTransitionTime": "2026-03-01T12:00:00Z",
                "status": "True",
                "type": "Initialized",
            },
            {
                "lastProbeTime": None,
                "lastTransitionTime": "2026-03-01T12:00:08Z",
                "reason": "PodFailed",
                "status": "False",
                "type": "Ready",
            },
            {
                "lastProbeTime": None,
                "lastTransitionTime": "2026-03-01T12:00:08Z",
                "reason": "PodFailed",
                "status": "False",
                "type": "ContainersReady",
            },
            {
                "lastProbeTime": None,
                "lastTransitionTime": "2026-03-01T12:00:00Z",
                "status": "True",
                "type": "PodScheduled",
            },
        ],
        "containerStatuses": [
            {
                "containerID": "containerd://9b1f0c",
                "image": "registry.example/tasks/transcode:1.4.2",
                "imageID": "registry.example/tasks/transcode@sha256:5d41402abc4b2a76b9719d911017c592",
                "lastState": {},
                "name": "task",
                "ready": False,
                "restartCount": 0,
                "started": False,
                "state": {
                    "terminated": {
                        "containerID": "containerd://9b1f0c",
                        "exitCode": 137,
                        "finishedAt": "2026-03-01T12:00:07Z",
                        "message": "step transcode#0: decoding 4K frames\nKilled\n",
                        "reason": "OOMKilled",
                        "startedAt": "2026-03-01T12:00:01Z",
                    }
                },
                "volumeMounts": [
                    {
                        "mountPath": "/var/run/secrets/cairn.dev",
                        "name": "cairn-token",
                        "readOnly": True,
                        "recursiveReadOnly": "Disabled",
                    }
                ],
            }
        ],
        "hostIP": "10.88.0.3",
        "hostIPs": [{"ip": "10.88.0.3"}],
        "phase": "Failed",
        "podIP": "10.244.2.11",
        "podIPs": [{"ip": "10.244.2.11"}],
        "qosClass": "Burstable",
        "startTime": "2026-03-01T12:00:00Z",
    },
}


def classify_json(body: dict[str, Any], *, now_after: timedelta = timedelta(seconds=10)) -> Termination | StillRunning:
    return classify(PodView.parse(body, 1), now=T0 + now_after, started=T0, start_timeout=START_TIMEOUT)


# -- PodView.parse ---------------------------------------------------------------------------------
def test_parse_reads_a_real_oom_killed_pod() -> None:
    view = PodView.parse(OOM_POD, 2)
    assert view.name == "video-42-2"
    assert view.attempt == 2
    assert view.phase == "Failed"
    assert view.uid == "c1d2e3f4-0000-4000-8000-000000000002"
    assert view.node == "worker-b"
    assert view.deleting is False
    assert view.created == T0
    assert view.memory_limit == "256Mi"
    assert view.terminated is not None
    assert view.terminated["exitCode"] == 137
    assert view.conditions["Ready"] == ("False", "PodFailed")
    assert view.conditions["PodScheduled"] == ("True", None)
    assert view.disruption is None


def test_classify_reads_the_oom_kill_of_a_real_pod() -> None:
    outcome = classify(
        PodView.parse(OOM_POD, 2), now=T0 + timedelta(seconds=9), started=T0, start_timeout=START_TIMEOUT
    )
    assert isinstance(outcome, Termination)
    assert outcome.outcome is Outcome.OOM_KILLED
    assert outcome.reason == "OOMKilled"
    assert outcome.exit_code == 137
    assert outcome.message == "Killed"
    assert outcome.finished_at == T0 + timedelta(seconds=7)
    assert ("PodScheduled", "True") in outcome.conditions


def test_parse_of_a_pod_just_created_has_no_status_yet() -> None:
    view = PodView.parse({"metadata": {"name": "video-42-1"}, "spec": {"containers": [{"name": "task"}]}}, 1)
    assert view.phase == "Pending"
    assert view.node is None
    assert view.created is None
    assert view.terminated is None
    assert view.waiting_reason is None
    assert view.memory_limit is None


def test_parse_tolerates_a_null_status() -> None:
    view = PodView.parse({"metadata": {"name": "p"}, "spec": {}, "status": None}, 1)
    assert view.phase == "Pending"
    assert view.conditions == {}


def test_parse_marks_a_pod_with_a_deletion_timestamp_as_deleting() -> None:
    assert PodView.parse(pod_json(deleting=T0), 1).deleting is True


def test_parse_reads_a_numeric_memory_limit_as_text() -> None:
    body = pod_json()
    body["spec"]["containers"][0]["resources"]["limits"]["memory"] = 268435456
    assert PodView.parse(body, 1).memory_limit == "268435456"


def test_parse_reads_the_waiting_reason_and_message() -> None:
    body = pod_json(phase="Pending", waiting={"reason": "ImagePullBackOff", "message": 'Back-off pulling image "x"'})
    view = PodView.parse(body, 1)
    assert view.waiting_reason == "ImagePullBackOff"
    assert view.waiting_message == 'Back-off pulling image "x"'


# -- classify: finished pods -----------------------------------------------------------------------
def test_classify_succeeded_pod_is_succeeded_with_exit_code_zero() -> None:
    body = pod_json(phase="Succeeded", terminated=terminated(0, "Completed", message='{"frames": 1200}\n'))
    outcome = classify_json(body)
    assert isinstance(outcome, Termination)
    assert (outcome.outcome, outcome.reason, outcome.exit_code) == (Outcome.SUCCEEDED, "Completed", 0)
    assert outcome.message == '{"frames": 1200}'


def test_classify_failed_pod_reports_its_exit_code_and_container_reason() -> None:
    finished = T0 + timedelta(seconds=4)
    body = pod_json(
        phase="Failed",
        terminated=terminated(3, "Error", message="Traceback...\nValueError: bad frame", finished=finished),
    )
    outcome = classify_json(body)
    assert outcome == Termination(
        Outcome.FAILED,
        "Error",
        3,
        "ValueError: bad frame",
        frozenset({("PodScheduled", "True"), ("Initialized", "True")}),
        finished,
    )


def test_classify_failed_pod_without_a_container_reason_says_error() -> None:
    body = pod_json(phase="Failed", terminated={"exitCode": 2})
    outcome = classify_json(body)
    assert isinstance(outcome, Termination)
    assert (outcome.outcome, outcome.reason, outcome.exit_code) == (Outcome.FAILED, "Error", 2)


def test_classify_failed_pod_falls_back_to_the_pod_message() -> None:
    body = pod_json(
        phase="Failed",
        terminated=terminated(1),
        message="Pod was rejected: something\nNode didn't have enough resource",
    )
    outcome = classify_json(body)
    assert isinstance(outcome, Termination)
    assert outcome.message == "Node didn't have enough resource"


def test_classify_oom_killed_without_message_names_the_memory_limit() -> None:
    body = pod_json(phase="Failed", terminated=terminated(137, "OOMKilled"), memory_limit="256Mi")
    outcome = classify_json(body)
    assert isinstance(outcome, Termination)
    assert outcome.outcome is Outcome.OOM_KILLED
    assert outcome.message == "the container exceeded its memory limit (256Mi)"


def test_classify_deadline_exceeded_pod_is_an_attempt_timeout() -> None:
    body = pod_json(
        phase="Failed",
        reason="DeadlineExceeded",
        message="Pod was active on the node longer than the specified deadline",
        terminated=terminated(137, "Error"),
    )
    outcome = classify_json(body)
    assert isinstance(outcome, Termination)
    assert (outcome.outcome, outcome.reason, outcome.exit_code) == (Outcome.DEADLINE_EXCEEDED, "DeadlineExceeded", 137)
    assert outcome.message == "Pod was active on the node longer than the specified deadline"


def test_classify_deadline_exceeded_without_messages_explains_attempt_timeout() -> None:
    body = pod_json(phase="Failed", reason="DeadlineExceeded", container_statuses=False)
    outcome = classify_json(body)
    assert isinstance(outcome, Termination)
    assert outcome.outcome is Outcome.DEADLINE_EXCEEDED
    assert outcome.exit_code is None
    assert outcome.message == "the attempt ran longer than attemptTimeout"


def test_classify_deadline_exceeded_wins_over_an_oom_kill_at_the_same_time() -> None:
    body = pod_json(phase="Failed", reason="DeadlineExceeded", terminated=terminated(137, "OOMKilled"))
    outcome = classify_json(body)
    assert isinstance(outcome, Termination)
    assert outcome.outcome is Outcome.DEADLINE_EXCEEDED


def test_classify_evicted_pod_is_a_disruption() -> None:
    body = pod_json(
        phase="Failed",
        reason="Evicted",
        message="The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi.",
        container_statuses=False,
    )
    outcome = classify_json(body)
    assert isinstance(outcome, Termination)
    assert (outcome.outcome, outcome.reason) == (Outcome.DISRUPTED, "Evicted")
    assert outcome.message.startswith("The node was low on resource: memory")


@pytest.mark.parametrize(
    ("target_reason", "reported"),
    [
        ("PreemptionByScheduler", "Preempted"),
        ("EvictionByEvictionAPI", "Evicted"),
        ("DeletionByTaintManager", "NodeLost"),
        ("DeletionByPodGC", "NodeLost"),
        ("TerminationByKubelet", "Evicted"),
        ("SomethingNewInKubernetes1_40", "Disrupted"),
        (None, "Disrupted"),
    ],
)
def test_classify_failed_pod_with_a_disruption_target_condition_is_a_disruption(
    target_reason: str | None, reported: str
) -> None:
    conditions = [
        condition("PodScheduled"),
        condition("DisruptionTarget", "True", target_reason, "by the control plane"),
    ]
    body = pod_json(phase="Failed", conditions=conditions, terminated=terminated(143, "Error"))
    outcome = classify_json(body)
    assert isinstance(outcome, Termination)
    assert (outcome.outcome, outcome.reason, outcome.exit_code) == (Outcome.DISRUPTED, reported, 143)
    assert ("DisruptionTarget", "True") in outcome.conditions


def test_classify_ignores_a_disruption_target_condition_that_is_false() -> None:
    conditions = [condition("DisruptionTarget", "False", "PreemptionByScheduler")]
    body = pod_json(phase="Failed", conditions=conditions, terminated=terminated(1, "Error"))
    outcome = classify_json(body)
    assert isinstance(outcome, Termination)
    assert outcome.outcome is Outcome.FAILED


def test_classify_failed_pod_being_deleted_is_a_pod_deleted_disruption() -> None:
    body = pod_json(phase="Failed", deleting=T0 + timedelta(seconds=3), terminated=terminated(143, "Error"))
    outcome = classify_json(body)
    assert isinstance(outcome, Termination)
    assert (outcome.outcome, outcome.reason, outcome.exit_code) == (Outcome.DISRUPTED, "PodDeleted", 143)
    assert outcome.message == "the pod was deleted while it ran"


def test_classify_oom_kill_of_a_pod_being_deleted_is_still_an_oom_kill() -> None:
    body = pod_json(phase="Failed", deleting=T0, terminated=terminated(137, "OOMKilled"))
    outcome = classify_json(body)
    assert isinstance(outcome, Termination)
    assert outcome.outcome is Outcome.OOM_KILLED


# -- classify: pods that have not finished ---------------------------------------------------------
def test_classify_running_pod_is_still_running_with_nothing_to_recheck() -> None:
    assert classify_json(pod_json(phase="Running")) == StillRunning()


def test_classify_pending_unscheduled_pod_is_still_running() -> None:
    body = pod_json(phase="Pending", node=None, container_statuses=False)
    assert classify_json(body, now_after=timedelta(hours=1)) == StillRunning()


@pytest.mark.parametrize("waiting_reason", ["ErrImageNeverPull", "InvalidImageName"])
def test_classify_an_image_that_can_never_be_pulled_fails_the_start_at_once(waiting_reason: str) -> None:
    body = pod_json(phase="Pending", waiting={"reason": waiting_reason, "message": 'image "x:1" is not present'})
    now = T0 + timedelta(seconds=2)
    outcome = classify(PodView.parse(body, 1), now=now, started=T0, start_timeout=START_TIMEOUT)
    assert outcome == Termination(
        Outcome.START_FAILED, "ImagePullFailed", None, 'image "x:1" is not present', SCHEDULED, now
    )


def test_classify_never_pull_without_message_reports_the_waiting_reason() -> None:
    body = pod_json(phase="Pending", waiting={"reason": "ErrImageNeverPull"})
    outcome = classify_json(body)
    assert isinstance(outcome, Termination)
    assert outcome.message == "ErrImageNeverPull"


@pytest.mark.parametrize(
    ("waiting_reason", "reason"),
    [
        ("ImagePullBackOff", "ImagePullFailed"),
        ("ErrImagePull", "ImagePullFailed"),
        ("CreateContainerConfigError", "ConfigError"),
        ("CreateContainerError", "ConfigError"),
        ("RunContainerError", "ConfigError"),
    ],
)
def test_classify_a_start_that_may_recover_waits_until_start_timeout_then_fails(
    waiting_reason: str, reason: str
) -> None:
    body = pod_json(phase="Pending", waiting={"reason": waiting_reason, "message": 'secret "api-key" not found'})
    pod = PodView.parse(body, 1)
    started = T0
    before = classify(pod, now=started + timedelta(minutes=4, seconds=59), started=started, start_timeout=START_TIMEOUT)
    assert before == StillRunning(recheck_at=started + START_TIMEOUT, stuck_on=waiting_reason)

    at = classify(pod, now=started + START_TIMEOUT, started=started, start_timeout=START_TIMEOUT)
    assert isinstance(at, Termination)
    assert (at.outcome, at.reason, at.exit_code) == (Outcome.START_FAILED, reason, None)
    assert at.message == f'{waiting_reason} for longer than startTimeout: secret "api-key" not found'
    assert at.finished_at == started + START_TIMEOUT


def test_classify_running_pod_on_a_lost_node_being_deleted_is_node_lost() -> None:
    conditions = [
        condition("Ready", "Unknown", "NodeLost"),
        condition("DisruptionTarget", "True", "DeletionByTaintManager"),
    ]
    body = pod_json(phase="Running", deleting=T0, conditions=conditions)
    now = T0 + timedelta(minutes=6)
    outcome = classify(PodView.parse(body, 1), now=now, started=T0, start_timeout=START_TIMEOUT)
    assert isinstance(outcome, Termination)
    assert (outcome.outcome, outcome.reason, outcome.exit_code) == (Outcome.DISRUPTED, "NodeLost", None)
    assert outcome.finished_at == now


def test_classify_running_pod_being_preempted_waits_for_it_to_stop() -> None:
    conditions = [condition("DisruptionTarget", "True", "PreemptionByScheduler")]
    body = pod_json(phase="Running", deleting=T0, conditions=conditions)
    assert classify_json(body) == StillRunning()


def test_classify_running_pod_being_deleted_without_node_loss_waits_for_it_to_stop() -> None:
    assert classify_json(pod_json(phase="Running", deleting=T0)) == StillRunning()


# -- messages --------------------------------------------------------------------------------------
def test_termination_message_keeps_the_last_non_empty_line_only() -> None:
    message = "starting\n  step fetch#0 done  \n\nerror: upstream returned 503\n\n   \n"
    body = pod_json(phase="Failed", terminated=terminated(1, message=message))
    outcome = classify_json(body)
    assert isinstance(outcome, Termination)
    assert outcome.message == "error: upstream returned 503"


def test_termination_message_of_a_long_line_keeps_its_end() -> None:
    line = "x" * 1000 + "THE END"
    body = pod_json(phase="Failed", terminated=terminated(1, message=line))
    outcome = classify_json(body)
    assert isinstance(outcome, Termination)
    assert len(outcome.message) == MESSAGE_MAX
    assert outcome.message.endswith("THE END")


def test_termination_message_of_blank_lines_is_empty() -> None:
    body = pod_json(phase="Failed", terminated=terminated(1, message="\n  \n\t\n"))
    outcome = classify_json(body)
    assert isinstance(outcome, Termination)
    assert outcome.message == ""


def test_missing_pod_is_a_pod_deleted_disruption_at_now() -> None:
    now = T0 + timedelta(minutes=1)
    assert missing(now) == Termination(
        Outcome.DISRUPTED, "PodDeleted", None, "the pod was deleted before it finished", frozenset(), now
    )


def test_classify_a_pod_no_node_can_take_says_the_schedulers_reason_then_fails_at_start_timeout() -> None:
    message = "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims."
    body = pod_json(phase="Pending", conditions=[condition("PodScheduled", "False", "Unschedulable", message)])
    pod = PodView.parse(body, 1)
    assert pod.unschedulable == message
    before = classify(pod, now=T0 + timedelta(minutes=1), started=T0, start_timeout=START_TIMEOUT)
    assert before == StillRunning(recheck_at=T0 + START_TIMEOUT, stuck_on="Unschedulable", detail=message)

    at = classify(pod, now=T0 + START_TIMEOUT, started=T0, start_timeout=START_TIMEOUT)
    assert isinstance(at, Termination)
    assert (at.outcome, at.reason, at.exit_code) == (Outcome.START_FAILED, "Unschedulable", None)
    assert at.message == f"the pod was not scheduled for longer than startTimeout: {message}"


def test_classify_a_scheduled_pending_pod_is_still_starting_with_nothing_to_report() -> None:
    pod = PodView.parse(pod_json(phase="Pending"), 1)
    assert pod.unschedulable is None
    assert classify(pod, now=T0, started=T0, start_timeout=START_TIMEOUT) == StillRunning()


# -- Kueue -----------------------------------------------------------------------------------------
def _gated(**kw: Any) -> dict[str, Any]:
    body = pod_json("video-42-1", phase="Pending", node=None, container_statuses=False, **kw)
    body["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] = "team-a"
    body["spec"]["schedulingGates"] = [{"name": "kueue.x-k8s.io/admission"}]
    body["status"]["conditions"] = [condition("PodScheduled", "False", "SchedulingGated")]
    return body


def test_a_pod_held_by_kueue_waits_for_quota_naming_its_workload_and_is_not_bound_by_start_timeout() -> None:
    view = PodView.parse(_gated(), 1)
    outcome = classify(view, now=T0 + 10 * START_TIMEOUT, started=T0, start_timeout=START_TIMEOUT)
    assert isinstance(outcome, StillRunning) and outcome.stuck_on == "KueueQuota"
    assert outcome.detail is not None and "LocalQueue team-a" in outcome.detail
    assert f"Workload {naming.kueue_workload_name('video-42-1', 'uid-video-42-1')}" in outcome.detail
    # Admitted: the gate is lifted, and the pod is an ordinary pod again.
    admitted = _gated()
    admitted["spec"]["schedulingGates"] = []
    assert PodView.parse(admitted, 1).kueue_queue is None


def test_kueue_names_a_pods_workload_by_kind_name_and_a_hash_of_its_uid() -> None:
    # As Kueue v0.17 names it (jobframework.GetWorkloadNameForOwnerWithGVK); tests/e2e/test_kueue.py checks
    # it against the Workload the real Kueue makes.
    name = naming.kueue_workload_name("video-42-1", "0b2c3d4e-0000-4000-8000-000000000001")
    assert name.startswith("pod-video-42-1-") and len(name) == len("pod-video-42-1-") + 5
    assert name != naming.kueue_workload_name("video-42-1", "0b2c3d4e-0000-4000-8000-000000000002")


@pytest.mark.parametrize(
    ("reason", "expected"),
    [("WorkloadEvictedDueToPreempted", "Preempted"), ("WorkloadEvictedDueToDeactivated", "EvictedByKueue")],
)
def test_a_pod_kueue_evicted_ended_as_a_disruption_not_a_failure(reason: str, expected: str) -> None:
    body = pod_json(
        phase="Failed",
        deleting=T0,
        terminated=terminated(143, "Error"),
        conditions=[condition("TerminationTarget", "True", reason)],
    )
    outcome = classify(PodView.parse(body, 1), now=T0, started=T0, start_timeout=START_TIMEOUT)
    assert isinstance(outcome, Termination)
    assert (outcome.outcome, outcome.reason) == (Outcome.DISRUPTED, expected)
