"""Positions, cash and P&L, marked to the last accepted price. Pure bookkeeping, no I/O.

Realized P&L is derived (total minus unrealized) rather than accumulated, so it stays right when the
positions are replaced wholesale by a broker reconcile (Alpaca reports positions, not our fills).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from quantzoo_engine.orders import Fill

_EPS = 1e-9


@dataclass(slots=True)
class Position:
    symbol: str
    quantity: float
    avg_price: float


class Portfolio:
    def __init__(self, cash: float, start_of_day_equity: float | None = None) -> None:
        self.cash = cash
        self.positions: dict[str, Position] = {}
        self.marks: dict[str, float] = {}
        self.start_of_day_equity = start_of_day_equity if start_of_day_equity is not None else cash
        self.peak_equity = self.start_of_day_equity
        self.trading_day: date | None = None

    # --- updates -----------------------------------------------------------------------------------
    def mark(self, symbol: str, price: float) -> None:
        self.marks[symbol] = price
        self._track_peak()

    def apply_fill(self, fill: Fill) -> None:
        pos = self.positions.get(fill.symbol)
        qty = pos.quantity if pos else 0.0
        avg = pos.avg_price if pos else 0.0
        delta = fill.signed_quantity
        new_qty = qty + delta
        if qty == 0 or (qty > 0) == (delta > 0):
            # Opening or adding: the average entry price moves.
            avg = (avg * abs(qty) + fill.price * abs(delta)) / abs(new_qty)
        elif (new_qty > 0) != (qty > 0) and abs(new_qty) > _EPS:
            # Crossed through zero: what is left was opened at this fill's price.
            avg = fill.price
        self.cash -= delta * fill.price
        if abs(new_qty) <= _EPS:
            self.positions.pop(fill.symbol, None)
        else:
            self.positions[fill.symbol] = Position(fill.symbol, new_qty, avg)
        self.marks.setdefault(fill.symbol, fill.price)
        self._track_peak()

    def reconcile(
        self, cash: float, positions: Iterable[Position], start_of_day_equity: float | None = None
    ) -> None:
        """Adopt the broker's view (it is the source of truth)."""
        self.cash = cash
        self.positions = {p.symbol: p for p in positions if abs(p.quantity) > _EPS}
        for p in self.positions.values():
            self.marks.setdefault(p.symbol, p.avg_price)
        if start_of_day_equity is not None and start_of_day_equity > 0:
            self.start_of_day_equity = start_of_day_equity
            self.peak_equity = max(start_of_day_equity, self.equity)

    def roll_day(self, today: date) -> bool:
        """Start a new trading day: today's P&L and drawdown are measured from here."""
        if self.trading_day == today:
            return False
        first = self.trading_day is None
        self.trading_day = today
        if not first:
            self.start_of_day_equity = self.equity
            self.peak_equity = self.start_of_day_equity
        return not first

    def _track_peak(self) -> None:
        equity = self.equity
        if equity > self.peak_equity:
            self.peak_equity = equity

    # --- views ---------------------------------------------------------------------------------------
    def quantity(self, symbol: str) -> float:
        pos = self.positions.get(symbol)
        return pos.quantity if pos else 0.0

    def price(self, symbol: str) -> float | None:
        return self.marks.get(symbol)

    def position_notional(self, symbol: str) -> float:
        pos = self.positions.get(symbol)
        if pos is None:
            return 0.0
        return pos.quantity * self.marks.get(symbol, pos.avg_price)

    @property
    def gross_exposure(self) -> float:
        return sum(abs(p.quantity) * self.marks.get(p.symbol, p.avg_price) for p in self.positions.values())

    @property
    def equity(self) -> float:
        return self.cash + sum(
            p.quantity * self.marks.get(p.symbol, p.avg_price) for p in self.positions.values()
        )

    @property
    def unrealized_pnl(self) -> float:
        return sum(
            p.quantity * (self.marks.get(p.symbol, p.avg_price) - p.avg_price)
            for p in self.positions.values()
        )

    @property
    def total_pnl(self) -> float:
        return self.equity - self.start_of_day_equity

    @property
    def realized_pnl(self) -> float:
        return self.total_pnl - self.unrealized_pnl

    @property
    def unrealized_pnl_pct(self) -> float:
        if self.start_of_day_equity <= 0:
            return 0.0
        return 100.0 * self.unrealized_pnl / self.start_of_day_equity

    @property
    def daily_drawdown_pct(self) -> float:
        """Drawdown from today's equity peak, as a positive percentage."""
        if self.peak_equity <= 0 or not math.isfinite(self.peak_equity):
            return 0.0
        return max(0.0, 100.0 * (self.peak_equity - self.equity) / self.peak_equity)
