"""The engine's side of the kill switch: which commands count. Pure, no I/O.

Every path (operator push, the engine's own watch, the safety service's direct halt, and the config file
of an engine run without Kubernetes) arrives here as a `KillSwitchCommand`. The latch decides what it means:

- An engage always counts (a stale engage can only make the engine safer). While engaged, an engage
  never weakens it: the mode and closePositions in force are the stronger of current and asked (Halt
  over ReduceOnly, closing over not), and a stronger ask is carried out (ESCALATED).
- The engagement identity (contract.md): an engage names its engagement (`spec.killSwitch.engagedAt`,
  or the safety service's own for a direct halt). The latch holds the newest one: an engage naming
  another engagement replaces it if it is a direct command (no generation) or comes from a newer
  generation than the one it was adopted at. A release counts ONLY if it names the engagement held;
  anything else (an unrelated newer generation, a release of an earlier engagement in flight when the
  safety service halted directly, a replayed old release record) is REFUSED.
- Legacy, an engagement without identity (a hand-written patch without engagedAt, the config file):
  a release counts only if not older than the newest engage generation, and an engage without a
  generation only by a newer generation than any seen when it arrived.

Levels (issue #13): the engine keeps one latch per holder (its own TradingSystem, its TradingAccount,
each TradingHalt that covers it), each with the contract above. `KillSwitchLevels` aggregates them: the
engine is engaged while any holder is, in the strongest mode asked (Halt over ReduceOnly, closing if any
asks), and a release reaches only the latch of the holder it names.

The broker work (cancel, flatten) is the engine's (engine.py); this module only decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from quantzoo_api.killswitch import KillSource, KillSwitchCommand, engagement_id, stronger_mode, to_command
from quantzoo_api.levels import KillLevel, LevelHold, holder_level, holder_of, level_rank
from quantzoo_api.types import KillSwitchMode, KillSwitchSpec


class LatchDecision(StrEnum):
    ENGAGED = "engaged"  # was released, now engaged
    ESCALATED = "escalated"  # engaged, and now asked for more (ReduceOnly -> Halt, closePositions)
    REPEATED = "repeated"  # same engage again, or a weaker one (idempotent: nothing weakens it)
    RELEASED = "released"
    ALREADY_RELEASED = "already_released"
    STALE_RELEASE_IGNORED = "stale_release_ignored"
    RELEASE_REFUSED = "release_refused"  # names another engagement than the one held


class ReleaseRefused(Exception):
    """A release that does not name the engagement holding the engine (the admin API answers 409)."""

    def __init__(self, held: str | None, named: str | None) -> None:
        super().__init__(
            f"the kill switch is held by engagement {held}; a release must name it (release names {named})"
        )
        self.held, self.named = held, named


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
    engagement: str | None = None  # the engagement held (engagement_id); None: legacy, no identity
    # Levels (KillSwitchLevels): every holder engaged now, the strongest level first.
    held_by: tuple[LevelHold, ...] = ()


class KillSwitchLatch:
    def __init__(self) -> None:
        self.status = KillSwitchStatus()
        self.newest_engage_generation: int | None = None
        self.max_generation_seen: int | None = None
        # A release needs generation >= this (None: any release counts).
        self._release_floor: int | None = None
        # Bumped on every change of engaged/mode, so observers can tell "the same engagement" apart.
        self.version = 0
        # The generation the held engagement was adopted at (a direct halt: the newest seen then).
        self._engagement_generation: int | None = None

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
        engagement = engagement_id(cmd.engagement)
        held = previous.engagement if previous.engaged else None
        if engagement is not None and engagement != held and self._may_replace(cmd.generation, previous):
            held = engagement
            self._engagement_generation = (
                cmd.generation if cmd.generation is not None else self.max_generation_seen
            )
        if not previous.engaged:
            mode, close, decision = cmd.mode, cmd.close_positions, LatchDecision.ENGAGED
        else:
            mode = stronger_mode(previous.mode, cmd.mode)
            close = previous.close_positions or cmd.close_positions
            stronger = mode is not previous.mode or close != previous.close_positions
            decision = LatchDecision.ESCALATED if stronger else LatchDecision.REPEATED
        self.status = KillSwitchStatus(
            engaged=True,
            mode=mode,
            close_positions=close,
            reason=cmd.reason,
            operator=cmd.operator,
            source=cmd.source,
            generation=cmd.generation if cmd.generation is not None else previous.generation,
            since=previous.since if previous.engaged and previous.since else now,
            engagement=held,
        )
        if decision is not LatchDecision.REPEATED:
            self.version += 1
        return decision

    def _may_replace(self, generation: int | None, previous: KillSwitchStatus) -> bool:
        if not previous.engaged or previous.engagement is None or generation is None:
            return True
        return self._engagement_generation is None or generation > self._engagement_generation

    def _release(self, cmd: KillSwitchCommand, now: datetime) -> LatchDecision:
        if not self.status.engaged:
            if cmd.generation is not None and self.release_allowed(cmd.generation):
                self.status = KillSwitchStatus(
                    engaged=False, generation=cmd.generation, source=cmd.source, operator=cmd.operator
                )
            return LatchDecision.ALREADY_RELEASED
        held = self.status.engagement
        if held is not None:
            if engagement_id(cmd.engagement) != held:
                return LatchDecision.RELEASE_REFUSED
        elif not self.release_allowed(cmd.generation):
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
        self._engagement_generation = None
        self.version += 1
        return LatchDecision.RELEASED


def _hold(holder: str, status: KillSwitchStatus) -> LevelHold:
    return LevelHold(
        level=holder_level(holder),
        name=holder,
        engaged_at=status.engagement,
        reason=status.reason,
        by=status.operator,
        mode=str(status.mode),
    )


def _strength(status: KillSwitchStatus) -> tuple[bool, bool, bool]:
    return (status.engaged, status.mode is KillSwitchMode.HALT, status.close_positions)


class KillSwitchLevels:
    """One latch per holder; `status` is the effective one (what the engine enforces).

    The same interface as a single latch (`apply`, `status`, `version`), so the engine's kill path does
    not change: `apply` answers for the engine as a whole (ENGAGED when it was not held before,
    ESCALATED when it got stronger, REPEATED otherwise), except for a release, which answers for the
    latch it names (RELEASED even while another level still holds the engine: `status.engaged` says so).
    """

    def __init__(self, namespace: str, name: str) -> None:
        self.own = holder_of(KillLevel.SYSTEM, name, namespace)
        self.latches: dict[str, KillSwitchLatch] = {self.own: KillSwitchLatch()}
        self.status = KillSwitchStatus()

    @property
    def version(self) -> int:
        return sum(latch.version for latch in self.latches.values())

    def holder_for(self, cmd: KillSwitchCommand) -> str:
        return cmd.holder if cmd.holder is not None else self.own

    def latch(self, holder: str) -> KillSwitchLatch:
        if holder not in self.latches:
            self.latches[holder] = KillSwitchLatch()
        return self.latches[holder]

    def held(self, holder: str) -> str | None:
        """The engagement holding `holder`'s latch (for a refused release's message)."""
        latch = self.latches.get(holder)
        return latch.status.engagement if latch is not None else None

    def apply(self, cmd: KillSwitchCommand, now: datetime) -> LatchDecision:
        before = self.status
        holder = self.holder_for(cmd)
        decision = self.latch(holder).apply(cmd, now)
        self.status = self._aggregate()
        if not cmd.engaged:
            return decision
        if not before.engaged:
            return LatchDecision.ENGAGED
        stronger = _strength(self.status) > _strength(before)
        return LatchDecision.ESCALATED if stronger else LatchDecision.REPEATED

    def _aggregate(self) -> KillSwitchStatus:
        engaged = sorted(
            ((h, latch.status) for h, latch in self.latches.items() if latch.status.engaged),
            key=lambda hs: level_rank(holder_level(hs[0])),
        )
        own = self.latches[self.own].status
        if not engaged:
            return own
        # Who/why/engagement of the engine's own switch while it is engaged (the operator's acks match it
        # against spec.killSwitch.engagedAt), else of the highest level holding it.
        primary = own if own.engaged else engaged[0][1]
        mode = KillSwitchMode.REDUCE_ONLY
        for _, status in engaged:
            mode = stronger_mode(mode, status.mode)
        return KillSwitchStatus(
            engaged=True,
            mode=mode,
            close_positions=any(status.close_positions for _, status in engaged),
            reason=primary.reason,
            operator=primary.operator,
            source=primary.source,
            generation=own.generation,
            since=min((s.since for _, s in engaged if s.since is not None), default=primary.since),
            engagement=primary.engagement,
            held_by=tuple(_hold(h, s) for h, s in engaged),
        )

    def persisted(self) -> dict[str, object]:
        """Every engaged holder's latch (the own one at the top level, as a single latch wrote it)."""
        data = persisted(self.latches[self.own].status)
        data["levels"] = {
            h: persisted(latch.status)
            for h, latch in self.latches.items()
            if h != self.own and latch.status.engaged
        }
        return data


def commands_from_persisted(data: object) -> list[KillSwitchCommand]:
    """The engages to re-apply at start from what `KillSwitchLevels.persisted` wrote, one per holder
    (also reads a single latch's older format)."""
    commands = []
    own = command_from_persisted(data)
    if own is not None:
        commands.append(own)
    levels = data.get("levels") if isinstance(data, dict) else None
    for holder, held in (levels if isinstance(levels, dict) else {}).items():
        cmd = command_from_persisted(held)
        if cmd is None:
            continue
        try:
            at = {"level": holder_level(str(holder)), "holder": holder}
            commands.append(KillSwitchCommand.model_validate({**cmd.model_dump(), **at}))
        except ValueError:
            continue  # not a holder we could have written
    return commands


def command_from_spec(
    spec: KillSwitchSpec,
    *,
    generation: int | None,
    default_source: str,
    level: KillLevel = KillLevel.SYSTEM,
    holder: str | None = None,
) -> KillSwitchCommand:
    """The shared `to_command`, naming the path that engaged it (`spec.source`) for an engagement."""
    delivered_by = KillSource.parse(default_source)
    source = KillSource.parse(spec.source, delivered_by) if spec.engaged else delivered_by
    return to_command(spec, generation=generation, source=source, level=level, holder=holder)


def persisted(status: KillSwitchStatus) -> dict[str, object]:
    """What is kept on disk of the latch: the engagement and what it asks (killswitch persistence)."""
    return {
        "engaged": status.engaged,
        "mode": str(status.mode),
        "close_positions": status.close_positions,
        "reason": status.reason,
        "operator": status.operator,
        "source": status.source,
        "engagement": status.engagement,
    }


def command_from_persisted(data: object) -> KillSwitchCommand | None:
    """The engage to re-apply at start from what `persisted` wrote; None if not engaged or unreadable."""
    if not isinstance(data, dict) or data.get("engaged") is not True:
        return None
    try:
        return KillSwitchCommand(
            engaged=True,
            mode=KillSwitchMode(data.get("mode", KillSwitchMode.HALT)),
            close_positions=bool(data.get("close_positions", False)),
            reason=data.get("reason"),
            operator=data.get("operator"),
            source=data.get("source") or "persisted",
            engagement=data.get("engagement"),
        )
    except ValueError:
        # Unreadable: fail closed with a plain halt rather than trade.
        return KillSwitchCommand(engaged=True, reason="persisted kill switch unreadable", source="persisted")
