"""Trading sessions of a TradingSystem's exchange calendar: is the market open at a given instant?

Calendars come from `exchange-calendars` (XNYS, XLON, CMES, ... and "24/7"). It was chosen over
pandas-market-calendars on evidence (2026-12, Python 3.11): pandas-market-calendars depends on
exchange-calendars and wraps it for most exchanges, so it is the same data plus a layer (1.4 MB more);
import + first calendar took 0.45-0.54 s for either; both had every 2026 NYSE holiday and early close
right (Good Friday, Juneteenth, Thanksgiving, the 13:00 closes on Nov 27 and Dec 24).

The library (and pandas) is imported on first use only, and each calendar's sessions are turned once
into two sorted lists of UTC datetimes, so a lookup is a bisection: cheap enough for a backtest's
million bars.
"""

from __future__ import annotations

import bisect
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Protocol

ALWAYS_OPEN = "24/7"
HISTORY_START = "2000-01-01"  # backtests reach this far back
YEARS_AHEAD = 2


class Sessions(Protocol):
    name: str

    def is_open(self, at: datetime) -> bool: ...

    def session_open(self, at: datetime) -> datetime | None:
        """When the session that contains `at` opened (None: always open, or closed at `at`)."""
        ...

    def next_open(self, at: datetime) -> datetime | None:
        """The first session open after `at` (None when always open, or beyond the calendar's range)."""
        ...


class AlwaysOpen:
    name = ALWAYS_OPEN

    def is_open(self, at: datetime) -> bool:
        return True

    def session_open(self, at: datetime) -> datetime | None:
        return None

    def next_open(self, at: datetime) -> datetime | None:
        return None


class ExchangeSessions:
    def __init__(self, name: str, opens: list[datetime], closes: list[datetime]) -> None:
        self.name = name
        self._opens = opens
        self._closes = closes

    def _index(self, at: datetime) -> int | None:
        i = bisect.bisect_right(self._opens, at) - 1
        return i if i >= 0 and at < self._closes[i] else None

    def is_open(self, at: datetime) -> bool:
        return self._index(at) is not None

    def session_open(self, at: datetime) -> datetime | None:
        i = self._index(at)
        return None if i is None else self._opens[i]

    def next_open(self, at: datetime) -> datetime | None:
        i = bisect.bisect_right(self._opens, at)
        return self._opens[i] if i < len(self._opens) else None


class UnknownCalendar(ValueError):
    pass


@cache
def sessions_for(name: str) -> Sessions:
    """The sessions of calendar `name` (raises UnknownCalendar)."""
    if name == ALWAYS_OPEN:
        return AlwaysOpen()
    import exchange_calendars as xc  # pandas and the calendars load only when a calendar is used

    if name not in xc.get_calendar_names(include_aliases=True):
        raise UnknownCalendar(
            f"unknown calendar {name!r} (exchange-calendars codes such as XNYS, XLON; or 24/7)"
        )
    end = (datetime.now(UTC) + timedelta(days=365 * YEARS_AHEAD)).date().isoformat()
    calendar = xc.get_calendar(name, start=HISTORY_START, end=end)
    schedule = calendar.schedule
    opens = [t.to_pydatetime() for t in schedule["open"]]
    closes = [t.to_pydatetime() for t in schedule["close"]]
    return ExchangeSessions(name, opens, closes)
