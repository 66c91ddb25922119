"""The engine's watch of its own TradingSystem: event -> action (pure), action -> engine, and the loop
reporting a lost view. Against a real API server this is tested elsewhere; here no cluster is needed.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from engine_helpers import build_engine, engage_command, market, ready_engine
from quantzoo_api.killswitch import TradingState
from quantzoo_api.types import KillSwitchMode
from quantzoo_engine.clock import ManualClock
from quantzoo_engine.kube_watch import (
    Ignore,
    KubeWatch,
    Proof,
    Relist,
    ResourceDeleted,
    SpecObserved,
    ViewLost,
    WatchAction,
    interpret_event,
)
from quantzoo_engine.orders import Side
from quantzoo_engine.risk.checks import RejectReason
from quantzoo_engine.state import HaltReason


def ts(generation: int = 3, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "trading.quantzoo.io/v1alpha1",
        "kind": "TradingSystem",
        "metadata": {"name": "demo", "namespace": "t", "generation": generation, "resourceVersion": "42"},
        "spec": {"symbols": ["AAPL", "MSFT"], **spec},
    }


def test_added_or_modified_is_a_spec_observation() -> None:
    action = interpret_event(
        "MODIFIED", ts(7, killSwitch={"engaged": True, "mode": "ReduceOnly", "reason": "r"})
    )
    assert isinstance(action, SpecObserved)
    assert action.generation == 7
    assert action.resource_version == "42"
    assert action.kill_switch.engaged
    assert action.kill_switch.mode is KillSwitchMode.REDUCE_ONLY
    assert action.kill_switch.generation == 7
    assert action.kill_switch.source == "kubernetes-watch"
    released = interpret_event("ADDED", ts(8, killSwitch={"engaged": False}))
    assert isinstance(released, SpecObserved)
    assert not released.kill_switch.engaged


@pytest.mark.parametrize(
    ("event_type", "obj", "expected"),
    [
        ("DELETED", ts(), ResourceDeleted),
        ("BOOKMARK", {"metadata": {"resourceVersion": "9"}}, Proof),
        ("ERROR", {"code": 410, "reason": "Expired"}, Relist),
        ("ERROR", {"code": 500, "reason": "InternalError"}, ViewLost),
        ("MODIFIED", ts(risk={"maxOrderQuantity": "lots"}), ViewLost),
        ("MODIFIED", {"metadata": {}, "spec": "garbage"}, ViewLost),
        ("SOMETHING", {}, Ignore),
    ],
)
def test_other_events(event_type: str, obj: dict[str, Any], expected: type) -> None:
    assert isinstance(interpret_event(event_type, obj), expected)


@pytest.mark.anyio
async def test_watch_applies_risk_limits_live(clock: ManualClock) -> None:
    engine = await ready_engine(clock=clock)
    assert (await engine.submit(market("AAPL", Side.BUY, 50))).accepted
    await engine.on_watch_action(interpret_event("MODIFIED", ts(4, risk={"maxOrderQuantity": 20})))
    result = await engine.submit(market("AAPL", Side.BUY, 50))
    assert result.rejection is not None
    assert result.rejection.reason is RejectReason.MAX_ORDER_QUANTITY


@pytest.mark.anyio
async def test_watch_engages_and_releases(clock: ManualClock) -> None:
    engine = await ready_engine(clock=clock)
    await engine.on_watch_action(interpret_event("MODIFIED", ts(5, killSwitch={"engaged": True})))
    assert engine.trading_state is TradingState.HALTED
    # A stale event (older generation, not engaged) does not release it.
    await engine.on_watch_action(interpret_event("MODIFIED", ts(4)))
    assert engine.trading_state is TradingState.HALTED
    release = {"engaged": False, "release": {"operator": "ann", "reason": "fixed"}}
    await engine.on_watch_action(interpret_event("MODIFIED", ts(6, killSwitch=release)))
    assert engine.trading_state is TradingState.ACTIVE


def deleting(generation: int = 5, flatten: bool = False, **spec: Any) -> dict[str, Any]:
    obj = ts(generation, **spec)
    obj["metadata"]["deletionTimestamp"] = "2026-12-06T04:00:00Z"
    if flatten:
        obj["metadata"]["annotations"] = {"trading.quantzoo.io/flatten-on-delete": "true"}
    return obj


@pytest.mark.parametrize(
    ("obj", "flatten"),
    [
        (deleting(), False),
        (deleting(flatten=True), True),
        (deleting(killSwitch={"engaged": True, "closePositions": True}), True),
        # A released switch on a TradingSystem being deleted is still the deletion's halt.
        (deleting(killSwitch={"engaged": False, "release": {"operator": "ann", "reason": "r"}}), False),
    ],
)
def test_a_tradingsystem_being_deleted_is_a_halt_flattening_only_when_asked(
    obj: dict[str, Any], flatten: bool
) -> None:
    """A foreground deletion (Argo CD's default) has the garbage collector delete the engine's pod while the
    operator's finalizer runs: the engine's own watch applies the deletion's halt itself."""
    action = interpret_event("MODIFIED", obj)
    assert isinstance(action, SpecObserved)
    command = action.kill_switch
    assert (command.engaged, command.mode, command.close_positions) == (True, KillSwitchMode.HALT, flatten)
    assert command.reason == "TradingSystem t/demo is being deleted"
    assert command.source == "kubernetes-watch"


@pytest.mark.anyio
async def test_the_watch_of_a_deletion_halts_and_flattens_a_trading_engine(clock: ManualClock) -> None:
    engine = await ready_engine(clock=clock)
    assert (await engine.submit(market("AAPL", Side.BUY, 10))).accepted
    assert engine.portfolio.positions
    await engine.on_watch_action(interpret_event("MODIFIED", deleting(flatten=True)))
    assert engine.trading_state is TradingState.HALTED
    assert not engine.portfolio.positions


@pytest.mark.anyio
async def test_lost_view_halts_an_active_engine_until_read_again(clock: ManualClock) -> None:
    engine = await ready_engine(clock=clock)
    await engine.on_watch_action(ViewLost("API server down"))
    assert engine.trading_state is TradingState.HALTED
    assert HaltReason.KILL_SWITCH_STATE_UNKNOWN in engine.trading.halt_reasons
    assert not engine.ready
    # A direct release (say, a push) does not end it: only reading the state does.
    await engine.apply_kill_switch(engage_command())
    await engine.apply_kill_switch(engage_command().model_copy(update={"engaged": False}))
    assert engine.trading_state is TradingState.HALTED
    await engine.on_watch_action(interpret_event("ADDED", ts(3)))
    assert engine.trading_state is TradingState.ACTIVE


@pytest.mark.anyio
async def test_lost_view_while_halted_stays_halted(clock: ManualClock) -> None:
    engine = await ready_engine(clock=clock)
    await engine.on_watch_action(interpret_event("MODIFIED", ts(5, killSwitch={"engaged": True})))
    await engine.on_watch_action(ViewLost("watch error"))
    await engine.on_watch_action(interpret_event("ADDED", ts(5, killSwitch={"engaged": True})))
    assert engine.trading_state is TradingState.HALTED


@pytest.mark.anyio
async def test_engine_in_watch_mode_starts_halted_until_the_first_read(clock: ManualClock) -> None:
    engine = build_engine(clock=clock)
    await engine.start()
    assert engine.trading_state is TradingState.HALTED
    assert engine.state_view()["kill_switch_state_known"] is False
    await engine.on_watch_action(interpret_event("ADDED", ts(1)))
    assert engine.trading_state is TradingState.ACTIVE


class FakeCustomObjects:
    """Stands in for kubernetes.client.CustomObjectsApi: the list answers, the watch call fails."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj
        self.lists = 0
        self.list_fails = threading.Event()

    def list_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("watch"):
            raise ConnectionError("watch connection reset")
        self.lists += 1
        if self.list_fails.is_set():
            raise ConnectionError("API server down")
        return {"items": [self.obj], "metadata": {"resourceVersion": "1"}}


@pytest.mark.anyio
async def test_watch_loop_reports_observation_then_lost_view() -> None:
    api = FakeCustomObjects(ts(2, killSwitch={"engaged": True}))
    seen: list[WatchAction] = []
    got_both = asyncio.Event()

    async def on_action(action: WatchAction) -> None:
        seen.append(action)
        if any(isinstance(a, ViewLost) for a in seen):
            got_both.set()

    watch = KubeWatch("t", "demo", on_action, max_backoff_seconds=0.05)
    watch._custom_objects_api = lambda: api  # type: ignore[method-assign]
    task = asyncio.ensure_future(watch.run())
    try:
        await asyncio.wait_for(got_both.wait(), 5)
    finally:
        watch.stop()
        task.cancel()
    assert isinstance(seen[0], SpecObserved)
    assert seen[0].kill_switch.engaged
    lost = next(a for a in seen if isinstance(a, ViewLost))
    assert "ConnectionError" in lost.reason


@pytest.mark.anyio
async def test_watch_halts_before_anything_else_happens(clock: ManualClock) -> None:
    engine = await ready_engine(clock=clock)
    seen: list[TradingState] = []

    async def slow_feed_follow(symbols: list[str]) -> None:  # say, a websocket re-subscription
        seen.append(engine.trading_state)

    engine.on_symbols_changed = slow_feed_follow
    event = ts(9, symbols=["AAPL", "NVDA"], killSwitch={"engaged": True})
    await engine.on_watch_action(interpret_event("MODIFIED", event))
    assert seen == [TradingState.HALTED]
