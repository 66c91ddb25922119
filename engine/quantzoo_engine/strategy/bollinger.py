"""Mean reversion on Bollinger bands.

Over a rolling window of closes: below the lower band (mean - k*stdev) go long, above the upper band go
short, and flatten once the price comes back to the mean. One position size per symbol, sized inside the
risk limits (sdk.reversal_size).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import Field

from quantzoo_engine.sdk import Bar, OrderIntent, Strategy, StrategyContext, StrategyParams, reversal_size


class BollingerReversionParams(StrategyParams):
    window: int = Field(20, ge=2, le=1000)
    num_std: float = Field(2.0, gt=0, le=10)
    order_quantity: int = Field(10, ge=1, le=1_000_000)
    # Close at the mean (true) or hold until the opposite band (false).
    exit_at_mean: bool = True


@dataclass(slots=True)
class _Window:
    closes: deque[float] = field(default_factory=deque)
    total: float = 0.0
    total_sq: float = 0.0


class BollingerReversion(Strategy[BollingerReversionParams]):
    Params = BollingerReversionParams

    def __init__(self, params: BollingerReversionParams) -> None:
        super().__init__(params)
        self._by_symbol: dict[str, _Window] = {}

    def bands(self, symbol: str) -> tuple[float, float, float] | None:
        """(lower, mean, upper) once the window is full."""
        w = self._by_symbol.get(symbol)
        n = self.params.window
        if w is None or len(w.closes) < n:
            return None
        mean = w.total / n
        std = math.sqrt(max(w.total_sq / n - mean * mean, 0.0))
        k = self.params.num_std
        return mean - k * std, mean, mean + k * std

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> Sequence[OrderIntent]:
        w = self._by_symbol.setdefault(bar.symbol, _Window())
        price = bar.close
        w.closes.append(price)
        w.total += price
        w.total_sq += price * price
        if len(w.closes) > self.params.window:
            old = w.closes.popleft()
            w.total -= old
            w.total_sq -= old * old
        bands = self.bands(bar.symbol)
        if bands is None:
            return ()
        lower, mean, upper = bands
        size = reversal_size(self.params.order_quantity, price, ctx.limits)
        target = ctx.net_position
        if price < lower:
            target = size
        elif price > upper:
            target = -size
        elif self.params.exit_at_mean and (
            (ctx.net_position > 0 and price >= mean) or (ctx.net_position < 0 and price <= mean)
        ):
            target = 0
        intent = OrderIntent.toward(bar.symbol, target, ctx.net_position)
        return (intent,) if intent else ()
