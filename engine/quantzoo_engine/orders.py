"""Orders: what the engine asks for (OrderRequest), what a broker holds (Order), what happened (Fill).

Also the one definition of "this order increases exposure", which REDUCE_ONLY, the drawdown check and
the kill-switch invariant all rely on.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"  # a market order once the price trades at or through stop_price
    STOP_LIMIT = "stop_limit"  # a limit order once the price trades at or through stop_price


class TimeInForce(StrEnum):
    # Alpaca's spelling. DAY: until the session ends at the broker; GTC: until cancelled; IOC: what fills
    # at once, the rest cancelled; FOK: all at once or nothing.
    DAY = "day"
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"


class OrderStatus(StrEnum):
    # Alpaca's spelling, so the two brokers report alike.
    NEW = "new"
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"


WORKING_STATUSES = frozenset({OrderStatus.NEW, OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED})


class OrderOrigin(StrEnum):
    STRATEGY = "strategy"
    MANUAL = "manual"
    KILL_SWITCH = "kill_switch"
    RECONCILED = "reconciled"


def new_client_order_id() -> str:
    return "qz-" + uuid.uuid4().hex[:24]


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """An order the engine wants to send; it becomes an Order only if every pre-trade check passes."""

    symbol: str
    side: Side
    quantity: float
    order_type: OrderType = OrderType.MARKET
    limit_price: float | None = None
    client_order_id: str = field(default_factory=new_client_order_id)
    origin: OrderOrigin = OrderOrigin.STRATEGY
    stop_price: float | None = None
    time_in_force: TimeInForce = TimeInForce.DAY

    @property
    def signed_quantity(self) -> float:
        return self.side.sign * self.quantity


@dataclass(slots=True)
class Order:
    """An order as a broker holds it."""

    id: str
    client_order_id: str
    symbol: str
    side: Side
    quantity: float
    order_type: OrderType
    status: OrderStatus
    submitted_at: datetime
    limit_price: float | None = None
    filled_quantity: float = 0.0
    filled_avg_price: float | None = None
    updated_at: datetime | None = None
    origin: OrderOrigin = OrderOrigin.STRATEGY
    stop_price: float | None = None
    time_in_force: TimeInForce = TimeInForce.DAY
    triggered: bool = False  # a stop (or stop-limit) whose stop price has traded

    @property
    def is_working(self) -> bool:
        return self.status in WORKING_STATUSES

    @property
    def remaining(self) -> float:
        return max(self.quantity - self.filled_quantity, 0.0)

    def copy(self) -> Order:
        return replace(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "client_order_id": self.client_order_id,
            "symbol": self.symbol,
            "side": str(self.side),
            "quantity": self.quantity,
            "type": str(self.order_type),
            "limit_price": self.limit_price,
            "stop_price": self.stop_price,
            "time_in_force": str(self.time_in_force),
            "status": str(self.status),
            "filled_quantity": self.filled_quantity,
            "filled_avg_price": self.filled_avg_price,
            "submitted_at": self.submitted_at,
            "updated_at": self.updated_at,
            "origin": str(self.origin),
        }


@dataclass(frozen=True, slots=True)
class Fill:
    order_id: str
    symbol: str
    side: Side
    quantity: float
    price: float
    at: datetime

    @property
    def signed_quantity(self) -> float:
        return self.side.sign * self.quantity


def increases_exposure(side: Side, quantity: float, position: float, working_same_side: float) -> bool:
    """True unless the order can only shrink |position|.

    An order reduces exposure only if it trades against the current position and, together with every
    working order on its own side, cannot carry the position through zero. Counting the working orders
    matters: two "reducing" sells of 10 against a long 10 would otherwise end short 10.
    """
    if position == 0:
        return True
    if (position > 0) == (side is Side.BUY):
        return True
    return quantity + working_same_side > abs(position) + 1e-9


class OrderBook:
    """The engine's record of its orders: every order this session, the working ones indexed."""

    def __init__(self, history_limit: int = 5_000) -> None:
        self._orders: dict[str, Order] = {}
        self._working: dict[str, Order] = {}
        # Orders accepted by the risk checks whose broker call has not returned: they count as working,
        # so two in-flight orders cannot both pass a reduce-only or position check.
        self._pending: dict[str, OrderRequest] = {}
        # Fills that arrived before the broker's answer to the submit did (a resting order can fill on
        # the next bar while the engine is still awaiting the submit response).
        self._early_fills: dict[str, list[Fill]] = {}
        self._history_limit = history_limit

    def add_pending(self, request: OrderRequest) -> None:
        self._pending[request.client_order_id] = request

    def drop_pending(self, client_order_id: str) -> None:
        self._pending.pop(client_order_id, None)

    def add(self, order: Order) -> None:
        self._pending.pop(order.client_order_id, None)
        self._orders[order.id] = order
        for fill in self._early_fills.pop(order.id, []):
            self._apply_fill(order, fill)
        self._index(order)
        if len(self._orders) > self._history_limit:
            # Forget the oldest finished orders; working ones are kept whatever their age.
            for order_id in list(self._orders)[: len(self._orders) - self._history_limit]:
                if order_id not in self._working:
                    del self._orders[order_id]

    def _index(self, order: Order) -> None:
        if order.is_working:
            self._working[order.id] = order
        else:
            self._working.pop(order.id, None)

    @staticmethod
    def _apply_fill(order: Order, fill: Fill) -> None:
        total = order.filled_quantity + fill.quantity
        prior = (order.filled_avg_price or 0.0) * order.filled_quantity
        order.filled_avg_price = (prior + fill.price * fill.quantity) / total if total else None
        order.filled_quantity = min(total, order.quantity)
        order.updated_at = fill.at
        order.status = (
            OrderStatus.FILLED
            if order.filled_quantity >= order.quantity - 1e-9
            else OrderStatus.PARTIALLY_FILLED
        )

    def on_fill(self, fill: Fill) -> None:
        order = self._orders.get(fill.order_id)
        if order is None:
            self._early_fills.setdefault(fill.order_id, []).append(fill)
            return
        self._apply_fill(order, fill)
        self._index(order)

    def mark_cancelled(self, order_ids: Iterable[str], at: datetime) -> None:
        for order_id in order_ids:
            order = self._orders.get(order_id)
            if order is not None and order.is_working:
                order.status = OrderStatus.CANCELED
                order.updated_at = at
                self._working.pop(order_id, None)

    def replace_working(self, broker_open_orders: Iterable[Order], at: datetime) -> None:
        """The broker is the source of truth: what it does not list as open is no longer working."""
        fresh = {o.id: o for o in broker_open_orders}
        for order_id, order in list(self._working.items()):
            if order_id not in fresh:
                # Filled or cancelled at the broker; the periodic position sync carries the fills.
                order.status = OrderStatus.CANCELED if order.filled_quantity == 0 else OrderStatus.FILLED
                order.updated_at = at
                del self._working[order_id]
        for order in fresh.values():
            self._orders[order.id] = order
            self._index(order)

    def get(self, order_id: str) -> Order | None:
        return self._orders.get(order_id)

    def working(self) -> list[Order]:
        return list(self._working.values())

    @property
    def working_count(self) -> int:
        return len(self._working) + len(self._pending)

    def working_quantity(self, symbol: str, side: Side) -> float:
        qty = 0.0
        for order in self._working.values():
            if order.symbol == symbol and order.side is side:
                qty += order.remaining
        for req in self._pending.values():
            if req.symbol == symbol and req.side is side:
                qty += req.quantity
        return qty

    def working_net(self, symbol: str) -> float:
        return self.working_quantity(symbol, Side.BUY) - self.working_quantity(symbol, Side.SELL)

    def recent(self, limit: int = 100) -> list[Order]:
        return list(self._orders.values())[-limit:][::-1]
