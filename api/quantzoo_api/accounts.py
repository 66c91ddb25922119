"""Pydantic models of the TradingAccount CRD (crds/trading.quantzoo.io_tradingaccounts.yaml, issue #13).

A TradingAccount is one broker account. The TradingSystems that name it (`spec.accountRef`) trade in it,
each owning its own orders and positions, within the account-wide `limits`; its `killSwitch` (the
TradingSystem's contract, quantzoo_api.killswitch) stops every one of them with one write.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from pydantic import Field, model_validator

from quantzoo_api.types import (
    BrokerKind,
    BrokerSpec,
    KillSwitchSpec,
    TradingMode,
    TradingSystemSpec,
    _Model,
)

ACCOUNT_PLURAL = "tradingaccounts"
ACCOUNT_KIND = "TradingAccount"

# How the operator tells an engine which account it trades in (engine env; unset: the TradingSystem's
# own broker, the whole broker account is the system's, as before accounts existed).
ACCOUNT_NAME_ENV = "QUANTZOO_ACCOUNT_NAME"
ACCOUNT_LIMITS_ENV = "QUANTZOO_ACCOUNT_LIMITS"  # AccountLimits as camelCase JSON


class AccountLimits(_Model):
    """Limits across every TradingSystem of the account (each system keeps its own spec.risk too)."""

    max_gross_exposure: float = Field(5_000_000.0, gt=0, le=1e12)
    max_daily_loss: float = Field(250_000.0, gt=0, le=1e12)
    max_orders_per_minute: int = Field(1_200, ge=1, le=600_000)


class TradingAccountSpec(_Model):
    mode: TradingMode = TradingMode.PAPER
    broker: BrokerSpec = BrokerSpec()
    limits: AccountLimits = AccountLimits()
    kill_switch: KillSwitchSpec = KillSwitchSpec()

    @model_validator(mode="after")
    def _live_needs_real_broker(self) -> TradingAccountSpec:
        if self.mode is TradingMode.LIVE and self.broker.kind is not BrokerKind.ALPACA:
            raise ValueError("mode live needs a real broker (broker.kind: alpaca)")
        return self


def deletion_reason(namespace: str, name: str, *, gone: bool = False) -> str:
    """Why an account's deletion holds its systems: one wording for the engine's halt and the operator's
    status (heldBy), which must name the same thing."""
    return f"{ACCOUNT_KIND} {namespace}/{name} {'was deleted' if gone else 'is being deleted'}"


def parse_account_spec(spec: dict[str, Any] | None) -> TradingAccountSpec:
    """A TradingAccountSpec from a raw `spec` dict as the API server returns it (camelCase)."""
    return TradingAccountSpec.model_validate(spec or {})


# --- ownership: client order ids carry the system's identity ------------------------------------------
#
# Format: `qz.<tag>.<suffix>`, where <tag> is the first 12 hex digits of sha256("<namespace>/<name>")
# (48 bits: two systems of one account collide with odds ~1e-13) and <suffix> is the engine's own part
# (24 hex digits of a uuid4, or the id a caller gave a manual order). Namespace and name themselves do
# not fit: 63 + 253 characters against Alpaca's 128. An order whose id does not start with a system's
# prefix belongs to no system (placed by hand, or by an engine before accounts existed).

CLIENT_ORDER_ID_MAX = 128
_TAG_HEX = 12


def system_tag(namespace: str, name: str) -> str:
    return hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:_TAG_HEX]


def order_id_prefix(namespace: str, name: str) -> str:
    """The prefix of every client order id of the TradingSystem `namespace/name`."""
    return f"qz.{system_tag(namespace, name)}."


def owned_client_order_id(prefix: str, suffix: str | None = None) -> str:
    """A client order id of the system whose prefix is `prefix`; an id that already carries it is kept."""
    if suffix is not None and suffix.startswith(prefix):
        return suffix[:CLIENT_ORDER_ID_MAX]
    return (prefix + (suffix or uuid.uuid4().hex[:24]))[:CLIENT_ORDER_ID_MAX]


def owns(prefix: str, client_order_id: str | None) -> bool:
    return bool(client_order_id) and str(client_order_id).startswith(prefix)


# --- the TradingSystem's spec as its engine runs it -----------------------------------------------------


def effective_spec(system: TradingSystemSpec, account: TradingAccountSpec) -> TradingSystemSpec:
    """A system in an account trades with the account's broker (kind, credentials, base URL) and mode;
    its own broker.initialCash stays its capital, from which its P&L and drawdown are measured. A system
    in dryRun stays in dryRun (it reads the account, never sends)."""
    broker = account.broker.model_copy(update={"initial_cash": system.broker.initial_cash})
    mode = TradingMode.DRY_RUN if system.mode is TradingMode.DRY_RUN else account.mode
    return system.model_copy(update={"broker": broker, "mode": mode})
