"""The embedded default feed: a deterministic, seeded random walk per symbol.

Same seed, same symbols -> same bars, so tests and demos are repeatable. Tests inject trouble through
three hooks: `inject_gap` (drop bars of one symbol: missing bars), `inject_stale` (the whole feed goes
quiet: stale data), `inject_outlier` (one bad print).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from quantzoo_api.sessions import Sessions

from quantzoo_engine.feed.base import Bar

# Rough levels so the numbers on a dashboard look like the market; unknown symbols get a stable level.
REFERENCE_PRICES: dict[str, float] = {
    "AAPL": 190.0,
    "MSFT": 410.0,
    "NVDA": 120.0,
    "SPY": 560.0,
    "QQQ": 480.0,
    "GOOGL": 170.0,
    "AMZN": 185.0,
    "META": 560.0,
    "TSLA": 250.0,
}


class _RandomWalk:
    """Geometric random walk with a weak pull back to its reference level (keeps long runs sane)."""

    def __init__(self, symbol: str, seed: int, volatility: float) -> None:
        # Seeding with a string is deterministic across processes (no hash randomisation involved).
        # Not for cryptography: this is simulated market data.
        self._rng = random.Random(f"{seed}:{symbol}")  # noqa: S311
        self.symbol = symbol
        self.reference = REFERENCE_PRICES.get(symbol, 20.0 + self._rng.random() * 480.0)
        self.price = self.reference
        self.volatility = volatility

    def step(self, timestamp: datetime) -> Bar:
        rng = self._rng
        pull = -0.002 * math.log(self.price / self.reference)
        open_ = self.price
        close = open_ * math.exp(pull + self.volatility * rng.gauss(0.0, 1.0))
        wiggle = self.volatility * 0.5
        high = max(open_, close) * (1.0 + abs(rng.gauss(0.0, wiggle)))
        low = min(open_, close) * (1.0 - abs(rng.gauss(0.0, wiggle)))
        volume = max(100, round(rng.lognormvariate(math.log(5_000), 0.6), -2))
        self.price = close
        return Bar(
            self.symbol, timestamp, round(open_, 4), round(high, 4), round(low, 4), round(close, 4), volume
        )


class SimulatedFeed:
    def __init__(
        self,
        symbols: list[str],
        seed: int = 42,
        interval_seconds: float = 1.0,
        start: datetime | None = None,
        volatility: float = 0.0015,
        sessions: Sessions | None = None,
    ) -> None:
        self.bar_interval_seconds = interval_seconds
        self._sessions = sessions
        self._seed = seed
        self._volatility = volatility
        self._start = start or datetime.now(UTC).replace(microsecond=0)
        self._tick = 0
        self._walks: dict[str, _RandomWalk] = {}
        self._gaps: dict[str, int] = {}
        self._outliers: dict[str, float] = {}
        self._stale_ticks = 0
        self._closed = False
        self._set_symbols(symbols)

    # --- test hooks ------------------------------------------------------------------------------------
    def inject_gap(self, symbol: str, bars: int = 1) -> None:
        """Drop the next `bars` bars of `symbol` (the market moves on; the engine sees missing bars)."""
        self._gaps[symbol] = self._gaps.get(symbol, 0) + bars

    def inject_stale(self, ticks: int) -> None:
        """Emit nothing for `ticks` intervals, for every symbol."""
        self._stale_ticks += ticks

    def inject_outlier(self, symbol: str, factor: float = 1.5) -> None:
        """Multiply the next close of `symbol` by `factor` (one bad print; the walk itself is unchanged)."""
        self._outliers[symbol] = factor

    # --- production --------------------------------------------------------------------------------------
    def _set_symbols(self, symbols: list[str]) -> None:
        self._walks = {
            s: self._walks.get(s) or _RandomWalk(s, self._seed, self._volatility)
            for s in dict.fromkeys(symbols)
        }

    async def set_symbols(self, symbols: list[str]) -> None:
        self._set_symbols(symbols)

    def next_bars(self) -> list[Bar]:
        """Advance one interval and return the bars that interval produced (deterministic, no sleep)."""
        self._tick += 1
        timestamp = self._start + timedelta(seconds=self._tick * self.bar_interval_seconds)
        if self._sessions is not None and not self._sessions.is_open(timestamp):
            return []  # the market is closed: no trades, no bars, prices do not move
        quiet = self._stale_ticks > 0
        if quiet:
            self._stale_ticks -= 1
        bars: list[Bar] = []
        for symbol, walk in self._walks.items():
            bar = walk.step(timestamp)  # the market moves on even when we drop the bar
            if quiet:
                continue
            if self._gaps.get(symbol):
                self._gaps[symbol] -= 1
                continue
            factor = self._outliers.pop(symbol, None)
            if factor is not None:
                close = round(bar.close * factor, 4)
                bar = replace(bar, close=close, high=max(bar.high, close), low=min(bar.low, close))
            bars.append(bar)
        return bars

    async def stream(self) -> AsyncIterator[Bar]:
        loop = asyncio.get_running_loop()
        began = loop.time()
        ticks = 0
        while not self._closed:
            for bar in self.next_bars():
                yield bar
            ticks += 1
            # Sleep to the next grid point rather than a fixed interval, so the pace does not drift.
            await asyncio.sleep(max(0.0, began + ticks * self.bar_interval_seconds - loop.time()))

    async def close(self) -> None:
        self._closed = True
