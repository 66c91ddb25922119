"""kopf startup and cleanup of the levels component (status.py): it starts once the runtime exists."""

from __future__ import annotations

from typing import Any

import kopf

from quantzoo_operator.kube import Kube, new_api_client
from quantzoo_operator.levels.status import LevelStatus
from quantzoo_operator.runtime import Runtime

MEMO_KEY = "levels"


@kopf.on.startup(id="levels-status")
async def start_levels(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime | None = memo.get("runtime")
    if runtime is None:
        raise kopf.TemporaryError("waiting for the operator's runtime", delay=0.1)
    config = runtime.config
    # Its own client and pool: a burst of level status writes never queues behind reconcile or the kill path.
    # 16 threads for its 16 connections (it had 8): a firm halt is one write per covered system at once.
    kube = Kube(lambda: new_api_client(16), workers=16, request_timeout=config.request_timeout_seconds)
    levels = LevelStatus(kube, lambda: new_api_client(4), tuple(config.namespaces))
    levels.start()
    memo[MEMO_KEY] = levels


@kopf.on.cleanup(id="levels-status")
async def stop_levels(memo: kopf.Memo, **_: Any) -> None:
    levels: LevelStatus | None = memo.get(MEMO_KEY)
    if levels is not None:
        await levels.stop()
        levels.kube.close()
