"""The kill-switch contract between the operator, the engine and the safety service (design.md).

One source of truth is `spec.killSwitch` of the TradingSystem. This module holds the payloads every path
uses and the merge patches that engage and release it, so the wording of the contract lives once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from quantzoo_api.types import KillSwitchMode

# Engine admin endpoint that the operator and the safety service push kill-switch commands to.
ENGINE_KILL_SWITCH_PATH = "/admin/kill-switch"
# Env var holding the engine admin token (from the `<name>-engine-admin` Secret). Not the safety token.
ENGINE_ADMIN_TOKEN_ENV = "ENGINE_ADMIN_TOKEN"  # noqa: S105 - an env var name
SAFETY_API_TOKEN_ENV = "SAFETY_API_TOKEN"  # noqa: S105 - an env var name
# A real process standing in for a simulated (kwok) pod is reached at this annotation's URL.
ADMIN_ENDPOINT_ANNOTATION = "trading.quantzoo.io/admin-endpoint"


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCE_ONLY = "REDUCE_ONLY"
    HALTED = "HALTED"


class KillSwitchCommand(BaseModel):
    """What the operator (or the safety service, when the API server is down) pushes to an engine."""

    model_config = ConfigDict(extra="forbid")

    engaged: bool
    mode: KillSwitchMode = KillSwitchMode.HALT
    close_positions: bool = False
    reason: str | None = Field(None, max_length=1024)
    operator: str | None = Field(None, max_length=128)
    source: str = Field("operator", max_length=128)
    # metadata.generation of the TradingSystem the command was read from; an engine ignores a release
    # older than the newest engage it has seen, so a delayed push cannot undo a newer kill.
    generation: int | None = Field(None, ge=0)
    # engagedAt of the engagement an engage starts or a release ends
    engagement: str | None = Field(None, max_length=64)
    issued_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class KillSwitchAck(BaseModel):
    """The engine's answer once the command is in force (new orders blocked before it answers)."""

    pod: str
    engaged: bool
    trading_state: TradingState
    generation: int | None = None
    acknowledged_at: datetime
    cancelled_orders: list[str] = Field(default_factory=list)
    closed_positions: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    # Orders still working at the broker after the clean-up (cancels refused or timed out): the engine
    # keeps retrying them while engaged; the operator re-pushes until this is empty.
    working_orders: list[str] = Field(default_factory=list)


class ActivateRequest(BaseModel):
    """Body of the runbook's `POST /kill-switch/activate`."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1024)
    # strict: lax parsing would read "0", "off" or 1 as a decision about the trader's positions.
    close_positions: bool = Field(False, strict=True)
    operator: str = Field(min_length=1, max_length=128)
    mode: KillSwitchMode = KillSwitchMode.HALT


class DeactivateRequest(BaseModel):
    """Body of the runbook's `POST /kill-switch/deactivate`."""

    model_config = ConfigDict(extra="forbid")

    operator: str = Field(min_length=1, max_length=128)
    reason: str = Field("released via safety API", min_length=1, max_length=1024)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def engage_patch(
    *,
    reason: str,
    operator: str,
    source: str,
    close_positions: bool = False,
    mode: KillSwitchMode = KillSwitchMode.HALT,
    at: str | None = None,
) -> dict[str, Any]:
    """JSON merge patch that engages the switch on a TradingSystem."""
    return {
        "spec": {
            "killSwitch": {
                "engaged": True,
                "mode": str(mode),
                "closePositions": close_positions,
                "reason": reason,
                "operator": operator,
                "source": source,
                "engagedAt": at or _now(),
            }
        }
    }


def release_patch(*, operator: str, reason: str, at: str | None = None) -> dict[str, Any]:
    """JSON merge patch that releases the switch; carries the release record the CRD's CEL rule demands."""
    return {
        "spec": {
            "killSwitch": {
                "engaged": False,
                "closePositions": False,
                "release": {"operator": operator, "reason": reason, "at": at or _now()},
            }
        }
    }
