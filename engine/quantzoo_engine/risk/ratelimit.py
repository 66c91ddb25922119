"""Sliding-window order counters for the order-rate limits (per second, per minute)."""

from __future__ import annotations

from collections import deque


class SlidingWindowCounter:
    """How many events in the last `window_seconds`; exact, O(1) amortized per call."""

    def __init__(self, window_seconds: float) -> None:
        self.window_seconds = window_seconds
        self._times: deque[float] = deque()

    def _expire(self, now: float) -> None:
        horizon = now - self.window_seconds
        times = self._times
        while times and times[0] <= horizon:
            times.popleft()

    def count(self, now: float) -> int:
        self._expire(now)
        return len(self._times)

    def record(self, now: float) -> None:
        self._times.append(now)
