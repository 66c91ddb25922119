"""SIGTERM during a TradingSystem's deletion: the engine reads its TradingSystem once as it stops, and carries
out the deletion's halt (flattening when asked) even when its watch never delivered the deletion.

Why: a foreground deletion (Argo CD's default) has the garbage collector delete the engine's pod while the
deletion's watch event may still be on its way; SIGTERM can win that race, and then only this read flattens.
The watch here is a stand-in that delivers the TradingSystem once and then nothing (the lost race); its
`read_now` answers what the API server would. With a real engine process and the real API server:
tests/faults/test_engine_stop_during_deletion.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import Bars, build_engine, market
from quantzoo_api.killswitch import TradingState
from quantzoo_engine.clock import ManualClock
from quantzoo_engine.kube_watch import SpecObserved, WatchAction, interpret_event
from quantzoo_engine.orders import Side
from quantzoo_engine.runtime import EngineRuntime

PRICES = {"AAPL": 190.0, "MSFT": 410.0}


def ts(*, deleting: bool = False, flatten: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "demo", "namespace": "t", "generation": 3, "resourceVersion": "42"}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-06T04:00:00Z"
    if flatten:
        meta["annotations"] = {"trading.quantzoo.io/flatten-on-delete": "true"}
    return {"kind": "TradingSystem", "metadata": meta, "spec": {"symbols": ["AAPL", "MSFT"]}}


class WatchThatLostTheRace:
    """Delivers the TradingSystem as it was before the deletion, then nothing; `read_now` sees `now`."""

    def __init__(self, on_action: Callable[[WatchAction], Any], now: dict[str, Any] | None) -> None:
        self.on_action = on_action
        self.now = now
        self.reads = 0

    async def run(self) -> None:
        await self.on_action(interpret_event("ADDED", ts()))
        await asyncio.Event().wait()

    def stop(self) -> None:
        pass

    def read_now(self, timeout_seconds: float) -> dict[str, Any] | None:
        self.reads += 1
        return self.now


async def trading_then_sigterm(
    tmp_path: Path, clock: ManualClock, now: dict[str, Any] | None
) -> tuple[Any, WatchThatLostTheRace]:
    engine = build_engine(clock=clock)
    watches: list[WatchThatLostTheRace] = []

    def factory(on_action: Callable[[WatchAction], Any]) -> WatchThatLostTheRace:
        watches.append(WatchThatLostTheRace(on_action, now))
        return watches[0]

    runtime = EngineRuntime(
        engine,
        None,
        state_dir=tmp_path,
        shutdown_deadline_seconds=4,
        watch_factory=factory,  # type: ignore[arg-type]
    )
    await runtime.start()
    bars = Bars()
    for _ in range(100):
        for symbol, price in PRICES.items():
            await engine.on_bar(bars(symbol, price))
        if engine.trading_state is TradingState.ACTIVE:
            break
        await asyncio.sleep(0.01)
    assert engine.trading_state is TradingState.ACTIVE
    assert (await engine.submit(market("AAPL", Side.BUY, 10))).accepted
    assert engine.portfolio.positions
    runtime.request_terminate()  # what the SIGTERM handler calls
    await runtime.stop()
    return engine, watches[0]


@pytest.mark.anyio
async def test_sigterm_before_the_deletions_event_still_flattens_when_asked(
    tmp_path: Path, clock: ManualClock
) -> None:
    engine, watch = await trading_then_sigterm(tmp_path, clock, ts(deleting=True, flatten=True))
    assert watch.reads == 1
    assert not engine.portfolio.positions, "the deletion asked for a flatten; SIGTERM won and skipped it"
    status = engine.kill.status
    assert (status.engaged, status.reason) == (True, "TradingSystem t/demo is being deleted")


@pytest.mark.anyio
async def test_sigterm_during_a_deletion_not_asking_to_flatten_keeps_the_positions(
    tmp_path: Path, clock: ManualClock
) -> None:
    engine, _ = await trading_then_sigterm(tmp_path, clock, ts(deleting=True))
    assert engine.portfolio.positions
    assert engine.kill.status.engaged


@pytest.mark.parametrize("now", [ts(), None], ids=["a-rolling-restart", "api-server-unreachable"])
@pytest.mark.anyio
async def test_sigterm_without_a_deletion_neither_halts_nor_flattens(
    tmp_path: Path, clock: ManualClock, now: dict[str, Any] | None
) -> None:
    """A rolling restart (or a read that fails) is no kill: positions stay, the switch stays released."""
    engine, _ = await trading_then_sigterm(tmp_path, clock, now)
    assert engine.portfolio.positions
    assert not engine.kill.status.engaged


def test_the_read_is_interpreted_as_the_watch_would() -> None:
    from quantzoo_engine.kube_watch import deletion_observed

    assert deletion_observed(None) is None
    assert deletion_observed(ts()) is None
    action = deletion_observed(ts(deleting=True, flatten=True))
    assert isinstance(action, SpecObserved)
    assert action.kill_switch.close_positions
