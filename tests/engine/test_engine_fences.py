"""The fences an engine that watches Kubernetes trades behind (proof.py, lease.py), without a cluster:
proof of the kill switch's state within a bound, and the trading Lease (decide is pure; the engine checks
both at the moment it sends). The real API server is in tests/faults/test_engine_partition.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from engine_helpers import limit, market, ready_engine
from quantzoo_api.killswitch import TradingState
from quantzoo_api.watching import Backoff
from quantzoo_engine.clock import ManualClock
from quantzoo_engine.kube_watch import Proof, interpret_event
from quantzoo_engine.lease import LeaseDecision, LeaseObserver, LeaseView, decide, lease_name
from quantzoo_engine.orders import Side
from quantzoo_engine.proof import Freshness, ProofOfState
from quantzoo_engine.settings import ConfigError, EngineSettings
from quantzoo_engine.state import HaltReason


def ts(generation: int = 1) -> dict[str, Any]:
    return {"metadata": {"name": "demo", "generation": generation}, "spec": {"symbols": ["AAPL", "MSFT"]}}


@pytest.mark.anyio
async def test_no_proof_within_the_bound_halts_and_fresh_proof_resumes(clock: ManualClock) -> None:
    engine = await ready_engine(clock=clock)
    engine.proof = ProofOfState.with_bound(5.0)
    await engine.on_watch_action(interpret_event("ADDED", ts()))
    assert engine.trading_state is TradingState.ACTIVE
    clock.advance(4.9)
    assert (await engine.submit(market("AAPL", Side.BUY, 1))).accepted
    clock.advance(0.2)  # 5.1 s since the last proof: the submit itself notices, no timer needed
    refused = await engine.submit(market("AAPL", Side.BUY, 1))
    assert refused.rejection is not None
    assert engine.trading_state is TradingState.HALTED
    assert HaltReason.NO_PROOF_OF_STATE in engine.trading.halt_reasons
    await engine.on_watch_action(Proof())  # a bookmark, or a watch the server ended cleanly
    assert engine.trading_state is TradingState.ACTIVE


@pytest.mark.anyio
async def test_no_proof_of_state_cancels_the_resting_orders_and_keeps_the_positions(
    clock: ManualClock,
) -> None:
    engine = await ready_engine(clock=clock)
    engine.proof = ProofOfState.with_bound(5.0)
    await engine.on_watch_action(interpret_event("ADDED", ts()))
    assert (await engine.submit(market("AAPL", Side.BUY, 1))).accepted
    resting = await engine.submit(limit("AAPL", Side.BUY, 1, 96.0))  # below the market (100): it rests
    assert resting.accepted
    held = {s: p.quantity for s, p in engine.portfolio.positions.items()}
    assert engine.orders.working_count == 1
    clock.advance(5.1)
    engine.check_fences()  # the fence timer's tick: halts, and starts the cancel (no await here)
    assert HaltReason.NO_PROOF_OF_STATE in engine.trading.halt_reasons
    for _ in range(50):  # the cancel runs on the loop (the paper broker answers without waiting)
        await asyncio.sleep(0)
    assert engine.orders.working_count == 0
    assert engine.state_view()["orders"]["cancelled_no_proof_of_state"] == 1
    assert {s: p.quantity for s, p in engine.portfolio.positions.items()} == held  # not flattened
    assert engine.kill.status.engaged is False


@pytest.mark.anyio
async def test_the_engine_stops_submitting_when_its_lease_validity_ends(clock: ManualClock) -> None:
    engine = await ready_engine(clock=clock)
    engine.lease_validity = Freshness(until=clock.monotonic() + 2.0)
    assert (await engine.submit(market("AAPL", Side.BUY, 1))).accepted
    clock.advance(2.0)
    assert not (await engine.submit(market("AAPL", Side.BUY, 1))).accepted
    assert engine.trading.halt_reasons == (HaltReason.NO_TRADING_LEASE,)
    engine.lease_validity.renew_until(clock.monotonic() + 10)
    engine.check_fences()
    assert engine.trading_state is TradingState.ACTIVE


def view(holder: str | None, duration: int = 15) -> LeaseView:
    return LeaseView(holder=holder, duration_seconds=duration, renew_time="t", resource_version="1")


@pytest.mark.parametrize(
    ("lease", "unchanged_for", "expected"),
    [
        (None, 0.0, LeaseDecision.CREATE),
        (view("me"), 0.0, LeaseDecision.RENEW),
        (view("other"), 14.9, LeaseDecision.WAIT),
        (view("other"), 15.0, LeaseDecision.TAKE_OVER),
        (view(None), 0.0, LeaseDecision.TAKE_OVER),  # released on a clean stop
    ],
)
def test_lease_decision(lease: LeaseView | None, unchanged_for: float, expected: LeaseDecision) -> None:
    assert decide(lease, "me", unchanged_for) is expected


def test_expiry_is_measured_from_when_this_engine_saw_the_record_change() -> None:
    observer = LeaseObserver()
    assert observer.unchanged_for(view("other"), 100.0) == 0.0
    assert observer.unchanged_for(view("other"), 110.0) == 10.0
    renewed = LeaseView(holder="other", duration_seconds=15, renew_time="t2", resource_version="2")
    assert observer.unchanged_for(renewed, 111.0) == 0.0
    assert lease_name("acct") == "acct-trading"


def test_backoff_doubles_to_its_maximum_and_resets() -> None:
    backoff = Backoff(initial=0.5, maximum=2.0)
    assert [backoff.next() for _ in range(4)] == [0.5, 1.0, 2.0, 2.0]
    backoff.reset()
    assert backoff.next() == 0.5


def test_lease_settings_must_leave_room_for_a_renewal() -> None:
    env = {
        "ENGINE_LEASE_DURATION_SECONDS": "6",
        "ENGINE_LEASE_MARGIN_SECONDS": "3",
        "ENGINE_KUBE_REQUEST_TIMEOUT_SECONDS": "1",
    }
    with pytest.raises(ConfigError, match="ENGINE_LEASE_RENEW_SECONDS"):
        EngineSettings.from_env({**env, "ENGINE_LEASE_RENEW_SECONDS": "2.5"})
    settings = EngineSettings.from_env(
        {**env, "ENGINE_LEASE_RENEW_SECONDS": "1", "ENGINE_PROOF_TIMEOUT_SECONDS": "4"}
    )
    assert settings.proof_timeout_seconds == 4.0
