"""The strategy interface: a bar in, zero or more order requests out. No I/O, no broker access."""

from __future__ import annotations

from typing import Protocol

from quantzoo_api.types import RiskLimits

from quantzoo_engine.feed.base import Bar
from quantzoo_engine.orders import OrderRequest


class Strategy(Protocol):
    name: str

    def on_bar(self, bar: Bar, position: float) -> list[OrderRequest]:
        """`position` is the current position plus working orders, so a strategy does not double up."""
        ...

    def update_limits(self, limits: RiskLimits) -> None:
        """Risk limits changed live; a strategy that sizes from them picks the new ones up."""
        ...
