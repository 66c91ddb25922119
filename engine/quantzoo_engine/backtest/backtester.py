"""Drive the engine with historical bars on a simulated clock.

What runs is the live engine's code path, not a model of it: `TradingEngine.on_bar` (data-quality guard,
marks, the strategy called inline, `submit` with every pre-trade risk check and the kill-switch state
machine) against the in-process PaperBroker. The clock is a ManualClock moved to each bar's time, so
staleness, rate limits and day rolls see simulated time and nothing sleeps.

Fill model: a market order fills at the close of the bar that produced it (the paper broker's last
price); a resting limit fills when a later close trades through it, at that close.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from quantzoo_api.types import TradingSystemSpec

from quantzoo_engine.broker.paper import PaperBroker
from quantzoo_engine.clock import ManualClock
from quantzoo_engine.engine import TradingEngine
from quantzoo_engine.feed.base import Bar
from quantzoo_engine.feed.replay import infer_bar_interval
from quantzoo_engine.killswitch import command_from_spec
from quantzoo_engine.orders import Fill, Order
from quantzoo_engine.sdk import Strategy


@dataclass(slots=True)
class BacktestResult:
    spec: TradingSystemSpec
    bars: int
    started: datetime | None
    ended: datetime | None
    initial_equity: float
    times: list[datetime] = field(default_factory=list)
    equity: array[float] = field(default_factory=lambda: array("d"))
    fills: list[Fill] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    submitted: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    strategy_health: dict[str, Any] = field(default_factory=dict)
    final_trading_state: str = ""
    wall_seconds: float = 0.0

    @property
    def bars_per_second(self) -> float:
        return self.bars / self.wall_seconds if self.wall_seconds else 0.0


async def _run(
    spec: TradingSystemSpec, bars: Sequence[Bar], strategy: Strategy[Any] | None
) -> BacktestResult:
    start = bars[0].timestamp if bars else None
    clock = ManualClock(start)
    broker = PaperBroker(spec.broker.initial_cash, clock)
    broker.fill_log = []
    engine = TradingEngine(
        spec=spec,
        broker=broker,
        clock=clock,
        strategy=strategy,  # None: the one spec.strategy names, from the entry-point group
        pod="backtest",
        name="backtest",
        bar_interval_seconds=infer_bar_interval(list(bars[:1000])),
    )
    command = command_from_spec(spec.kill_switch, generation=None, default_source="backtest")
    engine.apply_kill_switch_now(command)
    engine.kill_switch_read()
    await engine.start()
    result = BacktestResult(
        spec=spec, bars=0, started=start, ended=None, initial_equity=engine.portfolio.equity
    )
    symbols = frozenset(spec.symbols)
    times, equity = result.times, result.equity
    portfolio = engine.portfolio
    last_time: datetime | None = None
    last_date = start.date() if start else None
    wall = time.perf_counter()
    for bar in bars:
        if bar.symbol not in symbols:
            continue
        ts = bar.timestamp
        if ts != last_time:
            if last_time is not None:
                times.append(last_time)
                equity.append(portfolio.equity)
            clock.advance_to(ts)
            if ts.date() != last_date:
                last_date = ts.date()
                await engine.housekeeping()  # the day roll (drawdown baseline), as live once a second
            last_time = ts
        await engine.on_bar(bar)
        result.bars += 1
    if last_time is not None:
        times.append(last_time)
        equity.append(portfolio.equity)
    result.wall_seconds = time.perf_counter() - wall
    result.ended = last_time
    result.fills = list(broker.fill_log)
    result.orders = list(broker.received)
    result.submitted = engine.counts.submitted
    result.rejected_by_reason = dict(engine.counts.rejected_by_reason)
    result.strategy_health = engine.strategy_runner.health.view()
    result.final_trading_state = str(engine.trading_state)
    await engine.strategy_runner.stop()
    return result


def run_backtest(
    spec: TradingSystemSpec, bars: Sequence[Bar], *, strategy: Strategy[Any] | None = None
) -> BacktestResult:
    """Run `bars` (sorted by time) through an engine built from `spec`; raises StrategyConfigError for
    an unknown strategy or a bad parameter, as the live engine does."""
    return asyncio.run(_run(spec, bars, strategy))
