"""A strategy that never trades: the engine runs, marks prices and answers the API, nothing more."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ConfigDict

from quantzoo_engine.sdk import Bar, OrderIntent, Strategy, StrategyContext, StrategyParams


class NoopParams(StrategyParams):
    # No parameters. Ignore any: TradingSystems stored under the old CRD carry maCrossover's defaults.
    model_config = ConfigDict(extra="ignore")


class NoopStrategy(Strategy[NoopParams]):
    Params = NoopParams

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> Sequence[OrderIntent]:
        return ()
