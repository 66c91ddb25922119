"""Replay feed: bars from a CSV file (`timestamp,symbol,open,high,low,close,volume`), one time step per
interval. When the file runs out the feed goes quiet, and stale data then halts new orders.
"""

from __future__ import annotations

import asyncio
import csv
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from quantzoo_engine.feed.base import Bar

REQUIRED_COLUMNS = ("timestamp", "symbol", "open", "high", "low", "close", "volume")


class ReplayError(ValueError):
    pass


def _parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def load_bars(path: Path) -> list[Bar]:
    """Read and validate the whole file up front: a bad row is a configuration error, not a halt later."""
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ReplayError(f"{path}: missing columns {', '.join(missing)}")
        bars: list[Bar] = []
        for line, row in enumerate(reader, start=2):
            try:
                bars.append(
                    Bar(
                        symbol=row["symbol"].strip().upper(),
                        timestamp=_parse_time(row["timestamp"]),
                        open=float(row["open"]),
                        high=float(row["high"]),
                        low=float(row["low"]),
                        close=float(row["close"]),
                        volume=float(row["volume"]),
                    )
                )
            except (TypeError, ValueError) as exc:
                raise ReplayError(f"{path}:{line}: {exc}") from exc
    bars.sort(key=lambda b: b.timestamp)
    return bars


def infer_bar_interval(bars: list[Bar], default: float = 60.0) -> float:
    """Spacing of the first two distinct timestamps: what one missing bar means for this file."""
    times = sorted({b.timestamp for b in bars})
    if len(times) < 2:
        return default
    return (times[1] - times[0]).total_seconds()


class ReplayFeed:
    def __init__(self, bars: list[Bar], symbols: list[str], interval_seconds: float) -> None:
        self._bars = bars
        self._symbols = set(symbols)
        self.interval_seconds = interval_seconds
        self.bar_interval_seconds = infer_bar_interval(bars)
        self._closed = False

    @classmethod
    def from_csv(cls, path: str | Path, symbols: list[str], interval_seconds: float) -> ReplayFeed:
        return cls(load_bars(Path(path)), symbols, interval_seconds)

    async def set_symbols(self, symbols: list[str]) -> None:
        self._symbols = set(symbols)

    def steps(self) -> list[list[Bar]]:
        """The file's bars grouped by timestamp, restricted to the followed symbols."""
        return [
            [b for b in group if b.symbol in self._symbols]
            for _, group in itertools.groupby(self._bars, key=lambda b: b.timestamp)
        ]

    async def stream(self) -> AsyncIterator[Bar]:
        for _, group in itertools.groupby(self._bars, key=lambda b: b.timestamp):
            if self._closed:
                return
            for bar in group:
                if bar.symbol in self._symbols:  # read each step, so a live symbol change applies
                    yield bar
            await asyncio.sleep(self.interval_seconds)

    async def close(self) -> None:
        self._closed = True
