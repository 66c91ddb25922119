"""What `GET /status` and `GET /test/safety-check` report, built from fresh reads of the engine and the
TradingSystem (both read concurrently, each with its own deadline).

Public `/status` (no token) shows only whether the switch is engaged, the engine's trading state and
whether the service is healthy; the token adds who, why, since, the per-replica acknowledgements and the
recent audit entries.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from quantzoo_safety.context import SafetyContext
from quantzoo_safety.engagement import describe
from quantzoo_safety.observe import ClusterView, EngineView


def _engaged(ctx: SafetyContext, engine: EngineView, cluster: ClusterView) -> bool:
    ks = ctx.killswitch
    return bool(
        cluster.spec_engaged
        or engine.engaged
        or ks.pending is not None
        or (ks.standalone and ks.local.get("engaged"))
    )


def _service(ctx: SafetyContext, engine: EngineView, cluster: ClusterView) -> str:
    healthy = engine.reachable and (not cluster.enabled or (cluster.reachable and cluster.found))
    return "ok" if healthy else "degraded"


def public_view(ctx: SafetyContext, engine: EngineView, cluster: ClusterView) -> dict[str, Any]:
    return {
        "service": _service(ctx, engine, cluster),
        "kill_switch_engaged": _engaged(ctx, engine, cluster),
        "trading_state": engine.trading_state,
    }


def _kill_switch(ctx: SafetyContext, cluster: ClusterView) -> dict[str, Any]:
    ks = ctx.killswitch
    if cluster.found:
        view = describe(cluster.spec_kill_switch)
    elif ks.standalone:
        view = describe(ks.local)
    else:
        view = describe({})
    if ks.pending is not None and not view["engaged"]:
        p = ks.pending
        view.update(
            engaged=True,
            reason=p.reason,
            operator=p.operator,
            source=p.source,
            close_positions=p.close_positions,
            mode=str(p.mode),
            engaged_at=ks.pending_since,
        )
    status_ks = cluster.status_kill_switch
    view["since"] = (status_ks.get("since") or view.get("engaged_at")) if view["engaged"] else None
    return view


def full_view(ctx: SafetyContext, engine: EngineView, cluster: ClusterView) -> dict[str, Any]:
    ks = ctx.killswitch
    wd = ctx.watchdog
    state = engine.state or {}
    status_ks = cluster.status_kill_switch
    return {
        **public_view(ctx, engine, cluster),
        "tradingsystem": ctx.settings.tradingsystem,
        "mode": "standalone" if ks.standalone else "kubernetes",
        "kill_switch": _kill_switch(ctx, cluster),
        "pending_tradingsystem_patch": (
            {"since": ks.pending_since, "reason": ks.pending.reason, "operator": ks.pending.operator}
            if ks.pending is not None
            else None
        ),
        "tradingsystem_status": (
            {
                "phase": cluster.status.get("phase"),
                "kill_switch": status_ks or None,
                "acknowledgements": status_ks.get("acknowledgements", []),
                "propagation_latency_ms": status_ks.get("propagationLatencyMs"),
            }
            if cluster.found
            else None
        ),
        "engine": {
            "url": ctx.settings.engine_url,
            "reachable": engine.reachable,
            "error": engine.error,
            "trading_state": engine.trading_state,
            "kill_switch": engine.kill_switch or None,
            "heartbeat_at": state.get("heartbeat_at"),
            "last_update": state.get("last_update"),
        },
        "apiserver": {"enabled": cluster.enabled, "reachable": cluster.reachable, "error": cluster.error},
        "watchdog": {
            "running": wd.running,
            "auto_trip": asdict(wd.limits),
            "last_check_at": wd.last_check_at,
            "last_trip": wd.last_trip,
        },
        "audit": ctx.audit.recent(10),
    }


def _check(name: str, ok: bool, detail: str) -> dict[str, Any]:
    return {"name": name, "ok": bool(ok), "detail": detail}


def _on_off(value: bool | None) -> str:
    return "unknown" if value is None else ("engaged" if value else "released")


def safety_checks(ctx: SafetyContext, engine: EngineView, cluster: ClusterView) -> dict[str, Any]:
    checks = [_check("token_valid", True, "bearer token accepted")]

    if engine.reachable:
        checks.append(
            _check(
                "engine_reachable",
                True,
                f"{ctx.settings.engine_url} answered /state ({engine.trading_state})",
            )
        )
    else:
        checks.append(_check("engine_reachable", False, engine.error or "engine did not answer"))

    if not cluster.enabled:
        checks.append(
            _check("apiserver_reachable", True, "Kubernetes disabled (QUANTZOO_KUBERNETES=0, standalone)")
        )
    elif cluster.found:
        checks.append(_check("apiserver_reachable", True, f"TradingSystem {ctx.settings.tradingsystem} read"))
    elif cluster.reachable:
        checks.append(_check("apiserver_reachable", False, f"API server answered but: {cluster.error}"))
    else:
        checks.append(_check("apiserver_reachable", False, cluster.error or "API server did not answer"))

    views: dict[str, bool | None] = {}
    if cluster.enabled:
        views["spec"] = cluster.spec_engaged
        views["status"] = cluster.status_engaged
    else:
        views["safety"] = bool(ctx.killswitch.local.get("engaged"))
    # The engine's own switch (not an account, desk or firm holding it: issue #13) is what spec says.
    views["engine"] = engine.kill_switch.get("system_engaged", engine.engaged) if engine.reachable else None
    shown = ", ".join(f"{k}={_on_off(v)}" for k, v in views.items())
    required = ["spec", "engine"] if cluster.enabled else ["safety", "engine"]
    missing = [k for k in required if views[k] is None]
    known = {v for v in views.values() if v is not None}
    if ctx.killswitch.pending is not None:
        checks.append(
            _check(
                "kill_switch_consistent",
                False,
                f"{shown}; engine halted directly at {ctx.killswitch.pending_since}, "
                "not yet recorded in the TradingSystem",
            )
        )
    elif missing:
        checks.append(
            _check("kill_switch_consistent", False, f"cannot verify ({', '.join(missing)} unknown): {shown}")
        )
    else:
        checks.append(_check("kill_switch_consistent", len(known) == 1, shown))

    wd = ctx.watchdog
    if not wd.running:
        checks.append(_check("watchdog_running", False, "watchdog task is not running"))
    else:
        age = time.time() - wd.last_check_at if wd.last_check_at else None
        trips = "automatic trips enabled" if wd.limits.enabled else "automatic trips DISABLED"
        last = f"last check {age:.1f}s ago" if age is not None else "no check yet"
        checks.append(_check("watchdog_running", True, f"{trips}; {last}"))

    return {"passed": all(c["ok"] for c in checks), "checks": checks}
