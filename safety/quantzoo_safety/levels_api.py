"""The levels of the kill switch in the safety API (issue #13): which levels hold this system.

    GET /kill-switch/levels   token   {"engine": [holds...], "status": [holds...], "halted_by": level|null}

What the safety service of ONE system may do at the other levels, and why (docs/RUNBOOK.md, levels):
it engages and releases its own system only. Its token and its watchdog belong to one strategy; an
account, desk or firm stop is a decision over other strategies, made by people holding the chart's
-killer ClusterRole (`kubectl quantzoo kill --account A | --namespace N | --firm`), so one strategy's
automatic trip (stale data, drawdown) cannot stop its siblings and a leaked per-system token cannot stop
the firm. Here it shows what holds it: the engine's own latches (its /state) and the operator's status.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from quantzoo_safety.auth import require_token
from quantzoo_safety.context import get_context
from quantzoo_safety.errors import AUTH_RESPONSES

levels = APIRouter(tags=["runbook"])


@levels.get("/kill-switch/levels", dependencies=[Depends(require_token)], responses=AUTH_RESPONSES)
async def held_by(request: Request) -> dict[str, Any]:
    """Every level holding this system, the highest first: as the engine enforces it (its own watches of
    every level) and as the TradingSystem's status says (the operator's view)."""
    ctx = get_context(request)
    engine, cluster = await ctx.observer.both()
    request.state.audit = {"view": "levels"}
    in_engine = (engine.kill_switch or {}).get("held_by") if engine.reachable else None
    in_status = cluster.status_kill_switch.get("heldBy") if cluster.found else None
    top = (in_engine or in_status or [{}])[0].get("level")
    return {"engine": in_engine, "status": in_status, "halted_by": top}
