"""Every error leaves as JSON `{"detail": "<readable sentence>"}` with a 4xx or 503 status.

Validation errors (malformed JSON, wrong types, unknown or missing fields) become one readable sentence
plus a short machine list; the offending input is never echoed (a body may carry anything, even a token
pasted in the wrong place).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel


class ErrorMessage(BaseModel):
    """Every refusal: one readable sentence."""

    detail: str


class ValidationIssue(BaseModel):
    loc: list[str]
    type: str
    msg: str


class InvalidRequest(BaseModel):
    """422: the sentence, plus the machine list when the body failed validation (not for a blank field)."""

    detail: str
    errors: list[ValidationIssue] | None = None


# For the OpenAPI schema: what the authenticated routes may answer besides their success.
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorMessage, "description": "Missing or invalid bearer token"},
    503: {
        "model": ErrorMessage,
        "description": "No API token configured on the service, or the call could not be carried out",
    },
}
BODY_RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES,
    400: {"model": ErrorMessage, "description": "Body could not be read (not UTF-8)"},
    422: {"model": InvalidRequest, "description": "Invalid request body"},
}


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "body"


def _message(error: dict[str, Any]) -> str:
    kind = error.get("type", "")
    where = _location(error.get("loc", ()))
    if kind == "json_invalid":
        return "body is not valid JSON"
    if kind == "extra_forbidden":
        return f"{where}: unknown field"
    if kind == "missing":
        return f"{where}: required field missing"
    return f"{where}: {error.get('msg', 'invalid value')}"


def readable(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors = [
        {"loc": [str(p) for p in e.get("loc", ())], "type": e.get("type", ""), "msg": _message(e)}
        for e in exc.errors()
    ]
    return "invalid request: " + "; ".join(e["msg"] for e in errors), errors


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail, errors = readable(exc)
    request.state.audit_result = "refused"
    request.state.audit_detail = detail
    return JSONResponse({"detail": detail, "errors": errors}, status_code=422)
