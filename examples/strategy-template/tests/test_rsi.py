"""Tests of the example strategy: the signal on its own, then a backtest through QuantZoo's engine."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from quantzoo_api.types import RiskLimits, parse_spec
from quantzoo_engine.backtest import run_backtest
from quantzoo_engine.backtest.synthetic import synthetic_bars
from quantzoo_engine.sdk import Bar, Side, StrategyContext, registry
from quantzoo_strategy_template.rsi import RsiReversion

T = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def ctx(position: float = 0.0) -> StrategyContext:
    return StrategyContext(now=T, position=position, working=0.0, cash=1e6, equity=1e6, limits=RiskLimits())


def bar(close: float) -> Bar:
    return Bar("AAPL", T, close, close, close, close, 100.0)


def test_oversold_buys_and_the_entry_point_finds_it() -> None:
    s = registry.build(parse_spec({"strategy": {"name": "rsiReversion", "params": {"period": 3}}}).strategy)
    assert isinstance(s, RsiReversion)
    out = [s.on_bar(bar(p), ctx()) for p in (100, 99, 98, 97)]
    assert out[-1][0].side is Side.BUY


def test_bad_thresholds_are_refused() -> None:
    with pytest.raises(ValidationError, match="greater than oversold"):
        RsiReversion.Params(oversold=60, overbought=40)


def test_a_backtest_trades_inside_the_risk_limits() -> None:
    spec = parse_spec(
        {"symbols": ["AAPL"], "strategy": {"name": "rsiReversion"}, "risk": {"maxOrderQuantity": 8}}
    )
    result = run_backtest(spec, list(synthetic_bars(3_000, ["AAPL"], start=T, seed=3)))
    assert result.submitted > 0
    assert all(o.quantity <= 8 for o in result.orders)
    assert result.strategy_health["status"] == "running"
