"""TradingAccounts -> accounts.py: the account's status, and its systems re-reconciled when it changes.

A change of the account (broker, mode, limits; spec.killSwitch is outside kopf's diff base) reaches its
systems at once, not at their next resync. Deleting an account is an event, not a finalizer: its
systems are reconciled again and report AccountMissing (Degraded), and nothing of theirs is updated.
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


@kopf.on.event(GROUP, VERSION, ACCOUNT_PLURAL, id="account-deleted")
async def account_deleted(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    if type != "DELETED":
        return
    runtime: Runtime = memo["runtime"]
    meta = body.get("metadata") or {}
    await _reconcile_systems(
        runtime, await accounts.systems_of(runtime.kube, meta["namespace"], meta["name"])
    )
