"""Pure: from the level objects as watched to the status each TradingSystem and level object shows.

A system is held by every engaged level that covers it: a Firm TradingHalt, a Desk TradingHalt of its
namespace, the TradingAccount its spec.accountRef names, and its own spec.killSwitch. heldBy lists them
the highest level first; the Halted condition's reason names the highest (HeldByFirm ... HeldBySystem).
The same write carries the phase these holds give the system as it stands (quantzoo_operator.status.phase_of).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from quantzoo_api.accounts import deletion_reason
from quantzoo_api.conditions import ConditionType, Reason
from quantzoo_api.killswitch import engagement_id
from quantzoo_api.levels import HaltScope, KillLevel, LevelHold, holder_of, level_rank

from quantzoo_operator.status import find, phase_of

SysKey = tuple[str, str]  # (namespace, name)

REASON_OF = {
    KillLevel.FIRM: Reason.HELD_BY_FIRM,
    KillLevel.DESK: Reason.HELD_BY_DESK,
    KillLevel.ACCOUNT: Reason.HELD_BY_ACCOUNT,
    KillLevel.SYSTEM: Reason.HELD_BY_SYSTEM,
}


def hold_of(level: KillLevel, holder: str, obj: Mapping[str, Any]) -> LevelHold | None:
    """The hold of one level object: None unless its spec.killSwitch is engaged."""
    ks = (obj.get("spec") or {}).get("killSwitch") or {}
    if not isinstance(ks, Mapping) or ks.get("engaged") is not True:
        return None
    return LevelHold(
        level=level,
        name=holder,
        engaged_at=engagement_id(ks.get("engagedAt")),
        reason=ks.get("reason") if isinstance(ks.get("reason"), str) else None,
        by=ks.get("operator") if isinstance(ks.get("operator"), str) else None,
        mode=ks.get("mode") if isinstance(ks.get("mode"), str) else "Halt",
    )


def deletion_hold(holder: str, obj: Mapping[str, Any]) -> LevelHold | None:
    """An account being deleted holds its systems as their engines hold themselves (engine level_watch.py):
    the deletion is the engagement, lifted only by a release record naming it."""
    deleting = engagement_id((obj.get("metadata") or {}).get("deletionTimestamp"))
    if deleting is None:
        return None
    release = ((obj.get("spec") or {}).get("killSwitch") or {}).get("release") or {}
    if isinstance(release, Mapping) and engagement_id(release.get("engagedAt")) == deleting:
        return None
    ns, name = _meta(obj)
    return LevelHold(
        level=KillLevel.ACCOUNT,
        name=holder,
        engaged_at=deleting,
        reason=deletion_reason(ns, name),
        mode="Halt",
    )


def _meta(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


@dataclass(frozen=True, slots=True)
class Halt:
    scope: HaltScope | None  # None: unreadable (covers nobody; the engines fail closed on it themselves)
    hold: LevelHold | None


@dataclass(frozen=True, slots=True)
class System:
    account: str | None
    hold: LevelHold | None
    generation: int | None
    shown: tuple[Any, ...]  # what its status shows now (heldBy, Halted, phase), to skip writes of no change
    halted_since: str | None = None  # its Halted condition's lastTransitionTime (kept while status stays)
    resource_version: str | None = None  # the version seen: a write's precondition
    facts: Mapping[str, Any] | None = None  # what its phase depends on besides the holds (phase_of)


NEVER_HELD = ((), None, None)  # heldBy, Halted status and reason of a system no level has ever held


def phase_facts(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a TradingSystem its phase depends on besides the holds (phase_of's inputs)."""
    conditions = (obj.get("status") or {}).get("conditions") or ()
    return {
        "metadata": {"deletionTimestamp": (obj.get("metadata") or {}).get("deletionTimestamp")},
        "spec": {"killSwitch": (obj.get("spec") or {}).get("killSwitch")},
        "status": {
            "conditions": [c for t in ("Ready", "Degraded") if (c := find(conditions, t)) is not None]
        },
    }


@dataclass
class LevelIndex:
    halts: dict[str, Halt] = field(default_factory=dict)
    accounts: dict[SysKey, LevelHold | None] = field(default_factory=dict)
    systems: dict[SysKey, System] = field(default_factory=dict)

    # -- reading objects ---------------------------------------------------------------------------
    def put_halt(self, obj: Mapping[str, Any]) -> list[SysKey]:
        """Index a TradingHalt; the systems whose status may change."""
        _, name = _meta(obj)
        try:
            scope: HaltScope | None = HaltScope.model_validate((obj.get("spec") or {}).get("scope") or {})
        except ValidationError:
            scope = None
        level = scope.level if scope is not None else KillLevel.FIRM
        self.halts[name] = Halt(scope, hold_of(level, holder_of(level, name), obj))
        return self.covered_by_halt(name)

    def drop_halt(self, name: str) -> list[SysKey]:
        covered = self.covered_by_halt(name)
        self.halts.pop(name, None)
        return covered

    def put_account(self, obj: Mapping[str, Any]) -> list[SysKey]:
        ns, name = _meta(obj)
        holder = holder_of(KillLevel.ACCOUNT, name, ns)
        self.accounts[(ns, name)] = hold_of(KillLevel.ACCOUNT, holder, obj) or deletion_hold(holder, obj)
        return self.covered_by_account(ns, name)

    def drop_account(self, ns: str, name: str) -> list[SysKey]:
        self.accounts.pop((ns, name), None)
        return self.covered_by_account(ns, name)

    def put_system(self, obj: Mapping[str, Any]) -> list[SysKey]:
        ns, name = _meta(obj)
        spec = obj.get("spec") or {}
        ref = spec.get("accountRef") if isinstance(spec, Mapping) else None
        account = ref.get("name") if isinstance(ref, Mapping) and isinstance(ref.get("name"), str) else None
        meta = obj.get("metadata") or {}
        generation = meta.get("generation")
        rv = meta.get("resourceVersion")
        self.systems[(ns, name)] = System(
            account=account,
            hold=hold_of(KillLevel.SYSTEM, holder_of(KillLevel.SYSTEM, name, ns), obj),
            generation=generation if isinstance(generation, int) else None,
            shown=shown(obj.get("status") or {}),
            halted_since=_halted(obj.get("status") or {}).get("lastTransitionTime"),
            resource_version=rv if isinstance(rv, str) else None,
            facts=phase_facts(obj),
        )
        return [(ns, name)]

    def drop_system(self, ns: str, name: str) -> None:
        self.systems.pop((ns, name), None)

    # -- coverage ------------------------------------------------------------------------------------
    def covered_by_halt(self, name: str) -> list[SysKey]:
        halt = self.halts.get(name)
        if halt is None or halt.scope is None:
            return []
        return [key for key in self.systems if halt.scope.covers(key[0])]

    def covered_by_account(self, ns: str, name: str) -> list[SysKey]:
        return [key for key, s in self.systems.items() if key[0] == ns and s.account == name]

    def held_by(self, key: SysKey) -> list[LevelHold]:
        system = self.systems.get(key)
        if system is None:
            return []
        holds = [h.hold for h in self.halts.values() if h.hold and h.scope and h.scope.covers(key[0])]
        if system.account is not None:
            holds.append(self.accounts.get((key[0], system.account)))
        holds.append(system.hold)
        return sorted((h for h in holds if h is not None), key=lambda h: (level_rank(h.level), h.name))

    def halt_counts(self, name: str) -> tuple[int, int]:
        """(systems covered, systems it holds now)."""
        covered = self.covered_by_halt(name)
        return len(covered), len(covered) if self.halts[name].hold is not None else 0

    def account_counts(self, ns: str, name: str) -> tuple[int, int]:
        covered = self.covered_by_account(ns, name)
        return len(covered), len(covered) if self.accounts.get((ns, name)) is not None else 0


# -- the status each shows ---------------------------------------------------------------------------
def held_by_json(holds: Iterable[LevelHold]) -> list[dict[str, Any]]:
    return [h.model_dump(mode="json", by_alias=True, exclude_none=True) for h in holds]


def halted_condition(holds: list[LevelHold], generation: int | None, now: str) -> dict[str, Any]:
    if holds:
        top = holds[0]
        names = ", ".join(h.name for h in holds)
        message = f"held by {names}" + (f": {top.reason}" if top.reason else "")
        cond = {"status": "True", "reason": str(REASON_OF[top.level]), "message": message[:32768]}
    else:
        cond = {"status": "False", "reason": str(Reason.NOT_HALTED), "message": "no level holds this system"}
    cond |= {"type": str(ConditionType.HALTED), "lastTransitionTime": now}
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def shown(status: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a system's status shows of the levels now: (heldBy, Halted status, Halted reason, phase)."""
    held = ((status.get("killSwitch") or {}).get("heldBy")) or []
    cond = _halted(status)
    return (_held_key(held), cond.get("status"), cond.get("reason"), status.get("phase"))


def _halted(status: Mapping[str, Any]) -> Mapping[str, Any]:
    return next((c for c in status.get("conditions") or () if c.get("type") == ConditionType.HALTED), {})


def _held_key(held: Iterable[Mapping[str, Any]]) -> tuple[Any, ...]:
    return tuple(
        (h.get("name"), h.get("engagedAt"), h.get("reason"), h.get("by"), h.get("mode")) for h in held
    )


def wanted(holds: list[LevelHold], facts: Mapping[str, Any] | None) -> tuple[Any, ...]:
    """The `shown` value the status should have for these holds (`facts`: phase_facts of the system)."""
    cond = halted_condition(holds, None, "")
    held = held_by_json(holds)
    return (_held_key(held), cond["status"], cond["reason"], str(phase_of(facts or {}, held)))


def never_held(system: System, holds: list[LevelHold]) -> bool:
    """No level holds it and none ever did (no heldBy, no Halted condition): nothing to write, so an
    operator start does not write every status once (its phase is the reconcile writer's alone)."""
    return not holds and system.shown[:3] == NEVER_HELD
