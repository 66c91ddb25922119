"""Which kill-switch commands count (killswitch.py): engages always, releases only if not stale."""

from __future__ import annotations

from datetime import UTC, datetime

from engine_helpers import engage_command, release_command
from quantzoo_api.killswitch import KillSwitchCommand
from quantzoo_api.types import KillSwitchMode, KillSwitchSpec, ReleaseRecord
from quantzoo_engine.killswitch import KillSwitchLatch, LatchDecision, command_from_spec

T0 = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
T1 = datetime(2026, 1, 5, 15, 1, tzinfo=UTC)


def test_engage_then_release() -> None:
    latch = KillSwitchLatch()
    assert latch.apply(engage_command(generation=3), T0) is LatchDecision.ENGAGED
    assert latch.status.engaged
    assert latch.status.since == T0
    assert latch.apply(release_command(generation=4), T1) is LatchDecision.RELEASED
    assert not latch.status.engaged


def test_release_older_than_newest_engage_is_ignored() -> None:
    latch = KillSwitchLatch()
    latch.apply(engage_command(generation=5), T0)
    assert latch.apply(release_command(generation=4), T1) is LatchDecision.STALE_RELEASE_IGNORED
    assert latch.status.engaged
    assert latch.status.generation == 5


def test_release_at_the_engage_generation_counts() -> None:
    # Only a *lower* generation is stale (the contract); the same generation is not older.
    latch = KillSwitchLatch()
    latch.apply(engage_command(generation=5), T0)
    assert latch.apply(release_command(generation=5), T1) is LatchDecision.RELEASED


def test_release_without_generation_cannot_undo_a_generation_engage() -> None:
    latch = KillSwitchLatch()
    latch.apply(engage_command(generation=5), T0)
    assert latch.apply(release_command(generation=None), T1) is LatchDecision.STALE_RELEASE_IGNORED


def test_direct_halt_without_generation_needs_a_newer_change_to_release() -> None:
    latch = KillSwitchLatch()
    # The engine has read generation 7 (not engaged); then the safety service halts it directly.
    latch.apply(release_command(generation=7), T0)
    latch.apply(engage_command(generation=None), T0)
    # Re-reading the unchanged spec (still generation 7, not engaged) must not resume trading.
    assert latch.apply(release_command(generation=7), T1) is LatchDecision.STALE_RELEASE_IGNORED
    assert latch.status.engaged
    assert latch.apply(release_command(generation=8), T1) is LatchDecision.RELEASED


def test_standalone_release_without_any_generation() -> None:
    latch = KillSwitchLatch()
    latch.apply(engage_command(), T0)
    assert latch.apply(release_command(), T1) is LatchDecision.RELEASED


def test_repeated_engage_is_idempotent_and_keeps_since() -> None:
    latch = KillSwitchLatch()
    latch.apply(engage_command(generation=2), T0)
    version = latch.version
    assert latch.apply(engage_command(generation=2), T1) is LatchDecision.REPEATED
    assert latch.status.since == T0
    assert latch.version == version


def test_a_stronger_mode_escalates_the_engagement() -> None:
    latch = KillSwitchLatch()
    latch.apply(engage_command(mode=KillSwitchMode.REDUCE_ONLY, generation=2), T0)
    decision = latch.apply(engage_command(mode=KillSwitchMode.HALT, generation=3), T1)
    assert decision is LatchDecision.ESCALATED
    assert latch.status.mode is KillSwitchMode.HALT


def test_release_when_not_engaged() -> None:
    latch = KillSwitchLatch()
    assert latch.apply(release_command(generation=1), T0) is LatchDecision.ALREADY_RELEASED
    assert not latch.status.engaged


def test_command_from_spec() -> None:
    engaged = KillSwitchSpec(engaged=True, mode=KillSwitchMode.REDUCE_ONLY, close_positions=True, reason="r")
    cmd = command_from_spec(engaged, generation=9, default_source="kubernetes-watch")
    assert cmd == KillSwitchCommand(
        engaged=True,
        mode=KillSwitchMode.REDUCE_ONLY,
        close_positions=True,
        reason="r",
        operator="unknown",  # who is defaulted, as every path does (quantzoo_api.killswitch.to_command)
        source="kubernetes-watch",
        generation=9,
        issued_at=cmd.issued_at,
    )
    released = KillSwitchSpec(release=ReleaseRecord(operator="ann", reason="fixed"))
    cmd = command_from_spec(released, generation=10, default_source="config")
    assert (cmd.engaged, cmd.operator, cmd.reason, cmd.generation) == (False, "ann", "fixed", 10)
