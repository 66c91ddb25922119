"""Where the safety service checks the bearer token.

The token comes from `SAFETY_API_TOKEN_FILE` (a mounted Secret; re-read whenever the file changes, so a
rotated Secret takes effect without a restart) or from `SAFETY_API_TOKEN`. It is compared in constant time
(`secrets.compare_digest`) and never logged, echoed or written to the audit log: a refusal says only
"missing" or "invalid".
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from enum import StrEnum
from typing import Annotated

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

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


class TokenSource:
    """The currently valid token. With a file, the file wins and is re-read when it changes."""

    def __init__(self, token: str = "", token_file: str | None = None) -> None:
        self._env_token = token.strip()
        self._file = token_file
        self._lock = threading.Lock()
        self._file_token = ""
        self._file_stamp: tuple[int, int, int] | None = None

    def current(self) -> str:
        """The token in force, or "" when none is configured (then every authenticated call is refused)."""
        if not self._file:
            return self._env_token
        try:
            st = os.stat(self._file)  # follows the ..data symlink Kubernetes swaps on rotation
        except OSError as exc:
            # Mid-rotation or unmounted: keep the last good token rather than lock everyone out.
            log.warning("token file unreadable, keeping the previous token: %s", type(exc).__name__)
            return self._file_token or self._env_token
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            if stamp != self._file_stamp:
                try:
                    with open(self._file, encoding="utf-8") as fh:
                        self._file_token = fh.read().strip()
                    self._file_stamp = stamp
                    log.info("API token loaded from file (rotation picked up)")
                except OSError as exc:
                    log.warning("token file unreadable, keeping the previous token: %s", type(exc).__name__)
            return self._file_token or self._env_token

    def all_known(self) -> list[str]:
        """Every token value this process knows, for redaction."""
        return [t for t in {self._env_token, self._file_token} if t]


def presented_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when absent or empty."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return ""  # some other scheme: present but not a bearer token, so invalid rather than missing
    value = value.strip()
    return value or None


def check_token(authorization: str | None, expected: str) -> TokenCheck:
    """Constant-time check of a presented Authorization header against the expected token."""
    presented = presented_token(authorization)
    if presented is None:
        return TokenCheck.MISSING
    if not expected:
        return TokenCheck.UNCONFIGURED
    if secrets.compare_digest(presented.encode("utf-8"), expected.encode("utf-8")):
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
    return check_token(request.headers.get("authorization"), ctx.tokens.current())


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
