"""Strategies on the SDK: the shipped ones (crossover, Bollinger reversion, breakout, noop), found through
the entry-point group, their parameters validated by their own models, and traded by the engine."""

from __future__ import annotations

from typing import Any

import pytest
from engine_helpers import Bars, make_spec, ready_engine
from quantzoo_api.types import RiskLimits, StrategySpec
from quantzoo_engine.orders import Side
from quantzoo_engine.sdk import OrderIntent, Strategy, StrategyContext, registry, reversal_size
from quantzoo_engine.strategy import BollingerReversion, Breakout, MovingAverageCrossover, NoopStrategy

LIMITS = RiskLimits()


def ctx(position: float = 0.0, limits: RiskLimits = LIMITS) -> StrategyContext:
    return StrategyContext(
        now=Bars().start, position=position, working=0.0, cash=1e6, equity=1e6, limits=limits
    )


def feed(strategy: Strategy[Any], prices: list[float], position: float = 0.0) -> list[list[tuple]]:
    bars = Bars()
    return [[(o.side, o.quantity) for o in strategy.on_bar(bars("AAPL", p), ctx(position))] for p in prices]


def crossover(**params: Any) -> MovingAverageCrossover:
    return MovingAverageCrossover(MovingAverageCrossover.Params.model_validate(params))


def test_crossover_trades_only_on_a_crossover_not_on_warm_up() -> None:
    s = crossover(fastWindow=2, slowWindow=4, orderQuantity=10)
    # Rising from the start: the first regime seen is "up", which is not a crossover.
    assert all(not x for x in feed(s, [10, 11, 12, 13, 14, 15]))
    # Turn down: fast drops below slow -> one sell to reach -10.
    assert [x for x in feed(s, [12, 9, 8]) if x] == [[(Side.SELL, 10.0)]]


def test_crossover_order_is_the_distance_to_the_target() -> None:
    s = crossover(fastWindow=2, slowWindow=4, orderQuantity=10)
    feed(s, [10, 11, 12, 13])
    assert [x for x in feed(s, [9, 8], position=10.0) if x] == [[(Side.SELL, 20.0)]]


def test_sizing_stays_inside_the_risk_limits() -> None:
    tight = RiskLimits(max_order_notional=1_000, max_position_notional=900, max_gross_exposure=900)
    assert reversal_size(1_000, 100.0, tight) == 5  # a reversal (2 x 5 x 100) fits maxOrderNotional 1000
    assert reversal_size(1_000, 1.0, RiskLimits(max_order_quantity=6)) == 3


def test_bollinger_buys_below_the_band_and_exits_at_the_mean() -> None:
    s = BollingerReversion(BollingerReversion.Params(window=5, num_std=1.5, order_quantity=4))
    bars = Bars()
    for p in [100, 101, 99, 100, 101]:
        assert not s.on_bar(bars("AAPL", p), ctx())
    (buy,) = s.on_bar(bars("AAPL", 85), ctx())
    assert (buy.side, buy.quantity) == (Side.BUY, 4.0)
    (exit_,) = s.on_bar(bars("AAPL", 102), ctx(position=4.0))
    assert (exit_.side, exit_.quantity) == (Side.SELL, 4.0)


def test_breakout_goes_with_the_break_and_exits_on_the_short_channel() -> None:
    s = Breakout(Breakout.Params(window=3, exit_window=2, order_quantity=5))
    bars = Bars()
    for p in [100, 101, 100]:
        assert not s.on_bar(bars("AAPL", p), ctx())
    (buy,) = s.on_bar(bars("AAPL", 103), ctx())
    assert (buy.side, buy.quantity) == (Side.BUY, 5.0)
    assert not s.on_bar(bars("AAPL", 104), ctx(position=5.0))
    (out,) = s.on_bar(bars("AAPL", 102.5), ctx(position=5.0))  # under the 2-bar low only: flatten
    assert (out.side, out.quantity) == (Side.SELL, 5.0)


def test_noop_never_trades_and_ignores_old_crossover_params() -> None:
    s = registry.build(StrategySpec(name="noop", params={"fastWindow": 5, "slowWindow": 20}))
    assert isinstance(s, NoopStrategy)
    assert not s.on_bar(Bars()("AAPL", 1.0), ctx())


def test_the_shipped_strategies_are_found_through_the_entry_point_group() -> None:
    assert {"maCrossover", "bollingerReversion", "breakout", "noop"} <= set(registry.available())
    s = registry.build(StrategySpec(params={"fastWindow": 3, "slowWindow": 7, "orderQuantity": 4}))
    assert isinstance(s, MovingAverageCrossover)
    assert (s.fast_window, s.slow_window, s.params.order_quantity) == (3, 7, 4)


@pytest.mark.parametrize(
    ("name", "params", "field", "words"),
    [
        ("martingale", {}, "strategy.name", "unknown strategy 'martingale'"),
        ("maCrossover", {"fastWindow": 30, "slowWindow": 10}, "strategy.params.slowWindow", "greater than"),
        ("maCrossover", {"fastWindow": 1}, "strategy.params.fastWindow", "greater than or equal to 2"),
        ("maCrossover", {"leverage": 10}, "strategy.params.leverage", "Extra inputs"),
        ("bollingerReversion", {"numStd": "wide"}, "strategy.params.numStd", "valid number"),
        ("breakout", {"window": 5, "exitWindow": 9}, "strategy.params.exitWindow", "must not exceed"),
    ],
)
def test_a_bad_strategy_spec_names_the_field(name: str, params: dict, field: str, words: str) -> None:
    with pytest.raises(registry.StrategyConfigError) as exc:
        registry.build(StrategySpec(name=name, params=params))
    assert exc.value.field == field
    assert words in str(exc.value)


@pytest.mark.anyio
async def test_engine_trades_the_crossover_and_tracks_the_position() -> None:
    spec = make_spec(
        strategy={"name": "maCrossover", "params": {"fastWindow": 2, "slowWindow": 4, "orderQuantity": 7}}
    )
    bars = Bars()
    engine = await ready_engine(spec, strategy=registry.build(spec.strategy), bars=bars)
    for price in [100, 101, 102, 103, 100, 98, 97]:
        await engine.on_bar(bars("AAPL", price))
    assert engine.portfolio.quantity("AAPL") == -7
    assert engine.counts.submitted == 1
    assert engine.counts.filled == 1


class _Raises(Strategy[Any]):
    def __init__(self) -> None:
        super().__init__(None)
        self.calls = 0

    def on_bar(self, bar: Any, ctx: StrategyContext) -> list[OrderIntent]:
        self.calls += 1
        raise RuntimeError("division by zero in my signal")


@pytest.mark.anyio
async def test_a_strategy_that_keeps_raising_is_stopped_and_reported() -> None:
    bars = Bars()
    strategy = _Raises()
    engine = await ready_engine(make_spec(), strategy=strategy, bars=bars)
    calls_at_start = strategy.calls
    for price in range(100, 120):
        await engine.on_bar(bars("AAPL", float(price)))
    health = engine.state_view()["strategy_health"]
    assert health["status"] == "failed"
    assert "5 bars in a row" in health["last_error"]
    assert "division by zero" in health["last_error"]
    assert strategy.calls - calls_at_start <= 5  # stopped, not retried forever
    assert engine.trading_state == "ACTIVE"  # manual orders and the kill path are untouched


@pytest.mark.anyio
async def test_a_live_change_to_a_bad_strategy_trades_nothing() -> None:
    spec = make_spec(strategy={"name": "maCrossover", "params": {"fastWindow": 2, "slowWindow": 4}})
    bars = Bars()
    engine = await ready_engine(spec, strategy=registry.build(spec.strategy), bars=bars)
    bad = make_spec(strategy={"name": "maCrossover", "params": {"fastWindow": 2, "slowWindow": 2}})
    assert "strategy" in engine.apply_spec_now(bad)
    for price in [100, 101, 102, 103, 100, 98, 97]:
        await engine.on_bar(bars("AAPL", price))
    health = engine.state_view()["strategy_health"]
    assert (health["status"], engine.counts.submitted) == ("failed", 0)
    assert "strategy.params.slowWindow" in health["last_error"]
