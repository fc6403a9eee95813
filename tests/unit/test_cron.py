"""Fire times of cron expressions in time zones: DST in three zones, leap days, ends of months, macros,
several expressions; and, in UTC, the same times as a second cron library (croniter, tests only)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.api.cron import check_cron
from cairn.domain.cron import Cron, between, fire_times, next_after


def times(expressions: list[str], zone: str, after: datetime, until: datetime) -> list[str]:
    due, more = between([Cron(e) for e in expressions], ZoneInfo(zone), after, until, 1000)
    assert not more
    return [t.astimezone(ZoneInfo(zone)).isoformat() for t in due]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "day"),
    [("Europe/Berlin", (2026, 3, 29)), ("America/New_York", (2026, 3, 8)), ("Australia/Sydney", (2026, 10, 4))],
)
def test_a_time_skipped_by_the_clock_moving_forward_fires_once_at_the_first_instant_after_the_gap(
    zone: str, day: tuple[int, int, int]
) -> None:
    tz = ZoneInfo(zone)
    start = datetime(*day, 0, 0, tzinfo=tz) - timedelta(days=1)
    got = times(["30 2 * * *"], zone, start, start + timedelta(days=3))
    assert got[1] == datetime(*day, 3, 0, tzinfo=tz).isoformat()  # 02:30 did not exist that night
    assert [g[11:16] for g in got] == ["02:30", "03:00", "02:30"]


@pytest.mark.parametrize(
    ("zone", "day"),
    [("Europe/Berlin", (2026, 10, 25)), ("America/New_York", (2026, 11, 1)), ("Australia/Sydney", (2026, 4, 5))],
)
def test_a_fixed_time_repeated_by_the_clock_moving_back_fires_once(zone: str, day: tuple[int, int, int]) -> None:
    tz = ZoneInfo(zone)
    hour = 2 if zone != "America/New_York" else 1
    start = datetime(*day, 0, 0, tzinfo=tz)
    got = times([f"*/15 {hour} * * *"], zone, start, start + timedelta(hours=23))
    assert [g[11:16] for g in got] == [f"0{hour}:00", f"0{hour}:15", f"0{hour}:30", f"0{hour}:45"]


def test_an_every_hour_schedule_fires_on_both_occurrences_of_a_repeated_hour() -> None:
    start = datetime(2026, 11, 1, 0, 30, tzinfo=ZoneInfo("America/New_York"))
    got = times(["0 * * * *"], "America/New_York", start, start + timedelta(hours=2))  # to 02:30 EST
    assert got == ["2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T02:00:00-05:00"]


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 0 29 2 *", utc(2026, 1, 1), "2028-02-29T00:00:00+00:00"),
        ("0 0 L * *", utc(2026, 2, 1), "2026-02-28T00:00:00+00:00"),
        ("0 0 L * *", utc(2026, 3, 1), "2026-03-31T00:00:00+00:00"),
        ("0 0 31 * *", utc(2026, 4, 1), "2026-05-31T00:00:00+00:00"),
        ("@yearly", utc(2026, 6, 1), "2027-01-01T00:00:00+00:00"),
        ("@monthly", utc(2026, 6, 15), "2026-07-01T00:00:00+00:00"),
        ("@weekly", utc(2026, 12, 1), "2026-12-06T00:00:00+00:00"),
        ("@hourly", utc(2026, 12, 1, 5, 30), "2026-12-01T06:00:00+00:00"),
        ("*/10 * * * * *", utc(2026, 12, 1, 5, 30, 1), "2026-12-01T05:30:10+00:00"),
        ("0 9 * * MON-FRI", utc(2026, 12, 5), "2026-12-07T09:00:00+00:00"),
    ],
)
def test_the_next_fire_time_of_macros_leap_days_ends_of_months_and_seconds(
    expression: str, after: datetime, expected: str
) -> None:
    t = next_after([Cron(expression)], ZoneInfo("UTC"), after)
    assert t is not None and t.isoformat() == expected


def test_several_expressions_fire_at_the_union_of_their_times_a_shared_time_once() -> None:
    got = times(["0 * * * *", "0 */2 * * *", "30 3 * * *"], "UTC", utc(2026, 1, 1), utc(2026, 1, 1, 4))
    assert [g[11:16] for g in got] == ["01:00", "02:00", "03:00", "03:30", "04:00"]


def test_between_stops_at_its_limit_and_says_there_are_more() -> None:
    due, more = between([Cron("* * * * *")], ZoneInfo("UTC"), utc(2026, 1, 1), utc(2026, 1, 2), 10)
    assert (len(due), more) == (10, True)
    assert due[0] == utc(2026, 1, 1, 0, 1)


@pytest.mark.parametrize("bad", ["61 * * * *", "* * * *", "0 0 31 2 *", "@every 5m", "0 0 * * 8", "a b c d e"])
def test_what_is_not_a_cron_expression_is_refused_with_a_reason(bad: str) -> None:
    with pytest.raises(ValueError, match=r"cron expression|Bad"):
        check_cron(bad)


FIELD = st.one_of(
    st.just("*"),
    st.integers(0, 5).map(lambda n: f"*/{n + 2}"),
    st.lists(st.integers(0, 23), min_size=1, max_size=3, unique=True).map(lambda v: ",".join(map(str, sorted(v)))),
)


@settings(max_examples=150, deadline=None)
@given(
    minute=FIELD,
    hour=FIELD,
    dow=st.sampled_from(["*", "1-5", "0,6", "3"]),
    start=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 1, 1)),
)
def test_in_utc_the_fire_times_are_the_reference_librarys(minute: str, hour: str, dow: str, start: datetime) -> None:
    expression = f"{minute} {hour} * * {dow}"
    start = start.replace(tzinfo=UTC, microsecond=0)
    ours = [t for _, t in zip(range(12), fire_times([Cron(expression)], ZoneInfo("UTC"), start), strict=False)]
    ref = croniter(expression, start)
    assert ours == [ref.get_next(datetime) for _ in range(12)]
