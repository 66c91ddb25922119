"""The operator's view of the levels (operator/quantzoo_operator/levels/holds.py), pure: which levels
hold which system, the Halted condition naming the highest, the TradingHalt's counts, and no write when
the status already shows it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from quantzoo_api.conditions import Reason
from quantzoo_operator.levels.holds import (
    LevelIndex,
    halted_condition,
    held_by_json,
    never_held,
    phase_facts,
    shown,
    wanted,
)


def ts(ns: str, name: str, account: str | None = None, engaged: bool = False, status: dict | None = None):
    spec: dict = {"killSwitch": {"engaged": engaged, "engagedAt": "2026-12-05T21:00:00Z", "operator": "o"}}
    if account:
        spec["accountRef"] = {"name": account}
    return {
        "metadata": {"namespace": ns, "name": name, "generation": 4},
        "spec": spec,
        "status": status or {},
    }


def halt(name: str, scope: dict, engaged: bool = True) -> dict:
    ks = {
        "engaged": engaged,
        "engagedAt": "2026-12-05T21:01:00.000Z",
        "reason": "desk drill",
        "operator": "d",
    }
    return {"metadata": {"name": name}, "spec": {"scope": scope, "killSwitch": ks}}


def account(ns: str, name: str, engaged: bool) -> dict:
    return {"metadata": {"namespace": ns, "name": name}, "spec": {"killSwitch": {"engaged": engaged}}}


def index() -> LevelIndex:
    idx = LevelIndex()
    for obj in (ts("a", "s1", "main"), ts("a", "s2", engaged=True), ts("b", "s3")):
        idx.put_system(obj)
    return idx


def test_a_desk_halt_covers_its_namespace_only_and_lists_the_highest_level_first() -> None:
    idx = index()
    assert sorted(idx.put_halt(halt("desk-a", {"level": "Desk", "namespace": "a"}))) == [
        ("a", "s1"),
        ("a", "s2"),
    ]
    assert [h.name for h in idx.held_by(("a", "s2"))] == ["Desk/desk-a", "System/a/s2"]
    assert idx.held_by(("b", "s3")) == []
    assert idx.halt_counts("desk-a") == (2, 2)
    cond = halted_condition(idx.held_by(("a", "s2")), 4, "t")
    assert cond["status"] == "True"
    assert cond["reason"] == Reason.HELD_BY_DESK
    assert cond["message"] == "held by Desk/desk-a, System/a/s2: desk drill"
    assert cond["observedGeneration"] == 4


def test_a_firm_halt_and_an_account_kill() -> None:
    idx = index()
    assert len(idx.put_halt(halt("firm", {"level": "Firm"}))) == 3
    assert idx.put_account(account("a", "main", True)) == [("a", "s1")]
    assert [h.level for h in idx.held_by(("a", "s1"))] == ["Firm", "Account"]
    idx.put_halt(halt("firm", {"level": "Firm"}, engaged=False))
    assert halted_condition(idx.held_by(("a", "s1")), None, "t")["reason"] == Reason.HELD_BY_ACCOUNT
    assert idx.halt_counts("firm") == (3, 0)
    assert halted_condition(idx.held_by(("b", "s3")), None, "t")["reason"] == Reason.NOT_HALTED


def test_no_write_when_the_status_already_shows_the_holds() -> None:
    idx = index()
    idx.put_halt(halt("firm", {"level": "Firm"}))
    holds = idx.held_by(("b", "s3"))
    status = {
        "phase": "Halted",
        "killSwitch": {"heldBy": held_by_json(holds)},
        "conditions": [halted_condition(holds, 4, "2026-12-05T21:01:00Z")],
    }
    facts = idx.systems[("b", "s3")].facts
    assert shown(status) == wanted(holds, facts)
    assert shown({}) != wanted(holds, facts)


READY = {"type": "Ready", "status": "True", "reason": "AllComponentsReady"}
DEGRADED = {"type": "Degraded", "status": "True", "reason": "KillSwitchUnacknowledged"}


def test_the_write_carries_the_phase_the_holds_give_the_system_as_it_stands() -> None:
    """One write per system for a hold: the phase comes with heldBy (reconcile's phase of the same facts),
    not in a second write by the reconcile writer."""
    idx = LevelIndex()
    idx.put_system(ts("b", "s3", status={"phase": "Running", "conditions": [READY]}))
    idx.put_halt(halt("firm", {"level": "Firm"}))
    system = idx.systems[("b", "s3")]
    assert wanted(idx.held_by(("b", "s3")), system.facts)[1:] == ("True", "HeldByFirm", "Halted")
    idx.put_halt(halt("firm", {"level": "Firm"}, engaged=False))
    assert wanted(idx.held_by(("b", "s3")), system.facts)[1:] == ("False", "NotHalted", "Running")
    degraded = ts("b", "s3", status={"conditions": [READY, DEGRADED]})
    assert wanted([], phase_facts(degraded))[3] == "Degraded"  # Degraded outranks a hold, as in reconcile


def test_a_stale_phase_beside_a_hold_is_written_again() -> None:
    """The reconcile writer read the system before the hold and wrote its phase after it: the levels
    component sees heldBy with phase Running on its watch and writes the phase again."""
    idx = LevelIndex()
    idx.put_halt(halt("firm", {"level": "Firm"}))
    idx.put_system(ts("b", "s3", status={"conditions": [READY]}))
    holds = idx.held_by(("b", "s3"))
    status = {
        "phase": "Running",
        "killSwitch": {"heldBy": held_by_json(holds)},
        "conditions": [READY, halted_condition(holds, 4, "2026-12-05T21:01:00Z")],
    }
    idx.put_system(
        ts("b", "s3", status=status) | {"metadata": {"namespace": "b", "name": "s3", "resourceVersion": "9"}}
    )
    system = idx.systems[("b", "s3")]
    assert system.resource_version == "9"  # the precondition of that write
    assert not never_held(system, holds)
    assert system.shown != wanted(holds, system.facts)
    assert wanted(holds, system.facts)[3] == "Halted"


def test_a_system_never_held_is_not_written() -> None:
    idx = LevelIndex()
    idx.put_system(ts("b", "s3", status={"phase": "Running", "conditions": [READY]}))
    assert never_held(idx.systems[("b", "s3")], [])


def test_an_unreadable_halt_covers_nobody_in_status() -> None:
    idx = index()
    assert idx.put_halt(halt("odd", {"level": "Desk"})) == []  # Desk without a namespace
    assert idx.held_by(("a", "s1")) == []


def test_the_component_marks_what_an_event_may_change() -> None:
    from quantzoo_operator.levels.status import LevelStatus

    levels = LevelStatus(kube=None, api_factory=lambda: None)  # type: ignore[arg-type]
    listed = {"items": [ts("a", "s1", "main"), ts("a", "s2"), ts("b", "s3")]}
    assert levels.apply(("TradingSystem", "LISTED", listed)) == {("a", "s1"), ("a", "s2"), ("b", "s3")}
    desk = halt("desk-a", {"level": "Desk", "namespace": "a"})
    assert levels.apply(("TradingHalt", "ADDED", desk)) == {("a", "s1"), ("a", "s2")}
    assert levels.apply(("TradingAccount", "MODIFIED", account("a", "main", True))) == {("a", "s1")}
    assert levels.apply(("TradingSystem", "DELETED", ts("a", "s2"))) == set()
    assert levels.index.halt_counts("desk-a") == (1, 1)
    assert "desk-a" in levels._levels_dirty


class RecordingKube:
    """Stands in for the operator's Kube: records each request and answers with the object the write
    would make. It does not model the API server's merge, its field managers or its preconditions."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict]] = []

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    def request(self, method: str, path: str, *, query: Any, body: dict, content_type: str) -> dict:
        self.requests.append((method, path, body))
        meta = dict(body["metadata"]) | {"resourceVersion": "11", "generation": 4}
        return {"metadata": meta, "spec": {}, "status": body["status"]}


def test_a_hold_is_one_write_per_system_with_the_phase_and_its_precondition() -> None:
    import asyncio

    from quantzoo_operator.levels.status import LevelStatus

    kube = RecordingKube()
    levels = LevelStatus(kube=kube, api_factory=lambda: None)  # type: ignore[arg-type]
    system = ts("b", "s3", status={"phase": "Running", "conditions": [READY]})
    system["metadata"]["resourceVersion"] = "10"
    levels.apply(("TradingSystem", "LISTED", {"items": [system]}))
    dirty = levels.apply(("TradingHalt", "ADDED", halt("firm", {"level": "Firm"})))
    assert asyncio.run(levels.flush(dirty)) == 2  # the system's status and the halt's
    writes = [body for _, path, body in kube.requests if "/tradingsystems/" in path]
    assert len(writes) == 1
    assert writes[0]["metadata"]["resourceVersion"] == "10"
    assert writes[0]["status"]["phase"] == "Halted"
    assert levels.index.systems[("b", "s3")].resource_version == "11"  # the write's own version
    assert asyncio.run(levels.flush(dirty)) == 0  # it shows the hold now: no second write
