"""An account being deleted holds its systems in their status too (issue #13), pure: the operator's level
index shows the hold the engines put on themselves (engine level_watch.py), the deletion its engagement.
No cluster, milliseconds."""

from __future__ import annotations

from quantzoo_operator.levels.holds import LevelIndex, wanted

DELETED_AT = "2026-12-06T01:00:00Z"


def _system() -> dict:
    return {"metadata": {"namespace": "desk-a", "name": "s1"}, "spec": {"accountRef": {"name": "main"}}}


def _account(**spec: object) -> dict:
    meta = {"namespace": "desk-a", "name": "main", "deletionTimestamp": DELETED_AT}
    return {"metadata": meta, "spec": spec}


def test_an_account_being_deleted_holds_its_systems_naming_it() -> None:
    index = LevelIndex()
    index.put_system(_system())
    assert index.put_account(_account()) == [("desk-a", "s1")]
    holds = index.held_by(("desk-a", "s1"))
    assert [h.name for h in holds] == ["Account/desk-a/main"]
    assert holds[0].reason == "TradingAccount desk-a/main is being deleted"
    assert holds[0].engaged_at == "2026-12-06T01:00:00.000Z"
    assert wanted(holds, None)[2] == "HeldByAccount"


def test_only_a_release_naming_the_deletion_lifts_it() -> None:
    index = LevelIndex()
    index.put_system(_system())
    index.put_account(_account(killSwitch={"engaged": False}))
    assert index.held_by(("desk-a", "s1"))
    release = {"operator": "ana", "reason": "on purpose", "engagedAt": DELETED_AT}
    index.put_account(_account(killSwitch={"engaged": False, "release": release}))
    assert index.held_by(("desk-a", "s1")) == []
