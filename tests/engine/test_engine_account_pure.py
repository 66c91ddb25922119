"""The pure parts of accounts (issue #13, item 1): the client order id format, attributing a shared
account's fills to the system that owns them, the account-wide limit checks, and a system's effective
spec in an account. No I/O; milliseconds."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from engine_helpers import market
from quantzoo_api.accounts import (
    CLIENT_ORDER_ID_MAX,
    AccountLimits,
    TradingAccountSpec,
    effective_spec,
    order_id_prefix,
    owned_client_order_id,
    owns,
    parse_account_spec,
    system_tag,
)
from quantzoo_api.killswitch import TradingState
from quantzoo_api.types import BrokerKind, TradingMode, parse_spec
from quantzoo_engine.account import AccountBinding, AccountConfigError
from quantzoo_engine.broker.base import AccountExposure, BrokerError
from quantzoo_engine.broker.ownership import OwnedBook
from quantzoo_engine.orders import Order, OrderStatus, OrderType, Side
from quantzoo_engine.risk.account_limits import AccountGuard, AccountView
from quantzoo_engine.risk.checks import PreTradeContext, RejectReason, check_account_limits

T0 = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
A = order_id_prefix("desk-a", "momentum")
B = order_id_prefix("desk-a", "meanrev")


# --- client order ids ----------------------------------------------------------------------------------
def test_prefix_is_stable_distinct_and_short() -> None:
    assert order_id_prefix("desk-a", "momentum") == A
    assert A != B != order_id_prefix("desk-b", "momentum")
    assert f"qz.{system_tag('desk-a', 'momentum')}." == A
    assert len(A) == 16


def test_owned_id_carries_the_prefix_and_fits_alpaca() -> None:
    fresh = owned_client_order_id(A)
    assert owns(A, fresh)
    assert not owns(B, fresh)
    assert len(fresh) == len(A) + 24
    assert owned_client_order_id(A, "manual-1") == A + "manual-1"
    assert owned_client_order_id(A, A + "x") == A + "x"  # already ours: kept
    assert len(owned_client_order_id(A, "y" * 200)) == CLIENT_ORDER_ID_MAX
    assert not owns(A, None)
    assert not owns(A, "qz-0123456789abcdef01234567")


# --- attribution ---------------------------------------------------------------------------------------
def order(
    coid: str,
    side: Side,
    qty: float,
    filled: float = 0.0,
    avg: float | None = None,
    *,
    oid: str | None = None,
    status: OrderStatus | None = None,
    at: datetime = T0,
) -> Order:
    return Order(
        id=oid or coid,
        client_order_id=coid,
        symbol="AAPL",
        side=side,
        quantity=qty,
        order_type=OrderType.LIMIT,
        status=status or (OrderStatus.FILLED if filled >= qty else OrderStatus.NEW),
        submitted_at=at,
        filled_quantity=filled,
        filled_avg_price=avg,
    )


def test_the_book_counts_only_its_own_fills_once() -> None:
    book = OwnedBook(A)
    assert book.observe(order(B + "1", Side.BUY, 10, 10, 100.0), T0) is None  # a sibling's
    assert book.observe(order("by-hand", Side.BUY, 5, 5, 100.0), T0) is None  # nobody's
    first = book.observe(order(A + "1", Side.BUY, 10, 4, 100.0, status=OrderStatus.PARTIALLY_FILLED), T0)
    assert first is not None
    assert first.quantity == 4
    assert first.price == 100.0
    assert book.observe(order(A + "1", Side.BUY, 10, 4, 100.0), T0) is None  # seen: not again
    rest = book.observe(order(A + "1", Side.BUY, 10, 10, 103.0), T0)
    # The rest's price comes from the change in the order's filled notional: (1030 - 400) / 6.
    assert rest is not None
    assert rest.quantity == 6
    assert rest.price == pytest.approx(105.0)
    assert book.positions["AAPL"].quantity == 10
    assert book.positions["AAPL"].avg_price == pytest.approx(103.0)
    assert book.cash_delta == pytest.approx(-1030.0)
    book.observe(order(A + "2", Side.SELL, 10, 10, 110.0), T0)
    assert "AAPL" not in book.positions
    assert book.cash_delta == pytest.approx(70.0)


def test_the_cursor_stops_at_the_oldest_working_order_and_the_book_survives_a_restart() -> None:
    book = OwnedBook(A)
    book.observe(order(A + "old", Side.BUY, 5, 0, None, at=T0), T0)  # resting
    book.observe(order(A + "new", Side.BUY, 5, 5, 100.0, at=T0 + timedelta(minutes=5)), T0)
    book.advance_cursor(T0 + timedelta(minutes=10))
    assert book.cursor == T0  # the resting order may still fill: it is read again next time
    again = OwnedBook.from_json(A, book.to_json())
    assert again == book
    assert OwnedBook.from_json(B, book.to_json()) == OwnedBook(B)  # another system's file: ignored
    assert OwnedBook.from_json(A, {"prefix": A, "seen": 3}) == OwnedBook(A)  # unreadable: replayed


# --- the account-wide limits ---------------------------------------------------------------------------
LIMITS = AccountLimits(max_gross_exposure=10_000, max_daily_loss=1_000, max_orders_per_minute=5)


def ctx(view: AccountView | None, **overrides: Any) -> PreTradeContext:
    base = PreTradeContext(
        trading_state=TradingState.ACTIVE,
        symbol_known=True,
        last_price=100.0,
        data_stale=False,
        data_suspect=False,
        position=0.0,
        working_same_side=0.0,
        working_net=0.0,
        gross_exposure=0.0,
        daily_drawdown_pct=0.0,
        account=view,
    )
    return replace(base, **overrides)


def view(
    gross: float = 0.0, equity: float = 100_000, last: float | None = 100_000, n: int = 0
) -> AccountView:
    return AccountView("shared", LIMITS, AccountExposure(gross, equity, last, n))


@pytest.mark.parametrize(
    ("name", "account", "overrides", "expected"),
    [
        ("no account: nothing to check", None, {}, None),
        ("within every limit", view(gross=9_000), {}, None),
        ("gross exposure crossed", view(gross=9_500), {}, RejectReason.ACCOUNT_GROSS_EXPOSURE),
        ("a reducing order may cross it", view(gross=50_000), {"increases_exposure": False}, None),
        ("daily loss reached", view(equity=99_000), {}, RejectReason.ACCOUNT_DAILY_LOSS),
        ("order rate reached", view(n=5), {"increases_exposure": False}, RejectReason.ACCOUNT_ORDER_RATE),
        ("no reading: fail closed", AccountView("shared", LIMITS, None), {}, RejectReason.ACCOUNT_UNKNOWN),
        (
            "no reading: reducing passes",
            AccountView("shared", LIMITS, None),
            {"increases_exposure": False},
            None,
        ),
    ],
)
def test_account_limit_checks(
    name: str, account: AccountView | None, overrides: dict[str, Any], expected: RejectReason | None
) -> None:
    rejection = check_account_limits(market("AAPL", Side.BUY, 10), ctx(account, **overrides))
    assert (rejection.reason if rejection else None) is expected, name
    if rejection is not None:
        assert "TradingAccount shared" in rejection.message


def test_the_guard_caches_one_reading_and_adds_what_it_sent_since() -> None:
    now = [0.0]
    reads: list[AccountExposure | Exception] = [AccountExposure(1_000, 100_000, 100_000, 2)]

    async def read() -> AccountExposure:
        item = reads[-1]
        if isinstance(item, Exception):
            raise item
        return item

    guard = AccountGuard("shared", LIMITS, read, lambda: now[0], max_age_seconds=1.0)
    assert guard.view().exposure is None  # nothing read yet: fail closed
    asyncio.run(guard.refresh_if_stale())
    guard.note_sent(500.0)
    asyncio.run(guard.refresh_if_stale())  # fresh: not read again
    assert guard.reads == 1
    v = guard.view()
    assert (v.gross_exposure, v.orders_last_minute) == (1_500, 3)
    now[0] = 1.5
    reads.append(AccountExposure(2_000, 100_000, 100_000, 4))
    asyncio.run(guard.refresh_if_stale())
    assert guard.reads == 2
    assert guard.view().gross_exposure == 2_000
    reads.append(BrokerError("down"))
    now[0] = 5.0
    asyncio.run(guard.refresh_if_stale())
    assert guard.view().exposure is not None  # a failed read keeps the last good one for a while
    now[0] = 12.0
    assert guard.view().exposure is None  # ...then fails closed


# --- the system's spec in an account -------------------------------------------------------------------
def test_effective_spec_takes_broker_and_mode_from_the_account() -> None:
    account = parse_account_spec(
        {
            "mode": "live",
            "broker": {"kind": "alpaca", "credentialsSecret": "acct-keys", "baseUrl": "http://x"},
        }
    )
    system = parse_spec({"accountRef": {"name": "shared"}, "broker": {"initialCash": 50_000}})
    spec = effective_spec(system, account)
    assert spec.broker.kind is BrokerKind.ALPACA
    assert spec.broker.credentials_secret == "acct-keys"
    assert spec.broker.initial_cash == 50_000  # the system's capital in the account
    assert spec.mode is TradingMode.LIVE
    dry = effective_spec(parse_spec({"accountRef": {"name": "shared"}, "mode": "dryRun"}), account)
    assert dry.mode is TradingMode.DRY_RUN


def test_account_binding_from_env_refuses_the_simulated_broker() -> None:
    alpaca = parse_spec({"broker": {"kind": "alpaca", "credentialsSecret": "k"}})
    env = {"QUANTZOO_ACCOUNT_NAME": "shared", "QUANTZOO_ACCOUNT_LIMITS": '{"maxGrossExposure": 5000}'}
    binding = AccountBinding.from_env("ns", "sys", alpaca, env)
    assert binding is not None
    assert binding.limits.max_gross_exposure == 5000
    assert binding.order_prefix == order_id_prefix("ns", "sys")
    assert AccountBinding.from_env("ns", "sys", alpaca, {}) is None
    with pytest.raises(AccountConfigError, match="simulated broker is a book inside one engine"):
        AccountBinding.from_env("ns", "sys", parse_spec({}), env)
    with pytest.raises(AccountConfigError, match="QUANTZOO_ACCOUNT_LIMITS"):
        AccountBinding.from_env(
            "ns", "sys", alpaca, {**env, "QUANTZOO_ACCOUNT_LIMITS": '{"maxDailyLoss": -1}'}
        )
    assert TradingAccountSpec().broker.kind is BrokerKind.SIMULATED
