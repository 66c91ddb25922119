"""Data-quality guard: staleness, missing bars and outlier prices, per symbol. Pure, no I/O.

Stale data and outliers halt new orders for the symbol (the risk checks read `is_stale` and
`suspect`); missing bars are counted. An outlier bar is refused (it does not move the last price). A
genuine jump is accepted once `confirm_bars` consecutive bars agree on the new level, so a real gap in
the market does not freeze a symbol forever.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from quantzoo_engine.feed.base import Bar

# Beyond this many missing bars the gap is a session break (overnight, weekend), not lost data.
MAX_COUNTED_GAP_BARS = 1_000


class BarVerdict(StrEnum):
    ACCEPTED = "accepted"
    OUTLIER = "outlier"
    OUT_OF_ORDER = "out_of_order"
    UNKNOWN_SYMBOL = "unknown_symbol"


@dataclass(slots=True)
class SymbolData:
    symbol: str
    last_price: float | None = None
    last_bar_time: datetime | None = None
    last_update: datetime | None = None  # wall-clock time the last accepted bar arrived
    last_update_mono: float | None = None
    bars: int = 0
    missing_bars: int = 0
    outliers: int = 0
    suspect: bool = False
    candidate_jump: list[float] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Observation:
    verdict: BarVerdict
    missing_bars: int = 0


class DataQualityGuard:
    def __init__(
        self,
        symbols: list[str],
        bar_interval_seconds: float,
        outlier_pct: float,
        started_mono: float,
        confirm_bars: int = 3,
    ) -> None:
        self.bar_interval_seconds = bar_interval_seconds
        self.outlier_pct = outlier_pct
        self.confirm_bars = confirm_bars
        self.started_mono = started_mono
        self.symbols: dict[str, SymbolData] = {s: SymbolData(s) for s in symbols}

    def set_symbols(self, symbols: list[str]) -> None:
        self.symbols = {s: self.symbols.get(s) or SymbolData(s) for s in symbols}

    def observe(self, bar: Bar, now_mono: float, now_wall: datetime) -> Observation:
        data = self.symbols.get(bar.symbol)
        if data is None:
            return Observation(BarVerdict.UNKNOWN_SYMBOL)
        missing = 0
        if data.last_bar_time is not None:
            gap = (bar.timestamp - data.last_bar_time).total_seconds()
            if gap <= 0:
                return Observation(BarVerdict.OUT_OF_ORDER)
            steps = round(gap / self.bar_interval_seconds) if self.bar_interval_seconds > 0 else 1
            if 1 < steps <= MAX_COUNTED_GAP_BARS + 1:
                missing = steps - 1
                data.missing_bars += missing
        data.last_bar_time = bar.timestamp
        if self._is_outlier(data, bar.close):
            data.outliers += 1
            data.suspect = True
            data.candidate_jump.append(bar.close)
            if not self._jump_confirmed(data):
                return Observation(BarVerdict.OUTLIER, missing)
        data.candidate_jump.clear()
        data.suspect = False
        data.last_price = bar.close
        data.last_update = now_wall
        data.last_update_mono = now_mono
        data.bars += 1
        return Observation(BarVerdict.ACCEPTED, missing)

    def _is_outlier(self, data: SymbolData, price: float) -> bool:
        if not price > 0:  # also catches NaN
            return True
        if data.last_price is None:
            return False
        return 100.0 * abs(price / data.last_price - 1.0) > self.outlier_pct

    def _jump_confirmed(self, data: SymbolData) -> bool:
        jump = data.candidate_jump
        if len(jump) < self.confirm_bars or not all(p > 0 for p in jump):
            return False
        recent = jump[-self.confirm_bars :]
        anchor = recent[0]
        return all(100.0 * abs(p / anchor - 1.0) <= self.outlier_pct for p in recent)

    # --- views -----------------------------------------------------------------------------------------
    def staleness(self, symbol: str, now_mono: float) -> float:
        data = self.symbols.get(symbol)
        since = data.last_update_mono if data and data.last_update_mono is not None else self.started_mono
        return max(0.0, now_mono - since)

    def is_stale(self, symbol: str, now_mono: float, limit_seconds: float) -> bool:
        return self.staleness(symbol, now_mono) > limit_seconds

    def last_price(self, symbol: str) -> float | None:
        data = self.symbols.get(symbol)
        return data.last_price if data else None

    def is_suspect(self, symbol: str) -> bool:
        data = self.symbols.get(symbol)
        return bool(data and data.suspect)

    def last_update(self) -> datetime | None:
        times = [d.last_update for d in self.symbols.values() if d.last_update is not None]
        return max(times) if times else None

    @property
    def missing_bars(self) -> int:
        return sum(d.missing_bars for d in self.symbols.values())

    @property
    def outliers(self) -> int:
        return sum(d.outliers for d in self.symbols.values())
