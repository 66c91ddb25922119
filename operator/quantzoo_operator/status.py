"""Every condition type, every reason and the phase of a TradingSystem: pure functions, no I/O.

Three writers share `status`, each with its own server-side-apply field manager, so none clobbers the
others' entries in `conditions` (a list-map keyed by `type`):
- reconcile (`quantzoo-operator-reconcile`): Ready, EngineReady, SafetyReady, Degraded, phase, engine,
  observedGeneration -- computed by `reconcile_status`;
- the kill-switch path (`quantzoo-operator-killswitch`): KillSwitchEngaged and `status.killSwitch` --
  computed by `kill_switch_condition` (+ propagation.py for status.killSwitch);
- the levels component (`quantzoo-operator-levels`, levels/status.py): Halted, status.killSwitch.heldBy,
  and `phase` with them (`phase_of`, the same function of the object reconcile applies), under a
  resourceVersion precondition: a hold changes the phase in the same write, not in a second one.
Degraded is the reconcile writer's; it reads the kill-switch writer's KillSwitchEngaged condition: when
that says Unacknowledged, Degraded is True with reason KillSwitchUnacknowledged.

Conventions (Kubernetes API conventions, as CloudNativePG and cert-manager follow them): every condition
has status, reason (CamelCase), message, observedGeneration and lastTransitionTime, and
lastTransitionTime changes only when status changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from quantzoo_api import API_VERSION, KIND
from quantzoo_api.conditions import ConditionType, Phase, Reason, kill_phase


# -- time -----------------------------------------------------------------------------------------
def now_iso(at: datetime | None = None) -> str:
    """RFC 3339, seconds precision, UTC: the format of metav1.Time (conditions)."""
    at = at or datetime.now(UTC)
    return at.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def now_iso_ms(at: datetime | None = None) -> str:
    """RFC 3339 with milliseconds (kill-switch timestamps, where milliseconds matter)."""
    at = at or datetime.now(UTC)
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- conditions -----------------------------------------------------------------------------------
def condition(
    ctype: ConditionType, status: bool, reason: Reason, message: str, generation: int | None
) -> dict[str, Any]:
    """One condition without lastTransitionTime (added by `with_transition_times`)."""
    out: dict[str, Any] = {
        "type": str(ctype),
        "status": "True" if status else "False",
        "reason": str(reason),
        "message": message[:32768],
    }
    if generation is not None:
        out["observedGeneration"] = int(generation)
    return out


def find(conditions: Iterable[Mapping[str, Any]] | None, ctype: str) -> Mapping[str, Any] | None:
    for item in conditions or ():
        if item.get("type") == str(ctype):
            return item
    return None


def with_transition_times(
    new: Sequence[Mapping[str, Any]], existing: Iterable[Mapping[str, Any]] | None, now: str
) -> list[dict[str, Any]]:
    """Stamp lastTransitionTime: kept from the existing condition when its status did not change."""
    existing = list(existing or ())
    out = []
    for cond in new:
        old = find(existing, cond["type"])
        stamped = dict(cond)
        if old is not None and old.get("status") == cond["status"] and old.get("lastTransitionTime"):
            stamped["lastTransitionTime"] = old["lastTransitionTime"]
        else:
            stamped["lastTransitionTime"] = now
        out.append(stamped)
    return out


@dataclass(frozen=True)
class Transition:
    type: str
    old: str | None  # None: the condition did not exist
    new: str
    reason: str
    message: str


def transitions(
    old: Iterable[Mapping[str, Any]] | None, new: Iterable[Mapping[str, Any]]
) -> list[Transition]:
    """Conditions whose status changed (what deserves an Event)."""
    old = list(old or ())
    out = []
    for cond in new:
        before = find(old, cond["type"])
        before_status = before.get("status") if before else None
        if before_status != cond["status"]:
            out.append(
                Transition(cond["type"], before_status, cond["status"], cond["reason"], cond["message"])
            )
    return out


# -- workload readiness ---------------------------------------------------------------------------
def _int(value: Any) -> int:
    return int(value or 0)


def engine_ready(sts: Mapping[str, Any] | None, generation: int | None) -> dict[str, Any]:
    if sts is None:
        return condition(
            ConditionType.ENGINE_READY,
            False,
            Reason.ENGINE_MISSING,
            "engine StatefulSet not found",
            generation,
        )
    spec, st = sts.get("spec") or {}, sts.get("status") or {}
    desired = _int(spec.get("replicas", 1))
    ready = _int(st.get("readyReplicas"))
    rolling = _int(st.get("observedGeneration")) < _int((sts.get("metadata") or {}).get("generation")) or (
        bool(st.get("updateRevision")) and st.get("currentRevision") != st.get("updateRevision")
    )
    counts = f"{ready}/{desired} engine replica{'s' if desired != 1 else ''} ready"
    if rolling:
        return condition(
            ConditionType.ENGINE_READY,
            False,
            Reason.ENGINE_ROLLING_OUT,
            f"rolling out a new engine revision (old pod stops before the new one starts); {counts}",
            generation,
        )
    if ready >= desired > 0:
        return condition(ConditionType.ENGINE_READY, True, Reason.ENGINE_RUNNING, counts, generation)
    return condition(ConditionType.ENGINE_READY, False, Reason.ENGINE_STARTING, counts, generation)


def safety_ready(deploy: Mapping[str, Any] | None, generation: int | None) -> dict[str, Any]:
    if deploy is None:
        return condition(
            ConditionType.SAFETY_READY,
            False,
            Reason.SAFETY_MISSING,
            "safety Deployment not found",
            generation,
        )
    desired = _int((deploy.get("spec") or {}).get("replicas", 1))
    available = _int((deploy.get("status") or {}).get("availableReplicas"))
    counts = f"{available}/{desired} safety replica{'s' if desired != 1 else ''} available"
    if available >= desired > 0:
        return condition(ConditionType.SAFETY_READY, True, Reason.SAFETY_AVAILABLE, counts, generation)
    return condition(ConditionType.SAFETY_READY, False, Reason.SAFETY_UNAVAILABLE, counts, generation)


def ready(
    engine: Mapping[str, Any],
    safety: Mapping[str, Any],
    *,
    reconcile_error: str | None,
    deleting: bool,
    generation: int | None,
    error_reason: Reason = Reason.RECONCILE_FAILED,
) -> dict[str, Any]:
    if deleting:
        return condition(
            ConditionType.READY, False, Reason.TERMINATING, "TradingSystem is being deleted", generation
        )
    if reconcile_error:
        return condition(ConditionType.READY, False, error_reason, reconcile_error, generation)
    if engine["status"] != "True":
        return condition(ConditionType.READY, False, Reason.ENGINE_NOT_READY, engine["message"], generation)
    if safety["status"] != "True":
        return condition(ConditionType.READY, False, Reason.SAFETY_NOT_READY, safety["message"], generation)
    return condition(
        ConditionType.READY,
        True,
        Reason.ALL_COMPONENTS_READY,
        "engine and safety service are ready",
        generation,
    )


def degraded(
    *,
    reconcile_error: str | None,
    kill_switch: Mapping[str, Any] | None,
    generation: int | None,
    error_reason: Reason = Reason.RECONCILE_FAILED,
) -> dict[str, Any]:
    if kill_switch is not None and kill_switch.get("reason") == Reason.UNACKNOWLEDGED:
        return condition(
            ConditionType.DEGRADED,
            True,
            Reason.KILL_SWITCH_UNACKNOWLEDGED,
            str(kill_switch.get("message") or "an engine replica has not acknowledged the kill switch"),
            generation,
        )
    if reconcile_error:
        return condition(ConditionType.DEGRADED, True, error_reason, reconcile_error, generation)
    return condition(ConditionType.DEGRADED, False, Reason.AS_EXPECTED, "", generation)


def phase(
    spec: Mapping[str, Any],
    *,
    ready_cond: Mapping[str, Any],
    degraded_cond: Mapping[str, Any],
    deleting: bool,
    held_by: Sequence[Mapping[str, Any]] = (),
) -> Phase:
    """Terminating > Degraded > Halted/ReduceOnly > Running > Pending.

    An engaged switch that some replica has not acknowledged shows as Degraded, not Halted: the phase
    claims a halt only once it is known to hold (or no engine replica runs). Halted/ReduceOnly counts every
    level holding the system (quantzoo_api.conditions.kill_phase: its own switch and status heldBy)."""
    if deleting:
        return Phase.TERMINATING
    if degraded_cond["status"] == "True":
        return Phase.DEGRADED
    if (held := kill_phase((spec or {}).get("killSwitch"), held_by)) is not None:
        return held
    if ready_cond["status"] == "True":
        return Phase.RUNNING
    return Phase.PENDING


def phase_of(ts: Mapping[str, Any], held_by: Sequence[Mapping[str, Any]]) -> Phase:
    """The phase of a TradingSystem as it stands (its spec, its Ready and Degraded conditions, its
    deletion), held by `held_by`: what `reconcile_status` computes from the same facts. The levels
    component writes it with heldBy in one write (levels/status.py), so a halt is one write per system."""
    conditions = (ts.get("status") or {}).get("conditions") or ()
    unknown = {"status": "Unknown"}
    return phase(
        ts.get("spec") or {},
        ready_cond=find(conditions, ConditionType.READY) or unknown,
        degraded_cond=find(conditions, ConditionType.DEGRADED) or unknown,
        deleting=bool((ts.get("metadata") or {}).get("deletionTimestamp")),
        held_by=held_by,
    )


def reconcile_status(
    ts: Mapping[str, Any],
    sts: Mapping[str, Any] | None,
    deploy: Mapping[str, Any] | None,
    *,
    observed_generation: int | None,
    reconcile_error: str | None,
    now: str,
    error_reason: Reason = Reason.RECONCILE_FAILED,
) -> dict[str, Any]:
    """Everything the reconcile field manager owns in status (always all of it: with server-side apply
    a field left out of an apply is removed)."""
    meta = ts.get("metadata") or {}
    current = ts.get("status") or {}
    existing = current.get("conditions") or []
    deleting = bool(meta.get("deletionTimestamp"))
    engine_c = engine_ready(sts, observed_generation)
    safety_c = safety_ready(deploy, observed_generation)
    ready_c = ready(
        engine_c,
        safety_c,
        reconcile_error=reconcile_error,
        deleting=deleting,
        generation=observed_generation,
        error_reason=error_reason,
    )
    degraded_c = degraded(
        reconcile_error=reconcile_error,
        kill_switch=find(existing, ConditionType.KILL_SWITCH_ENGAGED),
        generation=observed_generation,
        error_reason=error_reason,
    )
    sts_status = (sts or {}).get("status") or {}
    out: dict[str, Any] = {
        "phase": str(
            phase(
                ts.get("spec") or {},
                ready_cond=ready_c,
                degraded_cond=degraded_c,
                deleting=deleting,
                held_by=(current.get("killSwitch") or {}).get("heldBy") or (),
            )
        ),
        "conditions": with_transition_times([ready_c, engine_c, safety_c, degraded_c], existing, now),
        "engine": {
            "replicas": _int(sts_status.get("replicas")),
            "readyReplicas": _int(sts_status.get("readyReplicas")),
        },
    }
    if observed_generation is not None:
        out["observedGeneration"] = int(observed_generation)
    return out


def kill_switch_condition(
    *, engaged: bool, reason: Reason, message: str, generation: int | None
) -> dict[str, Any]:
    """The KillSwitchEngaged condition (status follows spec.killSwitch.engaged; the reason says whether
    every engine replica has acknowledged it)."""
    assert reason in {
        Reason.ACKNOWLEDGED,
        Reason.UNACKNOWLEDGED,
        Reason.NO_ENGINE_REPLICAS,
        Reason.NOT_ENGAGED,
        Reason.RELEASED,
    }
    return condition(ConditionType.KILL_SWITCH_ENGAGED, engaged, reason, message, generation)


def apply_body(namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
    """A server-side apply body for the status subresource."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "status": dict(status),
    }
