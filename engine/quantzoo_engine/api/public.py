"""The runbook's endpoints (paths exact: design.md "Engine"). Read-only, no token needed."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response, status
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from quantzoo_engine.api.deps import EngineDep

router = APIRouter(tags=["runbook"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: answers as long as the event loop runs. Deliberately cheap."""
    return {"status": "ok"}


class Readiness(BaseModel):
    ready: bool
    trading_state: str
    halt_reasons: list[str] | None = None  # only while not ready: what keeps it from trading


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={status.HTTP_503_SERVICE_UNAVAILABLE: {"model": Readiness, "description": "Not ready yet"}},
)
async def readyz(engine: EngineDep) -> JSONResponse:
    """Ready once the broker is reconciled and the kill-switch state has been read."""
    body: dict[str, Any] = {"ready": engine.ready, "trading_state": str(engine.trading_state)}
    if not engine.ready:
        body["halt_reasons"] = [str(r) for r in engine.trading.halt_reasons]
    return JSONResponse(
        body, status_code=status.HTTP_200_OK if engine.ready else status.HTTP_503_SERVICE_UNAVAILABLE
    )


@router.get("/state")
async def state(engine: EngineDep) -> dict[str, Any]:
    return engine.state_view()


@router.get("/positions/current")
async def positions_current(engine: EngineDep) -> dict[str, Any]:
    return engine.positions_view()


@router.get("/symbols/list")
async def symbols_list(engine: EngineDep) -> list[dict[str, Any]]:
    """A JSON array: the runbook runs `jq '.[] | {symbol, last_update}'` on it."""
    return engine.symbols_view()


@router.get("/orders")
async def orders(
    engine: EngineDep,
    status_filter: Annotated[Literal["all", "working"], Query(alias="status")] = "all",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Newest first."""
    chosen = engine.orders.working() if status_filter == "working" else engine.orders.recent(limit)
    return [o.to_dict() for o in chosen[:limit]]


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(engine: EngineDep) -> Response:
    engine.refresh_metrics()
    return Response(generate_latest(engine.metrics.registry), media_type=CONTENT_TYPE_LATEST)
