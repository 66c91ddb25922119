"""Every pre-trade check, accepting and refusing; and that a refusal never reaches the broker."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from engine_helpers import engage_command, limit, make_spec, market, ready_engine
from quantzoo_api.killswitch import TradingState
from quantzoo_api.types import KillSwitchMode, RiskLimits
from quantzoo_engine.broker.paper import PaperBroker
from quantzoo_engine.clock import ManualClock
from quantzoo_engine.orders import OrderRequest, OrderType, Side
from quantzoo_engine.risk.checks import PreTradeContext, RejectReason, RiskEngine

LIMITS = RiskLimits(
    max_order_notional=10_000,
    max_order_quantity=500,
    max_position_notional=20_000,
    max_gross_exposure=50_000,
    max_daily_drawdown_pct=5,
    price_collar_pct=5,
    max_orders_per_second=3,
    max_orders_per_minute=5,
    stale_data_seconds=10,
)


def ctx(**overrides: Any) -> PreTradeContext:
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
    )
    return replace(base, **overrides)


def evaluate(order: OrderRequest, **overrides: Any) -> RejectReason | None:
    rejection = RiskEngine(LIMITS).evaluate(order, ctx(**overrides), now=0.0)
    return rejection.reason if rejection else None


BUY10 = market("AAPL", Side.BUY, 10)
SELL10 = market("AAPL", Side.SELL, 10)

CASES: list[tuple[str, OrderRequest, dict[str, Any], RejectReason | None]] = [
    # trading state
    ("active accepts", BUY10, {}, None),
    (
        "halted refuses everything",
        SELL10,
        {"trading_state": TradingState.HALTED, "position": 50},
        RejectReason.TRADING_HALTED,
    ),
    (
        "reduce-only refuses increase",
        BUY10,
        {"trading_state": TradingState.REDUCE_ONLY, "position": 50},
        RejectReason.REDUCE_ONLY,
    ),
    (
        "reduce-only refuses from flat",
        SELL10,
        {"trading_state": TradingState.REDUCE_ONLY},
        RejectReason.REDUCE_ONLY,
    ),
    ("reduce-only accepts reduce", SELL10, {"trading_state": TradingState.REDUCE_ONLY, "position": 50}, None),
    (
        "reduce-only counts working",
        SELL10,
        {"trading_state": TradingState.REDUCE_ONLY, "position": 15, "working_same_side": 10},
        RejectReason.REDUCE_ONLY,
    ),
    (
        "reduce-only refuses flip",
        market("AAPL", Side.SELL, 60),
        {"trading_state": TradingState.REDUCE_ONLY, "position": 50},
        RejectReason.REDUCE_ONLY,
    ),
    # symbol
    ("unknown symbol", market("ZZZZ", Side.BUY, 1), {"symbol_known": False}, RejectReason.UNKNOWN_SYMBOL),
    # shape
    ("zero quantity", market("AAPL", Side.BUY, 0), {}, RejectReason.INVALID_ORDER),
    ("negative quantity", market("AAPL", Side.BUY, -5), {}, RejectReason.INVALID_ORDER),
    ("nan quantity", market("AAPL", Side.BUY, float("nan")), {}, RejectReason.INVALID_ORDER),
    (
        "limit without price",
        OrderRequest("AAPL", Side.BUY, 1, OrderType.LIMIT, None),
        {},
        RejectReason.INVALID_ORDER,
    ),
    (
        "market with price",
        OrderRequest("AAPL", Side.BUY, 1, OrderType.MARKET, 100.0),
        {},
        RejectReason.INVALID_ORDER,
    ),
    ("limit negative price", limit("AAPL", Side.BUY, 1, -1.0), {}, RejectReason.INVALID_ORDER),
    # data
    ("no price yet", BUY10, {"last_price": None}, RejectReason.STALE_DATA),
    ("stale data", BUY10, {"data_stale": True, "staleness_seconds": 12.0}, RejectReason.STALE_DATA),
    ("outlier price", BUY10, {"data_suspect": True}, RejectReason.OUTLIER_PRICE),
    # size
    ("quantity at limit", market("AAPL", Side.BUY, 100), {"last_price": 10.0}, None),
    (
        "quantity over limit",
        market("AAPL", Side.BUY, 501),
        {"last_price": 1.0},
        RejectReason.MAX_ORDER_QUANTITY,
    ),
    ("notional at limit", market("AAPL", Side.BUY, 100), {}, None),
    ("notional over limit", market("AAPL", Side.BUY, 101), {}, RejectReason.MAX_ORDER_NOTIONAL),
    (
        "limit notional uses limit price",
        limit("AAPL", Side.BUY, 100, 104.0),
        {},
        RejectReason.MAX_ORDER_NOTIONAL,
    ),
    # collar
    ("limit inside collar", limit("AAPL", Side.BUY, 10, 95.0), {}, None),
    ("limit outside collar", limit("AAPL", Side.BUY, 10, 94.9), {}, RejectReason.PRICE_COLLAR),
    ("sell limit outside collar", limit("AAPL", Side.SELL, 10, 105.5), {}, RejectReason.PRICE_COLLAR),
    # position
    ("position within limit", BUY10, {"position": 190}, None),
    ("position over limit", BUY10, {"position": 195}, RejectReason.MAX_POSITION_NOTIONAL),
    (
        "position over limit counting working",
        BUY10,
        {"position": 100, "working_net": 95},
        RejectReason.MAX_POSITION_NOTIONAL,
    ),
    ("reducing is fine even above limit", SELL10, {"position": 300}, None),
    # gross exposure
    ("gross within limit", BUY10, {"gross_exposure": 48_000}, None),
    ("gross over limit", BUY10, {"gross_exposure": 49_500}, RejectReason.MAX_GROSS_EXPOSURE),
    ("reducing is fine above gross", SELL10, {"position": 100, "gross_exposure": 60_000}, None),
    # session
    ("market closed", BUY10, {"market_open": False}, RejectReason.MARKET_CLOSED),
    (
        "market closed refuses reducing too",
        SELL10,
        {"market_open": False, "position": 20},
        RejectReason.MARKET_CLOSED,
    ),
    # drawdown
    ("drawdown below limit", BUY10, {"daily_drawdown_pct": 4.9}, None),
    ("drawdown reached", BUY10, {"daily_drawdown_pct": 5.0}, RejectReason.DAILY_DRAWDOWN),
    ("drawdown allows reducing", SELL10, {"daily_drawdown_pct": 9.0, "position": 20}, None),
]


@pytest.mark.parametrize(
    ("order", "overrides", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_check(order: OrderRequest, overrides: dict[str, Any], expected: RejectReason | None) -> None:
    assert evaluate(order, **overrides) == expected


def test_every_reason_has_a_check_or_is_a_broker_reason() -> None:
    covered = {c[3] for c in CASES if c[3] is not None} | {
        RejectReason.DUPLICATE_CLIENT_ORDER_ID,
        RejectReason.ORDER_RATE_PER_SECOND,
        RejectReason.ORDER_RATE_PER_MINUTE,
        RejectReason.BROKER_REJECTED,
        RejectReason.BROKER_ERROR,
        RejectReason.BROKER_RATE_LIMITED,  # test_engine_alpaca.py
        # The account-wide checks: test_engine_account_pure.py.
        RejectReason.ACCOUNT_GROSS_EXPOSURE,
        RejectReason.ACCOUNT_DAILY_LOSS,
        RejectReason.ACCOUNT_ORDER_RATE,
        RejectReason.ACCOUNT_UNKNOWN,
    }
    assert covered == set(RejectReason)


def test_duplicate_client_order_id() -> None:
    risk = RiskEngine(LIMITS)
    first = market("AAPL", Side.BUY, 1, client_order_id="abc-1")
    assert risk.evaluate(first, ctx(), now=0.0) is None
    again = market("AAPL", Side.SELL, 1, client_order_id="abc-1")
    rejection = risk.evaluate(again, ctx(), now=0.0)
    assert rejection is not None
    assert rejection.reason is RejectReason.DUPLICATE_CLIENT_ORDER_ID
    # A refused order does not use up its id... but a remembered broker id (reconcile) does.
    risk.remember_client_order_id("from-broker")
    rejection = risk.evaluate(market("AAPL", Side.BUY, 1, client_order_id="from-broker"), ctx(), now=0.0)
    assert rejection is not None
    assert rejection.reason is RejectReason.DUPLICATE_CLIENT_ORDER_ID


def test_order_rate_per_second_and_per_minute() -> None:
    risk = RiskEngine(LIMITS)  # 3 per second, 5 per minute
    reasons = [risk.evaluate(market("AAPL", Side.BUY, 1), ctx(), now=0.1 * i) for i in range(4)]
    assert [r.reason if r else None for r in reasons] == [
        None,
        None,
        None,
        RejectReason.ORDER_RATE_PER_SECOND,
    ]
    # A second later the per-second window has room; the per-minute one fills at five.
    assert risk.evaluate(market("AAPL", Side.BUY, 1), ctx(), now=1.5) is None
    assert risk.evaluate(market("AAPL", Side.BUY, 1), ctx(), now=1.6) is None
    rejection = risk.evaluate(market("AAPL", Side.BUY, 1), ctx(), now=1.7)
    assert rejection is not None
    assert rejection.reason is RejectReason.ORDER_RATE_PER_MINUTE
    assert risk.evaluate(market("AAPL", Side.BUY, 1), ctx(), now=61.0) is None


def test_refused_orders_do_not_use_the_rate_budget() -> None:
    risk = RiskEngine(LIMITS)
    for _ in range(10):
        risk.evaluate(market("ZZZZ", Side.BUY, 1), ctx(symbol_known=False), now=0.0)
    assert risk.evaluate(market("AAPL", Side.BUY, 1), ctx(), now=0.0) is None


def test_limits_change_live() -> None:
    risk = RiskEngine(LIMITS)
    assert risk.evaluate(market("AAPL", Side.BUY, 50), ctx(), now=0.0) is None
    risk.update_limits(LIMITS.model_copy(update={"max_order_quantity": 20}))
    rejection = risk.evaluate(market("AAPL", Side.BUY, 50), ctx(), now=0.0)
    assert rejection is not None
    assert rejection.reason is RejectReason.MAX_ORDER_QUANTITY


def test_rejection_messages_name_the_limit() -> None:
    rejection = RiskEngine(LIMITS).evaluate(market("AAPL", Side.BUY, 101), ctx(), now=0.0)
    assert rejection is not None
    assert "maxOrderNotional" in rejection.message


@pytest.mark.anyio
async def test_refused_orders_never_reach_the_broker_and_are_counted() -> None:
    clock = ManualClock()
    spec = make_spec(risk={"maxOrderQuantity": 5})
    broker = PaperBroker(clock=clock)
    engine = await ready_engine(spec, broker=broker, clock=clock)
    results = [
        await engine.submit(market("AAPL", Side.BUY, 6)),
        await engine.submit(market("ZZZZ", Side.BUY, 1)),
        await engine.submit(limit("AAPL", Side.BUY, 1, 50.0)),
    ]
    assert [r.rejection.reason for r in results if r.rejection] == [
        RejectReason.MAX_ORDER_QUANTITY,
        RejectReason.UNKNOWN_SYMBOL,
        RejectReason.PRICE_COLLAR,
    ]
    assert list(broker.received) == []
    assert engine.counts.rejected_by_reason == {
        "max_order_quantity": 1,
        "unknown_symbol": 1,
        "price_collar": 1,
    }
    metric = engine.metrics.registry.get_sample_value(
        "quantzoo_engine_orders_rejected_total", {"reason": "price_collar"}
    )
    assert metric == 1.0


@pytest.mark.anyio
async def test_engine_stale_data_refuses_orders(clock: ManualClock) -> None:
    engine = await ready_engine(make_spec(risk={"staleDataSeconds": 5}), clock=clock)
    assert (await engine.submit(market("AAPL", Side.BUY, 1))).accepted
    clock.advance(6)
    result = await engine.submit(market("AAPL", Side.BUY, 1))
    assert result.rejection is not None
    assert result.rejection.reason is RejectReason.STALE_DATA
    assert engine.state_view()["data"]["stale"] is True


@pytest.mark.anyio
async def test_engine_reduce_only_lets_reducing_orders_through(clock: ManualClock) -> None:
    engine = await ready_engine(clock=clock)
    assert (await engine.submit(market("AAPL", Side.BUY, 20))).accepted
    await engine.apply_kill_switch(engage_command(mode=KillSwitchMode.REDUCE_ONLY))
    assert engine.trading_state is TradingState.REDUCE_ONLY
    assert (await engine.submit(market("AAPL", Side.BUY, 1))).rejection.reason is RejectReason.REDUCE_ONLY
    assert (await engine.submit(market("AAPL", Side.SELL, 15))).accepted
    assert (await engine.submit(market("AAPL", Side.SELL, 6))).rejection.reason is RejectReason.REDUCE_ONLY
    assert engine.portfolio.quantity("AAPL") == 5
