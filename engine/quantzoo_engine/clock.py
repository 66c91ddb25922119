"""Time, injected: tests and the benchmark drive a manual clock instead of sleeping."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (staleness, rate limits, deadlines)."""
        ...

    def now(self) -> datetime:
        """Wall-clock time in UTC (what people read: last_update, heartbeat_at)."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._wall = start or datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
        self._mono = 1_000.0

    def monotonic(self) -> float:
        return self._mono

    def now(self) -> datetime:
        return self._wall

    def advance(self, seconds: float) -> None:
        self._mono += seconds
        self._wall += timedelta(seconds=seconds)

    def advance_to(self, when: datetime) -> None:
        """Move to `when` (the backtester's simulated clock follows the bars); never backwards."""
        delta = (when - self._wall).total_seconds()
        if delta > 0:
            self._mono += delta
            self._wall = when
