"""The engine's side of the kill switch: block first, then cancel and flatten, then acknowledge."""

from __future__ import annotations

import asyncio

import pytest
from engine_helpers import (
    build_engine,
    engage_command,
    limit,
    make_spec,
    market,
    ready_engine,
    release_command,
)
from quantzoo_api.killswitch import TradingState
from quantzoo_api.types import KillSwitchMode
from quantzoo_engine.broker.base import CancelReport, FlattenReport
from quantzoo_engine.broker.paper import PaperBroker
from quantzoo_engine.clock import ManualClock
from quantzoo_engine.engine import TradingEngine
from quantzoo_engine.kube_watch import ResourceDeleted
from quantzoo_engine.orders import Order, OrderRequest, OrderStatus, Side
from quantzoo_engine.risk.checks import RejectReason
from quantzoo_engine.state import HaltReason


class SpyBroker(PaperBroker):
    """Records what the engine's state was when each kill-path call reached the broker."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock=clock)
        self.engine: TradingEngine | None = None
        self.state_at_cancel: TradingState | None = None
        self.refused_at_cancel: RejectReason | None = None

    async def cancel_all_orders(self, deadline_seconds: float) -> CancelReport:
        assert self.engine is not None
        self.state_at_cancel = self.engine.trading_state
        # Try to slip an order in while the broker is being called: it must be refused.
        result = await self.engine.submit(market("AAPL", Side.BUY, 1))
        self.refused_at_cancel = result.rejection.reason if result.rejection else None
        return await super().cancel_all_orders(deadline_seconds)


@pytest.mark.anyio
async def test_orders_are_blocked_before_the_broker_is_called(clock: ManualClock) -> None:
    broker = SpyBroker(clock)
    engine = await ready_engine(broker=broker, clock=clock)
    broker.engine = engine
    ack = await engine.apply_kill_switch(engage_command())
    assert broker.state_at_cancel is TradingState.HALTED
    assert broker.refused_at_cancel is RejectReason.TRADING_HALTED
    assert (ack.engaged, ack.trading_state, ack.pod) == (True, TradingState.HALTED, "test-pod")


@pytest.mark.anyio
async def test_engage_cancels_working_orders_and_flattens(clock: ManualClock) -> None:
    engine = await ready_engine(clock=clock)
    await engine.submit(market("MSFT", Side.BUY, 10))
    resting = (await engine.submit(limit("AAPL", Side.BUY, 5, 97.0))).order
    assert resting is not None
    assert resting.status is OrderStatus.NEW
    ack = await engine.apply_kill_switch(engage_command(close_positions=True, generation=4))
    assert ack.cancelled_orders == [resting.id]
    assert ack.closed_positions == ["MSFT"]
    assert ack.errors == []
    assert ack.generation == 4
    assert engine.orders.working() == []
    assert engine.portfolio.positions == {}
    assert engine.orders.get(resting.id).status is OrderStatus.CANCELED  # type: ignore[union-attr]
    view = engine.state_view()
    assert view["kill_switch"]["engaged"] is True
    assert view["kill_switch"]["operator"] == "pytest"
    assert view["trading_state"] == "HALTED"
    registry = engine.metrics.registry
    assert registry.get_sample_value("quantzoo_engine_kill_switch_engaged") == 1
    assert registry.get_sample_value("quantzoo_engine_orders_cancelled_total", {"cause": "kill_switch"}) == 1
    assert registry.get_sample_value("quantzoo_engine_kill_switch_engage_seconds_count") == 1


@pytest.mark.anyio
async def test_engage_is_idempotent(clock: ManualClock) -> None:
    engine = await ready_engine(clock=clock)
    await engine.submit(limit("AAPL", Side.SELL, 5, 103.0))
    first = await engine.apply_kill_switch(engage_command(close_positions=True))
    since = engine.kill.status.since
    clock.advance(5)
    second = await engine.apply_kill_switch(engage_command(close_positions=True))
    assert len(first.cancelled_orders) == 1
    # A repeat does no new work, and reports what the engagement did (whichever call did it).
    assert (second.cancelled_orders, second.closed_positions, second.engaged) == (
        first.cancelled_orders,
        first.closed_positions,
        True,
    )
    assert engine.kill.status.since == since


@pytest.mark.anyio
async def test_halted_engine_refuses_every_order_and_release_resumes(clock: ManualClock) -> None:
    engine = await ready_engine(clock=clock)
    await engine.apply_kill_switch(engage_command(generation=2))
    result = await engine.submit(market("AAPL", Side.SELL, 1))
    assert result.rejection is not None
    assert result.rejection.reason is RejectReason.TRADING_HALTED
    ack = await engine.apply_kill_switch(release_command(generation=3))
    assert (ack.engaged, ack.trading_state) == (False, TradingState.ACTIVE)
    assert (await engine.submit(market("AAPL", Side.BUY, 1))).accepted


@pytest.mark.anyio
async def test_stale_release_is_ignored_and_the_ack_says_so(clock: ManualClock) -> None:
    engine = await ready_engine(clock=clock)
    await engine.apply_kill_switch(engage_command(generation=5))
    ack = await engine.apply_kill_switch(release_command(generation=4))
    assert (ack.engaged, ack.trading_state, ack.generation) == (True, TradingState.HALTED, 5)


class SlowBroker(PaperBroker):
    """Orders take a few loop turns to reach the book, like a network call."""

    async def submit_order(self, request: OrderRequest) -> Order:
        for _ in range(5):
            await asyncio.sleep(0)
        return self.execute(request)


@pytest.mark.anyio
async def test_in_flight_orders_land_before_the_cancel_and_get_cancelled(clock: ManualClock) -> None:
    broker = SlowBroker(clock=clock)
    engine = await ready_engine(broker=broker, clock=clock)
    in_flight = asyncio.ensure_future(engine.submit(limit("AAPL", Side.BUY, 5, 97.0)))
    await asyncio.sleep(0)  # the order passed the checks and is on its way
    ack = await engine.apply_kill_switch(engage_command())
    order = (await in_flight).order
    assert order is not None
    assert ack.cancelled_orders == [order.id]
    assert await broker.open_orders() == []


class HangingBroker(PaperBroker):
    async def cancel_all_orders(self, deadline_seconds: float) -> CancelReport:
        await asyncio.sleep(3600)
        return CancelReport()

    async def close_all_positions(self, deadline_seconds: float) -> FlattenReport:
        await asyncio.sleep(3600)
        return FlattenReport()


@pytest.mark.anyio
async def test_kill_path_answers_within_its_deadline_even_if_the_broker_hangs(clock: ManualClock) -> None:
    engine = await ready_engine(broker=HangingBroker(clock=clock), clock=clock, kill_deadline_seconds=0.05)
    ack = await asyncio.wait_for(engine.apply_kill_switch(engage_command(close_positions=True)), 5)
    assert ack.engaged
    assert ack.trading_state is TradingState.HALTED
    assert any("cancel all orders" in e for e in ack.errors)
    assert any("close all positions" in e for e in ack.errors)
    assert engine.errors_total >= 2


@pytest.mark.anyio
async def test_engage_before_reconcile_is_enforced_right_after(clock: ManualClock) -> None:
    broker = PaperBroker(clock=clock)
    broker.on_price("AAPL", 100.0, clock.now())
    await broker.submit_order(limit("AAPL", Side.BUY, 5, 90.0))  # left over from a previous run
    engine = build_engine(broker=broker, clock=clock)
    ack = await engine.apply_kill_switch(engage_command(close_positions=False))
    assert ack.errors  # said honestly: nothing could be cancelled yet
    engine.kill_switch_read()
    await engine.start()
    assert engine.trading_state is TradingState.HALTED
    assert await broker.open_orders() == []


@pytest.mark.anyio
async def test_reduce_only_engage_cancels_too(clock: ManualClock) -> None:
    engine = await ready_engine(clock=clock)
    await engine.submit(limit("AAPL", Side.BUY, 5, 97.0))
    ack = await engine.apply_kill_switch(engage_command(mode=KillSwitchMode.REDUCE_ONLY))
    assert ack.trading_state is TradingState.REDUCE_ONLY
    assert len(ack.cancelled_orders) == 1


@pytest.mark.anyio
async def test_resource_deleted_halts(clock: ManualClock) -> None:
    engine = await ready_engine(clock=clock)
    await engine.on_watch_action(ResourceDeleted())
    assert engine.trading_state is TradingState.HALTED
    assert engine.kill.status.reason == "TradingSystem deleted"


@pytest.mark.anyio
async def test_shutdown_cancels_working_orders_and_stays_halted(clock: ManualClock) -> None:
    engine = await ready_engine(clock=clock)
    resting = (await engine.submit(limit("AAPL", Side.BUY, 5, 97.0))).order
    report = await engine.shutdown(1.0)
    assert report.cancelled_orders == [resting.id]  # type: ignore[union-attr]
    assert report.clean
    assert HaltReason.SHUTTING_DOWN in engine.trading.halt_reasons
    await engine.apply_kill_switch(release_command())
    assert engine.trading_state is TradingState.HALTED
    assert (
        engine.metrics.registry.get_sample_value(
            "quantzoo_engine_orders_cancelled_total", {"cause": "shutdown"}
        )
        == 1
    )


@pytest.mark.anyio
async def test_standalone_start_with_switch_engaged_in_config(clock: ManualClock) -> None:
    from quantzoo_engine.killswitch import command_from_spec

    spec = make_spec(killSwitch={"engaged": True, "reason": "left on", "operator": "ann"})
    engine = build_engine(spec, clock=clock)
    engine.apply_kill_switch_now(
        command_from_spec(spec.kill_switch, generation=None, default_source="config")
    )
    engine.kill_switch_read()
    await engine.start()
    assert engine.trading_state is TradingState.HALTED
    assert engine.ready  # ready (it knows the state), but halted


@pytest.mark.anyio
async def test_the_signal_handler_half_of_shutdown_blocks_at_once(clock: ManualClock) -> None:
    engine = await ready_engine(clock=clock)
    engine.block_for_shutdown()  # what SIGTERM does inside the handler: state only, no logs, no locks
    result = await engine.submit(market("AAPL", Side.BUY, 1))
    assert result.rejection is not None
    assert result.rejection.reason is RejectReason.TRADING_HALTED
    await engine.shutdown(1.0)  # the loop's half reports it
    state = engine.metrics.registry.get_sample_value("quantzoo_engine_trading_state", {"state": "HALTED"})
    assert state == 1
