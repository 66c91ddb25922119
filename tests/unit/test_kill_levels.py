"""Levels of the kill switch (issue #13), pure: the engine's aggregation of one latch per holder, which
objects cover which system, the level watch's reading of a TradingHalt/TradingAccount, proof per level."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from quantzoo_api.killswitch import KillSwitchCommand
from quantzoo_api.levels import HaltScope, KillLevel, halt_body, halt_name_for, holder_of, parse_halt_spec
from quantzoo_api.types import KillSwitchMode
from quantzoo_engine.killswitch import KillSwitchLevels, LatchDecision, commands_from_persisted
from quantzoo_engine.level_watch import interpret_account, interpret_halt
from quantzoo_engine.proof import ProofOfState

NOW = datetime(2026, 12, 5, 21, 0, tzinfo=UTC)
FIRM = holder_of(KillLevel.FIRM, "firm")
DESK = holder_of(KillLevel.DESK, "desk-trading")
ACCOUNT = holder_of(KillLevel.ACCOUNT, "main", "trading")


def engage(holder: str | None, at: str, **kw: object) -> KillSwitchCommand:
    level = KillLevel.SYSTEM if holder is None else KillLevel(holder.split("/")[0])
    return KillSwitchCommand(engaged=True, engagement=at, level=level, holder=holder, reason="r", **kw)


def release(holder: str | None, at: str | None) -> KillSwitchCommand:
    level = KillLevel.SYSTEM if holder is None else KillLevel(holder.split("/")[0])
    return KillSwitchCommand(engaged=False, engagement=at, level=level, holder=holder)


def test_a_release_at_a_lower_level_does_not_lift_a_higher_kill() -> None:
    levels = KillSwitchLevels("trading", "demo")
    assert levels.apply(engage(FIRM, "2026-12-05T21:00:00.000Z"), NOW) is LatchDecision.ENGAGED
    assert levels.apply(engage(None, "2026-12-05T21:00:01.000Z"), NOW) is LatchDecision.REPEATED
    assert levels.apply(release(None, "2026-12-05T21:00:01.000Z"), NOW) is LatchDecision.RELEASED
    assert levels.status.engaged
    assert [h.name for h in levels.status.held_by] == [FIRM]
    assert levels.apply(release(FIRM, "2026-12-05T21:00:00.000Z"), NOW) is LatchDecision.RELEASED
    assert not levels.status.engaged
    assert levels.status.held_by == ()


def test_a_release_reaches_only_the_latch_it_names() -> None:
    levels = KillSwitchLevels("trading", "demo")
    levels.apply(engage(DESK, "2026-12-05T21:00:00.000Z"), NOW)
    levels.apply(engage(ACCOUNT, "2026-12-05T21:00:02.000Z"), NOW)
    # The desk's engagement named at the account's level: refused, nothing changes.
    assert levels.apply(release(ACCOUNT, "2026-12-05T21:00:00.000Z"), NOW) is LatchDecision.RELEASE_REFUSED
    assert {h.name for h in levels.status.held_by} == {DESK, ACCOUNT}
    assert levels.held(ACCOUNT) == "2026-12-05T21:00:02.000Z"


def test_the_effective_state_is_the_strongest_and_a_stronger_level_escalates() -> None:
    levels = KillSwitchLevels("trading", "demo")
    levels.apply(engage(None, "2026-12-05T21:00:00.000Z", mode=KillSwitchMode.REDUCE_ONLY), NOW)
    assert levels.status.mode is KillSwitchMode.REDUCE_ONLY
    decision = levels.apply(engage(FIRM, "2026-12-05T21:00:01.000Z", close_positions=True), NOW)
    assert decision is LatchDecision.ESCALATED
    assert levels.status.mode is KillSwitchMode.HALT
    assert levels.status.close_positions
    # The system's own engagement stays the one acks carry (the operator matches it to engagedAt).
    assert levels.status.engagement == "2026-12-05T21:00:00.000Z"
    assert [h.level for h in levels.status.held_by] == [KillLevel.FIRM, KillLevel.SYSTEM]


def test_a_higher_level_names_the_engagement_when_the_system_is_not_engaged() -> None:
    levels = KillSwitchLevels("trading", "demo")
    levels.apply(engage(ACCOUNT, "2026-12-05T21:00:03.000Z"), NOW)
    levels.apply(engage(DESK, "2026-12-05T21:00:04.000Z"), NOW)
    assert levels.status.engagement == "2026-12-05T21:00:04.000Z"  # Desk is above Account
    assert levels.version > 0


def test_every_level_survives_a_restart() -> None:
    levels = KillSwitchLevels("trading", "demo")
    levels.apply(engage(FIRM, "2026-12-05T21:00:00.000Z"), NOW)
    levels.apply(engage(ACCOUNT, "2026-12-05T21:00:01.000Z", mode=KillSwitchMode.REDUCE_ONLY), NOW)
    restarted = KillSwitchLevels("trading", "demo")
    for command in commands_from_persisted(levels.persisted()):
        restarted.apply(command, NOW)
    assert {h.name: h.engaged_at for h in restarted.status.held_by} == {
        FIRM: "2026-12-05T21:00:00.000Z",
        ACCOUNT: "2026-12-05T21:00:01.000Z",
    }
    # Still only a release naming it lifts each.
    assert restarted.apply(release(FIRM, "2026-12-05T21:00:09.000Z"), NOW) is LatchDecision.RELEASE_REFUSED


def test_an_older_single_latch_file_still_restores_and_a_bad_holder_is_skipped() -> None:
    data = {"engaged": True, "mode": "Halt", "engagement": "x", "levels": {"Nope/x": {"engaged": True}}}
    commands = commands_from_persisted(data)
    assert [(c.level, c.holder) for c in commands] == [(KillLevel.SYSTEM, None)]


def test_a_command_names_a_holder_of_its_level() -> None:
    with pytest.raises(ValidationError):
        KillSwitchCommand(engaged=True, level=KillLevel.DESK, holder=FIRM)
    with pytest.raises(ValidationError):
        KillSwitchCommand(engaged=True, level=KillLevel.FIRM)
    assert KillSwitchCommand(engaged=True).level is KillLevel.SYSTEM


def test_scopes_cover_the_firm_or_the_desk_namespace() -> None:
    assert HaltScope(level=KillLevel.FIRM).covers("anything")
    desk = HaltScope(level=KillLevel.DESK, namespace="trading")
    assert desk.covers("trading")
    assert not desk.covers("other")
    assert halt_name_for(KillLevel.DESK, "trading") == "desk-trading"
    assert parse_halt_spec(halt_body(KillLevel.DESK, "trading")["spec"]).scope == desk


def _halt(name: str, scope: dict[str, object], **ks: object) -> dict[str, object]:
    return {"metadata": {"name": name, "generation": 2}, "spec": {"scope": scope, "killSwitch": ks}}


def test_the_engine_reads_a_halt_only_when_it_covers_its_namespace() -> None:
    desk = _halt(
        "desk-a", {"level": "Desk", "namespace": "a"}, engaged=True, engagedAt="2026-12-05T21:00:00Z"
    )
    assert interpret_halt(desk, "b") is None
    command = interpret_halt(desk, "a")
    assert command is not None
    assert command.engaged
    assert command.holder == "Desk/desk-a"
    assert command.engagement == "2026-12-05T21:00:00.000Z"
    assert command.generation == 2
    firm = interpret_halt(_halt("firm", {"level": "Firm"}), "b")
    assert firm is not None
    assert not firm.engaged
    assert firm.holder == FIRM


def test_an_unreadable_halt_or_account_fails_closed() -> None:
    command = interpret_halt(_halt("firm", {"level": "Firm"}, engaged="maybe"), "a")
    assert command is not None
    assert command.engaged
    assert command.holder == FIRM
    account = interpret_account(
        {"metadata": {"name": "main"}, "spec": {"limits": {"maxDailyLoss": -1}}}, "trading"
    )
    assert account.engaged
    assert account.holder == ACCOUNT


def test_proof_of_state_needs_every_watched_level() -> None:
    proof = ProofOfState.with_bound(10)
    proof.watch("halts")
    proof.prove(0.0)
    assert not proof.fresh(1.0)
    assert proof.unproven(1.0) == ["halts"]
    proof.prove(0.0, "halts")
    assert proof.fresh(1.0)
    proof.lose("halts")
    assert not proof.fresh(1.0)
