"""Admin endpoints (bearer token, api/auth.py): the kill switch and manual orders.

The body is parsed only after the token is checked, so an unauthenticated caller learns nothing about
what a valid body looks like.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from quantzoo_api.killswitch import ENGINE_KILL_SWITCH_PATH, KillSwitchAck, KillSwitchCommand

from quantzoo_engine.api.auth import AdminAuth
from quantzoo_engine.api.deps import EngineDep
from quantzoo_engine.api.schemas import (
    KILL_SWITCH_RESPONSES,
    ORDER_RESPONSES,
    ManualOrder,
    body_schema,
    parse_body,
    status_for,
)
from quantzoo_engine.killswitch import ReleaseRefused
from quantzoo_engine.orders import OrderOrigin, OrderRequest, new_client_order_id

router = APIRouter(tags=["admin"])


@router.post(
    ENGINE_KILL_SWITCH_PATH,
    response_model=KillSwitchAck,
    responses=KILL_SWITCH_RESPONSES,
    openapi_extra=body_schema(KillSwitchCommand),
)
async def kill_switch(_: AdminAuth, request: Request, engine: EngineDep) -> KillSwitchAck:
    """Engage or release. Answers after new orders are blocked and the broker clean-up has run."""
    command = await parse_body(request, KillSwitchCommand)
    try:
        return await engine.apply_kill_switch(command)
    except ReleaseRefused as exc:
        raise HTTPException(
            status.HTTP_409_CONFLICT, {"reason": "engagement_mismatch", "message": str(exc)}
        ) from None


@router.post(
    "/orders",
    status_code=status.HTTP_201_CREATED,
    responses=ORDER_RESPONSES,
    openapi_extra=body_schema(ManualOrder),
)
async def place_order(_: AdminAuth, request: Request, engine: EngineDep) -> dict[str, Any]:
    """A manual order, through exactly the same risk checks as the strategy's."""
    body = await parse_body(request, ManualOrder)
    result = await engine.submit(
        OrderRequest(
            symbol=body.symbol,
            side=body.side,
            quantity=body.quantity,
            order_type=body.type,
            limit_price=body.limit_price,
            stop_price=body.stop_price,
            time_in_force=body.time_in_force,
            client_order_id=body.client_order_id or new_client_order_id(),
            origin=OrderOrigin.MANUAL,
        )
    )
    if result.rejection is not None:
        raise HTTPException(
            status_for(result.rejection.reason),
            {"reason": str(result.rejection.reason), "message": result.rejection.message},
        )
    assert result.order is not None
    return result.order.to_dict()
