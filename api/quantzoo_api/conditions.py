"""Condition types, reasons and phases of a TradingSystem: the API's vocabulary, kept beside its types
(as CloudNativePG keeps conditions with its API), so every writer and reader spells them one way.

Conventions (Kubernetes API conventions): every condition has status, reason (CamelCase), message,
observedGeneration and lastTransitionTime; the operator's status module computes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any


class ConditionType(StrEnum):
    READY = "Ready"
    ENGINE_READY = "EngineReady"
    SAFETY_READY = "SafetyReady"
    KILL_SWITCH_ENGAGED = "KillSwitchEngaged"
    DEGRADED = "Degraded"
    # True while any level that covers the system is engaged; the reason names the highest (issue #13).
    HALTED = "Halted"


RECONCILE_CONDITIONS = (
    ConditionType.READY,
    ConditionType.ENGINE_READY,
    ConditionType.SAFETY_READY,
    ConditionType.DEGRADED,
)


class Reason(StrEnum):
    # Ready
    ALL_COMPONENTS_READY = "AllComponentsReady"
    ENGINE_NOT_READY = "EngineNotReady"
    SAFETY_NOT_READY = "SafetyNotReady"
    RECONCILE_FAILED = "ReconcileFailed"
    TERMINATING = "Terminating"
    # Ready and Degraded, when the TradingSystem itself is at fault (retrying as it is cannot help)
    INVALID_SPEC = "InvalidSpec"
    CHILD_REJECTED = "ChildRejected"
    STRATEGY_INVALID = "StrategyInvalid"
    CREDENTIALS_SECRET_MISSING = "CredentialsSecretMissing"  # noqa: S105 - a reason
    CREDENTIALS_SECRET_INVALID = "CredentialsSecretInvalid"  # noqa: S105 - a reason
    # ... or its TradingAccount (spec.accountRef) is: missing, or with a broker engines cannot share
    ACCOUNT_MISSING = "AccountMissing"
    ACCOUNT_NOT_SHAREABLE = "AccountNotShareable"
    # A TradingAccount's Ready
    ACCOUNT_READY = "AccountReady"
    # EngineReady
    ENGINE_RUNNING = "EngineRunning"
    ENGINE_MISSING = "EngineMissing"
    ENGINE_ROLLING_OUT = "EngineRollingOut"
    ENGINE_STARTING = "EngineStarting"
    # SafetyReady
    SAFETY_AVAILABLE = "SafetyAvailable"
    SAFETY_MISSING = "SafetyMissing"
    SAFETY_UNAVAILABLE = "SafetyUnavailable"
    # KillSwitchEngaged
    ACKNOWLEDGED = "Acknowledged"
    UNACKNOWLEDGED = "Unacknowledged"
    NO_ENGINE_REPLICAS = "NoEngineReplicas"
    NOT_ENGAGED = "NotEngaged"
    RELEASED = "Released"
    # Halted (issue #13): which level holds the system (the highest, when several do)
    HELD_BY_FIRM = "HeldByFirm"
    HELD_BY_DESK = "HeldByDesk"
    HELD_BY_ACCOUNT = "HeldByAccount"
    HELD_BY_SYSTEM = "HeldBySystem"
    NOT_HALTED = "NotHalted"
    # Degraded
    AS_EXPECTED = "AsExpected"
    KILL_SWITCH_UNACKNOWLEDGED = "KillSwitchUnacknowledged"


class Phase(StrEnum):
    """The short summary in `kubectl get ts` (the CRD's enum)."""

    PENDING = "Pending"
    RUNNING = "Running"
    HALTED = "Halted"
    REDUCE_ONLY = "ReduceOnly"
    DEGRADED = "Degraded"
    TERMINATING = "Terminating"


def kill_phase(own: Mapping[str, Any] | None, held_by: Iterable[Mapping[str, Any]] | None) -> Phase | None:
    """The phase the kill switch of every level shows: Halted if any engaged level covering the system
    asks Halt, ReduceOnly if every one asks ReduceOnly, None when none holds it. `own` is the system's
    spec.killSwitch, `held_by` its status.killSwitch.heldBy (the levels above it, issue #13): a system
    held by its firm, desk or account shows it in the same words as its own kill."""
    modes = [str((own or {}).get("mode") or "Halt")] if (own or {}).get("engaged") else []
    modes += [str(h.get("mode") or "Halt") for h in held_by or () if isinstance(h, Mapping)]
    if not modes:
        return None
    return Phase.REDUCE_ONLY if all(m == "ReduceOnly" for m in modes) else Phase.HALTED
