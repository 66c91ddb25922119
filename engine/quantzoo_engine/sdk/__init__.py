"""The strategy SDK: what a quant implements to run a strategy on QuantZoo.

A strategy is a class with a pydantic `Params` model and an `on_bar(bar, ctx)` method that returns
order intents. It never sees the broker: every intent passes the engine's pre-trade risk checks and the
kill switch before anything is sent. Strategies are found by name through the Python entry-point group
`quantzoo.strategies` (docs/STRATEGIES.md walks through writing, backtesting and deploying one).

    from quantzoo_engine.sdk import Bar, OrderIntent, Side, Strategy, StrategyContext, StrategyParams
"""

from quantzoo_engine.feed.base import Bar
from quantzoo_engine.orders import OrderType, Side, TimeInForce
from quantzoo_engine.sdk.context import StrategyContext
from quantzoo_engine.sdk.intents import OrderIntent
from quantzoo_engine.sdk.registry import ENTRY_POINT_GROUP
from quantzoo_engine.sdk.sizing import reversal_size
from quantzoo_engine.sdk.strategy import Strategy, StrategyParams

__all__ = [
    "ENTRY_POINT_GROUP",
    "Bar",
    "OrderIntent",
    "OrderType",
    "Side",
    "Strategy",
    "StrategyContext",
    "StrategyParams",
    "TimeInForce",
    "reversal_size",
]
