"""Request bodies of the engine API, and how a refusal maps to an HTTP status."""

from __future__ import annotations

from typing import TypeVar

from fastapi import HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from quantzoo_engine.orders import OrderType, Side
from quantzoo_engine.risk.checks import RejectReason

MAX_BODY_BYTES = 64 * 1024

M = TypeVar("M", bound=BaseModel)


class ManualOrder(BaseModel):
    """Body of `POST /orders` (the runbook's manual smoke test). Goes through the same risk checks."""

    # strict: "10" is not a quantity and true is not a price.
    model_config = ConfigDict(extra="forbid", strict=True)

    symbol: str = Field(min_length=1, max_length=16, pattern=r"^[A-Z][A-Z0-9.\-]{0,15}$")
    side: Side
    quantity: float = Field(gt=0, le=10_000_000, allow_inf_nan=False)
    type: OrderType = OrderType.MARKET
    limit_price: float | None = Field(None, gt=0, le=10_000_000, allow_inf_nan=False)
    client_order_id: str | None = Field(None, min_length=1, max_length=48, pattern=r"^[A-Za-z0-9._:\-]+$")

    @model_validator(mode="after")
    def _price_matches_type(self) -> ManualOrder:
        if self.type is OrderType.LIMIT and self.limit_price is None:
            raise ValueError("a limit order needs limit_price")
        if self.type is OrderType.MARKET and self.limit_price is not None:
            raise ValueError("a market order takes no limit_price")
        return self


async def parse_body(request: Request, model: type[M]) -> M:
    """Validate the raw body against `model`: 413/422 with the reasons, never a 500 or a traceback."""
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "request body too large")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        # Only loc/msg/type: the input and the error context may hold objects that are not JSON.
        detail = [
            {"loc": ["body", *err["loc"]], "msg": err["msg"], "type": err["type"]}
            for err in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail) from None


_STATUS_FOR_REASON = {
    RejectReason.ORDER_RATE_PER_SECOND: status.HTTP_429_TOO_MANY_REQUESTS,
    RejectReason.ORDER_RATE_PER_MINUTE: status.HTTP_429_TOO_MANY_REQUESTS,
    # The order is fine, the engine's state refuses it:
    RejectReason.TRADING_HALTED: status.HTTP_409_CONFLICT,
    RejectReason.REDUCE_ONLY: status.HTTP_409_CONFLICT,
    RejectReason.STALE_DATA: status.HTTP_409_CONFLICT,
    RejectReason.OUTLIER_PRICE: status.HTTP_409_CONFLICT,
    RejectReason.DAILY_DRAWDOWN: status.HTTP_409_CONFLICT,
    RejectReason.DUPLICATE_CLIENT_ORDER_ID: status.HTTP_409_CONFLICT,
    RejectReason.BROKER_ERROR: status.HTTP_502_BAD_GATEWAY,
}


def status_for(reason: RejectReason) -> int:
    return _STATUS_FOR_REASON.get(reason, status.HTTP_422_UNPROCESSABLE_CONTENT)
