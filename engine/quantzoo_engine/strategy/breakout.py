"""Breakout (Donchian channel) momentum.

Go long when the close breaks above the highest high of the previous `window` bars, short when it breaks
below the lowest low; exit (flatten) when the close crosses the opposite channel of the shorter
`exitWindow`. Sized inside the risk limits (sdk.reversal_size).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import Field, ValidationInfo, field_validator

from quantzoo_engine.sdk import Bar, OrderIntent, Strategy, StrategyContext, StrategyParams, reversal_size


class BreakoutParams(StrategyParams):
    window: int = Field(20, ge=2, le=1000)
    exit_window: int = Field(10, ge=1, le=1000)
    order_quantity: int = Field(10, ge=1, le=1_000_000)
    allow_short: bool = True

    @field_validator("exit_window")
    @classmethod
    def _exit_inside_entry(cls, v: int, info: ValidationInfo) -> int:
        window = info.data.get("window")
        if window is not None and v > window:
            raise ValueError(f"must not exceed window ({window})")
        return v


@dataclass(slots=True)
class _Channel:
    highs: deque[float] = field(default_factory=deque)
    lows: deque[float] = field(default_factory=deque)


class Breakout(Strategy[BreakoutParams]):
    Params = BreakoutParams

    def __init__(self, params: BreakoutParams) -> None:
        super().__init__(params)
        self._by_symbol: dict[str, _Channel] = {}

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> Sequence[OrderIntent]:
        ch = self._by_symbol.setdefault(bar.symbol, _Channel())
        p = self.params
        target = ctx.net_position
        if len(ch.highs) >= p.window:
            # Channels of the bars before this one: a bar cannot break its own high.
            entry_high, entry_low = max(ch.highs), min(ch.lows)
            exit_highs, exit_lows = list(ch.highs)[-p.exit_window :], list(ch.lows)[-p.exit_window :]
            size = reversal_size(p.order_quantity, bar.close, ctx.limits)
            if bar.close > entry_high:
                target = size
            elif bar.close < entry_low and p.allow_short:
                target = -size
            elif (ctx.net_position > 0 and bar.close < min(exit_lows)) or (
                ctx.net_position < 0 and bar.close > max(exit_highs)
            ):
                target = 0
        ch.highs.append(bar.high)
        ch.lows.append(bar.low)
        if len(ch.highs) > p.window:
            ch.highs.popleft()
            ch.lows.popleft()
        intent = OrderIntent.toward(bar.symbol, target, ctx.net_position)
        return (intent,) if intent else ()
