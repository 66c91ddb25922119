"""Account-wide limits (TradingAccount.spec.limits) across every engine that trades in the account.

How: there is no coordinator. Each engine reads the whole account from the broker (its positions'
gross market value, its equity against the previous close, and how many orders the account placed in
the last minute; three reads side by side, AlpacaBroker.account_exposure) and keeps that reading for
`max_age_seconds` (ENGINE_ACCOUNT_CACHE_SECONDS, default 1 s). Every order then checks, in memory:

  gross exposure   reading + what this engine sent since the reading + this order's notional
  daily loss       previous close's equity - equity (orders that add exposure refused past the limit)
  order rate       the account's orders in the last minute + this engine's since the reading

The broker is the one place all engines' orders meet, so the count is the account's whatever placed
the orders. What it does not see: what the OTHER engines sent within the last `max_age_seconds`; that
is the window by which the account can overshoot (0 reads before every order, at a broker round trip
per order: bench/account_limits_bench.py measures both). No reading yet, or one older than
`fail_closed_after_seconds` (the broker is failing): orders that add exposure are refused.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from quantzoo_api.accounts import AccountLimits

from quantzoo_engine.broker.base import AccountExposure, BrokerError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AccountView:
    """What an order is checked against: the reading plus this engine's orders since it."""

    name: str
    limits: AccountLimits
    exposure: AccountExposure | None  # None: no usable reading (fail closed)
    sent_notional: float = 0.0
    sent_orders: int = 0

    @property
    def gross_exposure(self) -> float:
        return (self.exposure.gross_exposure if self.exposure else 0.0) + self.sent_notional

    @property
    def daily_loss(self) -> float:
        e = self.exposure
        if e is None or e.last_equity is None:
            return 0.0
        return max(0.0, e.last_equity - e.equity)

    @property
    def orders_last_minute(self) -> int:
        return (self.exposure.orders_last_minute if self.exposure else 0) + self.sent_orders


class AccountGuard:
    """The cached reading of the account and this engine's orders since it."""

    def __init__(
        self,
        name: str,
        limits: AccountLimits,
        read: Callable[[], Awaitable[AccountExposure]],
        monotonic: Callable[[], float],
        *,
        max_age_seconds: float = 1.0,
        fail_closed_after_seconds: float = 10.0,
    ) -> None:
        self.name, self.limits = name, limits
        self._read, self._monotonic = read, monotonic
        self.max_age_seconds = max_age_seconds
        self.fail_closed_after_seconds = fail_closed_after_seconds
        self._exposure: AccountExposure | None = None
        self._read_at = float("-inf")
        self._sent_notional = 0.0
        self._sent_orders = 0
        self.reads = 0  # broker readings taken (the benchmark reports them per order)

    async def refresh_if_stale(self) -> None:
        """Read the account again if the reading is older than max_age_seconds (a failure keeps the
        old one until it is too old to use)."""
        if self._monotonic() - self._read_at < self.max_age_seconds:
            return
        try:
            exposure = await self._read()
        except BrokerError as exc:
            log.warning("account reading failed", extra={"account": self.name, "error": str(exc)})
            return
        self.reads += 1
        self._exposure, self._read_at = exposure, self._monotonic()
        self._sent_notional, self._sent_orders = 0.0, 0

    def view(self) -> AccountView:
        usable = self._monotonic() - self._read_at <= self.fail_closed_after_seconds
        return AccountView(
            self.name,
            self.limits,
            self._exposure if usable else None,
            self._sent_notional,
            self._sent_orders,
        )

    def note_sent(self, notional: float) -> None:
        self._sent_notional += notional
        self._sent_orders += 1
