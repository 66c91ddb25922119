"""The in-process paper broker: fills at the simulated price, keeps orders, positions and cash.

Market orders fill at the last price. Limit orders fill when marketable, otherwise they rest until a
later price crosses them, so there are working orders for the kill switch and SIGTERM to cancel. A stop
triggers when a price trades at or through its stop price and then fills as a market order (a
stop-limit becomes a resting limit). IOC and FOK orders that cannot fill at once are cancelled (the
paper broker fills whole orders, so the two behave alike). DAY orders do not expire here: they rest
until cancelled, as GTC orders do.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable
from datetime import datetime

from quantzoo_engine.broker.base import AccountSnapshot, BrokerRejected, CancelReport, FlattenReport
from quantzoo_engine.clock import Clock, SystemClock
from quantzoo_engine.orders import Fill, Order, OrderOrigin, OrderRequest, OrderStatus, Side, TimeInForce
from quantzoo_engine.portfolio import Portfolio, Position


class PaperBroker:
    name = "paper"
    needs_polling = False

    def __init__(self, initial_cash: float = 1_000_000.0, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self.ledger = Portfolio(cash=initial_cash)
        self._orders: dict[str, Order] = {}
        self._open: dict[str, Order] = {}
        self._client_ids: set[str] = set()
        self._fills: list[Fill] = []
        # Every order that reached this broker, in order (tests audit it; bounded).
        self.received: deque[Order] = deque(maxlen=10_000)
        # Called with each order the moment it reaches the broker, before it touches the book.
        self.on_order_reached: Callable[[Order], None] | None = None
        # Every fill, kept when set (the backtester's report lists them; the engine drains _fills).
        self.fill_log: list[Fill] | None = None

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    # --- reads -------------------------------------------------------------------------------------------
    async def account(self) -> AccountSnapshot:
        return AccountSnapshot(cash=self.ledger.cash, equity=self.ledger.equity)

    async def positions(self) -> list[Position]:
        return [Position(p.symbol, p.quantity, p.avg_price) for p in self.ledger.positions.values()]

    async def open_orders(self) -> list[Order]:
        return [o.copy() for o in self._open.values()]

    def position(self, symbol: str) -> float:
        return self.ledger.quantity(symbol)

    def working_quantity(self, symbol: str, side: Side) -> float:
        return sum(o.remaining for o in self._open.values() if o.symbol == symbol and o.side is side)

    # --- orders ------------------------------------------------------------------------------------------
    async def submit_order(self, request: OrderRequest) -> Order:
        return self.execute(request)

    def execute(self, request: OrderRequest) -> Order:
        if request.client_order_id in self._client_ids:
            raise BrokerRejected(f"client_order_id {request.client_order_id} already exists")
        price = self.ledger.price(request.symbol)
        if price is None:
            raise BrokerRejected(f"no market price for {request.symbol}")
        now = self.clock.now()
        order = Order(
            id=str(uuid.uuid4()),
            client_order_id=request.client_order_id,
            symbol=request.symbol,
            side=request.side,
            quantity=request.quantity,
            order_type=request.order_type,
            status=OrderStatus.NEW,
            submitted_at=now,
            updated_at=now,
            limit_price=request.limit_price,
            origin=request.origin,
            stop_price=request.stop_price,
            time_in_force=request.time_in_force,
        )
        if self.on_order_reached is not None:
            self.on_order_reached(order.copy())
        self.received.append(order.copy())
        self._client_ids.add(order.client_order_id)
        self._orders[order.id] = order
        if self._marketable(order, price):
            self._fill(order, price)
        elif order.time_in_force in (TimeInForce.IOC, TimeInForce.FOK):
            order.status = OrderStatus.CANCELED
        else:
            self._open[order.id] = order
        return order.copy()

    @staticmethod
    def _marketable(order: Order, price: float) -> bool:
        """Whether the order fills at `price` now; a stop whose price has traded is marked triggered."""
        if order.stop_price is not None and not order.triggered:
            up = order.side is Side.BUY
            if not (price >= order.stop_price if up else price <= order.stop_price):
                return False
            order.triggered = True
        if order.limit_price is None:
            return True  # market, or a triggered stop
        return price <= order.limit_price if order.side is Side.BUY else price >= order.limit_price

    def _fill(self, order: Order, price: float) -> None:
        fill = Fill(order.id, order.symbol, order.side, order.remaining, price, self.clock.now())
        order.filled_avg_price = price
        order.filled_quantity = order.quantity
        order.status = OrderStatus.FILLED
        order.updated_at = fill.at
        self._open.pop(order.id, None)
        self.ledger.apply_fill(fill)
        self._fills.append(fill)
        if self.fill_log is not None:
            self.fill_log.append(fill)

    def on_price(self, symbol: str, price: float, at: datetime) -> None:
        self.ledger.mark(symbol, price)
        for order in list(self._open.values()):
            # A resting limit fills at the market when the market trades through it (never worse).
            if order.symbol == symbol and self._marketable(order, price):
                self._fill(order, price)

    def drain_fills(self) -> list[Fill]:
        fills, self._fills = self._fills, []
        return fills

    async def cancel_all_orders(self, deadline_seconds: float) -> CancelReport:
        cancelled = list(self._open)
        now = self.clock.now()
        for order_id in cancelled:
            order = self._open.pop(order_id)
            order.status = OrderStatus.CANCELED
            order.updated_at = now
        return CancelReport(cancelled=cancelled)

    async def close_all_positions(self, deadline_seconds: float) -> FlattenReport:
        closed: list[str] = []
        for position in list(self.ledger.positions.values()):
            side = Side.SELL if position.quantity > 0 else Side.BUY
            self.execute(
                OrderRequest(
                    symbol=position.symbol,
                    side=side,
                    quantity=abs(position.quantity),
                    origin=OrderOrigin.KILL_SWITCH,
                )
            )
            closed.append(position.symbol)
        return FlattenReport(closed=closed)
