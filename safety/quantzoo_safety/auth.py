"""Where the safety service checks the bearer token.

The token comes from `SAFETY_API_TOKEN_FILE` (a mounted Secret; re-read whenever the file changes, so a
rotated Secret takes effect without a restart) or from `SAFETY_API_TOKEN`. It is compared in constant time
(`secrets.compare_digest`) and never logged, echoed or written to the audit log: a refusal says only
"missing" or "invalid".
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Annotated

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from quantzoo_api.killswitch import SAFETY_API_TOKEN_ENV
from quantzoo_api.secret_file import DEFAULT_OVERLAP_SECONDS, SecretFile

from quantzoo_safety.context import get_context

log = logging.getLogger(__name__)

BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}
# Declares the bearer scheme in the OpenAPI schema. The check itself reads the raw header (below), so it
# can tell a missing token from another scheme and word its own refusals.
BEARER = HTTPBearer(auto_error=False, description="The safety API token (SAFETY_API_TOKEN).")
Bearer = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]


class TokenCheck(StrEnum):
    OK = "ok"
    MISSING = "missing"
    INVALID = "invalid"
    UNCONFIGURED = "unconfigured"


class TokenSource(SecretFile):
    """The currently valid API token. With a file, the file wins and is re-read when it changes."""

    def __init__(
        self, token: str = "", token_file: str | None = None, overlap_seconds: float = DEFAULT_OVERLAP_SECONDS
    ) -> None:
        super().__init__(token_file, token, label=SAFETY_API_TOKEN_ENV, overlap_seconds=overlap_seconds)

    def all_known(self) -> list[str]:
        """Every token value this process has held (rotated-out ones too), for redaction."""
        return self.known()


def presented_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when absent or empty."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return ""  # some other scheme: present but not a bearer token, so invalid rather than missing
    value = value.strip()
    return value or None


def check_token(authorization: str | None, expected: str | SecretFile) -> TokenCheck:
    """Constant-time check of a presented Authorization header against the expected token (a SecretFile:
    its current value, or a previous one still inside the rotation overlap window)."""
    presented = presented_token(authorization)
    if presented is None:
        return TokenCheck.MISSING
    source = expected if isinstance(expected, SecretFile) else SecretFile(None, expected)
    if not source.current():
        return TokenCheck.UNCONFIGURED
    if source.accepts(presented):
        return TokenCheck.OK
    return TokenCheck.INVALID


def _refuse(request: Request, result: TokenCheck) -> HTTPException:
    ctx = get_context(request)
    request.state.audit_result = "refused"
    if result is TokenCheck.UNCONFIGURED:
        request.state.audit_detail = "no API token configured on the safety service"
        return HTTPException(
            503,
            "no API token is configured on the safety service (SAFETY_API_TOKEN or SAFETY_API_TOKEN_FILE)",
        )
    ctx.metrics.auth_failures.inc()
    detail = "missing bearer token" if result is TokenCheck.MISSING else "invalid bearer token"
    request.state.audit_detail = detail
    return HTTPException(401, detail, headers=BEARER_CHALLENGE)


def _verify(request: Request) -> TokenCheck:
    ctx = get_context(request)
    return check_token(request.headers.get("authorization"), ctx.tokens)


async def require_token(request: Request, _: Bearer = None) -> None:
    """FastAPI dependency: the request must carry the valid bearer token (401 otherwise)."""
    result = _verify(request)
    request.state.authenticated = result is TokenCheck.OK
    if result is not TokenCheck.OK:
        raise _refuse(request, result)


async def optional_token(request: Request, _: Bearer = None) -> bool:
    """Dependency for `/status`: no token (or an empty `Bearer `) is the public view; a wrong one is 401."""
    if presented_token(request.headers.get("authorization")) is None:
        request.state.authenticated = False
        return False
    await require_token(request)
    return True
