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
