"""What one TradingSystem owns in a shared broker account: its orders (by client-order-id prefix,
quantzoo_api.accounts) and the positions and cash those orders' fills make. Pure bookkeeping, no I/O.

A broker account reports positions per symbol for the whole account; it cannot say which system holds
what. The system's positions are therefore rebuilt from its own orders: every order the broker lists
whose client order id carries the system's prefix contributes its filled quantity, at its average fill
price. `observe` is fed every snapshot of an own order (submit answers, the periodic order list) and
returns the part of the fill it had not seen yet, so the same fill is never counted twice.

The book is persisted in ENGINE_STATE_DIR (persistence.py) with a cursor: a restart replays only the own
orders submitted since the oldest one still working at the last save. Without the file (a new pod) the
whole own order history is replayed from the broker.

A position in the account that no system's orders explain (placed by hand at the broker, or by an
engine before the account was shared) belongs to no system: no engine adopts, trades down or closes it;
it still counts towards the account-wide gross exposure (risk/account_limits.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from quantzoo_api.accounts import owns

from quantzoo_engine.orders import Fill, Order
from quantzoo_engine.portfolio import Position

_EPS = 1e-9


@dataclass(slots=True)
class OwnedBook:
    prefix: str
    # order id -> (filled quantity, filled notional) already counted
    seen: dict[str, tuple[float, float]] = field(default_factory=dict)
    positions: dict[str, Position] = field(default_factory=dict)
    cash_delta: float = 0.0  # what the system's fills cost (-) or brought in (+)
    # Replay own orders submitted at or after this (None: from the beginning).
    cursor: datetime | None = None
    # Own orders still working (id -> submitted_at): the cursor may not pass the oldest of them.
    working: dict[str, datetime] = field(default_factory=dict)

    def owns(self, order: Order) -> bool:
        return owns(self.prefix, order.client_order_id)

    def observe(self, order: Order, at: datetime) -> Fill | None:
        """Count what is new in this snapshot of one of our orders; the new part of its fill, if any."""
        if not self.owns(order):
            return None
        if order.is_working:
            self.working[order.id] = order.submitted_at
        else:
            self.working.pop(order.id, None)
        qty, notional = self.seen.get(order.id, (0.0, 0.0))
        new_qty = order.filled_quantity - qty
        if new_qty <= _EPS or not order.filled_avg_price:
            return None
        total_notional = order.filled_quantity * order.filled_avg_price
        price = (total_notional - notional) / new_qty
        self.seen[order.id] = (order.filled_quantity, total_notional)
        fill = Fill(order.id, order.symbol, order.side, new_qty, price, at)
        self._apply(fill)
        return fill

    def _apply(self, fill: Fill) -> None:
        pos = self.positions.get(fill.symbol)
        qty, avg = (pos.quantity, pos.avg_price) if pos else (0.0, 0.0)
        delta = fill.signed_quantity
        new_qty = qty + delta
        if qty == 0 or (qty > 0) == (delta > 0):
            avg = (avg * abs(qty) + fill.price * abs(delta)) / abs(new_qty)
        elif (new_qty > 0) != (qty > 0) and abs(new_qty) > _EPS:
            avg = fill.price  # crossed through zero
        self.cash_delta -= delta * fill.price
        if abs(new_qty) <= _EPS:
            self.positions.pop(fill.symbol, None)
        else:
            self.positions[fill.symbol] = Position(fill.symbol, new_qty, avg)

    def position_list(self) -> list[Position]:
        return [Position(p.symbol, p.quantity, p.avg_price) for p in self.positions.values()]

    def advance_cursor(self, now: datetime) -> None:
        """After a full read of the own orders: the next read starts at the oldest still working."""
        self.cursor = min(self.working.values(), default=now)

    # --- persistence (a JSON document in ENGINE_STATE_DIR) ---------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "seen": {k: list(v) for k, v in self.seen.items()},
            "positions": {p.symbol: [p.quantity, p.avg_price] for p in self.positions.values()},
            "cash_delta": self.cash_delta,
            "cursor": self.cursor.isoformat() if self.cursor else None,
            "working": {k: v.isoformat() for k, v in self.working.items()},
        }

    @classmethod
    def from_json(cls, prefix: str, doc: Any) -> OwnedBook:
        """The persisted book, or an empty one if the file is missing, unreadable or another system's."""
        if not isinstance(doc, dict) or doc.get("prefix") != prefix:
            return cls(prefix)
        try:
            return cls(
                prefix=prefix,
                seen={k: (float(v[0]), float(v[1])) for k, v in doc["seen"].items()},
                positions={s: Position(s, float(q), float(a)) for s, (q, a) in doc["positions"].items()},
                cash_delta=float(doc["cash_delta"]),
                cursor=datetime.fromisoformat(doc["cursor"]) if doc.get("cursor") else None,
                working={k: datetime.fromisoformat(v) for k, v in doc["working"].items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return cls(prefix)
