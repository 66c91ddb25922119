"""Order types a strategy needs: market, limit, stop and stop-limit with a time in force, through the
SDK, the risk checks, the paper broker, the kill switch and the Alpaca mapping (local fake Alpaca)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from engine_fake_alpaca import KEY, SECRET, FakeAlpaca, ServerThread
from engine_helpers import Bars, engage_command, free_port, make_spec, ready_engine
from quantzoo_api.killswitch import TradingState
from quantzoo_api.types import RiskLimits
from quantzoo_engine.broker.alpaca import AlpacaBroker
from quantzoo_engine.broker.paper import PaperBroker
from quantzoo_engine.clock import ManualClock
from quantzoo_engine.orders import OrderRequest, OrderStatus, OrderType, Side, TimeInForce
from quantzoo_engine.risk.checks import PreTradeContext, RejectReason, RiskEngine
from quantzoo_engine.sdk import OrderIntent, Strategy, StrategyContext


def order(kind: OrderType, side: Side = Side.SELL, **kw: Any) -> OrderRequest:
    return OrderRequest(symbol="AAPL", side=side, quantity=10, order_type=kind, **kw)


def evaluate(o: OrderRequest, **over: Any) -> RejectReason | None:
    ctx = PreTradeContext(
        trading_state=TradingState.ACTIVE,
        symbol_known=True,
        last_price=100.0,
        data_stale=False,
        data_suspect=False,
        position=10.0,
        working_same_side=0.0,
        working_net=0.0,
        gross_exposure=1_000.0,
        daily_drawdown_pct=0.0,
    )
    rejection = RiskEngine(RiskLimits(max_order_notional=1_500)).evaluate(o, replace(ctx, **over), now=0.0)
    return rejection.reason if rejection else None


@pytest.mark.parametrize(
    ("o", "expected"),
    [
        (order(OrderType.STOP, stop_price=90.0), None),  # a protective stop 10% away: no collar on stops
        (order(OrderType.STOP), RejectReason.INVALID_ORDER),  # no stop price
        (order(OrderType.STOP, stop_price=90.0, limit_price=89.0), RejectReason.INVALID_ORDER),
        (order(OrderType.STOP_LIMIT, stop_price=99.0, limit_price=98.0), None),
        (order(OrderType.STOP_LIMIT, stop_price=99.0), RejectReason.INVALID_ORDER),
        (order(OrderType.STOP_LIMIT, stop_price=99.0, limit_price=80.0), RejectReason.PRICE_COLLAR),
        (order(OrderType.MARKET, stop_price=99.0), RejectReason.INVALID_ORDER),
        # A buy stop above the market: its notional is counted at the stop price (10 x 160 > 1,500).
        (order(OrderType.STOP, side=Side.BUY, stop_price=160.0), RejectReason.MAX_ORDER_NOTIONAL),
    ],
)
def test_the_risk_checks_know_the_order_types(o: OrderRequest, expected: RejectReason | None) -> None:
    assert evaluate(o) == expected


async def _paper(price: float = 100.0) -> PaperBroker:
    broker = PaperBroker(100_000, ManualClock())
    broker.on_price("AAPL", price, ManualClock().now())
    return broker


@pytest.mark.anyio
async def test_paper_stop_rests_then_fills_as_market_when_the_price_trades_through() -> None:
    broker = await _paper()
    buy = await broker.submit_order(order(OrderType.MARKET, side=Side.BUY))
    stop = await broker.submit_order(order(OrderType.STOP, stop_price=95.0, time_in_force=TimeInForce.GTC))
    assert (buy.status, stop.status) == (OrderStatus.FILLED, OrderStatus.NEW)
    broker.on_price("AAPL", 96.0, ManualClock().now())
    assert broker.position("AAPL") == 10
    broker.on_price("AAPL", 94.0, ManualClock().now())  # through the stop: filled at the market
    assert broker.position("AAPL") == 0
    assert broker.drain_fills()[-1].price == 94.0


@pytest.mark.anyio
async def test_paper_stop_limit_becomes_a_resting_limit_once_triggered() -> None:
    broker = await _paper()
    await broker.submit_order(order(OrderType.STOP_LIMIT, side=Side.BUY, stop_price=102.0, limit_price=103.0))
    broker.on_price("AAPL", 104.0, ManualClock().now())  # triggered, but above the limit: rests
    assert broker.position("AAPL") == 0
    broker.on_price("AAPL", 102.5, ManualClock().now())
    assert broker.position("AAPL") == 10


@pytest.mark.anyio
async def test_paper_ioc_and_fok_that_cannot_fill_are_cancelled_not_left_working() -> None:
    broker = await _paper()
    for tif in (TimeInForce.IOC, TimeInForce.FOK):
        o = await broker.submit_order(
            order(OrderType.LIMIT, side=Side.BUY, limit_price=99.0, time_in_force=tif)
        )
        assert o.status is OrderStatus.CANCELED
    assert await broker.open_orders() == []


class _BuyWithProtectiveStop(Strategy[Any]):
    """Buys 10 AAPL when flat, with a GTC stop 3% below (sized on the filled position: the resting stop
    is protection, not a pending trade)."""

    def __init__(self) -> None:
        super().__init__(None)

    def on_bar(self, bar, ctx: StrategyContext) -> list[OrderIntent]:
        if ctx.position or bar.symbol != "AAPL" or ctx.working:
            return []
        stop = round(bar.close * 0.97, 2)
        return [
            OrderIntent(bar.symbol, Side.BUY, 10),
            OrderIntent(
                bar.symbol, Side.SELL, 10, OrderType.STOP, stop_price=stop, time_in_force=TimeInForce.GTC
            ),
        ]


@pytest.mark.anyio
async def test_a_protective_stop_from_the_sdk_rests_fills_and_the_kill_switch_cancels_it() -> None:
    bars = Bars()
    engine = await ready_engine(make_spec(), strategy=_BuyWithProtectiveStop(), bars=bars)  # AAPL at 100
    assert engine.portfolio.quantity("AAPL") == 10
    assert [o.order_type for o in engine.orders.working()] == [OrderType.STOP]
    await engine.on_bar(bars("AAPL", 96.0))  # through the 97 stop: out, then (flat again) back in
    stopped = [
        o for o in engine.orders.recent() if o.order_type is OrderType.STOP and o.filled_quantity == 10
    ]
    assert len(stopped) == 1
    assert stopped[0].filled_avg_price == 96.0
    assert engine.portfolio.quantity("AAPL") == 10
    # The kill switch removes the new resting stop with every other working order.
    assert engine.orders.working_count == 1
    ack = await engine.apply_kill_switch(engage_command())
    assert len(ack.cancelled_orders) == 1
    assert engine.orders.working_count == 0


@pytest.mark.anyio
async def test_alpaca_gets_stop_and_stop_limit_orders_with_their_time_in_force() -> None:
    server = FakeAlpaca()
    port = free_port()
    with ServerThread(server.app, port):
        broker = AlpacaBroker(
            KEY, SECRET, paper=True, url_override=f"http://127.0.0.1:{port}", timeout_seconds=5
        )
        await broker.connect()
        stop = await broker.submit_order(
            order(OrderType.STOP, stop_price=150.0, time_in_force=TimeInForce.GTC)
        )
        stop_limit = await broker.submit_order(
            order(OrderType.STOP_LIMIT, side=Side.BUY, stop_price=200.0, limit_price=201.0)
        )
        await broker.close()
    sent = {o["id"]: o for o in server.orders.values()}
    assert (sent[stop.id]["type"], sent[stop.id]["stop_price"], sent[stop.id]["time_in_force"]) == (
        "stop",
        150.0,
        "gtc",
    )
    assert (sent[stop_limit.id]["type"], sent[stop_limit.id]["limit_price"]) == ("stop_limit", 201.0)
    # ... and they come back as what they are, so a reconcile does not turn a stop into a market order.
    assert (stop.order_type, stop.stop_price, stop.time_in_force) == (OrderType.STOP, 150.0, TimeInForce.GTC)
    assert stop_limit.order_type is OrderType.STOP_LIMIT
