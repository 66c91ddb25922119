"""Moving-average crossover with position sizing.

Long `size` while the fast average is above the slow one, short `size` while below; an order is sent
only when the averages cross, for the difference between the target and the current position.

Sizing keeps every order inside the risk limits by construction: `size` is the configured
orderQuantity, capped so that a full reversal (2 x size) stays within maxOrderNotional and
maxOrderQuantity, and one side's position within maxPositionNotional. The risk checks still run; the
strategy just does not rely on them to be sensible.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from quantzoo_api.types import RiskLimits

from quantzoo_engine.feed.base import Bar
from quantzoo_engine.orders import OrderOrigin, OrderRequest, Side


@dataclass(slots=True)
class _Averages:
    fast: deque[float] = field(default_factory=deque)
    slow: deque[float] = field(default_factory=deque)
    fast_sum: float = 0.0
    slow_sum: float = 0.0
    regime: int = 0  # +1 fast above slow, -1 below, 0 not known yet


class MovingAverageCrossover:
    name = "maCrossover"

    def __init__(self, fast_window: int, slow_window: int, order_quantity: int, limits: RiskLimits) -> None:
        if not 1 <= fast_window < slow_window:
            raise ValueError("fast_window must be at least 1 and smaller than slow_window")
        self.fast_window = fast_window
        self.slow_window = slow_window
        self.order_quantity = order_quantity
        self.limits = limits
        self._by_symbol: dict[str, _Averages] = {}

    def update_limits(self, limits: RiskLimits) -> None:
        self.limits = limits

    def size(self, price: float) -> int:
        if price <= 0:
            return 0
        limits = self.limits
        return max(
            0,
            min(
                self.order_quantity,
                math.floor(limits.max_order_notional / (2 * price)),
                limits.max_order_quantity // 2,
                math.floor(limits.max_position_notional / price),
            ),
        )

    def _update(self, avg: _Averages, price: float) -> None:
        avg.fast.append(price)
        avg.fast_sum += price
        if len(avg.fast) > self.fast_window:
            avg.fast_sum -= avg.fast.popleft()
        avg.slow.append(price)
        avg.slow_sum += price
        if len(avg.slow) > self.slow_window:
            avg.slow_sum -= avg.slow.popleft()

    def on_bar(self, bar: Bar, position: float) -> list[OrderRequest]:
        avg = self._by_symbol.setdefault(bar.symbol, _Averages())
        self._update(avg, bar.close)
        if len(avg.slow) < self.slow_window:
            return []
        fast = avg.fast_sum / len(avg.fast)
        slow = avg.slow_sum / len(avg.slow)
        regime = 1 if fast > slow else -1 if fast < slow else avg.regime
        crossed = avg.regime != 0 and regime != avg.regime
        first = avg.regime == 0
        avg.regime = regime
        if first or not crossed:
            # The first regime seen is not a crossover: do not trade on warm-up.
            return []
        target = regime * self.size(bar.close)
        delta = target - position
        if abs(delta) < 1:
            return []
        side = Side.BUY if delta > 0 else Side.SELL
        return [
            OrderRequest(
                symbol=bar.symbol, side=side, quantity=float(abs(round(delta))), origin=OrderOrigin.STRATEGY
            )
        ]
