"""Performance figures from an equity curve and a list of fills. Pure functions, no I/O."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from quantzoo_engine.orders import Fill

TRADING_DAYS_PER_YEAR = 252


@dataclass(frozen=True, slots=True)
class Trade:
    """A round trip: from flat (or a reversal) to flat (or the next reversal) in one symbol."""

    symbol: str
    side: str  # long | short
    quantity: float
    entry_time: datetime
    entry_price: float
    exit_time: datetime | None
    exit_price: float | None
    pnl: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def trades_from_fills(fills: Sequence[Fill]) -> list[Trade]:
    """Round trips by symbol, average-price accounting; a position still open is a trade with no exit."""
    out: list[Trade] = []
    state: dict[str, tuple[float, float, datetime]] = {}  # symbol -> (position, avg price, entry time)
    for f in fills:
        pos, avg, since = state.get(f.symbol, (0.0, 0.0, f.at))
        qty = f.signed_quantity
        if pos == 0 or (pos > 0) == (qty > 0):
            new = pos + qty
            avg = (avg * abs(pos) + f.price * abs(qty)) / abs(new)
            state[f.symbol] = (new, avg, since if pos else f.at)
            continue
        closed = min(abs(qty), abs(pos))
        sign = 1.0 if pos > 0 else -1.0
        if closed >= abs(pos) - 1e-9:
            out.append(
                Trade(
                    f.symbol,
                    "long" if pos > 0 else "short",
                    abs(pos),
                    since,
                    avg,
                    f.at,
                    f.price,
                    round(sign * abs(pos) * (f.price - avg), 6),
                )
            )
        rest = pos + qty
        if abs(rest) < 1e-9:
            state[f.symbol] = (0.0, 0.0, f.at)
        elif (rest > 0) == (pos > 0):
            state[f.symbol] = (rest, avg, since)  # partly reduced: still the same trade
        else:
            state[f.symbol] = (rest, f.price, f.at)  # reversed: a new trade from this fill
    for symbol, (pos, avg, since) in state.items():
        if pos:
            out.append(Trade(symbol, "long" if pos > 0 else "short", abs(pos), since, avg, None, None, None))
    return out


def max_drawdown_pct(equity: Sequence[float]) -> float:
    peak, worst = -math.inf, 0.0
    for value in equity:
        peak = max(peak, value)
        if peak > 0:
            worst = max(worst, (peak - value) / peak)
    return 100.0 * worst


def returns(values: Sequence[float]) -> list[float]:
    return [b / a - 1.0 for a, b in itertools.pairwise(values) if a]


def sharpe(period_returns: Sequence[float], periods_per_year: float) -> float | None:
    """Annualised, risk-free rate 0; None with fewer than two returns or no variation."""
    if len(period_returns) < 2:
        return None
    sd = statistics.stdev(period_returns)
    if sd == 0:
        return None
    return statistics.fmean(period_returns) / sd * math.sqrt(periods_per_year)


def daily_closes(times: Sequence[datetime], equity: Sequence[float]) -> list[float]:
    """The last equity of each UTC date."""
    out: dict[object, float] = {}
    for t, e in zip(times, equity, strict=True):
        out[t.date()] = e
    return list(out.values())
