"""What a strategy returns: an order it would like sent. The engine turns it into an OrderRequest that
the risk checks see exactly like a manual order."""

from __future__ import annotations

from dataclasses import dataclass

from quantzoo_engine.orders import OrderOrigin, OrderRequest, OrderType, Side, TimeInForce


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """market, limit (limit_price), stop (stop_price) or stop_limit (both), with a time in force.

    A protective stop placed GTC rests at the broker, so a position is not left naked if the engine
    dies (the kill switch's cancel-all removes it with everything else)."""

    symbol: str
    side: Side
    quantity: float
    order_type: OrderType = OrderType.MARKET
    limit_price: float | None = None
    stop_price: float | None = None
    time_in_force: TimeInForce = TimeInForce.DAY

    def to_request(self) -> OrderRequest:
        return OrderRequest(
            symbol=self.symbol,
            side=self.side,
            quantity=float(self.quantity),
            order_type=self.order_type,
            limit_price=self.limit_price,
            origin=OrderOrigin.STRATEGY,
            stop_price=self.stop_price,
            time_in_force=self.time_in_force,
        )

    @classmethod
    def toward(cls, symbol: str, target: float, position: float) -> OrderIntent | None:
        """A market order that takes `position` to `target` (None when already there)."""
        delta = round(target - position)
        if abs(delta) < 1:
            return None
        return cls(symbol, Side.BUY if delta > 0 else Side.SELL, float(abs(delta)))
