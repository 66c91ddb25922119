"""A strategy that never trades: the engine runs, marks prices and answers the API, nothing more."""

from __future__ import annotations

from quantzoo_api.types import RiskLimits

from quantzoo_engine.feed.base import Bar
from quantzoo_engine.orders import OrderRequest


class NoopStrategy:
    name = "noop"

    def on_bar(self, bar: Bar, position: float) -> list[OrderRequest]:
        return []

    def update_limits(self, limits: RiskLimits) -> None:
        return None
