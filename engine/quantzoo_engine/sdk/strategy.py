"""The base class of every strategy, and the base of its parameter model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from quantzoo_engine.feed.base import Bar
from quantzoo_engine.sdk.context import StrategyContext
from quantzoo_engine.sdk.intents import OrderIntent


class StrategyParams(BaseModel):
    """Parameters as written in `spec.strategy.params` (camelCase); unknown keys are refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


P = TypeVar("P", bound=StrategyParams)


class Strategy(Generic[P]):
    """Subclass it, set `Params` to your parameter model and implement `on_bar`.

    `on_bar` runs in a process of its own in a live engine and inline in a backtest: keep state on
    `self`, read the world only through the bar and the context, return intents (or an empty list).
    """

    Params: ClassVar[type[StrategyParams]] = StrategyParams

    def __init__(self, params: P) -> None:
        self.params = params

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> Sequence[OrderIntent]:
        raise NotImplementedError
