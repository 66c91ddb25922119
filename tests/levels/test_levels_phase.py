"""status.phase of a TradingSystem held by a higher level (issue #13), pure: the phase shows the hold of
its firm, desk or account (status.killSwitch.heldBy, written by the levels component) as it shows its own
kill switch, in the same vocabulary (Halted, ReduceOnly). No cluster, milliseconds."""

from __future__ import annotations

from typing import Any

import pytest
from quantzoo_api.conditions import Phase
from quantzoo_operator import status

T0 = "2026-12-06T01:00:00Z"
READY_STS = {"spec": {"replicas": 1}, "status": {"replicas": 1, "readyReplicas": 1}}
READY_DEPLOY = {"spec": {"replicas": 1}, "status": {"availableReplicas": 1}}


def held_system(*held_by: dict[str, Any], spec: dict | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "s1", "namespace": "desk-a", "generation": 2},
        "spec": spec or {},
        "status": {"conditions": [], "killSwitch": {"heldBy": list(held_by)}},
    }


def phase_of(ts: dict[str, Any]) -> str:
    out = status.reconcile_status(
        ts, READY_STS, READY_DEPLOY, observed_generation=2, reconcile_error=None, now=T0
    )
    return out["phase"]


@pytest.mark.parametrize("level", ["Firm", "Desk", "Account"])
def test_a_system_held_by_a_higher_level_shows_halted(level: str) -> None:
    holder = {"Firm": "Firm/firm", "Desk": "Desk/desk-desk-a", "Account": "Account/desk-a/main"}[level]
    assert phase_of(held_system({"level": level, "name": holder, "mode": "Halt"})) == Phase.HALTED


def test_the_strongest_hold_wins_and_reduce_only_shows_as_such() -> None:
    reduce = {"level": "Account", "name": "Account/desk-a/main", "mode": "ReduceOnly"}
    assert phase_of(held_system(reduce)) == Phase.REDUCE_ONLY
    firm = {"level": "Firm", "name": "Firm/firm", "mode": "Halt"}
    assert phase_of(held_system(firm, reduce)) == Phase.HALTED
    own_reduce = {"killSwitch": {"engaged": True, "mode": "ReduceOnly"}}
    assert phase_of(held_system(firm, spec=own_reduce)) == Phase.HALTED


def test_released_everywhere_runs() -> None:
    assert phase_of(held_system()) == Phase.RUNNING
