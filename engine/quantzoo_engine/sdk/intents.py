"""What a strategy returns: an order it would like sent. The engine turns it into an OrderRequest that
the risk checks see exactly like a manual order."""

from __future__ import annotations

from dataclasses import dataclass

from quantzoo_engine.orders import OrderOrigin, OrderRequest, OrderType, Side


@dataclass(frozen=True, slots=True)
class OrderIntent:
    symbol: str
    side: Side
    quantity: float
    order_type: OrderType = OrderType.MARKET
    limit_price: float | None = None

    def to_request(self) -> OrderRequest:
        return OrderRequest(
            symbol=self.symbol,
            side=self.side,
            quantity=float(self.quantity),
            order_type=self.order_type,
            limit_price=self.limit_price,
            origin=OrderOrigin.STRATEGY,
        )

    @classmethod
    def toward(cls, symbol: str, target: float, position: float) -> OrderIntent | None:
        """A market order that takes `position` to `target` (None when already there)."""
        delta = round(target - position)
        if abs(delta) < 1:
            return None
        return cls(symbol, Side.BUY if delta > 0 else Side.SELL, float(abs(delta)))
