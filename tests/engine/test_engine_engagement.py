"""The engine's latch follows the engagement identity of contract.md (issue #15, findings 4 and 7):
a halt from any path is lifted only by a release naming its engagement; an unrelated newer generation
never lifts it; the engagement survives a restart; a stronger ask while engaged is carried out (also
from the engine's own watch, i.e. with the operator down) and nothing weaker replaces it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import build_engine, engage_command, limit, market, ready_engine, release_command
from fastapi.testclient import TestClient
from quantzoo_api.killswitch import KillSwitchCommand, TradingState
from quantzoo_api.types import KillSwitchMode
from quantzoo_engine import killswitch
from quantzoo_engine.app import create_app
from quantzoo_engine.clock import ManualClock
from quantzoo_engine.killswitch import KillSwitchLatch, LatchDecision
from quantzoo_engine.kube_watch import interpret_event
from quantzoo_engine.orders import Side
from quantzoo_engine.runtime import EngineRuntime
from quantzoo_engine.settings import EngineSettings

T0 = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
T1 = datetime(2026, 1, 5, 15, 1, tzinfo=UTC)
A = "2026-01-05T15:00:00.000Z"  # the safety service's direct halt
E0 = "2026-01-05T14:00:00.000Z"  # an earlier engagement, from the spec


def direct_halt(engagement: str = A) -> KillSwitchCommand:
    return engage_command().model_copy(update={"engagement": engagement, "source": "safety-direct"})


def release(engagement: str | None, generation: int | None = None) -> KillSwitchCommand:
    return release_command(generation).model_copy(update={"engagement": engagement})


def ts(generation: int, **kill_switch: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "demo", "generation": generation, "resourceVersion": str(generation)},
        "spec": {"symbols": ["AAPL", "MSFT"], "killSwitch": kill_switch},
    }


def test_an_unrelated_newer_generation_never_lifts_a_direct_halt() -> None:
    latch = KillSwitchLatch()
    latch.apply(release_command(generation=7), T0)
    latch.apply(direct_halt(), T0)
    # A GitOps sync of the risk limits: generation 8, the switch as it was (not engaged, no release).
    decision = latch.apply(release(None, generation=8), T1)
    assert latch.status.engaged, "an unrelated newer generation lifted the direct halt"
    assert decision is LatchDecision.RELEASE_REFUSED
    assert latch.apply(release(E0, generation=9), T1) is LatchDecision.RELEASE_REFUSED  # an old record
    assert latch.status.engaged
    assert latch.apply(release(A, generation=10), T1) is LatchDecision.RELEASED


def test_a_release_in_flight_when_the_safety_service_halts_directly_is_refused() -> None:
    latch = KillSwitchLatch()
    latch.apply(engage_command(generation=3).model_copy(update={"engagement": E0}), T0)
    latch.apply(direct_halt(), T0)
    decision = latch.apply(release(E0, generation=4), T1)
    assert latch.status.engaged, "the release of the earlier engagement lifted the direct halt"
    assert decision is LatchDecision.RELEASE_REFUSED
    assert latch.status.engagement == A


def test_the_same_engagement_in_another_spelling_matches() -> None:
    latch = KillSwitchLatch()
    latch.apply(direct_halt("2026-01-05T15:00:00Z"), T0)
    assert latch.apply(release("2026-01-05T15:00:00.000+00:00", 2), T1) is LatchDecision.RELEASED


def test_the_spec_engagement_written_later_replaces_the_direct_one_only_when_newer() -> None:
    latch = KillSwitchLatch()
    latch.apply(release_command(generation=5), T0)
    latch.apply(direct_halt(), T0)
    # The unchanged spec re-read (generation 5) does not replace it; the safety's patch (6) does.
    latch.apply(engage_command(generation=5).model_copy(update={"engagement": E0}), T1)
    assert latch.status.engagement == A
    latch.apply(engage_command(generation=6).model_copy(update={"engagement": A}), T1)
    assert latch.apply(release(A, generation=7), T1) is LatchDecision.RELEASED


def test_the_kill_endpoint_refuses_a_release_naming_another_engagement(tmp_path: Path) -> None:
    settings = EngineSettings(admin_token="t", state_dir=tmp_path)  # type: ignore[arg-type]
    with TestClient(create_app(settings, with_feed=False)) as client:
        auth = {"Authorization": "Bearer t"}
        halt = direct_halt().model_dump(mode="json")
        assert client.post("/admin/kill-switch", json=halt, headers=auth).status_code == 200
        wrong = release(E0).model_dump(mode="json")
        refused = client.post("/admin/kill-switch", json=wrong, headers=auth)
        assert refused.status_code == 409
        assert refused.json()["detail"]["reason"] == "engagement_mismatch"
        assert client.get("/state").json()["kill_switch"]["engaged"] is True
        right = release(A).model_dump(mode="json")
        assert client.post("/admin/kill-switch", json=right, headers=auth).json()["engaged"] is False


@pytest.mark.anyio
async def test_the_engagement_survives_a_restart(tmp_path: Path, clock: ManualClock) -> None:
    first = build_engine(clock=clock)
    runtime = EngineRuntime(first, None, state_dir=tmp_path, shutdown_deadline_seconds=1)
    await runtime.start()
    await first.apply_kill_switch(direct_halt())
    await runtime.stop()

    # Restarted during the API-server outage: its config (and its first read) say "not engaged".
    second = build_engine(clock=clock)
    runtime = EngineRuntime(second, None, state_dir=tmp_path, shutdown_deadline_seconds=1)
    await runtime.start()
    try:
        await second.start()
        await second.on_watch_action(interpret_event("ADDED", ts(1)))
        assert second.trading_state is TradingState.HALTED, "the restart forgot the direct halt"
        assert second.kill.status.engagement == A
        with pytest.raises(killswitch.ReleaseRefused):
            await second.apply_kill_switch(release(None))
        release_a = {"engaged": False, "release": {"operator": "ann", "reason": "ok", "engagedAt": A}}
        await second.on_watch_action(interpret_event("MODIFIED", ts(2, **release_a)))
        assert not second.kill.status.engaged
    finally:
        await runtime.stop()


@pytest.mark.anyio
async def test_raising_close_positions_while_engaged_flattens_from_the_watch(clock: ManualClock) -> None:
    engine = await ready_engine(clock=clock)
    await engine.submit(market("MSFT", Side.BUY, 10))
    reduce = {"engaged": True, "mode": "ReduceOnly", "engagedAt": A}
    await engine.on_watch_action(interpret_event("MODIFIED", ts(2, **reduce)))
    assert engine.trading_state is TradingState.REDUCE_ONLY
    assert engine.portfolio.quantity("MSFT") == 10
    # Same engagement, stronger ask, operator down: only the engine's own watch sees it.
    await engine.on_watch_action(interpret_event("MODIFIED", ts(3, **reduce, closePositions=True)))
    assert engine.portfolio.positions == {}, "closePositions raised while engaged did not flatten"
    await engine.on_watch_action(interpret_event("MODIFIED", ts(4, **{**reduce, "mode": "Halt"})))
    assert engine.trading_state is TradingState.HALTED


@pytest.mark.anyio
async def test_nothing_but_a_release_weakens_an_engaged_switch(clock: ManualClock) -> None:
    engine = await ready_engine(clock=clock)
    await engine.apply_kill_switch(engage_command(close_positions=True, generation=2))
    ack = await engine.apply_kill_switch(engage_command(mode=KillSwitchMode.REDUCE_ONLY, generation=3))
    assert ack.trading_state is TradingState.HALTED, "a ReduceOnly ask weakened the Halt"
    assert engine.kill.status.mode is KillSwitchMode.HALT
    assert engine.kill.status.close_positions


@pytest.mark.anyio
async def test_a_repeated_engage_reports_what_the_engagement_did(clock: ManualClock) -> None:
    engine = await ready_engine(clock=clock)
    resting = (await engine.submit(limit("AAPL", Side.BUY, 5, 97.0))).order
    await engine.submit(market("MSFT", Side.BUY, 10))
    assert resting is not None
    # The engine's own watch gets there first and does the work ...
    engaged = {"engaged": True, "closePositions": True, "engagedAt": A}
    await engine.on_watch_action(interpret_event("MODIFIED", ts(2, **engaged)))
    # ... and the operator's push of the same engagement reports it, not "0 cancelled, 0 closed".
    push = engage_command(close_positions=True, generation=2).model_copy(update={"engagement": A})
    ack = await engine.apply_kill_switch(push)
    assert ack.cancelled_orders == [resting.id]
    assert ack.closed_positions == ["MSFT"]
    assert ack.engagement == A
