"""Strategies: moving-average crossover with sizing inside the risk limits, and noop."""

from __future__ import annotations

import pytest
from engine_helpers import Bars, make_spec, ready_engine
from quantzoo_api.types import RiskLimits, StrategyName, StrategyParams, StrategySpec
from quantzoo_engine.orders import Side
from quantzoo_engine.strategy import MovingAverageCrossover, NoopStrategy, build_strategy

LIMITS = RiskLimits()


def feed(strategy: MovingAverageCrossover, prices: list[float], position: float = 0.0) -> list[list[tuple]]:
    bars = Bars()
    out = []
    for p in prices:
        orders = strategy.on_bar(bars("AAPL", p), position)
        out.append([(o.side, o.quantity) for o in orders])
    return out


def test_trades_only_on_a_crossover_not_on_warm_up() -> None:
    s = MovingAverageCrossover(2, 4, order_quantity=10, limits=LIMITS)
    # Rising from the start: the first regime seen is "up", which is not a crossover.
    signals = feed(s, [10, 11, 12, 13, 14, 15])
    assert all(not x for x in signals)
    # Turn down: fast drops below slow -> one sell to reach -10.
    signals = feed(s, [12, 9, 8])
    assert [x for x in signals if x] == [[(Side.SELL, 10.0)]]


def test_order_is_the_distance_to_the_target() -> None:
    s = MovingAverageCrossover(2, 4, order_quantity=10, limits=LIMITS)
    feed(s, [10, 11, 12, 13])
    signals = feed(s, [9, 8], position=10.0)  # long 10 -> target -10: sell 20
    assert [x for x in signals if x] == [[(Side.SELL, 20.0)]]


def test_sizing_stays_inside_the_risk_limits() -> None:
    tight = RiskLimits(max_order_notional=1_000, max_position_notional=900, max_gross_exposure=900)
    s = MovingAverageCrossover(2, 4, order_quantity=1_000, limits=tight)
    assert s.size(100.0) == 5  # a reversal (2 x 5 x 100) fits maxOrderNotional 1000
    s.update_limits(RiskLimits(max_order_quantity=6))
    assert s.size(1.0) == 3


def test_noop_never_trades() -> None:
    assert NoopStrategy().on_bar(Bars()("AAPL", 1.0), 0.0) == []


def test_build_strategy_from_spec() -> None:
    assert isinstance(build_strategy(StrategySpec(name=StrategyName.NOOP), LIMITS), NoopStrategy)
    s = build_strategy(
        StrategySpec(params=StrategyParams(fast_window=3, slow_window=7, order_quantity=4)), LIMITS
    )
    assert isinstance(s, MovingAverageCrossover)
    assert (s.fast_window, s.slow_window, s.order_quantity) == (3, 7, 4)


@pytest.mark.anyio
async def test_engine_trades_the_crossover_and_tracks_the_position() -> None:
    spec = make_spec(
        strategy={"name": "maCrossover", "params": {"fastWindow": 2, "slowWindow": 4, "orderQuantity": 7}}
    )
    bars = Bars()
    engine = await ready_engine(spec, strategy=build_strategy(spec.strategy, spec.risk), bars=bars)
    for price in [100, 101, 102, 103, 100, 98, 97]:
        await engine.on_bar(bars("AAPL", price))
    assert engine.portfolio.quantity("AAPL") == -7
    assert engine.counts.submitted == 1
    assert engine.counts.filled == 1
