"""Where the engine checks the admin token (a FastAPI dependency).

The token comes from ENGINE_ADMIN_TOKEN_FILE (the mounted `<name>-engine-admin` Secret; not the safety
token), re-read whenever the file changes, so a rotated Secret is in force without a restart; the old
token stays valid for the rotation overlap window (quantzoo_api.secret_file), then is refused; or from
ENGINE_ADMIN_TOKEN outside Kubernetes. It is compared in constant time. Without a configured token the
admin API refuses everything (fail closed). Refusals say nothing about the token. The OpenAPI schema
declares it as an HTTP bearer scheme.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from quantzoo_api.secret_file import SecretFile

# auto_error=False: the refusals below (401 vs 503, their wording) are ours, not FastAPI's.
BEARER = HTTPBearer(auto_error=False, description="The engine admin token (ENGINE_ADMIN_TOKEN).")


def require_admin_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
) -> None:
    source: SecretFile = request.app.state.admin_token
    expected = source.current()
    if not expected:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "admin API disabled: no admin token configured"
        )
    presented = credentials.credentials if credentials is not None else ""
    # The current token, or the previous one inside its rotation overlap window (secret_file.py).
    if not source.accepts(presented):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "unauthorized", headers={"WWW-Authenticate": "Bearer"}
        )


AdminAuth = Annotated[None, Depends(require_admin_token)]
