"""The levels of the kill switch (issue #13): one vocabulary for the engine, the operator, the safety
service and the plugin.

    Firm    a TradingHalt with scope.level Firm: every TradingSystem in the cluster
    Desk    a TradingHalt with scope.level Desk: every TradingSystem in scope.namespace
    Account a TradingAccount's spec.killSwitch: every TradingSystem whose spec.accountRef names it
    System  a TradingSystem's own spec.killSwitch

Every level has the same contract (quantzoo_api.killswitch): engage is never refused, a release names
the engagement it ends. Levels are independent: a system trades only while no level that covers it is
engaged, and a release at one level never lifts another.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field, model_validator

from quantzoo_api import API_VERSION
from quantzoo_api.types import KillSwitchSpec, _Model

HALT_PLURAL = "tradinghalts"
HALT_KIND = "TradingHalt"


class KillLevel(StrEnum):
    FIRM = "Firm"
    DESK = "Desk"
    ACCOUNT = "Account"
    SYSTEM = "System"


class HaltScope(_Model):
    level: KillLevel
    # The desk's namespace (level Desk only).
    namespace: str | None = Field(None, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

    @model_validator(mode="after")
    def _desk_names_its_namespace(self) -> HaltScope:
        if self.level not in (KillLevel.FIRM, KillLevel.DESK):
            raise ValueError("a TradingHalt's scope.level is Firm or Desk")
        if (self.level is KillLevel.DESK) != (self.namespace is not None):
            raise ValueError(
                "scope.namespace names the desk: required for level Desk, not allowed for level Firm"
            )
        return self

    def covers(self, namespace: str) -> bool:
        """Whether this halt covers a TradingSystem in `namespace`."""
        return self.level is KillLevel.FIRM or self.namespace == namespace


class TradingHaltSpec(_Model):
    scope: HaltScope
    kill_switch: KillSwitchSpec = KillSwitchSpec()


def parse_halt_spec(spec: dict[str, Any] | None) -> TradingHaltSpec:
    """A TradingHaltSpec from a raw `spec` dict as the API server returns it (camelCase)."""
    return TradingHaltSpec.model_validate(spec or {})


# -- holders: which object holds a level's latch ----------------------------------------------------
# Spelled `Firm/<halt>`, `Desk/<halt>`, `Account/<namespace>/<account>`, `System/<namespace>/<system>`
# (KillSwitchCommand.holder, the engine's /state, status.killSwitch.heldBy).
HOLDER_PATTERN = r"^(Firm|Desk)/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$|^(Account|System)/[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$"  # noqa: E501
MAX_HOLDER = 330

# Strongest first: a status names the highest level that holds a system first.
LEVEL_ORDER = (KillLevel.FIRM, KillLevel.DESK, KillLevel.ACCOUNT, KillLevel.SYSTEM)


def level_rank(level: KillLevel) -> int:
    """0 for Firm (the highest) ... 3 for System."""
    return LEVEL_ORDER.index(level)


def holder_of(level: KillLevel, name: str, namespace: str | None = None) -> str:
    """The holder key of one level's object (a TradingHalt is cluster-scoped: no namespace)."""
    if level in (KillLevel.FIRM, KillLevel.DESK):
        return f"{level}/{name}"
    return f"{level}/{namespace}/{name}"


def holder_level(holder: str) -> KillLevel:
    """The level a holder key names (ValueError when it names none)."""
    return KillLevel(holder.split("/", 1)[0])


class LevelHold(_Model):
    """One level holding a system (status.killSwitch.heldBy of a TradingSystem, the engine's /state)."""

    level: KillLevel
    name: str  # the holder key (holder_of)
    engaged_at: str | None = None
    reason: str | None = None
    by: str | None = None
    mode: str | None = None


def halt_name_for(level: KillLevel, namespace: str | None = None) -> str:
    """The TradingHalt our clients create on first use: `firm`, `desk-<namespace>`."""
    if level is KillLevel.FIRM:
        return "firm"
    if level is KillLevel.DESK and namespace:
        return f"desk-{namespace}"
    raise ValueError("a TradingHalt is level Firm, or Desk with a namespace")


def halt_body(level: KillLevel, namespace: str | None = None) -> dict[str, Any]:
    """A released TradingHalt of our naming (created on first use, then engaged by a merge patch)."""
    scope: dict[str, Any] = {"level": str(level)}
    if level is KillLevel.DESK:
        scope["namespace"] = namespace
    return {
        "apiVersion": API_VERSION,
        "kind": HALT_KIND,
        "metadata": {"name": halt_name_for(level, namespace)},
        "spec": {"scope": scope},
    }
