"""Pydantic models of the TradingAccount CRD (crds/trading.quantzoo.io_tradingaccounts.yaml, issue #13).

A TradingAccount is one broker account. The TradingSystems that name it (`spec.accountRef`) trade in it,
each owning its own orders and positions, within the account-wide `limits`; its `killSwitch` (the
TradingSystem's contract, quantzoo_api.killswitch) stops every one of them with one write.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from quantzoo_api.types import BrokerKind, BrokerSpec, KillSwitchSpec, TradingMode, _Model

ACCOUNT_PLURAL = "tradingaccounts"
ACCOUNT_KIND = "TradingAccount"


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


def parse_account_spec(spec: dict[str, Any] | None) -> TradingAccountSpec:
    """A TradingAccountSpec from a raw `spec` dict as the API server returns it (camelCase)."""
    return TradingAccountSpec.model_validate(spec or {})
