"""The kill switch's invariant, as a property: after an engage has been acknowledged, zero
position-increasing orders reach the broker until the switch is released.

Hypothesis draws interleavings of strategy signals and manual orders, price moves (which fill resting
limit orders and drive the moving-average strategy), engages in both modes (with and without
flattening, with and without generations) and releases (some stale). Each operation runs as its own
task and the broker takes a drawn number of loop turns to receive each order, so orders are genuinely
in flight when switches flip. The check runs at the moment an order reaches the broker, against the
broker's own book.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

from engine_helpers import (
    PRICES,
    Bars,
    engage_command,
    limit,
    make_spec,
    market,
    ready_engine,
    release_command,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from quantzoo_api.killswitch import KillSwitchCommand
from quantzoo_api.types import KillSwitchMode
from quantzoo_engine.broker.paper import PaperBroker
from quantzoo_engine.clock import ManualClock
from quantzoo_engine.engine import TradingEngine
from quantzoo_engine.killswitch import LatchDecision
from quantzoo_engine.orders import Order, OrderRequest, Side, increases_exposure
from quantzoo_engine.sdk import registry

SYMBOLS = list(PRICES)


@dataclass(frozen=True)
class Signal:
    symbol: str
    side: Side
    quantity: int
    limit_offset_pct: float | None  # None: market order


@dataclass(frozen=True)
class Burst:
    """The same order several times at once: overlapping in-flight orders (two "reducing" sells...)."""

    signal: Signal
    count: int


@dataclass(frozen=True)
class Move:
    symbol: str
    pct: float


@dataclass(frozen=True)
class Engage:
    mode: KillSwitchMode
    close_positions: bool
    generation: int | None


@dataclass(frozen=True)
class Release:
    generation: int | None


@dataclass(frozen=True)
class Pause:
    turns: int


symbols = st.sampled_from(SYMBOLS)
signals = st.builds(
    Signal,
    symbols,
    st.sampled_from(list(Side)),
    st.integers(1, 40),
    st.one_of(st.none(), st.floats(-3.0, 3.0)),
)
engages = st.builds(
    Engage, st.sampled_from(list(KillSwitchMode)), st.booleans(), st.one_of(st.none(), st.integers(0, 6))
)
bursts = st.builds(Burst, signals, st.integers(2, 4))
trading = st.one_of(
    signals,
    bursts,
    st.builds(Move, symbols, st.floats(-2.0, 2.0)),
    st.builds(Pause, st.integers(0, 30)),
)
operations = st.one_of(
    trading, bursts, signals, engages, st.builds(Release, st.one_of(st.none(), st.integers(0, 8)))
)
# Every scenario trades, engages, lets the engage be acknowledged, then keeps going (more orders,
# fills, engages and releases): the part after the first ack is where the invariant bites.
scenarios = st.builds(
    lambda before, engage, after: [*before, engage, Pause(30), *after],
    st.lists(trading, max_size=15),
    engages,
    st.lists(operations, min_size=1, max_size=30),
)


class LatentBroker(PaperBroker):
    """A paper broker that takes a few loop turns before an order reaches it, like a network hop."""

    def __init__(self, latencies: list[int], clock: ManualClock) -> None:
        super().__init__(clock=clock)
        self._latencies = itertools.cycle(latencies)

    async def submit_order(self, request: OrderRequest) -> Order:
        for _ in range(next(self._latencies)):
            await asyncio.sleep(0)
        return self.execute(request)


@dataclass
class Monitor:
    """Knows when an engaged acknowledgement is in force, and checks every order reaching the broker."""

    engine: TradingEngine | None = None
    broker: LatentBroker | None = None
    acknowledged: bool = False
    violations: list[str] = field(default_factory=list)
    checked: int = 0

    def on_order_reached(self, order: Order) -> None:
        assert self.engine is not None
        assert self.broker is not None
        if not (self.acknowledged and self.engine.kill.status.engaged):
            return
        self.checked += 1
        position = self.broker.position(order.symbol)
        working = self.broker.working_quantity(order.symbol, order.side)
        if increases_exposure(order.side, order.quantity, position, working):
            self.violations.append(
                f"{order.side} {order.quantity} {order.symbol} (position {position}, working {working}, "
                f"origin {order.origin}) reached the broker after an engaged ack"
            )


async def run_scenario(ops: list[object], latencies: list[int], *, broken: bool = False) -> Monitor:
    clock = ManualClock()
    spec = make_spec(
        strategy={"name": "maCrossover", "params": {"fastWindow": 2, "slowWindow": 3, "orderQuantity": 15}},
        risk={"maxOrdersPerSecond": 10_000, "maxOrdersPerMinute": 600_000},
    )
    broker = LatentBroker(latencies, clock)
    bars = Bars()
    engine = await ready_engine(
        spec, broker=broker, clock=clock, strategy=registry.build(spec.strategy), bars=bars
    )
    monitor = Monitor(engine=engine, broker=broker)
    broker.on_order_reached = monitor.on_order_reached

    apply = engine.kill.apply

    def apply_and_watch(cmd: KillSwitchCommand, now):  # type: ignore[no-untyped-def]
        decision = apply(cmd, now)
        if decision is LatchDecision.RELEASED:
            monitor.acknowledged = False  # the invariant holds until release
        return decision

    engine.kill.apply = apply_and_watch  # type: ignore[method-assign]
    if broken:
        # Negative control: an engine that "forgets" to block in memory must be caught by the monitor.
        engine.trading.kill_switch = lambda engaged, mode: None  # type: ignore[method-assign]

    async def engage(cmd: KillSwitchCommand) -> None:
        ack = await engine.apply_kill_switch(cmd)
        if ack.engaged:
            monitor.acknowledged = True

    prices = dict(PRICES)
    tasks: list[asyncio.Future[object]] = []

    def order_for(op: Signal) -> OrderRequest:
        if op.limit_offset_pct is None:
            return market(op.symbol, op.side, op.quantity)
        price = round(prices[op.symbol] * (1 + op.limit_offset_pct / 100), 2)
        return limit(op.symbol, op.side, op.quantity, price)

    for op in ops:
        if isinstance(op, Signal):
            tasks.append(asyncio.ensure_future(engine.submit(order_for(op))))
        elif isinstance(op, Burst):
            tasks.extend(asyncio.ensure_future(engine.submit(order_for(op.signal))) for _ in range(op.count))
        elif isinstance(op, Move):
            prices[op.symbol] = round(prices[op.symbol] * (1 + op.pct / 100), 2)
            tasks.append(asyncio.ensure_future(engine.on_bar(bars(op.symbol, prices[op.symbol]))))
        elif isinstance(op, Engage):
            cmd = engage_command(mode=op.mode, close_positions=op.close_positions, generation=op.generation)
            tasks.append(asyncio.ensure_future(engage(cmd)))
        elif isinstance(op, Release):
            tasks.append(asyncio.ensure_future(engine.apply_kill_switch(release_command(op.generation))))
        elif isinstance(op, Pause):
            for _ in range(op.turns):
                await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    return monitor


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(operations, min_size=1, max_size=40),
    latencies=st.lists(st.integers(0, 12), min_size=1, max_size=8),
)
def test_no_position_increasing_order_reaches_the_broker_after_an_engaged_ack(
    ops: list[object], latencies: list[int]
) -> None:
    monitor = asyncio.run(run_scenario(ops, latencies))
    assert monitor.violations == []


def test_the_monitor_catches_an_engine_that_does_not_block() -> None:
    ops: list[object] = [
        Engage(KillSwitchMode.HALT, False, None),
        Pause(10),
        Signal("AAPL", Side.BUY, 5, None),
    ]
    monitor = asyncio.run(run_scenario(ops, [0], broken=True))
    assert len(monitor.violations) == 1


def test_reduce_only_still_lets_reducing_orders_reach_the_broker() -> None:
    ops: list[object] = [
        Signal("AAPL", Side.BUY, 10, None),
        Pause(10),
        Engage(KillSwitchMode.REDUCE_ONLY, False, 1),
        Pause(10),
        Signal("AAPL", Side.SELL, 4, None),
        Signal("AAPL", Side.SELL, 20, None),
    ]
    monitor = asyncio.run(run_scenario(ops, [0, 2]))
    assert monitor.violations == []
    assert monitor.checked == 1  # the 4-lot reached the broker; the 20-lot was refused


def test_overlapping_reducing_orders_cannot_flip_the_position() -> None:
    # Long 10 in ReduceOnly, two sells of 8 in flight together: only one may reach the broker.
    ops: list[object] = [
        Signal("AAPL", Side.BUY, 10, None),
        Engage(KillSwitchMode.REDUCE_ONLY, False, 1),
        Pause(30),
        Burst(Signal("AAPL", Side.SELL, 8, None), 2),
    ]
    monitor = asyncio.run(run_scenario(ops, [3]))
    assert monitor.violations == []
    assert monitor.checked == 1


def test_a_reducing_order_cannot_race_the_flatten() -> None:
    # Found by the property: in ReduceOnly with closePositions, a "reducing" sell accepted while the
    # engine flattened landed after the flatten and opened a short. Nothing passes during the clean-up.
    ops: list[object] = [
        Signal("AAPL", Side.BUY, 1, None),
        Pause(6),
        Engage(KillSwitchMode.REDUCE_ONLY, True, None),
        Signal("AAPL", Side.SELL, 1, None),
    ]
    monitor = asyncio.run(run_scenario(ops, [6]))
    assert monitor.violations == []
