"""Which TradingAccount the engine trades in, from the environment the operator sets on the engine pod:

  QUANTZOO_ACCOUNT_NAME          the TradingAccount (unset: the broker account is this system's alone)
  QUANTZOO_ACCOUNT_LIMITS        its spec.limits as camelCase JSON (a change rolls the engine pod)
  ENGINE_ACCOUNT_CACHE_SECONDS   how long one reading of the whole account serves the account-wide
                                 limits (default 1; 0: read before every order), risk/account_limits.py

With an account, the engine's client order ids carry its system's prefix, the broker shows it only what
the system owns (broker/ownership.py) and every order is checked against the account's limits. The
account needs a broker every engine shares (alpaca, or the local fake Alpaca in tests): the simulated
broker is a book inside each engine process, so it refuses an account (ConfigError at start).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from quantzoo_api.accounts import ACCOUNT_LIMITS_ENV, ACCOUNT_NAME_ENV, AccountLimits, order_id_prefix
from quantzoo_api.types import BrokerKind, TradingSystemSpec

CACHE_ENV = "ENGINE_ACCOUNT_CACHE_SECONDS"


class AccountConfigError(ValueError):
    """The account environment cannot be used; the message says why."""


class AccountBinding(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1, max_length=63)
    limits: AccountLimits = AccountLimits()
    order_prefix: str
    cache_seconds: float = Field(1.0, ge=0, le=60)

    @classmethod
    def from_env(
        cls, namespace: str, name: str, spec: TradingSystemSpec, env: Mapping[str, str] | None = None
    ) -> AccountBinding | None:
        env = os.environ if env is None else env
        account = env.get(ACCOUNT_NAME_ENV, "").strip()
        if not account:
            return None
        if spec.broker.kind is not BrokerKind.ALPACA:
            raise AccountConfigError(
                f"TradingAccount {account!r}: broker.kind {spec.broker.kind} cannot be shared by several "
                "engines (the simulated broker is a book inside one engine process); an account needs "
                "broker.kind alpaca"
            )
        try:
            limits = AccountLimits.model_validate_json(env.get(ACCOUNT_LIMITS_ENV) or "{}")
            return cls(
                name=account,
                limits=limits,
                order_prefix=order_id_prefix(namespace, name),
                cache_seconds=float(env.get(CACHE_ENV) or 1.0),
            )
        except (ValidationError, ValueError) as exc:
            raise AccountConfigError(f"{ACCOUNT_LIMITS_ENV} / {CACHE_ENV}: {exc}") from None
