"""Seeded bars for the backtest tests, written as CSV or Parquet like a user's files."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from quantzoo_engine.backtest.synthetic import write_bars
from quantzoo_engine.feed.base import Bar

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
    write_bars(bars, path)  # the format a user's file has: the CLI's own writer
    return path


def write_parquet(bars: list[Bar], path: Path) -> Path:
    write_bars(bars, path)
    return path
