"""Cron expressions as Schedules take them: 5 fields (minute hour day-of-month month day-of-week), or 6
with a seconds field first, or a macro (@hourly ...). Parsed and evaluated by cronsim (see README,
Dependencies); this module expands the macros, and builds the pattern the CRD checks at apply time."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from cronsim import CronSim, CronSimError

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
CRON_HELP = (
    'a cron expression: 5 fields "minute hour day-of-month month day-of-week" (e.g. "30 2 * * *"), '
    'or 6 with seconds first (e.g. "*/10 * * * * *"), or one of @yearly, @monthly, @weekly, @daily, @hourly'
)

_MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
_DAYS = "SUN|MON|TUE|WED|THU|FRI|SAT"


def _field(value: str, *extra: str) -> str:
    item = rf"([*]|({value})(-({value}))?)(/[0-9]{{1,2}})?"
    alternatives = "|".join((item, *extra))
    return rf"({alternatives})(,({alternatives}))*"


_SECOND = _field("[0-5]?[0-9]")
_MINUTE = _field("[0-5]?[0-9]")
_HOUR = _field("[01]?[0-9]|2[0-3]")
_DOM = _field("0?[1-9]|[12][0-9]|3[01]", "L", "(0?[1-9]|[12][0-9]|3[01])W")
_MONTH = _field(f"0?[1-9]|1[0-2]|{_MONTHS}")
_DOW = _field(f"[0-7]|{_DAYS}", f"([0-7]|{_DAYS})#[1-5]", f"([0-7]|{_DAYS})L")
# RE2 (CEL) and Python read this the same way.
CRON_PATTERN = (
    rf"^(?i)(@({'|'.join(m[1:] for m in MACROS)})"
    rf"|(({_SECOND}) +)?{_MINUTE} +{_HOUR} +{_DOM} +{_MONTH} +{_DOW})$"
)
_CRON = re.compile(CRON_PATTERN.replace("^(?i)", "^"), re.IGNORECASE)


def expand(expression: str) -> str:
    """The expression with a macro replaced by its fields, and names in upper case (as cronsim reads them)."""
    text = " ".join(expression.split())
    return MACROS.get(text.lower(), text.upper())


def check_cron(expression: str) -> str:
    """The expression if it is one (else ValueError saying what is wrong, as cronsim found it)."""
    if not _CRON.fullmatch(expression.strip()):
        raise ValueError(f"{expression!r} is not {CRON_HELP}")
    try:
        CronSim(expand(expression), datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as e:
        raise ValueError(f"{expression!r}: {e}") from e
    return expression
