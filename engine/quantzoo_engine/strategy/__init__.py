"""Strategies turn bars into order requests; `build_strategy` picks one from spec.strategy."""

from quantzoo_api.types import RiskLimits, StrategyName, StrategySpec

from quantzoo_engine.strategy.base import Strategy
from quantzoo_engine.strategy.ma_crossover import MovingAverageCrossover
from quantzoo_engine.strategy.noop import NoopStrategy


def build_strategy(spec: StrategySpec, limits: RiskLimits) -> Strategy:
    if spec.name is StrategyName.NOOP:
        return NoopStrategy()
    return MovingAverageCrossover(
        fast_window=spec.params.fast_window,
        slow_window=spec.params.slow_window,
        order_quantity=spec.params.order_quantity,
        limits=limits,
    )


__all__ = ["MovingAverageCrossover", "NoopStrategy", "Strategy", "build_strategy"]
