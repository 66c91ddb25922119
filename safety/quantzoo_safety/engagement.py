"""Pure rules for what an engage or a release does to `spec.killSwitch`, shared by the safety API, the
watchdog and the kubectl plugin (no I/O here).

- Engaging a released switch: the full `engage_patch` (who, why, when, from which path).
- Engaging an engaged switch: "already engaged"; the original who/why/when stay. Only an escalation is
  applied: `closePositions` false -> true, `ReduceOnly` -> `Halt` (a later, stronger request must not
  be lost because a weaker one came first).
- Releasing: only an engaged switch, with a new release record (`release_patch`, which the CRD's CEL
  rule demands).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quantzoo_api.killswitch import engage_patch, release_patch
from quantzoo_api.types import KillSwitchMode


class NotEngaged(Exception):
    """A release was asked for a switch that is not engaged."""


@dataclass(frozen=True)
class EngageIntent:
    reason: str
    operator: str
    source: str
    close_positions: bool = False
    mode: KillSwitchMode = KillSwitchMode.HALT


@dataclass(frozen=True)
class EngagePlan:
    already_engaged: bool
    # Merge patch to send, or None when the spec already says everything the intent asks.
    patch: dict[str, Any] | None
    escalations: tuple[str, ...] = ()


def kill_switch_of(obj: dict[str, Any] | None) -> dict[str, Any]:
    """`spec.killSwitch` of a TradingSystem object (empty dict when absent)."""
    return ((obj or {}).get("spec") or {}).get("killSwitch") or {}


def plan_engage(current: dict[str, Any] | None, intent: EngageIntent, *, at: str | None = None) -> EngagePlan:
    ks = current or {}
    if not ks.get("engaged"):
        return EngagePlan(
            already_engaged=False,
            patch=engage_patch(
                reason=intent.reason,
                operator=intent.operator,
                source=intent.source,
                close_positions=intent.close_positions,
                mode=intent.mode,
                at=at,
            ),
        )
    escalate: dict[str, Any] = {}
    if intent.close_positions and not ks.get("closePositions"):
        escalate["closePositions"] = True
    if intent.mode == KillSwitchMode.HALT and ks.get("mode") == KillSwitchMode.REDUCE_ONLY:
        escalate["mode"] = str(KillSwitchMode.HALT)
    patch = {"spec": {"killSwitch": escalate}} if escalate else None
    return EngagePlan(already_engaged=True, patch=patch, escalations=tuple(escalate))


def plan_release(
    current: dict[str, Any] | None, *, operator: str, reason: str, at: str | None = None
) -> dict:
    if not (current or {}).get("engaged"):
        raise NotEngaged("kill switch is not engaged")
    return release_patch(operator=operator, reason=reason, at=at)


def describe(ks: dict[str, Any]) -> dict[str, Any]:
    """`spec.killSwitch` (camelCase, as stored) as the safety API shows it (snake_case, every key)."""
    return {
        "engaged": bool(ks.get("engaged")),
        "mode": ks.get("mode", str(KillSwitchMode.HALT)),
        "close_positions": bool(ks.get("closePositions")),
        "reason": ks.get("reason"),
        "operator": ks.get("operator"),
        "source": ks.get("source"),
        "engaged_at": ks.get("engagedAt"),
        "release": ks.get("release"),
    }
