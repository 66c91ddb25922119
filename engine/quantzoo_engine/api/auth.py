"""Where the engine checks the admin token (a FastAPI dependency).

The token comes from ENGINE_ADMIN_TOKEN_FILE (the mounted `<name>-engine-admin` Secret; not the safety
token), re-read whenever the file changes, so a rotated Secret is in force without a restart and the old
token is refused from then on; or from ENGINE_ADMIN_TOKEN outside Kubernetes. It is compared in constant
time. Without a configured token the admin API refuses everything (fail closed).
Refusals say nothing about the token.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status
from quantzoo_api.secret_file import SecretFile


def require_admin_token(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    source: SecretFile = request.app.state.admin_token
    expected = source.current()
    if not expected:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "admin API disabled: no admin token configured"
        )
    scheme, _, presented = (authorization or "").partition(" ")
    ok = scheme.lower() == "bearer" and secrets.compare_digest(presented.strip().encode(), expected.encode())
    if not ok:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "unauthorized", headers={"WWW-Authenticate": "Bearer"}
        )


AdminAuth = Annotated[None, Depends(require_admin_token)]
