"""The engine's environment for a TradingSystem in a TradingAccount (quantzoo_engine.account reads it):
the account's name and its limits. A change of the account's limits changes the pod template, so the
engine restarts with them (its SIGTERM path cancels its own working orders first)."""

from __future__ import annotations

from typing import Any

from quantzoo_api.accounts import ACCOUNT_LIMITS_ENV, ACCOUNT_NAME_ENV

from quantzoo_operator.builders.common import System


def env(system: System) -> list[dict[str, Any]]:
    if system.account_name is None or system.account_limits is None:
        return []
    limits = system.account_limits.model_dump_json(by_alias=True)
    return [
        {"name": ACCOUNT_NAME_ENV, "value": system.account_name},
        {"name": ACCOUNT_LIMITS_ENV, "value": limits},
    ]
