"""The broker interface the engine trades through, and the errors it may raise."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from quantzoo_engine.orders import Fill, Order, OrderRequest
from quantzoo_engine.portfolio import Position


class BrokerError(Exception):
    """The broker failed (network, 5xx, rate limit). `retryable` says whether trying again may help."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status  # the HTTP status, when the broker answered one
        self.retry_after = retry_after  # seconds the broker asked us to wait (Retry-After), if it did


class BrokerRejected(BrokerError):
    """The broker refused the request (4xx): trying again will not help."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class BrokerTimeout(BrokerError):
    """No answer within the deadline."""


class BrokerThrottled(BrokerError):
    """Not sent: the broker's Retry-After has not passed (its rate limit covers every endpoint of the
    account), so the request would only be refused again and prolong the limit."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, retryable=False, retry_after=retry_after)


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    cash: float
    equity: float
    last_equity: float | None = None  # equity at the previous close (start of today's P&L)


@dataclass(frozen=True, slots=True)
class AccountExposure:
    """The whole broker account, every system in it together (for the account-wide limits)."""

    gross_exposure: float
    equity: float
    last_equity: float | None
    orders_last_minute: int


@dataclass(slots=True)
class CancelReport:
    cancelled: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    retry_after: float | None = None  # the broker's Retry-After on a failure, if it sent one


@dataclass(slots=True)
class FlattenReport:
    closed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    retry_after: float | None = None  # the broker's Retry-After on a failure, if it sent one


def note_retry_after(report: CancelReport | FlattenReport, seconds: float | None) -> None:
    """Keep the longest Retry-After the broker asked for across a report's steps."""
    if seconds is not None:
        report.retry_after = max(report.retry_after or 0.0, seconds)


def note_failure(report: CancelReport | FlattenReport, message: str, exc: BrokerError) -> None:
    """A kill-path step the broker failed: its message, and the longest Retry-After it asked for."""
    report.errors.append(message)
    note_retry_after(report, exc.retry_after)


class Broker(Protocol):
    name: str
    # True for a remote broker: the engine polls positions and open orders to learn about fills.
    # False: every fill is reported through drain_fills().
    needs_polling: bool

    async def connect(self) -> None: ...

    async def account(self) -> AccountSnapshot: ...

    async def positions(self) -> list[Position]: ...

    async def open_orders(self) -> list[Order]: ...

    async def submit_order(self, request: OrderRequest) -> Order: ...

    async def cancel_all_orders(self, deadline_seconds: float) -> CancelReport:
        """Cancel every working order; must return (with errors) within the deadline."""
        ...

    async def close_all_positions(self, deadline_seconds: float) -> FlattenReport:
        """Flatten every position; must return (with errors) within the deadline."""
        ...

    def on_price(self, symbol: str, price: float, at: datetime) -> None:
        """A new market price (the paper broker fills resting orders with it)."""
        ...

    def drain_fills(self) -> list[Fill]: ...

    async def close(self) -> None: ...
