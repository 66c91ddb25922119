"""The operator's view of the levels (operator/quantzoo_operator/levels/holds.py), pure: which levels
hold which system, the Halted condition naming the highest, the TradingHalt's counts, and no write when
the status already shows it."""

from __future__ import annotations

from quantzoo_api.conditions import Reason
from quantzoo_operator.levels.holds import LevelIndex, halted_condition, held_by_json, shown, wanted


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
        "killSwitch": {"heldBy": held_by_json(holds)},
        "conditions": [halted_condition(holds, 4, "2026-12-05T21:01:00Z")],
    }
    assert shown(status) == wanted(holds)
    assert shown({}) != wanted(holds)


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
