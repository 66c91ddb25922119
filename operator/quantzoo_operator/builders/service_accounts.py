"""ServiceAccounts: the engine and the safety service each act as their own identity (see rbac.py)."""

from __future__ import annotations

from typing import Any

from quantzoo_operator import labels, names
from quantzoo_operator.builders.common import System, metadata


def build(system: System) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": metadata(system, sa_name, component),
            # Both pods call the API server (the engine watches its TradingSystem, the safety service
            # patches it), so the token is mounted; the Roles below limit it to their own object.
            "automountServiceAccountToken": True,
        }
        for sa_name, component in (
            (names.engine(system.name), labels.ENGINE),
            (names.safety(system.name), labels.SAFETY),
        )
    ]
