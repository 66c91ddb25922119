"""Request bodies and error answers of the engine API, and how a refusal maps to an HTTP status."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from fastapi import HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from quantzoo_engine.orders import OrderType, Side, TimeInForce
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
    stop_price: float | None = Field(None, gt=0, le=10_000_000, allow_inf_nan=False)
    time_in_force: TimeInForce = TimeInForce.DAY
    client_order_id: str | None = Field(None, min_length=1, max_length=48, pattern=r"^[A-Za-z0-9._:\-]+$")

    @model_validator(mode="after")
    def _price_matches_type(self) -> ManualOrder:
        needs_limit = self.type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        needs_stop = self.type in (OrderType.STOP, OrderType.STOP_LIMIT)
        for name, price, needed in (
            ("limit_price", self.limit_price, needs_limit),
            ("stop_price", self.stop_price, needs_stop),
        ):
            if needed and price is None:
                raise ValueError(f"a {self.type} order needs {name}")
            if not needed and price is not None:
                raise ValueError(f"a {self.type} order takes no {name}")
        return self


class ErrorMessage(BaseModel):
    """A refusal in one sentence (auth, body too large, admin API disabled, not ready)."""

    detail: str


class BodyError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class InvalidBody(BaseModel):
    """422 for a body that is not valid JSON or not a valid payload: where and why, never the input."""

    detail: list[BodyError]


class Refusal(BaseModel):
    reason: RejectReason
    message: str


class ReleaseConflict(BaseModel):
    reason: Literal["engagement_mismatch"]
    message: str


class ReleaseRefusedBody(BaseModel):
    """409 for a release that does not name the engagement holding the engine (contract.md)."""

    detail: ReleaseConflict


class OrderRefused(BaseModel):
    """A well-formed order the engine refused: the pre-trade check (or broker) that said no, and why."""

    detail: Refusal


def _inline_defs(node: Any, defs: dict[str, Any]) -> Any:
    """Replace `#/$defs/X` references by their definition: an OpenAPI document resolves `#/...` from its
    own root, where a model's `$defs` do not exist. The request models are not recursive."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            merged = {**defs[ref.removeprefix("#/$defs/")], **{k: v for k, v in node.items() if k != "$ref"}}
            return _inline_defs(merged, defs)
        return {k: _inline_defs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_defs(v, defs) for v in node]
    return node


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` declaring `model` as the required JSON body (the route parses it itself, after
    the token check, so FastAPI does not generate this part)."""
    schema = model.model_json_schema()
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _inline_defs(schema, schema.get("$defs", {}))}},
        }
    }


# What every admin route may answer besides its success, for the OpenAPI schema.
ADMIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    status.HTTP_401_UNAUTHORIZED: {"model": ErrorMessage, "description": "Missing or wrong admin token"},
    status.HTTP_413_CONTENT_TOO_LARGE: {"model": ErrorMessage, "description": "Body over 64 KiB"},
    status.HTTP_422_UNPROCESSABLE_CONTENT: {"model": InvalidBody, "description": "Invalid body"},
    status.HTTP_503_SERVICE_UNAVAILABLE: {
        "model": ErrorMessage,
        "description": "Admin API disabled: no admin token configured",
    },
}
KILL_SWITCH_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ADMIN_RESPONSES,
    status.HTTP_409_CONFLICT: {
        "model": ReleaseRefusedBody,
        "description": "A release that does not name the engagement holding the engine",
    },
}
ORDER_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ADMIN_RESPONSES,
    status.HTTP_409_CONFLICT: {
        "model": OrderRefused,
        "description": "Refused in the engine's state: halted, reduce-only, stale data, drawdown, duplicate",
    },
    status.HTTP_422_UNPROCESSABLE_CONTENT: {
        "model": InvalidBody | OrderRefused,
        "description": "Invalid body, or an order a pre-trade risk check refused",
    },
    status.HTTP_429_TOO_MANY_REQUESTS: {"model": OrderRefused, "description": "Order rate limit reached"},
    status.HTTP_502_BAD_GATEWAY: {"model": OrderRefused, "description": "The broker failed"},
}


async def parse_body(request: Request, model: type[M]) -> M:
    """Validate the raw body against `model`: 413/422 with the reasons, never a 500 or a traceback."""
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "request body too large")
    try:
        # strict: the body must match the documented schema; lax mode would take 1 for `engaged: true`
        # and 0 for a timestamp.
        return model.model_validate_json(body, strict=True)
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
    RejectReason.ACCOUNT_ORDER_RATE: status.HTTP_429_TOO_MANY_REQUESTS,
    # The order is fine, the engine's state refuses it:
    RejectReason.TRADING_HALTED: status.HTTP_409_CONFLICT,
    RejectReason.REDUCE_ONLY: status.HTTP_409_CONFLICT,
    RejectReason.STALE_DATA: status.HTTP_409_CONFLICT,
    RejectReason.MARKET_CLOSED: status.HTTP_409_CONFLICT,
    RejectReason.OUTLIER_PRICE: status.HTTP_409_CONFLICT,
    RejectReason.DAILY_DRAWDOWN: status.HTTP_409_CONFLICT,
    RejectReason.ACCOUNT_DAILY_LOSS: status.HTTP_409_CONFLICT,
    RejectReason.ACCOUNT_UNKNOWN: status.HTTP_409_CONFLICT,
    RejectReason.DUPLICATE_CLIENT_ORDER_ID: status.HTTP_409_CONFLICT,
    RejectReason.BROKER_ERROR: status.HTTP_502_BAD_GATEWAY,
}


def status_for(reason: RejectReason) -> int:
    return _STATUS_FOR_REASON.get(reason, status.HTTP_422_UNPROCESSABLE_CONTENT)
