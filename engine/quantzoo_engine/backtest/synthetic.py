"""Seeded synthetic bars (a geometric random walk per symbol) on a calendar's sessions, and writing bars
to CSV or Parquet: sample data for the tutorial, the tests and the benchmark."""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from quantzoo_api.sessions import sessions_for

from quantzoo_engine.feed.base import Bar

COLUMNS = ("timestamp", "symbol", "open", "high", "low", "close", "volume")


def synthetic_bars(
    bars: int,
    symbols: Sequence[str],
    *,
    start: datetime,
    seed: int = 7,
    interval_seconds: float = 60.0,
    calendar: str = "24/7",
    volatility: float = 0.001,
) -> Iterator[Bar]:
    """`bars` time steps, one bar per symbol each, only while `calendar` has the market open."""
    sessions = sessions_for(calendar)
    rng = random.Random(seed)  # noqa: S311 - seeded sample data, not security
    prices = {s: 100.0 * (1 + i) for i, s in enumerate(symbols)}
    step = timedelta(seconds=interval_seconds)
    at = start
    for _ in range(bars):
        if not sessions.is_open(at):
            nxt = sessions.next_open(at)
            if nxt is None:
                return
            at = nxt
        for symbol in symbols:
            prev = prices[symbol]
            close = prev * math.exp(rng.gauss(0.0, volatility))
            prices[symbol] = close
            hi, lo = max(prev, close), min(prev, close)
            yield Bar(symbol, at, round(prev, 4), round(hi, 4), round(lo, 4), round(close, 4), 1_000.0)
        at += step


def write_bars(bars: Sequence[Bar], path: Path) -> None:
    """CSV, or Parquet for a .parquet path."""
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = {
            "timestamp": [b.timestamp for b in bars],
            "symbol": [b.symbol for b in bars],
            "open": [b.open for b in bars],
            "high": [b.high for b in bars],
            "low": [b.low for b in bars],
            "close": [b.close for b in bars],
            "volume": [b.volume for b in bars],
        }
        pq.write_table(pa.table(columns), path)
        return
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for b in bars:
            w.writerow([b.timestamp.isoformat(), b.symbol, b.open, b.high, b.low, b.close, b.volume])
