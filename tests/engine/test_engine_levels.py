"""The engine under several levels (issue #13): what its kill path does and answers when a level other
than its own holds it. No cluster: the level commands are applied as the level watch hands them over."""

from __future__ import annotations

import pytest
from engine_helpers import market, ready_engine
from quantzoo_api.killswitch import KillSwitchCommand, TradingState
from quantzoo_api.levels import KillLevel, holder_of
from quantzoo_engine.level_watch import LevelObserved
from quantzoo_engine.orders import Side

FIRM = holder_of(KillLevel.FIRM, "firm")


def firm(engaged: bool, at: str = "2026-12-05T21:00:00.000Z") -> KillSwitchCommand:
    return KillSwitchCommand(engaged=engaged, engagement=at, level=KillLevel.FIRM, holder=FIRM, reason="firm")


@pytest.mark.anyio
async def test_a_system_release_under_a_firm_kill_acknowledges_the_release_and_stays_halted() -> None:
    """The operator's push of a system release must read as acknowledged (the system's own switch is
    released) while the engine stays HALTED for the firm: else the operator marks the system Degraded
    and re-pushes the release for ever."""
    engine = await ready_engine()
    await engine.on_watch_action(LevelObserved("halts", (firm(True),)))
    assert engine.trading_state is TradingState.HALTED
    own = "2026-12-05T21:00:05.000Z"
    engaged = await engine.apply_kill_switch(KillSwitchCommand(engaged=True, engagement=own))
    assert engaged.engaged
    assert engaged.engagement == own
    ack = await engine.apply_kill_switch(KillSwitchCommand(engaged=False, engagement=own))
    assert ack.engaged is False  # the command's own level: released
    assert ack.trading_state is TradingState.HALTED  # the firm still holds it
    assert (await engine.submit(market("AAPL", Side.BUY, 1))).rejection is not None
    assert [h.name for h in engine.kill.status.held_by] == [FIRM]


@pytest.mark.anyio
async def test_a_level_engage_cancels_and_its_release_lets_the_engine_trade() -> None:
    engine = await ready_engine()
    await engine.on_watch_action(LevelObserved("halts", (firm(True),)))
    assert engine.state_view()["kill_switch"]["held_by"][0]["name"] == FIRM
    await engine.on_watch_action(LevelObserved("halts", (firm(False, "2026-12-05T21:00:09.000Z"),)))
    assert engine.trading_state is TradingState.HALTED  # a release naming another engagement: ignored
    await engine.on_watch_action(LevelObserved("halts", (firm(False),)))
    assert engine.trading_state is TradingState.ACTIVE
    assert (await engine.submit(market("AAPL", Side.BUY, 1))).accepted
