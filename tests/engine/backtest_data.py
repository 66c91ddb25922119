"""Seeded bars for the backtest tests, written as CSV or Parquet like a user's files."""

from __future__ import annotations

import csv
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from quantzoo_engine.feed.base import Bar

COLUMNS = ["timestamp", "symbol", "open", "high", "low", "close", "volume"]
START = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def random_walk(
    n: int, symbol: str = "AAPL", seed: int = 7, step: timedelta = timedelta(minutes=1)
) -> list[Bar]:
    rng = random.Random(seed)
    price, out = 100.0, []
    for i in range(n):
        price *= 1 + rng.gauss(0, 0.002)
        p = round(price, 4)
        out.append(Bar(symbol, START + i * step, p, round(p * 1.001, 4), round(p * 0.999, 4), p, 1000.0))
    return out


def write_csv(bars: list[Bar], path: Path) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for b in bars:
            w.writerow([b.timestamp.isoformat(), b.symbol, b.open, b.high, b.low, b.close, b.volume])
    return path


def write_parquet(bars: list[Bar], path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "timestamp": [b.timestamp for b in bars],
            "symbol": [b.symbol for b in bars],
            "open": [b.open for b in bars],
            "high": [b.high for b in bars],
            "low": [b.low for b in bars],
            "close": [b.close for b in bars],
            "volume": [b.volume for b in bars],
        }
    )
    pq.write_table(table, path)
    return path
