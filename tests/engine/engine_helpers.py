"""Helpers for the engine tests: specs, bars on a grid, an engine that is ready to trade.

A module of its own (not conftest.py) so test modules can import it by a name no other test folder uses.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from typing import Any

from quantzoo_api.killswitch import KillSwitchCommand
from quantzoo_api.types import KillSwitchMode, TradingSystemSpec, parse_spec
from quantzoo_engine.broker.base import Broker
from quantzoo_engine.broker.paper import PaperBroker
from quantzoo_engine.clock import ManualClock
from quantzoo_engine.engine import TradingEngine
from quantzoo_engine.feed.base import Bar
from quantzoo_engine.metrics import EngineMetrics
from quantzoo_engine.orders import OrderRequest, OrderType, Side
from quantzoo_engine.sdk import Strategy
from quantzoo_engine.strategy import NoopStrategy

PRICES = {"AAPL": 100.0, "MSFT": 200.0}


def make_spec(**camel: Any) -> TradingSystemSpec:
    """A spec from camelCase overrides, validated like the operator's config file."""
    raw: dict[str, Any] = {"symbols": list(PRICES)}
    raw.update(camel)
    return parse_spec(raw)


class Bars:
    """Bars on a regular one-second grid per symbol, so no bar looks missing unless a test skips one."""

    def __init__(self, start: datetime | None = None, interval: float = 1.0) -> None:
        self.start = start or datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
        self.interval = interval
        self._n: dict[str, int] = {}

    def __call__(self, symbol: str, price: float, skip: int = 0) -> Bar:
        n = self._n.get(symbol, 0) + 1 + skip
        self._n[symbol] = n
        ts = self.start + timedelta(seconds=n * self.interval)
        return Bar(symbol, ts, price, price, price, price, 1_000)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def release_command(generation: int | None = None) -> KillSwitchCommand:
    return KillSwitchCommand(engaged=False, generation=generation, source="test")


def engage_command(
    *,
    mode: KillSwitchMode = KillSwitchMode.HALT,
    close_positions: bool = False,
    generation: int | None = None,
) -> KillSwitchCommand:
    return KillSwitchCommand(
        engaged=True,
        mode=mode,
        close_positions=close_positions,
        generation=generation,
        reason="test",
        operator="pytest",
        source="test",
    )


def market(symbol: str, side: Side, quantity: float, **kw: Any) -> OrderRequest:
    return OrderRequest(symbol=symbol, side=side, quantity=quantity, **kw)


def limit(symbol: str, side: Side, quantity: float, price: float, **kw: Any) -> OrderRequest:
    return OrderRequest(
        symbol=symbol, side=side, quantity=quantity, order_type=OrderType.LIMIT, limit_price=price, **kw
    )


def build_engine(
    spec: TradingSystemSpec | None = None,
    *,
    broker: Broker | None = None,
    clock: ManualClock | None = None,
    strategy: Strategy[Any] | None = None,
    kill_deadline_seconds: float = 1.0,
) -> TradingEngine:
    clock = clock or ManualClock()
    spec = spec or make_spec()
    return TradingEngine(
        spec=spec,
        broker=broker or PaperBroker(spec.broker.initial_cash, clock),
        clock=clock,
        strategy=strategy or NoopStrategy(NoopStrategy.Params()),
        metrics=EngineMetrics(),
        kill_deadline_seconds=kill_deadline_seconds,
        pod="test-pod",
    )


async def ready_engine(
    spec: TradingSystemSpec | None = None,
    *,
    broker: Broker | None = None,
    clock: ManualClock | None = None,
    strategy: Strategy[Any] | None = None,
    prices: dict[str, float] | None = None,
    bars: Bars | None = None,
    kill_deadline_seconds: float = 1.0,
) -> TradingEngine:
    """An engine that has read a released kill switch, reconciled, and seen one bar per symbol: ACTIVE."""
    engine = build_engine(
        spec, broker=broker, clock=clock, strategy=strategy, kill_deadline_seconds=kill_deadline_seconds
    )
    engine.apply_kill_switch_now(release_command())
    engine.kill_switch_read()
    await engine.start()
    bars = bars or Bars()
    for symbol, price in (prices or PRICES).items():
        await engine.on_bar(bars(symbol, price))
    return engine
