"""The finalizer (`trading.quantzoo.io/halt-before-delete`, set in settings.py): halt, then let go."""

from __future__ import annotations

from typing import Any

import kopf
from quantzoo_api import GROUP, PLURAL, VERSION

from quantzoo_operator.killswitch import tombstone
from quantzoo_operator.killswitch.finalizer import halt_before_delete
from quantzoo_operator.metrics import METRICS
from quantzoo_operator.runtime import Runtime


@kopf.on.delete(GROUP, VERSION, PLURAL, id="halt-before-delete")
@METRICS.instrument("delete")
async def on_delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo["runtime"]
    raw = dict(body)
    ns, name = raw["metadata"]["namespace"], raw["metadata"]["name"]
    try:
        await runtime.status.refresh(ns, name)  # phase Terminating while the halt goes out
    except Exception as exc:
        kopf.warn(raw, reason="StatusRefreshFailed", message=str(exc)[:200])
    # An engaged halt outlives the object (a recreate is re-engaged): recorded before anything lets go;
    # a failure raises, so kopf retries the finalizer rather than forget the halt.
    await tombstone.record(runtime.kube, raw)
    await halt_before_delete(raw, runtime.pusher, runtime.recorder, runtime.config)
    runtime.status.forget(ns, name)
    runtime.reconciler.forget(ns, name)
    runtime.pusher.tokens.invalidate(ns, name)
