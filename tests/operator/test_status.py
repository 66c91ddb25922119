"""Unit tests of the status module: conditions, transitions, phase (no cluster, milliseconds)."""

from __future__ import annotations

from typing import Any

from quantzoo_operator import status
from quantzoo_operator.status import ConditionType, Phase, Reason

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def sts(
    ready: int = 1, *, generation: int = 1, observed: int = 1, current: str = "r1", update: str = "r1"
) -> dict:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": 1},
        "status": {
            "replicas": 1,
            "readyReplicas": ready,
            "observedGeneration": observed,
            "currentRevision": current,
            "updateRevision": update,
        },
    }


def deploy(available: int = 1) -> dict:
    return {"spec": {"replicas": 1}, "status": {"availableReplicas": available}}


def ts(spec: dict | None = None, conditions: list | None = None, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "demo", "namespace": "ns", "generation": 4}
    if deleting:
        meta["deletionTimestamp"] = T1
    return {"metadata": meta, "spec": spec or {}, "status": {"conditions": conditions or []}}


def conds(body: dict) -> dict[str, dict]:
    return {c["type"]: c for c in body["conditions"]}


def test_all_ready() -> None:
    out = status.reconcile_status(ts(), sts(), deploy(), observed_generation=4, reconcile_error=None, now=T0)
    c = conds(out)
    assert set(c) == {"Ready", "EngineReady", "SafetyReady", "Degraded"}
    assert (c["Ready"]["status"], c["Ready"]["reason"]) == ("True", "AllComponentsReady")
    assert c["EngineReady"]["reason"] == "EngineRunning"
    assert c["SafetyReady"]["reason"] == "SafetyAvailable"
    assert (c["Degraded"]["status"], c["Degraded"]["reason"]) == ("False", "AsExpected")
    assert all(x["observedGeneration"] == 4 and x["lastTransitionTime"] == T0 for x in c.values())
    assert out["observedGeneration"] == 4
    assert out["phase"] == "Running"
    assert out["engine"] == {"replicas": 1, "readyReplicas": 1}


def test_last_transition_time_is_kept_while_the_status_does_not_change() -> None:
    first = status.reconcile_status(
        ts(), sts(), deploy(), observed_generation=4, reconcile_error=None, now=T0
    )
    again = status.reconcile_status(
        ts(conditions=first["conditions"]),
        sts(),
        deploy(),
        observed_generation=5,
        reconcile_error=None,
        now=T1,
    )
    assert all(c["lastTransitionTime"] == T0 for c in again["conditions"])
    assert all(c["observedGeneration"] == 5 for c in again["conditions"])
    changed = status.reconcile_status(
        ts(conditions=first["conditions"]),
        sts(ready=0),
        deploy(),
        observed_generation=5,
        reconcile_error=None,
        now=T1,
    )
    c = conds(changed)
    assert c["EngineReady"]["lastTransitionTime"] == T1
    assert c["Ready"]["lastTransitionTime"] == T1
    assert c["SafetyReady"]["lastTransitionTime"] == T0
    assert c["Degraded"]["lastTransitionTime"] == T0


def test_engine_readiness_reasons() -> None:
    assert status.engine_ready(None, 1)["reason"] == Reason.ENGINE_MISSING
    assert status.engine_ready(sts(ready=0), 1)["reason"] == Reason.ENGINE_STARTING
    rolling = status.engine_ready(sts(current="r1", update="r2"), 1)
    assert (rolling["status"], rolling["reason"]) == ("False", Reason.ENGINE_ROLLING_OUT)
    assert status.engine_ready(sts(generation=2, observed=1), 1)["reason"] == Reason.ENGINE_ROLLING_OUT
    assert status.engine_ready(sts(), 1)["message"] == "1/1 engine replica ready"


def test_ready_names_what_is_missing() -> None:
    out = status.reconcile_status(ts(), sts(), deploy(0), observed_generation=1, reconcile_error=None, now=T0)
    assert conds(out)["Ready"]["reason"] == "SafetyNotReady"
    assert out["phase"] == "Pending"
    failed = status.reconcile_status(
        ts(), sts(), deploy(), observed_generation=1, reconcile_error="boom", now=T0
    )
    assert conds(failed)["Ready"]["reason"] == "ReconcileFailed"
    assert (conds(failed)["Degraded"]["status"], conds(failed)["Degraded"]["reason"]) == (
        "True",
        "ReconcileFailed",
    )
    assert failed["phase"] == "Degraded"


def test_an_unacknowledged_kill_switch_makes_the_system_degraded() -> None:
    kill = status.kill_switch_condition(
        engaged=True, reason=Reason.UNACKNOWLEDGED, message="0/1; unreachable: demo-engine-0", generation=4
    )
    out = status.reconcile_status(
        ts({"killSwitch": {"engaged": True}}, [kill]),
        sts(),
        deploy(),
        observed_generation=4,
        reconcile_error=None,
        now=T0,
    )
    degraded = conds(out)["Degraded"]
    assert (degraded["status"], degraded["reason"]) == ("True", "KillSwitchUnacknowledged")
    assert "demo-engine-0" in degraded["message"]
    assert out["phase"] == Phase.DEGRADED


def test_phase() -> None:
    ready = {"status": "True"}
    not_degraded = {"status": "False"}
    assert status.phase({}, ready_cond=ready, degraded_cond=not_degraded, deleting=False) == Phase.RUNNING
    halted = {"killSwitch": {"engaged": True, "mode": "Halt"}}
    assert status.phase(halted, ready_cond=ready, degraded_cond=not_degraded, deleting=False) == Phase.HALTED
    reduce = {"killSwitch": {"engaged": True, "mode": "ReduceOnly"}}
    assert (
        status.phase(reduce, ready_cond=ready, degraded_cond=not_degraded, deleting=False)
        == Phase.REDUCE_ONLY
    )
    assert (
        status.phase(halted, ready_cond=ready, degraded_cond=not_degraded, deleting=True) == Phase.TERMINATING
    )
    out = status.reconcile_status(
        ts(deleting=True), sts(), deploy(), observed_generation=1, reconcile_error=None, now=T0
    )
    assert conds(out)["Ready"]["reason"] == "Terminating"
    assert set(Phase) == {
        "Pending",
        "Running",
        "Halted",
        "ReduceOnly",
        "Degraded",
        "Terminating",
    }  # the CRD's enum


def test_transitions_list_only_changes() -> None:
    old = [status.condition(ConditionType.READY, True, Reason.ALL_COMPONENTS_READY, "", 1)]
    new = [
        status.condition(ConditionType.READY, False, Reason.ENGINE_NOT_READY, "0/1", 1),
        status.condition(ConditionType.DEGRADED, False, Reason.AS_EXPECTED, "", 1),
    ]
    changes = status.transitions(old, new)
    assert [(c.type, c.old, c.new) for c in changes] == [
        ("Ready", "True", "False"),
        ("Degraded", None, "False"),
    ]


def test_every_reason_is_camel_case_and_unique() -> None:
    values = [r.value for r in Reason]
    assert len(values) == len(set(values))
    assert all(v[0].isupper() and v.isalnum() for v in values)


def test_timestamps_are_rfc3339_utc() -> None:
    assert status.now_iso().endswith("Z")
    assert len(status.now_iso()) == len("2026-01-01T00:00:00Z")
    assert status.now_iso_ms().endswith("Z")
    assert "." in status.now_iso_ms()
