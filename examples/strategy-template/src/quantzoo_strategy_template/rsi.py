"""RSI mean reversion: long when the RSI is oversold, short when overbought, flat when it crosses 50.

The RSI uses Wilder's smoothing over `period` closes. Sizing stays inside the TradingSystem's risk
limits (reversal_size); the engine's risk checks and kill switch apply to every order regardless.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import Field, ValidationInfo, field_validator
from quantzoo_engine.sdk import Bar, OrderIntent, Strategy, StrategyContext, StrategyParams, reversal_size


class RsiParams(StrategyParams):
    period: int = Field(14, ge=2, le=500)
    oversold: float = Field(30.0, gt=0, lt=100)
    overbought: float = Field(70.0, gt=0, lt=100)
    order_quantity: int = Field(10, ge=1, le=1_000_000)

    @field_validator("overbought")
    @classmethod
    def _above_oversold(cls, v: float, info: ValidationInfo) -> float:
        low = info.data.get("oversold")
        if low is not None and v <= low:
            raise ValueError(f"must be greater than oversold ({low:g})")
        return v


@dataclass(slots=True)
class _Rsi:
    last: float | None = None
    avg_gain: float = 0.0
    avg_loss: float = 0.0
    seen: int = 0


class RsiReversion(Strategy[RsiParams]):
    Params = RsiParams

    def __init__(self, params: RsiParams) -> None:
        super().__init__(params)
        self._by_symbol: dict[str, _Rsi] = {}

    def rsi(self, symbol: str, close: float) -> float | None:
        """Feed one close; the RSI once `period` changes have been seen."""
        s = self._by_symbol.setdefault(symbol, _Rsi())
        n = self.params.period
        if s.last is not None:
            change = close - s.last
            gain, loss = max(change, 0.0), max(-change, 0.0)
            s.seen += 1
            weight = 1.0 / min(s.seen, n)  # a plain average while warming up, then Wilder's smoothing
            s.avg_gain += (gain - s.avg_gain) * weight
            s.avg_loss += (loss - s.avg_loss) * weight
        s.last = close
        if s.seen < n:
            return None
        if s.avg_loss == 0:
            return 100.0
        return 100.0 - 100.0 / (1.0 + s.avg_gain / s.avg_loss)

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> Sequence[OrderIntent]:
        value = self.rsi(bar.symbol, bar.close)
        if value is None:
            return ()
        p = self.params
        size = reversal_size(p.order_quantity, bar.close, ctx.limits)
        target = ctx.net_position
        if value < p.oversold:
            target = size
        elif value > p.overbought:
            target = -size
        elif (target > 0 and value >= 50) or (target < 0 and value <= 50):
            target = 0
        intent = OrderIntent.toward(bar.symbol, target, ctx.net_position)
        return (intent,) if intent else ()
