"""The engine's own watch of its TradingAccount (issue #13, the account's gaps), pure: what the watch loop's
reports become. No cluster: the reports are fed as the shared list+watch loop (quantzoo_api.watching)
hands them over; that loop's own behaviour against the API server is tested in tests/engine and tests/faults.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from quantzoo_api.levels import KillLevel, holder_of
from quantzoo_engine.killswitch import KillSwitchLevels, LatchDecision
from quantzoo_engine.kube_watch import Proof, ViewLost
from quantzoo_engine.level_watch import (
    ACCOUNT_WATCH,
    LevelObserved,
    _Emitter,
    account_deleted,
    interpret_account,
)

NOW = datetime(2026, 12, 6, 1, 0, tzinfo=UTC)
ACCOUNT = holder_of(KillLevel.ACCOUNT, "main", "trading")
DELETED_AT = "2026-12-06T01:00:00Z"


def account(**meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": "main", "namespace": "trading", "generation": 2, **meta}, "spec": {}}


def emitter() -> tuple[_Emitter, list[Any]]:
    seen: list[Any] = []
    return (
        _Emitter(
            ACCOUNT_WATCH,
            lambda obj: interpret_account(obj, "trading"),
            seen.append,
            must_exist=True,
            on_deleted=lambda obj: account_deleted(obj, "trading"),
        ),
        seen,
    )


def test_a_missing_account_is_never_proven_by_a_quiet_watch() -> None:
    """An engine whose account does not exist at start must not trade: the empty list loses the view, and
    a bookmark or the clean end of the (empty) watch proves nothing about an account that is not there."""
    watch, seen = emitter()
    watch.listed([])
    watch.unchanged()
    assert seen
    assert all(isinstance(action, ViewLost) for action in seen), seen
    watch.event("ADDED", account())
    watch.unchanged()
    assert isinstance(seen[-2], LevelObserved)
    assert isinstance(seen[-1], Proof)


def test_an_account_being_deleted_halts_the_engine_naming_it() -> None:
    command = interpret_account(account(deletionTimestamp=DELETED_AT), "trading")
    assert command.engaged
    assert command.holder == ACCOUNT
    assert command.reason is not None
    assert "trading/main is being deleted" in command.reason
    assert command.engagement == "2026-12-06T01:00:00.000Z"


def test_an_account_deleted_without_a_terminating_phase_halts_the_engine() -> None:
    """Deleted with no finalizer left (the operator was down, or someone removed it): the DELETED event is
    the first the engine sees of it, and it halts."""
    watch, seen = emitter()
    watch.listed([account()])
    watch.event("DELETED", account())
    last = seen[-1]
    assert isinstance(last, LevelObserved)
    assert [c.engaged for c in last.commands] == [True]
    assert "deleted" in (last.commands[0].reason or "")
    watch.unchanged()  # gone: a quiet watch proves nothing any more
    assert isinstance(seen[-1], ViewLost)


def test_a_recreated_account_does_not_resume_trading_only_a_release_naming_the_deletion_does() -> None:
    levels = KillSwitchLevels("trading", "s1")
    levels.apply(interpret_account(account(deletionTimestamp=DELETED_AT), "trading"), NOW)
    replayed = interpret_account({"metadata": {"name": "main", "generation": 1}, "spec": {}}, "trading")
    assert levels.apply(replayed, NOW) is LatchDecision.RELEASE_REFUSED
    assert levels.status.engaged
    released = interpret_account(
        {
            "metadata": {"name": "main", "generation": 1},
            "spec": {
                "killSwitch": {
                    "engaged": False,
                    "release": {"operator": "ana", "reason": "on purpose", "engagedAt": DELETED_AT},
                }
            },
        },
        "trading",
    )
    assert levels.apply(released, NOW) is LatchDecision.RELEASED
    assert not levels.status.engaged
