"""Kill-switch propagation, the pure part: what to push, to which replicas, and when it is done.

No I/O here (pushing.py does the HTTP, propagator.py the watching and the status writes), so every
decision below is unit-tested in milliseconds.

When is a command pushed?
- Targets: every live engine pod (Ready or not), by pod IP.
- An ENGAGED switch: on every change of `spec.killSwitch` and on the operator's first sight of the
  object (so an operator restart re-asserts every halt); while it stays engaged, replicas that have not
  acknowledged it (a new pod) or that report ACTIVE are pushed again (the operator keeps the halt).
- A RELEASED switch: only when the spec changes from engaged to released or carries a new release
  record: an explicit act (design.md, kill-switch point 5). A released switch is NOT re-pushed on the
  operator's first sight: that could undo a halt the safety service pushed straight to the engine while
  the API server was unreachable.
Every command carries `generation = metadata.generation`, so an engine can ignore a release older than
the newest engage it has seen.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from quantzoo_api.engine_pods import REFUSED_BY_POLICY, Target
from quantzoo_api.killswitch import (
    KillSource,
    KillSwitchAck,
    KillSwitchCommand,
    TradingState,
    to_command,
)
from quantzoo_api.types import KillSwitchMode, KillSwitchSpec

from quantzoo_operator import status as st

OPERATOR_SOURCE = KillSource.OPERATOR


# -- what the spec asks for -----------------------------------------------------------------------
@dataclass(frozen=True)
class Intent:
    """What `spec.killSwitch` asks for, read from one version of a TradingSystem."""

    engaged: bool
    mode: KillSwitchMode = KillSwitchMode.HALT
    close_positions: bool = False
    reason: str | None = None
    operator: str | None = None
    source: str | None = None
    engaged_at: str | None = None
    release: Mapping[str, Any] | None = None
    generation: int = 0
    fingerprint: str = ""

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Intent:
        raw = dict(((body.get("spec") or {}).get("killSwitch")) or {})
        mode = raw.get("mode") or KillSwitchMode.HALT
        return cls(
            engaged=bool(raw.get("engaged", False)),
            mode=KillSwitchMode(mode) if mode in set(KillSwitchMode) else KillSwitchMode.HALT,
            close_positions=bool(raw.get("closePositions", False)),
            reason=raw.get("reason"),
            operator=raw.get("operator"),
            source=raw.get("source"),
            engaged_at=raw.get("engagedAt"),
            release=raw.get("release"),
            generation=int((body.get("metadata") or {}).get("generation") or 0),
            fingerprint=json.dumps(raw, sort_keys=True),
        )


def should_push(previous: Intent | None, new: Intent) -> bool:
    """Does this version of the spec call for a push? (`previous` is None on the first sight.)"""
    if new.engaged:
        return previous is None or previous.fingerprint != new.fingerprint or not previous.engaged
    if previous is None:
        return False
    return previous.engaged or previous.release != new.release


def command(intent: Intent, *, source: KillSource = OPERATOR_SOURCE) -> KillSwitchCommand:
    """The command for this version of the spec (quantzoo_api.killswitch.to_command: one builder for every
    path); a release names the engagement it ends, so an engine held by another one refuses it."""
    raw: dict[str, Any] = {
        "engaged": intent.engaged,
        "mode": intent.mode,
        "closePositions": intent.close_positions,
        "reason": intent.reason,
        "operator": intent.operator,
        "engagedAt": intent.engaged_at,
        "release": dict(intent.release) if intent.release else None,
    }
    try:
        spec = KillSwitchSpec.model_validate({k: v for k, v in raw.items() if v is not None})
    except ValidationError:  # a hand-written oddity the CRD let through: fail closed, never open
        spec = KillSwitchSpec(
            engaged=intent.engaged, mode=intent.mode, close_positions=intent.close_positions
        )
    return to_command(spec, generation=intent.generation, source=source)


# -- acknowledgements -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Ack:
    target: Target
    ack: KillSwitchAck
    latency_ms: float

    def as_status(self) -> dict[str, Any]:
        return {
            "replica": self.target.pod,
            "endpoint": self.target.endpoint,
            "engaged": self.ack.engaged,
            "tradingState": str(self.ack.trading_state),
            "acknowledgedAt": st.now_iso_ms(self.ack.acknowledged_at),
            "latencyMs": round(self.latency_ms, 1),
            "cancelledOrders": len(self.ack.cancelled_orders),
            "closedPositions": len(self.ack.closed_positions),
            # What the broker has not yet done (the engine keeps retrying; keep-halt re-pushes).
            "workingOrders": len(self.ack.working_orders),
            "errors": [e[:256] for e in self.ack.errors[:5]],
        }

    @property
    def complete(self) -> bool:
        """The clean-up behind this acknowledgement finished: nothing left working, no broker error."""
        return not self.ack.working_orders and not self.ack.errors


def acknowledges(intent_engaged: bool, ack: KillSwitchAck) -> bool:
    """An answer counts only if it says the command is in force."""
    if ack.engaged != intent_engaged:
        return False
    return not (intent_engaged and ack.trading_state is TradingState.ACTIVE)


def pending(targets: Iterable[Target], acks: Mapping[str, Ack]) -> list[Target]:
    """Targets without an acknowledgement (keyed by pod uid: a replaced pod must acknowledge again)."""
    return [t for t in targets if t.uid not in acks]


@dataclass(frozen=True)
class Outcome:
    """Where a propagation stands after a round of pushes."""

    targets: tuple[Target, ...]
    acks: tuple[Ack, ...]
    failures: Mapping[str, str] = field(default_factory=dict)  # pod -> why

    @classmethod
    def of(cls, targets: Iterable[Target], acks: Mapping[str, Ack], failures: Mapping[str, str]) -> Outcome:
        targets = tuple(targets)
        uids = {t.uid for t in targets}
        current = tuple(sorted((a for uid, a in acks.items() if uid in uids), key=lambda a: a.target.pod))
        names = {t.pod for t in targets}
        return cls(targets, current, {p: why for p, why in failures.items() if p in names})

    @property
    def total(self) -> int:
        return len(self.targets)

    @property
    def acknowledged(self) -> int:
        return len(self.acks)

    @property
    def done(self) -> bool:
        return self.acknowledged == self.total


def reason(intent: Intent, outcome: Outcome) -> st.Reason:
    if outcome.total == 0:
        if intent.engaged:
            return st.Reason.NO_ENGINE_REPLICAS
        return st.Reason.RELEASED if intent.release else st.Reason.NOT_ENGAGED
    if not outcome.done:
        return st.Reason.UNACKNOWLEDGED
    if intent.engaged:
        return st.Reason.ACKNOWLEDGED
    return st.Reason.RELEASED if intent.release else st.Reason.NOT_ENGAGED


def headline(intent: Intent) -> str:
    """`Kill switch engaged by alice (kubectl): fat finger` / `Kill switch released by bob: all clear`."""
    if intent.engaged:
        how = [] if intent.mode is KillSwitchMode.HALT else [str(intent.mode)]
        if intent.close_positions:
            how.append("close positions")
        detail = f" ({', '.join(how)})" if how else ""
        source = f" ({intent.source})" if intent.source else ""
        text = f"Kill switch engaged{detail} by {intent.operator or 'unknown'}{source}"
        return f"{text}: {intent.reason}" if intent.reason else text
    if intent.release:
        who = intent.release.get("operator") or "unknown"
        why = intent.release.get("reason")
        return f"Kill switch released by {who}: {why}" if why else f"Kill switch released by {who}"
    return "Kill switch not engaged"


def summary(intent: Intent, outcome: Outcome, latency_ms: float | None = None) -> str:
    """The one line for the Event and the condition message."""
    head = headline(intent)
    if outcome.total == 0:
        if intent.engaged:
            return f"{head}; no engine replica is running (an engine reads the switch before it trades)"
        return f"{head}; no engine replica is running"
    acked = f"acknowledged by {outcome.acknowledged}/{outcome.total} replicas"
    if outcome.done:
        text = f"{head}; {acked}" + (f" in {latency_ms:.0f} ms" if latency_ms is not None else "")
        working = sum(len(a.ack.working_orders) for a in outcome.acks)
        if working:
            text += f"; {working} orders still working at the broker, cancels being retried"
        return text
    missing = ", ".join(
        f"{t.pod} ({outcome.failures.get(t.pod, 'no answer yet')})"
        for t in outcome.targets
        if t.uid not in {a.target.uid for a in outcome.acks}
    )
    return f"{head}; {acked}; unreachable: {missing}; retrying"


def kill_switch_status(
    intent: Intent,
    outcome: Outcome,
    *,
    latency_ms: float | None,
    previous: Mapping[str, Any] | None,
    now: str,
) -> dict[str, Any]:
    """`status.killSwitch` (owned by the kill-switch field manager)."""
    previous = previous or {}
    if not intent.engaged and not intent.release:
        since = None
        reason_text, by = None, None
    elif intent.engaged:
        since = intent.engaged_at or (previous.get("since") if previous.get("engaged") else None) or now
        reason_text, by = intent.reason, intent.operator
    else:
        release = intent.release or {}
        since = (
            release.get("at") or (previous.get("since") if previous.get("engaged") is False else None) or now
        )
        reason_text, by = release.get("reason") or intent.reason, release.get("operator") or intent.operator
    out: dict[str, Any] = {
        "engaged": intent.engaged,
        "mode": str(intent.mode),
        "generation": intent.generation,
        "acknowledgements": [a.as_status() for a in outcome.acks],
    }
    if since:
        out["since"] = since
    if reason_text:
        out["reason"] = reason_text
    if by:
        out["by"] = by
    if intent.source and intent.engaged:
        out["source"] = intent.source
    if latency_ms is not None:
        out["propagationLatencyMs"] = round(latency_ms, 1)
    return out


def status_patch(
    intent: Intent,
    outcome: Outcome,
    *,
    latency_ms: float | None,
    current_status: Mapping[str, Any] | None,
    now: str,
) -> dict[str, Any]:
    """Everything the kill-switch field manager owns in status: its condition and status.killSwitch."""
    current_status = current_status or {}
    cond = st.kill_switch_condition(
        engaged=intent.engaged,
        reason=reason(intent, outcome),
        message=summary(intent, outcome, latency_ms),
        generation=intent.generation,
    )
    return {
        "conditions": st.with_transition_times([cond], current_status.get("conditions"), st.now_iso()),
        "killSwitch": kill_switch_status(
            intent, outcome, latency_ms=latency_ms, previous=current_status.get("killSwitch"), now=now
        ),
    }


def observed_patch(intent: Intent, *, current_status: Mapping[str, Any] | None, now: str) -> dict[str, Any]:
    """Status for a switch seen but not pushed (a released switch on the operator's first sight)."""
    current_status = current_status or {}
    cond = st.kill_switch_condition(
        engaged=intent.engaged,
        reason=st.Reason.RELEASED if intent.release else st.Reason.NOT_ENGAGED,
        message=headline(intent),
        generation=intent.generation,
    )
    return {
        "conditions": st.with_transition_times([cond], current_status.get("conditions"), st.now_iso()),
        "killSwitch": kill_switch_status(
            intent, Outcome((), (), {}), latency_ms=None, previous=current_status.get("killSwitch"), now=now
        ),
    }


def only_refused_by_policy(failures: Mapping[str, str]) -> bool:
    """Is every failure a push the operator refused to dial (QUANTZOO_OPERATOR_PUSH_NETWORKS)? Such a
    replica cannot become reachable until its pod changes, so retrying it every fraction of a second
    only adds API load -- N systems' pod lists during a kill-all of N."""
    return bool(failures) and all(why.endswith(REFUSED_BY_POLICY) for why in failures.values())


def release_refused(intent: Intent, failures: Mapping[str, str]) -> bool:
    """A release every unacknowledging replica refused with 409: the engine is held by ANOTHER engagement
    (e.g. the safety service's direct halt) than the one this release names. Pushing it again cannot
    succeed and must not be tried: only a release naming the holding engagement resumes trading."""
    return not intent.engaged and bool(failures) and all("HTTP 409" in why for why in failures.values())


def retry_delays(initial: float, maximum: float) -> Iterator[float]:
    """0.2, 0.4, 0.8, 1.6, 2, 2, ... (doubling, capped)."""
    delay = initial
    while True:
        yield delay
        delay = min(delay * 2, maximum)
