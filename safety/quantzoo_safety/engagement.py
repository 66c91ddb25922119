"""Pure rules for what an engage or a release does to `spec.killSwitch`, shared by the safety API, the
watchdog and the kubectl plugin (no I/O here; the patches are quantzoo_api.killswitch's).

- Engaging a released switch: a new engagement (fresh engagedAt, old release cleared; who/why defaulted,
  shortened, mode normalised -- an engage is never refused).
- Engaging an engaged switch: "already engaged"; the engagement and its who/why/when stay. Only what makes
  it stronger is applied (`closePositions` false -> true, `ReduceOnly` -> `Halt`): nothing but a release
  weakens an engaged switch.
- Releasing: only an engaged switch, naming its engagement (the CRD refuses any other release).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quantzoo_api import killswitch as ks_api
from quantzoo_api.killswitch import KillSource, kill_switch_of, release_patch_for
from quantzoo_api.types import KillSwitchMode

__all__ = [
    "EngageIntent",
    "EngagePlan",
    "NotEngaged",
    "describe",
    "kill_switch_of",
    "plan_engage",
    "plan_release",
]


class NotEngaged(Exception):
    """A release was asked for a switch that is not engaged."""


@dataclass(frozen=True)
class EngageIntent:
    reason: str
    operator: str
    source: KillSource
    close_positions: bool = False
    mode: KillSwitchMode = KillSwitchMode.HALT


@dataclass(frozen=True)
class EngagePlan:
    already_engaged: bool
    # Merge patch to send, or None when the spec already says everything the intent asks.
    patch: dict[str, Any] | None
    escalations: tuple[str, ...] = ()

    @property
    def engagement(self) -> str | None:
        """The engagedAt a new engagement's patch writes (None for an escalation or no patch)."""
        ks = ((self.patch or {}).get("spec") or {}).get("killSwitch") or {}
        return None if self.already_engaged else ks.get("engagedAt")


def plan_engage(
    current: dict[str, Any] | None, intent: EngageIntent, *, at: str | None = None, adopt: bool = False
) -> EngagePlan:
    """`adopt`: an engaged switch takes `at` as its engagedAt -- the engagement a direct halt made while the
    API server was down, which the engine holds; a release must name that one."""
    patch = ks_api.plan_engage(
        current,
        reason=intent.reason,
        operator=intent.operator,
        source=intent.source,
        close_positions=intent.close_positions,
        mode=intent.mode,
        at=at,
    )
    if not (current or {}).get("engaged"):
        return EngagePlan(already_engaged=False, patch=patch)
    if adopt and at and (current or {}).get("engagedAt") != at:
        patch = patch or {"spec": {"killSwitch": {}}}
        patch["spec"]["killSwitch"].update(engagedAt=at, release=None)
    changed = ((patch or {}).get("spec") or {}).get("killSwitch") or {}
    escalations = tuple(k for k in ("closePositions", "mode") if k in changed)
    return EngagePlan(already_engaged=True, patch=patch, escalations=escalations)


def plan_release(
    current: dict[str, Any] | None, *, operator: str, reason: str, at: str | None = None
) -> dict[str, Any]:
    if not (current or {}).get("engaged"):
        raise NotEngaged("kill switch is not engaged")
    return release_patch_for(current, operator=operator, reason=reason, at=at)


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
