"""Per-request bookkeeping around every call: the request counter, the audit entry, and the last line of
defence that turns any unexpected exception into a JSON 503 (never a 500, never a traceback).

Handlers and dependencies leave what the audit entry should say in `request.state` (`audit` dict,
`audit_result`, `audit_detail`, `authenticated`); this middleware writes exactly one entry per call
(except for `/healthz` and `/metrics`, which probes call every few seconds).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from quantzoo_safety.context import SafetyContext

log = logging.getLogger(__name__)

UNAUDITED = {"/healthz", "/metrics"}
ACTIONS = {
    "/kill-switch/activate": "kill-switch.activate",
    "/kill-switch/deactivate": "kill-switch.deactivate",
    "/status": "status",
    "/test/safety-check": "safety-check",
}
INTERNAL_ERROR = json.dumps({"detail": "internal error in the safety service; see its log"}).encode()


def _result(code: int) -> str:
    if code < 400:
        return "ok"
    if code < 500:
        return "refused"
    return "failed"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


class RequestRecorder:
    def __init__(self, app: ASGIApp, context: Callable[[], SafetyContext]) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        code = {"status": 0}

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                code["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            state["audit_result"] = "failed"
            state["audit_detail"] = "internal error"
            if code["status"] == 0:
                code["status"] = 503
                await send(
                    {
                        "type": "http.response.start",
                        "status": 503,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": INTERNAL_ERROR})
        finally:
            self._record(scope, state, code["status"] or 503)

    def _record(self, scope: Scope, state: dict[str, Any], status: int) -> None:
        try:
            ctx = self.context()
        except Exception:  # app not started: nothing to record into
            return
        path = scope.get("path", "")
        route = scope.get("route")
        endpoint = getattr(route, "path", None) or "other"
        ctx.metrics.requests.labels(endpoint=endpoint, code=str(status)).inc()
        if path in UNAUDITED or state.get("unaudited"):
            return
        client = scope.get("client")
        entry: dict[str, Any] = {
            "method": scope.get("method"),
            "path": path,
            "http_status": status,
            "client_ip": client[0] if client else None,
            "forwarded_for": _header(scope, b"x-forwarded-for"),
            "user_agent": _header(scope, b"user-agent"),
            "authenticated": bool(state.get("authenticated", False)),
            "detail": state.get("audit_detail"),
        }
        entry.update(state.get("audit") or {})
        entry["result"] = state.get("audit_result") or _result(status)
        ctx.audit.record(ACTIONS.get(path, "http"), **entry)
