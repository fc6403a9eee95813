"""Kubernetes conditions and timestamps as Cairn writes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.api.common import CONDITION_MESSAGE_MAX, Condition
from cairn.domain.conditions import set_condition
from cairn.domain.timefmt import format_time, parse_time
from tests.unit.builders import T0


def _admitted() -> list[Condition]:
    return set_condition(None, "Admitted", "False", "QueueFull", "why", now=T0, generation=1)


def test_set_condition_adds_a_new_condition_stamped_now() -> None:
    [c] = _admitted()
    assert c == Condition(
        type="Admitted",
        status="False",
        reason="QueueFull",
        message="why",
        last_transition_time="2026-03-01T12:00:00.000Z",
        observed_generation=1,
    )


def test_set_condition_with_nothing_new_returns_the_same_conditions() -> None:
    before = _admitted()
    after = set_condition(before, "Admitted", "False", "QueueFull", "why", now=T0 + timedelta(hours=1), generation=1)
    assert after == before


def test_set_condition_keeps_the_transition_time_when_only_the_reason_changes() -> None:
    before = _admitted()
    [c] = set_condition(before, "Admitted", "False", "KeyFull", "key", now=T0 + timedelta(minutes=3), generation=1)
    assert (c.reason, c.message, c.last_transition_time) == ("KeyFull", "key", format_time(T0))


def test_set_condition_moves_the_transition_time_when_the_status_changes() -> None:
    before = _admitted()
    later = T0 + timedelta(minutes=3)
    [c] = set_condition(before, "Admitted", "True", "Admitted", "slot", now=later, generation=1)
    assert (c.status, c.last_transition_time) == ("True", format_time(later))


def test_set_condition_leaves_other_conditions_in_place() -> None:
    conditions = set_condition(_admitted(), "Succeeded", "Unknown", "Running", "", now=T0, generation=1)
    conditions = set_condition(conditions, "Admitted", "True", "Admitted", "slot", now=T0, generation=1)
    assert [(c.type, c.status) for c in conditions] == [("Admitted", "True"), ("Succeeded", "Unknown")]


def test_set_condition_truncates_a_long_message_to_the_cap() -> None:
    [c] = set_condition(None, "Succeeded", "False", "Error", "m" * 5000, now=T0, generation=None)
    assert len(c.message) == CONDITION_MESSAGE_MAX


def test_format_time_is_rfc3339_utc_with_milliseconds() -> None:
    paris = timezone(timedelta(hours=1))
    assert format_time(datetime(2026, 11, 24, 6, 54, 4, 123456, tzinfo=paris)) == "2026-11-24T05:54:04.123Z"


def test_parse_time_reads_what_kubernetes_writes() -> None:
    assert parse_time("2026-03-01T12:00:00Z") == T0
    assert parse_time("2026-03-01T12:00:00.250Z") == T0 + timedelta(milliseconds=250)


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)))
def test_format_then_parse_loses_at_most_the_sub_millisecond_part(t: datetime) -> None:
    back = parse_time(format_time(t))
    assert timedelta(0) <= t - back < timedelta(milliseconds=1)
