"""Create / update / resume (and a periodic resync) of a TradingSystem -> reconciler.Reconciler."""

from __future__ import annotations

from typing import Any

import kopf
from quantzoo_api import GROUP, PLURAL, VERSION

from quantzoo_operator.killswitch import tombstone
from quantzoo_operator.metrics import METRICS
from quantzoo_operator.reconciler import InvalidTradingSystem, ReconcileError
from quantzoo_operator.runtime import Runtime
from quantzoo_operator.settings import OperatorConfig

RESYNC_SECONDS = OperatorConfig.from_env().resync_interval_seconds  # decorators need it at import


def backoff_seconds(base: float, retry: int, ceiling: float = RESYNC_SECONDS) -> float:
    """Delay before retry number `retry + 1`: doubles from `base` while the failure persists (a missing
    Secret or a refused child must not retry at a fixed pace forever), capped at `ceiling`."""
    return min(base * 2 ** min(retry, 20), max(base, ceiling))


async def _reconcile(
    body: kopf.Body, memo: kopf.Memo, retry: int = 0, *, reengage: bool = False, created: bool = False
) -> None:
    runtime: Runtime = memo["runtime"]
    raw: dict[str, Any] = dict(body)
    try:
        if reengage:  # created (or resumed) after a delete while engaged: engaged before any engine exists
            raw = dict(await tombstone.reengage(runtime.kube, raw))
        await runtime.reconciler.reconcile(raw, created=created)
    except InvalidTradingSystem as exc:
        raise kopf.PermanentError(str(exc)) from None
    except ReconcileError as exc:
        delay = backoff_seconds(runtime.config.reconcile_backoff_seconds, retry)
        raise kopf.TemporaryError(str(exc), delay=delay) from None


@kopf.on.create(GROUP, VERSION, PLURAL, id="reconcile-create")
@METRICS.instrument("reconcile")
async def reconcile_create(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    await _reconcile(body, memo, retry, reengage=True, created=retry == 0)


@kopf.on.update(GROUP, VERSION, PLURAL, id="reconcile-update")
@METRICS.instrument("reconcile")
async def reconcile_update(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    # Never called for a change of spec.killSwitch alone: it is outside kopf's diff base (settings.py).
    await _reconcile(body, memo, retry)


@kopf.on.resume(GROUP, VERSION, PLURAL, id="reconcile-resume")
@METRICS.instrument("reconcile")
async def reconcile_resume(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    await _reconcile(body, memo, retry, reengage=True)


@kopf.timer(GROUP, VERSION, PLURAL, id="resync", interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)
@METRICS.instrument("resync")
async def resync(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    """Restores what no watch reports (a deleted token Secret) and anything a missed event left behind."""
    await _reconcile(body, memo, retry)
