"""TradingAccounts -> accounts.py: the account's status, and its systems re-reconciled when it changes.

A change of the account (broker, mode, limits; spec.killSwitch is outside kopf's diff base) reaches its
systems at once, not at their next resync. When an account is finally gone (the DELETED event), its
systems are reconciled again and report AccountMissing (Degraded), and nothing of theirs is updated.

An account in use cannot vanish from under its strategies (the idiom of kubernetes.io/pvc-protection): its
delete handler keeps kopf's finalizer on it while any TradingSystem names it, so a delete leaves it
Terminating; its engines see the deletionTimestamp and halt (engine/level_watch.py), and it goes once
its last system is deleted.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
from quantzoo_api import GROUP, VERSION
from quantzoo_api.accounts import ACCOUNT_PLURAL

from quantzoo_operator import accounts
from quantzoo_operator.handlers.reconcile import RESYNC_SECONDS
from quantzoo_operator.reconciler import InvalidTradingSystem, ReconcileError
from quantzoo_operator.runtime import Runtime

log = logging.getLogger(__name__)
IN_USE_RETRY_SECONDS = 5.0


async def _reconcile_systems(runtime: Runtime, systems: list[dict[str, Any]]) -> None:
    for ts in systems:
        try:
            await runtime.reconciler.reconcile(ts)
        except (ReconcileError, InvalidTradingSystem) as exc:
            # Reported on the system itself (Degraded, an Event); its own handlers retry it.
            log.warning("reconciling %s after its account changed: %s", ts["metadata"]["name"], exc)


@kopf.on.create(GROUP, VERSION, ACCOUNT_PLURAL, id="account-create")
@kopf.on.update(GROUP, VERSION, ACCOUNT_PLURAL, id="account-update")
async def account_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo["runtime"]
    systems = await accounts.write_status(runtime.kube, dict(body))
    await _reconcile_systems(runtime, systems)


@kopf.on.resume(GROUP, VERSION, ACCOUNT_PLURAL, id="account-resume")
@kopf.timer(GROUP, VERSION, ACCOUNT_PLURAL, id="account-resync", interval=RESYNC_SECONDS)
async def account_status(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Status only: a system added, removed or pointed elsewhere shows in status.systems."""
    runtime: Runtime = memo["runtime"]
    await accounts.write_status(runtime.kube, dict(body))


@kopf.on.delete(GROUP, VERSION, ACCOUNT_PLURAL, id="account-in-use")
async def account_in_use(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo["runtime"]
    meta = body.get("metadata") or {}
    systems = await accounts.systems_of(runtime.kube, meta["namespace"], meta["name"])
    if systems:
        names = ", ".join(ts["metadata"]["name"] for ts in systems)
        # Retried until no system names it; the engines are halted meanwhile.
        raise kopf.TemporaryError(
            f"in use by TradingSystem(s) {names}: delete them first", delay=IN_USE_RETRY_SECONDS
        )


@kopf.on.event(GROUP, VERSION, ACCOUNT_PLURAL, id="account-deleted")
async def account_deleted(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    if type != "DELETED":
        return
    runtime: Runtime = memo["runtime"]
    meta = body.get("metadata") or {}
    await _reconcile_systems(
        runtime, await accounts.systems_of(runtime.kube, meta["namespace"], meta["name"])
    )
