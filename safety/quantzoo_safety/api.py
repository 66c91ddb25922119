"""HTTP endpoints. `runbook` is the public API of the operations runbook (exact paths and bodies);
`probes` are for Kubernetes and Prometheus.

    POST /kill-switch/activate    token  ActivateRequest   {"reason", "close_positions", "operator"[, "mode"]}
    POST /kill-switch/deactivate  token  DeactivateRequest {"operator"[, "reason"]}
    GET  /status                  token optional (without: no sensitive detail; wrong token: 401)
    GET  /test/safety-check       token
    GET  /healthz, GET /metrics
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import PlainTextResponse
from quantzoo_api.killswitch import ActivateRequest, DeactivateRequest

from quantzoo_safety.auth import optional_token, require_token
from quantzoo_safety.context import get_context
from quantzoo_safety.engagement import EngageIntent
from quantzoo_safety.errors import AUTH_RESPONSES, BODY_RESPONSES, ErrorMessage
from quantzoo_safety.killswitch import API_SOURCE, KillSwitchError, outcome_fields
from quantzoo_safety.status import full_view, public_view, safety_checks

runbook = APIRouter(tags=["runbook"])
probes = APIRouter(tags=["probes"])


def _not_blank(request: Request, **fields: str) -> None:
    for name, value in fields.items():
        if not value.strip():
            detail = f"invalid request: {name}: must not be blank"
            request.state.audit_result = "refused"
            request.state.audit_detail = detail
            raise HTTPException(422, detail)


def _refusal(request: Request, exc: KillSwitchError) -> HTTPException:
    request.state.audit_result = "refused" if exc.status_code < 500 else "failed"
    request.state.audit_detail = exc.detail
    request.state.audit = {**request.state.audit, **exc.audit}
    return HTTPException(exc.status_code, exc.detail)


def _audited(request: Request, answer: dict[str, Any]) -> dict[str, Any]:
    """Record an engage or release outcome in the call's audit entry: the path each side took, the
    engagement, and what the engine did (its ack: cancelled, closed, still working)."""
    request.state.audit_result = answer["status"]
    request.state.audit_detail = answer["message"]
    request.state.audit = {**request.state.audit, **outcome_fields(answer)}
    return answer


@runbook.post("/kill-switch/activate", dependencies=[Depends(require_token)], responses=BODY_RESPONSES)
async def activate(body: ActivateRequest, request: Request) -> dict[str, Any]:
    """Engage the kill switch: patch the TradingSystem and halt the engine directly, at once. Never refused
    for a missing or long reason/operator or the mode's spelling (defaulted, shortened, normalised)."""
    request.state.audit = {
        "operator": body.operator,
        "reason": body.reason,
        "close_positions": body.close_positions,
        "mode": str(body.mode),
    }
    ctx = get_context(request)
    intent = EngageIntent(
        reason=body.reason,
        operator=body.operator.strip(),
        source=API_SOURCE,
        close_positions=body.close_positions,
        mode=body.mode,
    )
    try:
        answer = await ctx.killswitch.activate(intent)
    except KillSwitchError as exc:
        raise _refusal(request, exc) from None
    return _audited(request, answer)


@runbook.post(
    "/kill-switch/deactivate",
    dependencies=[Depends(require_token)],
    responses={
        **BODY_RESPONSES,
        409: {"model": ErrorMessage, "description": "Not engaged, or the API server refused the release"},
    },
)
async def deactivate(body: DeactivateRequest, request: Request) -> dict[str, Any]:
    """Release the switch by writing a release record (who, why) to the TradingSystem."""
    request.state.audit = {"operator": body.operator, "reason": body.reason}
    _not_blank(request, operator=body.operator, reason=body.reason)
    ctx = get_context(request)
    try:
        answer = await ctx.killswitch.deactivate(operator=body.operator.strip(), reason=body.reason)
    except KillSwitchError as exc:
        raise _refusal(request, exc) from None
    return _audited(request, answer)


@runbook.get(
    "/status",
    responses=AUTH_RESPONSES,
    # The token is optional here (without it: the public view); FastAPI declares it as required.
    openapi_extra={"security": [{}]},
)
async def status(request: Request, authenticated: bool = Depends(optional_token)) -> dict[str, Any]:
    """Without a token: engaged or not, trading state, service health -- from the watchdog's last snapshot
    (no call to the engine or the API server, not audited: a flood of anonymous calls is no load on
    either). With the token: everything, read live, audited."""
    ctx = get_context(request)
    if not authenticated:
        request.state.unaudited = True
        return public_view(ctx, *ctx.observer.snapshot())
    engine, cluster = await ctx.observer.both()
    request.state.audit = {"view": "full"}
    return full_view(ctx, engine, cluster)


@runbook.get("/test/safety-check", dependencies=[Depends(require_token)], responses=AUTH_RESPONSES)
async def safety_check(request: Request) -> dict[str, Any]:
    """Check and report: token, engine reachable, API server reachable, switch consistent everywhere."""
    ctx = get_context(request)
    engine, cluster = await ctx.observer.both()
    report = safety_checks(ctx, engine, cluster)
    request.state.audit_result = "passed" if report["passed"] else "not passed"
    request.state.audit_detail = "; ".join(
        f"{c['name']}={'ok' if c['ok'] else 'FAIL'}" for c in report["checks"]
    )
    return report


@probes.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process serves HTTP (the engine and the API server are not its concern)."""
    return {"status": "ok"}


@probes.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    ctx = get_context(request)
    return Response(ctx.metrics.render(), media_type=ctx.metrics.content_type)
