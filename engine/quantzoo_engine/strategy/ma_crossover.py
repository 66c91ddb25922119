"""Moving-average crossover with position sizing.

Long `size` while the fast average is above the slow one, short `size` while below; an order is sent
only when the averages cross, for the difference between the target and the current position. Sizing
keeps every order inside the risk limits by construction (sdk.reversal_size); the risk checks still run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import Field, ValidationInfo, field_validator

from quantzoo_engine.sdk import Bar, OrderIntent, Strategy, StrategyContext, StrategyParams, reversal_size


class MovingAverageCrossoverParams(StrategyParams):
    fast_window: int = Field(5, ge=2, le=200)
    slow_window: int = Field(20, ge=3, le=1000)
    order_quantity: int = Field(10, ge=1, le=1_000_000)

    @field_validator("slow_window")
    @classmethod
    def _slow_above_fast(cls, v: int, info: ValidationInfo) -> int:
        fast = info.data.get("fast_window")
        if fast is not None and v <= fast:
            raise ValueError(f"must be greater than fastWindow ({fast})")
        return v


@dataclass(slots=True)
class _Averages:
    fast: deque[float] = field(default_factory=deque)
    slow: deque[float] = field(default_factory=deque)
    fast_sum: float = 0.0
    slow_sum: float = 0.0
    regime: int = 0  # +1 fast above slow, -1 below, 0 not known yet


class MovingAverageCrossover(Strategy[MovingAverageCrossoverParams]):
    Params = MovingAverageCrossoverParams

    def __init__(self, params: MovingAverageCrossoverParams) -> None:
        super().__init__(params)
        self.fast_window = params.fast_window
        self.slow_window = params.slow_window
        self._by_symbol: dict[str, _Averages] = {}

    def _update(self, avg: _Averages, price: float) -> None:
        avg.fast.append(price)
        avg.fast_sum += price
        if len(avg.fast) > self.fast_window:
            avg.fast_sum -= avg.fast.popleft()
        avg.slow.append(price)
        avg.slow_sum += price
        if len(avg.slow) > self.slow_window:
            avg.slow_sum -= avg.slow.popleft()

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> Sequence[OrderIntent]:
        avg = self._by_symbol.get(bar.symbol)
        if avg is None:
            avg = self._by_symbol[bar.symbol] = _Averages()
        self._update(avg, bar.close)
        if len(avg.slow) < self.slow_window:
            return ()
        fast = avg.fast_sum / len(avg.fast)
        slow = avg.slow_sum / len(avg.slow)
        regime = 1 if fast > slow else -1 if fast < slow else avg.regime
        crossed = avg.regime != 0 and regime != avg.regime
        first = avg.regime == 0
        avg.regime = regime
        if first or not crossed:
            # The first regime seen is not a crossover: do not trade on warm-up.
            return ()
        target = regime * reversal_size(self.params.order_quantity, bar.close, ctx.limits)
        intent = OrderIntent.toward(bar.symbol, target, ctx.net_position)
        return (intent,) if intent else ()
