"""The trading state machine: ACTIVE, REDUCE_ONLY, HALTED. Pure, no I/O.

The state is derived from a few facts rather than moved by arbitrary transitions, so no sequence of
events can leave the engine ACTIVE while one of the reasons to halt still holds:

  HALTED       if shutting down, or the broker is not reconciled yet, or the kill-switch state is not
               known (never read, or the view of it was lost), or the switch is engaged in Halt mode, or
               a kill-switch clean-up (cancel, flatten) is running: even in ReduceOnly nothing may be
               sent while the engine flattens, or a "reducing" order and the flatten would both sell;
               or (when it watches Kubernetes) it has had no proof of the switch's state for too long,
               or it does not hold the trading Lease (fencing: one engine per account);
  REDUCE_ONLY  if the switch is engaged in ReduceOnly mode;
  ACTIVE       otherwise.

Shutdown is terminal: once begun, nothing takes the engine out of HALTED.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from quantzoo_api.killswitch import TradingState
from quantzoo_api.types import KillSwitchMode


class HaltReason(StrEnum):
    SHUTTING_DOWN = "shutting_down"
    BROKER_NOT_RECONCILED = "broker_not_reconciled"
    KILL_SWITCH_STATE_UNKNOWN = "kill_switch_state_unknown"
    KILL_SWITCH_ENGAGED = "kill_switch_engaged"
    KILL_SWITCH_CLEANUP = "kill_switch_cleanup"
    NO_PROOF_OF_STATE = "no_proof_of_state"
    NO_TRADING_LEASE = "no_trading_lease"


@dataclass(frozen=True, slots=True)
class TradingFacts:
    reconciled: bool = False
    kill_switch_known: bool = False
    kill_switch_engaged: bool = False
    kill_switch_mode: KillSwitchMode = KillSwitchMode.HALT
    shutting_down: bool = False
    kill_switch_cleanup: bool = False
    # Both stay True for an engine that does not watch Kubernetes (no proof to wait for, no Lease).
    state_proven: bool = True
    lease_held: bool = True


def halt_reasons(facts: TradingFacts) -> tuple[HaltReason, ...]:
    reasons: list[HaltReason] = []
    if facts.shutting_down:
        reasons.append(HaltReason.SHUTTING_DOWN)
    if not facts.reconciled:
        reasons.append(HaltReason.BROKER_NOT_RECONCILED)
    if not facts.kill_switch_known:
        reasons.append(HaltReason.KILL_SWITCH_STATE_UNKNOWN)
    if facts.kill_switch_engaged and facts.kill_switch_mode is KillSwitchMode.HALT:
        reasons.append(HaltReason.KILL_SWITCH_ENGAGED)
    if facts.kill_switch_cleanup:
        reasons.append(HaltReason.KILL_SWITCH_CLEANUP)
    if not facts.state_proven:
        reasons.append(HaltReason.NO_PROOF_OF_STATE)
    if not facts.lease_held:
        reasons.append(HaltReason.NO_TRADING_LEASE)
    return tuple(reasons)


def derive_state(facts: TradingFacts) -> TradingState:
    if halt_reasons(facts):
        return TradingState.HALTED
    if facts.kill_switch_engaged:
        return TradingState.REDUCE_ONLY
    return TradingState.ACTIVE


@dataclass(frozen=True, slots=True)
class Transition:
    before: TradingState
    after: TradingState
    cause: str


class TradingStateMachine:
    """Holds the facts; every change of a fact re-derives the state and records the transition."""

    def __init__(self) -> None:
        self._facts = TradingFacts()
        self._state = derive_state(self._facts)
        self.history: list[Transition] = []

    @property
    def state(self) -> TradingState:
        return self._state

    @property
    def facts(self) -> TradingFacts:
        return self._facts

    @property
    def halt_reasons(self) -> tuple[HaltReason, ...]:
        return halt_reasons(self._facts)

    def _set(self, cause: str, **changes: object) -> Transition | None:
        if self._facts.shutting_down and changes.get("shutting_down") is not True:
            # Terminal: facts may still be recorded, but the state stays HALTED.
            self._facts = replace(self._facts, **{**changes, "shutting_down": True})  # type: ignore[arg-type]
            return None
        self._facts = replace(self._facts, **changes)  # type: ignore[arg-type]
        after = derive_state(self._facts)
        if after is self._state:
            return None
        transition = Transition(self._state, after, cause)
        self._state = after
        self.history.append(transition)
        if len(self.history) > 1_000:
            del self.history[:500]
        return transition

    def broker_reconciled(self) -> Transition | None:
        return self._set("broker reconciled", reconciled=True)

    def kill_switch_read(self) -> Transition | None:
        return self._set("kill-switch state read", kill_switch_known=True)

    def kill_switch_view_lost(self) -> Transition | None:
        return self._set("kill-switch view lost", kill_switch_known=False)

    def kill_switch(self, engaged: bool, mode: KillSwitchMode) -> Transition | None:
        cause = f"kill switch {'engaged (' + str(mode) + ')' if engaged else 'released'}"
        return self._set(cause, kill_switch_engaged=engaged, kill_switch_mode=mode)

    def kill_switch_cleanup(self, running: bool) -> Transition | None:
        return self._set(
            f"kill-switch clean-up {'started' if running else 'finished'}", kill_switch_cleanup=running
        )

    def fences(self, *, proven: bool, leased: bool) -> Transition | None:
        if (proven, leased) == (self._facts.state_proven, self._facts.lease_held):
            return None
        cause = "fresh proof of the kill-switch state" if proven else "no proof of the kill-switch state"
        if leased != self._facts.lease_held:
            cause = "trading Lease held" if leased else "trading Lease not held"
        return self._set(cause, state_proven=proven, lease_held=leased)

    def begin_shutdown(self) -> Transition | None:
        return self._set("shutdown", shutting_down=True)
