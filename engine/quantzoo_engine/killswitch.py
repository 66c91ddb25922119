"""The engine's side of the kill switch: which commands count. Pure, no I/O.

Every path (operator push, the engine's own watch, the safety service's direct halt, and the config file
of an engine run without Kubernetes) arrives here as a `KillSwitchCommand`. The latch decides what it means:

- An engage always counts (a stale engage can only make the engine safer).
- A release counts only if it is not older than the newest engage: a release whose `generation` is
  lower than the newest engage generation seen is ignored, so a delayed push cannot undo a newer kill.
- An engage without a generation (the safety service halting directly while the API server is down)
  can only be released by a command carrying a generation newer than any seen when it arrived, i.e. by
  a deliberate change to the TradingSystem; re-reading the unchanged spec does not resume trading.

The broker work (cancel, flatten) is the engine's (engine.py); this module only decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from quantzoo_api.killswitch import KillSwitchCommand
from quantzoo_api.types import KillSwitchMode, KillSwitchSpec


class LatchDecision(StrEnum):
    ENGAGED = "engaged"  # was released (or in another mode), now engaged
    REPEATED = "repeated"  # same engage again (idempotent)
    RELEASED = "released"
    ALREADY_RELEASED = "already_released"
    STALE_RELEASE_IGNORED = "stale_release_ignored"


@dataclass(frozen=True, slots=True)
class KillSwitchStatus:
    engaged: bool = False
    mode: KillSwitchMode = KillSwitchMode.HALT
    close_positions: bool = False
    reason: str | None = None
    operator: str | None = None
    source: str | None = None
    generation: int | None = None
    since: datetime | None = None


class KillSwitchLatch:
    def __init__(self) -> None:
        self.status = KillSwitchStatus()
        self.newest_engage_generation: int | None = None
        self.max_generation_seen: int | None = None
        # A release needs generation >= this (None: any release counts).
        self._release_floor: int | None = None
        # Bumped on every change of engaged/mode, so observers can tell "the same engagement" apart.
        self.version = 0

    def release_allowed(self, generation: int | None) -> bool:
        if self._release_floor is None:
            return True
        return generation is not None and generation >= self._release_floor

    def apply(self, cmd: KillSwitchCommand, now: datetime) -> LatchDecision:
        if cmd.generation is not None:
            self.max_generation_seen = max(self.max_generation_seen or 0, cmd.generation)
        if cmd.engaged:
            return self._engage(cmd, now)
        return self._release(cmd, now)

    def _engage(self, cmd: KillSwitchCommand, now: datetime) -> LatchDecision:
        previous = self.status
        if cmd.generation is not None:
            self.newest_engage_generation = max(self.newest_engage_generation or 0, cmd.generation)
            floor = self.newest_engage_generation
        else:
            # Direct halt without a generation: only a newer change of the resource may release it.
            floor = None if self.max_generation_seen is None else self.max_generation_seen + 1
        if floor is not None:
            self._release_floor = max(self._release_floor or 0, floor)
        same = previous.engaged and previous.mode is cmd.mode
        self.status = KillSwitchStatus(
            engaged=True,
            mode=cmd.mode,
            close_positions=cmd.close_positions,
            reason=cmd.reason,
            operator=cmd.operator,
            source=cmd.source,
            generation=cmd.generation if cmd.generation is not None else previous.generation,
            since=previous.since if same and previous.since else now,
        )
        if same:
            return LatchDecision.REPEATED
        self.version += 1
        return LatchDecision.ENGAGED

    def _release(self, cmd: KillSwitchCommand, now: datetime) -> LatchDecision:
        if not self.status.engaged:
            if cmd.generation is not None and self.release_allowed(cmd.generation):
                self.status = KillSwitchStatus(
                    engaged=False, generation=cmd.generation, source=cmd.source, operator=cmd.operator
                )
            return LatchDecision.ALREADY_RELEASED
        if not self.release_allowed(cmd.generation):
            return LatchDecision.STALE_RELEASE_IGNORED
        self.status = KillSwitchStatus(
            engaged=False,
            reason=cmd.reason,
            operator=cmd.operator,
            source=cmd.source,
            generation=cmd.generation,
            since=now,
        )
        self._release_floor = None
        self.version += 1
        return LatchDecision.RELEASED


def command_from_spec(
    spec: KillSwitchSpec, *, generation: int | None, default_source: str
) -> KillSwitchCommand:
    """The command that `spec.killSwitch` of a TradingSystem stands for."""
    if spec.engaged:
        return KillSwitchCommand(
            engaged=True,
            mode=spec.mode,
            close_positions=spec.close_positions,
            reason=spec.reason,
            operator=spec.operator,
            source=spec.source or default_source,
            generation=generation,
        )
    release = spec.release
    return KillSwitchCommand(
        engaged=False,
        reason=release.reason if release else None,
        operator=release.operator if release else None,
        source=default_source,
        generation=generation,
    )
