"""Pre-trade checks: where the engine refuses an order.

One function per check, each returning a `Rejection` (reason enum + a sentence) or None. `RiskEngine`
runs them in the order below, top to bottom, and stops at the first refusal; a refused order never
reaches a broker. Cheap, state-derived checks come first so a halted engine refuses in nanoseconds; the
rate limits come last so a refused order does not use up the rate budget.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from quantzoo_api.killswitch import TradingState
from quantzoo_api.types import RiskLimits

from quantzoo_engine.orders import OrderRequest, OrderType, increases_exposure
from quantzoo_engine.risk.account_limits import AccountView
from quantzoo_engine.risk.ratelimit import SlidingWindowCounter


class RejectReason(StrEnum):
    TRADING_HALTED = "trading_halted"
    REDUCE_ONLY = "reduce_only"
    UNKNOWN_SYMBOL = "unknown_symbol"
    INVALID_ORDER = "invalid_order"
    DUPLICATE_CLIENT_ORDER_ID = "duplicate_client_order_id"
    STALE_DATA = "stale_data"
    MARKET_CLOSED = "market_closed"
    OUTLIER_PRICE = "outlier_price"
    MAX_ORDER_QUANTITY = "max_order_quantity"
    MAX_ORDER_NOTIONAL = "max_order_notional"
    PRICE_COLLAR = "price_collar"
    MAX_POSITION_NOTIONAL = "max_position_notional"
    MAX_GROSS_EXPOSURE = "max_gross_exposure"
    DAILY_DRAWDOWN = "daily_drawdown"
    ORDER_RATE_PER_SECOND = "order_rate_per_second"
    ORDER_RATE_PER_MINUTE = "order_rate_per_minute"
    # The TradingAccount's limits, across every system in the account (risk/account_limits.py).
    ACCOUNT_GROSS_EXPOSURE = "account_gross_exposure"
    ACCOUNT_DAILY_LOSS = "account_daily_loss"
    ACCOUNT_ORDER_RATE = "account_order_rate"
    ACCOUNT_UNKNOWN = "account_unknown"
    # Not pre-trade: the broker refused or failed. Listed here so every rejection is counted under one
    # `reason` label (docs/metrics.md, quantzoo_engine_orders_rejected_total).
    BROKER_REJECTED = "broker_rejected"
    BROKER_ERROR = "broker_error"
    BROKER_RATE_LIMITED = "broker_rate_limited"  # not sent: the broker's Retry-After has not passed


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: RejectReason
    message: str


_DEFAULT_LIMITS = RiskLimits()


@dataclass(slots=True)
class PreTradeContext:
    """What the checks may look at, gathered once per order by the engine (no I/O inside a check)."""

    trading_state: TradingState
    symbol_known: bool
    last_price: float | None
    data_stale: bool
    data_suspect: bool
    position: float
    working_same_side: float
    working_net: float
    gross_exposure: float
    daily_drawdown_pct: float
    staleness_seconds: float = 0.0
    stale_limit_seconds: float = 10.0
    # The TradingSystem's calendar has a session now (or it allows orders outside sessions).
    market_open: bool = True
    # The TradingAccount this system trades in (None: the broker account is the system's alone).
    account: AccountView | None = None
    # Filled in by RiskEngine.evaluate from its own state:
    limits: RiskLimits = _DEFAULT_LIMITS
    increases_exposure: bool = True
    duplicate_client_order_id: bool = False
    orders_last_second: int = 0
    orders_last_minute: int = 0


Check = Callable[[OrderRequest, PreTradeContext], Rejection | None]


def _fmt(x: float) -> str:
    return f"{x:,.2f}"


# --- the checks, in the order RiskEngine runs them ----------------------------------------------------


def check_trading_state(order: OrderRequest, ctx: PreTradeContext) -> Rejection | None:
    if ctx.trading_state is TradingState.HALTED:
        return Rejection(RejectReason.TRADING_HALTED, "trading is HALTED: no new orders")
    if ctx.trading_state is TradingState.REDUCE_ONLY and ctx.increases_exposure:
        return Rejection(RejectReason.REDUCE_ONLY, "trading is REDUCE_ONLY: only orders that shrink exposure")
    return None


def check_symbol_known(order: OrderRequest, ctx: PreTradeContext) -> Rejection | None:
    if not ctx.symbol_known:
        return Rejection(
            RejectReason.UNKNOWN_SYMBOL, f"{order.symbol} is not in this TradingSystem's symbols"
        )
    return None


def check_order_valid(order: OrderRequest, ctx: PreTradeContext) -> Rejection | None:
    if not (math.isfinite(order.quantity) and order.quantity > 0):
        return Rejection(RejectReason.INVALID_ORDER, "quantity must be a positive number")
    needs_limit = order.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
    needs_stop = order.order_type in (OrderType.STOP, OrderType.STOP_LIMIT)
    for name, price, needed in (
        ("limit_price", order.limit_price, needs_limit),
        ("stop_price", order.stop_price, needs_stop),
    ):
        if needed and (price is None or not (math.isfinite(price) and price > 0)):
            return Rejection(
                RejectReason.INVALID_ORDER, f"a {order.order_type} order needs a positive {name}"
            )
        if not needed and price is not None:
            return Rejection(RejectReason.INVALID_ORDER, f"a {order.order_type} order takes no {name}")
    return None


def check_duplicate_client_order_id(order: OrderRequest, ctx: PreTradeContext) -> Rejection | None:
    if ctx.duplicate_client_order_id:
        return Rejection(
            RejectReason.DUPLICATE_CLIENT_ORDER_ID,
            f"client_order_id {order.client_order_id!r} was already used",
        )
    return None


def check_data_fresh(order: OrderRequest, ctx: PreTradeContext) -> Rejection | None:
    if ctx.last_price is None:
        return Rejection(RejectReason.STALE_DATA, f"no market data for {order.symbol} yet")
    if ctx.data_stale:
        return Rejection(
            RejectReason.STALE_DATA,
            f"market data for {order.symbol} is {ctx.staleness_seconds:.1f}s old "
            f"(limit {ctx.stale_limit_seconds:g}s)",
        )
    return None


def check_market_open(order: OrderRequest, ctx: PreTradeContext) -> Rejection | None:
    if not ctx.market_open:
        return Rejection(
            RejectReason.MARKET_CLOSED,
            "the market is closed (spec.session.calendar): no orders outside a session",
        )
    return None


def check_price_sane(order: OrderRequest, ctx: PreTradeContext) -> Rejection | None:
    if ctx.data_suspect:
        return Rejection(
            RejectReason.OUTLIER_PRICE, f"the last price for {order.symbol} was refused as an outlier"
        )
    return None


def check_order_quantity(order: OrderRequest, ctx: PreTradeContext) -> Rejection | None:
    if order.quantity > ctx.limits.max_order_quantity:
        return Rejection(
            RejectReason.MAX_ORDER_QUANTITY,
            f"quantity {order.quantity:g} exceeds maxOrderQuantity {ctx.limits.max_order_quantity}",
        )
    return None


def _order_price(order: OrderRequest, ctx: PreTradeContext) -> float:
    """The price the order can trade at: its limit, else its stop (a stop fills about there), else last."""
    if order.limit_price is not None:
        return order.limit_price
    if order.stop_price is not None:
        return max(order.stop_price, ctx.last_price or 0.0)
    return ctx.last_price or 0.0


def check_order_notional(order: OrderRequest, ctx: PreTradeContext) -> Rejection | None:
    notional = order.quantity * _order_price(order, ctx)
    if notional > ctx.limits.max_order_notional:
        return Rejection(
            RejectReason.MAX_ORDER_NOTIONAL,
            f"order notional {_fmt(notional)} exceeds maxOrderNotional {_fmt(ctx.limits.max_order_notional)}",
        )
    return None


def check_price_collar(order: OrderRequest, ctx: PreTradeContext) -> Rejection | None:
    # Limit prices only: a protective stop is meant to rest away from the market.
    if order.limit_price is None or not ctx.last_price:
        return None
    away_pct = 100.0 * abs(order.limit_price - ctx.last_price) / ctx.last_price
    if away_pct > ctx.limits.price_collar_pct:
        return Rejection(
            RejectReason.PRICE_COLLAR,
            f"limit {order.limit_price:g} is {away_pct:.2f}% from the last trade {ctx.last_price:g} "
            f"(collar {ctx.limits.price_collar_pct:g}%)",
        )
    return None


def _projected_quantity(order: OrderRequest, ctx: PreTradeContext) -> float:
    # Worst case: every working order fills as well.
    return ctx.position + ctx.working_net + order.signed_quantity


def check_position_notional(order: OrderRequest, ctx: PreTradeContext) -> Rejection | None:
    if not ctx.increases_exposure:
        return None
    projected = abs(_projected_quantity(order, ctx)) * (ctx.last_price or 0.0)
    if projected > ctx.limits.max_position_notional:
        return Rejection(
            RejectReason.MAX_POSITION_NOTIONAL,
            f"{order.symbol} position would be {_fmt(projected)}, above maxPositionNotional "
            f"{_fmt(ctx.limits.max_position_notional)}",
        )
    return None


def check_gross_exposure(order: OrderRequest, ctx: PreTradeContext) -> Rejection | None:
    if not ctx.increases_exposure:
        return None
    price = ctx.last_price or 0.0
    projected = ctx.gross_exposure - abs(ctx.position) * price + abs(_projected_quantity(order, ctx)) * price
    if projected > ctx.limits.max_gross_exposure:
        return Rejection(
            RejectReason.MAX_GROSS_EXPOSURE,
            f"gross exposure would be {_fmt(projected)}, above maxGrossExposure "
            f"{_fmt(ctx.limits.max_gross_exposure)}",
        )
    return None


def check_daily_drawdown(order: OrderRequest, ctx: PreTradeContext) -> Rejection | None:
    if ctx.increases_exposure and ctx.daily_drawdown_pct >= ctx.limits.max_daily_drawdown_pct:
        return Rejection(
            RejectReason.DAILY_DRAWDOWN,
            f"daily drawdown {ctx.daily_drawdown_pct:.2f}% reached maxDailyDrawdownPct "
            f"{ctx.limits.max_daily_drawdown_pct:g}%: only exposure-reducing orders",
        )
    return None


def check_order_rate_per_second(order: OrderRequest, ctx: PreTradeContext) -> Rejection | None:
    if ctx.orders_last_second >= ctx.limits.max_orders_per_second:
        return Rejection(
            RejectReason.ORDER_RATE_PER_SECOND,
            f"{ctx.orders_last_second} orders in the last second (maxOrdersPerSecond "
            f"{ctx.limits.max_orders_per_second})",
        )
    return None


def check_order_rate_per_minute(order: OrderRequest, ctx: PreTradeContext) -> Rejection | None:
    if ctx.orders_last_minute >= ctx.limits.max_orders_per_minute:
        return Rejection(
            RejectReason.ORDER_RATE_PER_MINUTE,
            f"{ctx.orders_last_minute} orders in the last minute (maxOrdersPerMinute "
            f"{ctx.limits.max_orders_per_minute})",
        )
    return None


def check_account_limits(order: OrderRequest, ctx: PreTradeContext) -> Rejection | None:
    account = ctx.account
    if account is None:
        return None
    who, limits = f"TradingAccount {account.name}", account.limits
    if account.exposure is None:
        if ctx.increases_exposure:
            return Rejection(
                RejectReason.ACCOUNT_UNKNOWN,
                f"{who}: no recent reading of the account from the broker; only exposure-reducing orders",
            )
        return None
    if account.orders_last_minute >= limits.max_orders_per_minute:
        return Rejection(
            RejectReason.ACCOUNT_ORDER_RATE,
            f"{who}: {account.orders_last_minute} orders in the last minute across the account "
            f"(its maxOrdersPerMinute {limits.max_orders_per_minute})",
        )
    if not ctx.increases_exposure:
        return None
    if account.daily_loss >= limits.max_daily_loss:
        return Rejection(
            RejectReason.ACCOUNT_DAILY_LOSS,
            f"{who}: the account lost {_fmt(account.daily_loss)} today, its maxDailyLoss is "
            f"{_fmt(limits.max_daily_loss)}: only exposure-reducing orders",
        )
    projected = account.gross_exposure + order.quantity * _order_price(order, ctx)
    if projected > limits.max_gross_exposure:
        return Rejection(
            RejectReason.ACCOUNT_GROSS_EXPOSURE,
            f"{who}: the account's gross exposure would be {_fmt(projected)}, above its maxGrossExposure "
            f"{_fmt(limits.max_gross_exposure)}",
        )
    return None


class RiskEngine:
    """Runs the checks in order; remembers what the rate limits and the duplicate check need."""

    CHECKS: tuple[Check, ...] = (
        check_trading_state,
        check_symbol_known,
        check_order_valid,
        check_duplicate_client_order_id,
        check_market_open,
        check_data_fresh,
        check_price_sane,
        check_order_quantity,
        check_order_notional,
        check_price_collar,
        check_position_notional,
        check_gross_exposure,
        check_daily_drawdown,
        check_order_rate_per_second,
        check_order_rate_per_minute,
        check_account_limits,
    )

    def __init__(self, limits: RiskLimits, client_id_memory: int = 100_000) -> None:
        self.limits = limits
        self._per_second = SlidingWindowCounter(1.0)
        self._per_minute = SlidingWindowCounter(60.0)
        self._seen_ids: set[str] = set()
        self._seen_order: deque[str] = deque()
        self._memory = client_id_memory

    def update_limits(self, limits: RiskLimits) -> None:
        """Applied live (a TradingSystem edit); the next order is checked against the new limits."""
        self.limits = limits

    def remember_client_order_id(self, client_order_id: str) -> None:
        if client_order_id in self._seen_ids:
            return
        self._seen_ids.add(client_order_id)
        self._seen_order.append(client_order_id)
        if len(self._seen_order) > self._memory:
            self._seen_ids.discard(self._seen_order.popleft())

    def evaluate(self, order: OrderRequest, ctx: PreTradeContext, now: float) -> Rejection | None:
        """None if the order may go to the broker (and then it counts against the rate limits)."""
        ctx.limits = self.limits
        ctx.increases_exposure = increases_exposure(
            order.side, order.quantity, ctx.position, ctx.working_same_side
        )
        ctx.duplicate_client_order_id = order.client_order_id in self._seen_ids
        ctx.orders_last_second = self._per_second.count(now)
        ctx.orders_last_minute = self._per_minute.count(now)
        for check in self.CHECKS:
            rejection = check(order, ctx)
            if rejection is not None:
                return rejection
        self._per_second.record(now)
        self._per_minute.record(now)
        self.remember_client_order_id(order.client_order_id)
        return None
