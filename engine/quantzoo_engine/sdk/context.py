"""What a strategy may read when it is handed a bar: a snapshot, never a live handle on the engine."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from quantzoo_api.types import RiskLimits


@dataclass(frozen=True, slots=True)
class StrategyContext:
    # The engine's clock: wall time live, the bar's time in a backtest (a strategy never calls time.time).
    now: datetime
    # The bar symbol's position (filled), and the net quantity of its working orders (+ buy, - sell).
    position: float
    working: float
    cash: float
    equity: float
    # The live risk limits, for sizing inside them (the checks run regardless).
    limits: RiskLimits

    @property
    def net_position(self) -> float:
        """Position plus working orders: what to size against so a strategy does not double up (a
        strategy that keeps protective stops resting sizes against `position` instead)."""
        return self.position + self.working
