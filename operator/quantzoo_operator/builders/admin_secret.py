"""The two token Secrets of a TradingSystem, each with one key, `token`:

- `<name>-engine-admin`: the engine's admin token (the kill-switch endpoint). Engine, safety service and
  operator read it; nobody else needs it.
- `<name>-safety-token`: the bearer token of the safety service's runbook API.

Generated with `secrets.token_urlsafe` when absent and never regenerated, re-applied, logged, put in an
Event or in status. They are created once (not server-side applied: an apply that left `data` out would
delete the token). A Secret someone created beforehand with a `token` key is used as it is.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from quantzoo_operator import labels, names
from quantzoo_operator.builders.common import System, metadata

TOKEN_KEY = "token"  # noqa: S105 - a key name
TOKEN_BYTES = 32


def generate_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def _secret(system: System, name: str, token: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(system, name, labels.CREDENTIALS),
        "type": "Opaque",
        "data": {TOKEN_KEY: base64.b64encode(token.encode()).decode()},
    }


def engine_admin(system: System, token: str) -> dict[str, Any]:
    return _secret(system, names.engine_admin_secret(system.name), token)


def safety_token(system: System, token: str) -> dict[str, Any]:
    return _secret(system, names.safety_token_secret(system.name), token)


def secret_names(system: System) -> list[str]:
    return [names.engine_admin_secret(system.name), names.safety_token_secret(system.name)]


def build(system: System) -> list[dict[str, Any]]:
    """Both Secrets with fresh tokens: what the reconciler creates when one is missing."""
    return [engine_admin(system, generate_token()), safety_token(system, generate_token())]


def read_token(secret: dict[str, Any]) -> str | None:
    """The token held by a Secret as the API returns it (None when the key is missing or empty)."""
    raw = (secret.get("data") or {}).get(TOKEN_KEY)
    if not raw:
        return None
    return base64.b64decode(raw).decode().strip() or None
