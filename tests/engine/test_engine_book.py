"""Orders, the order book, the portfolio and the paper broker: the engine's bookkeeping."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from engine_helpers import limit, market
from quantzoo_engine.broker.base import BrokerRejected
from quantzoo_engine.broker.dry_run import DryRunBroker
from quantzoo_engine.broker.paper import PaperBroker
from quantzoo_engine.clock import ManualClock
from quantzoo_engine.orders import Fill, Order, OrderBook, OrderStatus, OrderType, Side, increases_exposure
from quantzoo_engine.portfolio import Portfolio, Position

T = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("side", "qty", "position", "working", "expected"),
    [
        (Side.BUY, 1, 0, 0, True),  # from flat
        (Side.SELL, 1, 0, 0, True),
        (Side.BUY, 1, 10, 0, True),  # adding
        (Side.SELL, 10, 10, 0, False),  # closing exactly
        (Side.SELL, 4, 10, 6, False),  # with working sells, still within the position
        (Side.SELL, 5, 10, 6, True),  # together they would go short
        (Side.SELL, 11, 10, 0, True),  # flipping
        (Side.BUY, 3, -3, 0, False),
    ],
)
def test_increases_exposure(side: Side, qty: float, position: float, working: float, expected: bool) -> None:
    assert increases_exposure(side, qty, position, working) is expected


def _order(
    order_id: str, side: Side = Side.BUY, qty: float = 10, status: OrderStatus = OrderStatus.NEW
) -> Order:
    return Order(order_id, "c-" + order_id, "AAPL", side, qty, OrderType.LIMIT, status, T, limit_price=100.0)


def test_order_book_counts_pending_and_working() -> None:
    book = OrderBook()
    request = market("AAPL", Side.SELL, 5)
    book.add_pending(request)
    assert book.working_quantity("AAPL", Side.SELL) == 5
    book.add(_order("1", Side.BUY, 10))
    assert book.working_net("AAPL") == 5
    book.drop_pending(request.client_order_id)
    assert book.working_quantity("AAPL", Side.SELL) == 0
    assert book.working_count == 1


def test_order_book_fills_and_early_fills() -> None:
    book = OrderBook()
    book.on_fill(Fill("1", "AAPL", Side.BUY, 4, 99.0, T))  # arrives before the submit returned
    book.add(_order("1"))
    order = book.get("1")
    assert order is not None
    assert (order.status, order.filled_quantity, order.filled_avg_price) == (
        OrderStatus.PARTIALLY_FILLED,
        4,
        99.0,
    )
    book.on_fill(Fill("1", "AAPL", Side.BUY, 6, 101.0, T))
    assert order.status is OrderStatus.FILLED
    assert order.filled_avg_price == pytest.approx(100.2)
    assert book.working() == []


def test_order_book_cancel_and_replace_working() -> None:
    book = OrderBook()
    book.add(_order("1"))
    book.add(_order("2"))
    book.mark_cancelled(["1"], T)
    assert [o.id for o in book.working()] == ["2"]
    book.replace_working([_order("3")], T)
    assert [o.id for o in book.working()] == ["3"]
    assert book.get("2").status is OrderStatus.CANCELED  # type: ignore[union-attr]


def test_portfolio_fills_average_price_and_pnl() -> None:
    p = Portfolio(cash=10_000)
    p.apply_fill(Fill("1", "AAPL", Side.BUY, 10, 100.0, T))
    p.apply_fill(Fill("2", "AAPL", Side.BUY, 10, 110.0, T))
    assert p.positions["AAPL"].avg_price == 105.0
    p.mark("AAPL", 120.0)
    assert p.unrealized_pnl == pytest.approx(300.0)
    p.apply_fill(Fill("3", "AAPL", Side.SELL, 15, 120.0, T))
    assert p.quantity("AAPL") == 5
    assert p.realized_pnl == pytest.approx(225.0)
    assert p.total_pnl == pytest.approx(300.0)
    assert p.gross_exposure == pytest.approx(600.0)


def test_portfolio_crossing_zero_resets_entry() -> None:
    p = Portfolio(cash=0)
    p.apply_fill(Fill("1", "AAPL", Side.BUY, 10, 100.0, T))
    p.apply_fill(Fill("2", "AAPL", Side.SELL, 15, 90.0, T))
    assert p.positions["AAPL"].quantity == -5
    assert p.positions["AAPL"].avg_price == 90.0
    assert p.realized_pnl == pytest.approx(-100.0)


def test_portfolio_drawdown_and_unrealized_pct() -> None:
    p = Portfolio(cash=100_000)
    p.apply_fill(Fill("1", "AAPL", Side.BUY, 100, 100.0, T))
    p.mark("AAPL", 110.0)  # equity peaks at 101,000
    p.mark("AAPL", 90.0)  # equity 99,000
    assert p.daily_drawdown_pct == pytest.approx(100 * 2_000 / 101_000)
    assert p.unrealized_pnl_pct == pytest.approx(-1.0)


def test_portfolio_reconcile_and_day_roll() -> None:
    p = Portfolio(cash=0)
    p.reconcile(50_000, [Position("MSFT", 10, 400.0), Position("AAPL", 0, 1.0)], start_of_day_equity=54_000)
    assert list(p.positions) == ["MSFT"]
    assert p.equity == 54_000
    assert p.roll_day(date(2026, 1, 5)) is False  # the first day only sets the date
    p.mark("MSFT", 410.0)
    assert p.roll_day(date(2026, 1, 6)) is True
    assert p.start_of_day_equity == 54_100
    assert p.daily_drawdown_pct == 0


@pytest.mark.anyio
async def test_paper_broker_fills_market_orders_at_the_last_price(clock: ManualClock) -> None:
    broker = PaperBroker(10_000, clock)
    broker.on_price("AAPL", 100.0, T)
    order = await broker.submit_order(market("AAPL", Side.BUY, 10))
    assert (order.status, order.filled_avg_price) == (OrderStatus.FILLED, 100.0)
    assert [(f.symbol, f.quantity, f.price) for f in broker.drain_fills()] == [("AAPL", 10, 100.0)]
    assert broker.drain_fills() == []
    account = await broker.account()
    assert (account.cash, account.equity) == (9_000, 10_000)


@pytest.mark.anyio
async def test_paper_broker_rests_limit_orders_until_crossed(clock: ManualClock) -> None:
    broker = PaperBroker(10_000, clock)
    broker.on_price("AAPL", 100.0, T)
    order = await broker.submit_order(limit("AAPL", Side.BUY, 5, 97.0))
    assert order.status is OrderStatus.NEW
    assert [o.id for o in await broker.open_orders()] == [order.id]
    broker.on_price("AAPL", 98.0, T)
    assert broker.drain_fills() == []
    broker.on_price("AAPL", 96.5, T)  # traded through: filled at the better market price
    assert [(f.quantity, f.price) for f in broker.drain_fills()] == [(5, 96.5)]
    assert await broker.open_orders() == []


@pytest.mark.anyio
async def test_paper_broker_cancel_all_and_close_all(clock: ManualClock) -> None:
    broker = PaperBroker(10_000, clock)
    broker.on_price("AAPL", 100.0, T)
    broker.on_price("MSFT", 200.0, T)
    resting = await broker.submit_order(limit("AAPL", Side.BUY, 5, 95.0))
    await broker.submit_order(market("MSFT", Side.SELL, 3))
    cancelled = await broker.cancel_all_orders(1.0)
    assert cancelled.cancelled == [resting.id]
    flat = await broker.close_all_positions(1.0)
    assert flat.closed == ["MSFT"]
    assert await broker.positions() == []


@pytest.mark.anyio
async def test_paper_broker_refuses_duplicates_and_unpriced_symbols(clock: ManualClock) -> None:
    broker = PaperBroker(10_000, clock)
    with pytest.raises(BrokerRejected, match="no market price"):
        await broker.submit_order(market("AAPL", Side.BUY, 1))
    broker.on_price("AAPL", 100.0, T)
    await broker.submit_order(market("AAPL", Side.BUY, 1, client_order_id="x"))
    with pytest.raises(BrokerRejected, match="already exists"):
        await broker.submit_order(market("AAPL", Side.BUY, 1, client_order_id="x"))


@pytest.mark.anyio
async def test_dry_run_records_and_never_sends(clock: ManualClock) -> None:
    class ReadOnly(PaperBroker):
        """A 'real' broker whose write methods must never be called by a dry run."""

        async def submit_order(self, request):  # type: ignore[no-untyped-def]
            raise AssertionError("dry run sent an order")

        async def cancel_all_orders(self, deadline_seconds):  # type: ignore[no-untyped-def]
            raise AssertionError("dry run cancelled at the broker")

    real = ReadOnly(5_000, clock)
    dry = DryRunBroker(1_000_000, clock, seed_from=real)
    await dry.connect()
    assert (await dry.account()).cash == 5_000  # started from the real book
    dry.on_price("AAPL", 100.0, T)
    await dry.submit_order(market("AAPL", Side.BUY, 2))
    await dry.cancel_all_orders(1.0)
    assert [r.quantity for r in dry.recorded] == [2]
    assert dry.name == "dry_run"
