"""Names and labels of what Cairn creates: deterministic, DNS-label sized, hashed only when needed."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.domain import naming

# A Kubernetes object name (DNS subdomain, what a TaskRun may be called): up to 253 characters.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

_segments = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=40)
run_names = st.lists(_segments, min_size=1, max_size=12).map("-".join).filter(lambda s: len(s) <= 253)


def test_pod_name_of_a_short_run_is_the_run_name_and_attempt() -> None:
    assert naming.pod_name("video-42", 1) == "video-42-1"
    assert naming.pod_name("video-42", 17) == "video-42-17"


def test_pod_name_is_the_same_in_every_process() -> None:
    # A literal: an operator restarted (a new process, a new hash seed) must find the pod it made.
    long = "nightly-report-" + "x" * 100
    assert naming.pod_name(long, 3) == "nightly-report-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-d313f91d-3"
    assert naming.pod_name(long, 4) == "nightly-report-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-d313f91d-4"


def test_pod_name_of_a_run_name_that_just_fits_is_not_hashed() -> None:
    name = "a" * 61  # 61 + "-1" = 63
    assert naming.pod_name(name, 1) == name + "-1"
    assert len(naming.pod_name(name, 1)) == 63


def test_pod_name_of_a_long_run_is_shortened_with_a_hash_and_keeps_the_attempt_suffix() -> None:
    name = "a" * 62
    pod = naming.pod_name(name, 1)
    assert len(pod) == 63
    assert pod.endswith("-1")
    assert re.fullmatch(r"a{52}-[0-9a-f]{8}-1", pod)


def test_pod_names_of_long_runs_sharing_a_prefix_differ() -> None:
    prefix = "customer-onboarding-pipeline-" * 3
    assert naming.pod_name(prefix + "alpha", 1) != naming.pod_name(prefix + "beta", 1)


def test_pod_name_never_ends_its_shortened_part_with_a_dash_or_dot() -> None:
    # The cut falls right after a dash: the dash is dropped rather than doubled.
    name = "a" * 51 + "-" + "b" * 40
    pod = naming.pod_name(name, 1)
    assert "--" not in pod
    assert _DNS_LABEL.match(pod)


@settings(max_examples=200, deadline=None)
@given(run_names, st.integers(min_value=1, max_value=2000))
def test_pod_name_is_a_dns_label_of_at_most_63_characters(run_name: str, attempt: int) -> None:
    pod = naming.pod_name(run_name, attempt)
    assert len(pod) <= 63
    assert _DNS_LABEL.match(pod), pod
    assert pod.endswith(f"-{attempt}")
    assert pod == naming.pod_name(run_name, attempt)


@settings(max_examples=200, deadline=None)
@given(run_names, st.integers(min_value=1, max_value=2000))
def test_pod_name_is_unchanged_when_it_fits(run_name: str, attempt: int) -> None:
    if len(run_name) + len(f"-{attempt}") <= 63:
        assert naming.pod_name(run_name, attempt) == f"{run_name}-{attempt}"


@settings(max_examples=200, deadline=None)
@given(run_names, run_names)
def test_distinct_long_run_names_get_distinct_pod_names(a: str, b: str) -> None:
    # (two long names could collide only on a 32-bit sha256 prefix collision)
    if a != b:
        assert naming.pod_name(a, 1) != naming.pod_name(b, 1)


def test_label_value_of_a_short_value_is_the_value() -> None:
    assert naming.label_value("transcode") == "transcode"


@settings(max_examples=200, deadline=None)
@given(run_names)
def test_label_value_is_at_most_63_characters_and_a_valid_label_value(value: str) -> None:
    label = naming.label_value(value)
    assert len(label) <= 63
    assert _LABEL_VALUE.match(label), label
    if len(value) <= 63:
        assert label == value


def test_run_labels_name_the_run_its_uid_and_task_and_cairn_as_manager() -> None:
    labels = naming.run_labels("video-42", "uid-1", "transcode")
    assert labels == {
        "cairn.dev/run-uid": "uid-1",
        "cairn.dev/run": "video-42",
        "cairn.dev/task": "transcode",
        "app.kubernetes.io/managed-by": "cairn",
    }


def test_run_labels_of_a_long_run_name_fit_in_a_label_value() -> None:
    labels = naming.run_labels("r" * 200, "uid-1", "t" * 100)
    assert all(len(v) <= 63 for v in labels.values())
    assert labels[naming.LABEL_RUN] == naming.label_value("r" * 200)
