"""The Alpaca connector with the real alpaca-py client against a local Alpaca-compatible server
(engine_fake_alpaca.py): reconcile, orders, the kill path through 207 multi-status answers, the kill
path's own deadline while Alpaca answers 429, and market data over the msgpack websocket.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
from engine_fake_alpaca import KEY, SECRET, FakeAlpaca, Fault, ServerThread
from engine_helpers import (
    engage_command,
    free_port,
    limit,
    make_spec,
    market,
    ready_engine,
    release_command,
)
from pydantic import SecretStr
from quantzoo_api.killswitch import TradingState
from quantzoo_engine.app import build_broker
from quantzoo_engine.broker.alpaca import AlpacaBroker
from quantzoo_engine.broker.base import BrokerError, BrokerRejected
from quantzoo_engine.broker.dry_run import DryRunBroker
from quantzoo_engine.clock import ManualClock
from quantzoo_engine.engine import TradingEngine
from quantzoo_engine.feed.alpaca import AlpacaFeed
from quantzoo_engine.orders import OrderStatus, Side
from quantzoo_engine.risk.checks import RejectReason
from quantzoo_engine.settings import EngineSettings

ALPACA_PRICES = {"AAPL": 190.0, "MSFT": 410.0}
# alpaca-py's own handling of 429: 3 retries x 3 s. The kill path must answer well before that.
ALPACA_PY_RETRY_SECONDS = 9.0


@pytest.fixture
def fake() -> Iterator[tuple[FakeAlpaca, str]]:
    server = FakeAlpaca()
    port = free_port()
    with ServerThread(server.app, port):
        yield server, f"127.0.0.1:{port}"


def alpaca_broker(address: str, *, key: str = KEY) -> AlpacaBroker:
    return AlpacaBroker(key, SECRET, paper=True, url_override=f"http://{address}", timeout_seconds=5.0)


@pytest.fixture
async def engine(fake: tuple[FakeAlpaca, str]) -> AsyncIterator[TradingEngine]:
    server, address = fake
    server.positions["AAPL"] = {"qty": 10.0, "avg": 180.0}
    server.cash -= 1_800.0
    broker = alpaca_broker(address)
    eng = await ready_engine(
        broker=broker, clock=ManualClock(), prices=ALPACA_PRICES, kill_deadline_seconds=2.0
    )
    yield eng
    await broker.close()


@pytest.mark.anyio
async def test_reconcile_reads_positions_cash_and_open_orders(fake: tuple[FakeAlpaca, str]) -> None:
    server, address = fake
    server.positions["MSFT"] = {"qty": -5.0, "avg": 400.0}
    server.cash += 2_000.0
    resting = server._new_order("AAPL", 3, "buy", "limit", 150.0, "left-over-1")
    broker = alpaca_broker(address)
    try:
        engine = await ready_engine(broker=broker, clock=ManualClock(), prices=ALPACA_PRICES)
        assert engine.portfolio.quantity("MSFT") == -5
        assert engine.portfolio.cash == pytest.approx(102_000.0)
        assert [o.id for o in engine.orders.working()] == [resting["id"]]
        # The broker's client_order_ids count as used.
        again = await engine.submit(market("AAPL", Side.BUY, 1, client_order_id="left-over-1"))
        assert again.rejection is not None
        assert again.rejection.reason is RejectReason.DUPLICATE_CLIENT_ORDER_ID
        assert engine.trading_state is TradingState.ACTIVE
    finally:
        await broker.close()
    assert {"GET /v2/account", "GET /v2/positions"} <= set(server.requests)


@pytest.mark.anyio
async def test_orders_go_through_alpaca(engine: TradingEngine, fake: tuple[FakeAlpaca, str]) -> None:
    server, _ = fake
    bought = await engine.submit(market("MSFT", Side.BUY, 2))
    assert bought.order is not None
    assert bought.order.status is OrderStatus.FILLED
    assert engine.portfolio.quantity("MSFT") == 2
    assert server.positions["MSFT"]["qty"] == 2
    resting = await engine.submit(limit("AAPL", Side.BUY, 1, 185.0))
    assert resting.order is not None
    assert resting.order.status is OrderStatus.NEW
    assert [o.id for o in engine.orders.working()] == [resting.order.id]
    assert engine.state_view()["orders"]["submitted"] == 2


@pytest.mark.anyio
async def test_broker_refusals_are_counted(fake: tuple[FakeAlpaca, str]) -> None:
    _, address = fake
    broker = alpaca_broker(address)
    spec = make_spec(symbols=["AAPL", "MSFT", "NVDA"])
    try:
        engine = await ready_engine(
            spec, broker=broker, clock=ManualClock(), prices={**ALPACA_PRICES, "NVDA": 120.0}
        )
        result = await engine.submit(market("NVDA", Side.BUY, 1))  # the engine knows it, Alpaca does not
        assert result.rejection is not None
        assert result.rejection.reason is RejectReason.BROKER_REJECTED
        assert "HTTP 422" in result.rejection.message
        assert engine.counts.rejected_by_reason == {"broker_rejected": 1}
        assert engine.orders.working_count == 0
    finally:
        await broker.close()


@pytest.mark.anyio
async def test_wrong_credentials_are_refused(fake: tuple[FakeAlpaca, str]) -> None:
    _, address = fake
    broker = alpaca_broker(address, key="not-the-key")
    try:
        with pytest.raises(BrokerRejected, match="HTTP 401"):
            await broker.connect()
    finally:
        await broker.close()


@pytest.mark.anyio
async def test_kill_switch_cancels_and_flattens_through_multi_status(
    engine: TradingEngine, fake: tuple[FakeAlpaca, str]
) -> None:
    server, _ = fake
    first = (await engine.submit(limit("AAPL", Side.BUY, 1, 185.0))).order
    stuck = (await engine.submit(limit("MSFT", Side.SELL, 1, 415.0))).order
    assert first is not None
    assert stuck is not None
    server.uncancelable.add(stuck.id)
    ack = await engine.apply_kill_switch(engage_command(close_positions=True))
    assert ack.engaged
    assert ack.trading_state is TradingState.HALTED
    assert ack.cancelled_orders == [first.id]
    assert ack.errors == [f"cancel {stuck.id}: HTTP 422"]
    assert ack.closed_positions == ["AAPL"]
    assert server.positions == {}
    assert "DELETE /v2/orders" in server.requests
    assert any(r.lower() == "delete /v2/positions?cancel_orders=true" for r in server.requests)


@pytest.mark.anyio
async def test_kill_path_keeps_its_deadline_while_alpaca_answers_429(
    engine: TradingEngine, fake: tuple[FakeAlpaca, str]
) -> None:
    server, _ = fake
    resting = (await engine.submit(limit("AAPL", Side.BUY, 1, 185.0))).order
    assert resting is not None
    engine.kill_deadline_seconds = 0.5
    server.rate_limited = True
    calls_before = len(server.requests)
    started = time.monotonic()
    ack = await engine.apply_kill_switch(engage_command(close_positions=True))
    elapsed = time.monotonic() - started
    # Blocked, acknowledged, and honest about what could not be done: well inside alpaca-py's 9 s.
    assert ack.engaged
    assert ack.trading_state is TradingState.HALTED
    assert elapsed < ALPACA_PY_RETRY_SECONDS / 2
    assert any("deadline" in e for e in ack.errors)
    assert len(server.requests) - calls_before >= 2  # it kept trying inside the deadline
    after = await engine.submit(market("AAPL", Side.SELL, 1))
    assert after.rejection is not None
    assert after.rejection.reason is RejectReason.TRADING_HALTED
    # Once Alpaca answers again, the (idempotent) engage finishes the job.
    server.rate_limited = False
    engine.kill_deadline_seconds = 2.0
    ack = await engine.apply_kill_switch(engage_command(close_positions=True))
    assert ack.cancelled_orders == [resting.id]
    assert ack.closed_positions == ["AAPL"]
    assert ack.errors == []


@pytest.mark.anyio
async def test_periodic_reconcile_adopts_fills_made_at_the_broker(
    engine: TradingEngine, fake: tuple[FakeAlpaca, str]
) -> None:
    server, _ = fake
    resting = (await engine.submit(limit("AAPL", Side.BUY, 4, 185.0))).order
    assert resting is not None
    server._fill(server.orders[resting.id], 185.0)  # filled at Alpaca while nobody was asking
    await engine.reconcile_with_broker()
    assert engine.portfolio.quantity("AAPL") == 14
    assert engine.orders.working() == []


@pytest.mark.anyio
async def test_market_data_stream_over_msgpack(fake: tuple[FakeAlpaca, str]) -> None:
    server, address = fake
    at = datetime(2026, 1, 5, 15, 30, tzinfo=UTC)
    server.queue_bar("MSFT", 411.0, at)
    server.queue_bar("AAPL", 191.25, at)
    feed = AlpacaFeed(["AAPL"], KEY, SECRET, url_override=f"ws://{address}/stream")
    stream = feed.stream()
    try:
        bar = await asyncio.wait_for(anext(stream), 10)
    finally:
        await feed.close()
    assert (bar.symbol, bar.close, bar.volume, bar.timestamp) == ("AAPL", 191.25, 1200.0, at)
    assert server.subscriptions[0]["bars"] == ["AAPL"]
    assert feed.bar_interval_seconds == 60.0


def test_live_only_when_the_spec_says_so() -> None:
    base = {"broker": {"kind": "alpaca", "credentialsSecret": "creds", "baseUrl": "http://127.0.0.1:9"}}
    creds = {"alpaca_api_key": SecretStr("k"), "alpaca_api_secret": SecretStr("s")}
    clock = ManualClock()
    paper = build_broker(EngineSettings(spec=make_spec(**base), **creds), clock)
    live = build_broker(EngineSettings(spec=make_spec(mode="live", **base), **creds), clock)
    dry = build_broker(EngineSettings(spec=make_spec(mode="dryRun", **base), **creds), clock)
    assert isinstance(paper, AlpacaBroker)
    assert paper.paper is True
    assert isinstance(live, AlpacaBroker)
    assert live.paper is False
    assert isinstance(dry, DryRunBroker)


@pytest.mark.anyio
async def test_dry_run_reads_alpaca_but_never_sends(fake: tuple[FakeAlpaca, str]) -> None:
    server, address = fake
    server.positions["AAPL"] = {"qty": 7.0, "avg": 180.0}
    real = alpaca_broker(address)
    dry = DryRunBroker(clock=ManualClock(), seed_from=real)
    try:
        engine = await ready_engine(broker=dry, clock=ManualClock(), prices=ALPACA_PRICES)
        assert engine.portfolio.quantity("AAPL") == 7
        assert (await engine.submit(market("AAPL", Side.SELL, 7))).accepted
        await engine.apply_kill_switch(engage_command(close_positions=True))
    finally:
        await dry.close()
    assert not [r for r in server.requests if not r.startswith("GET ")]
    assert server.positions["AAPL"]["qty"] == 7


@pytest.mark.anyio
async def test_a_hanging_alpaca_does_not_starve_later_cancels(
    engine: TradingEngine, fake: tuple[FakeAlpaca, str]
) -> None:
    """alpaca-py sets no socket timeout: before each request carried one, two hung cancels held both
    kill threads until the server answered, and every later cancel queued behind them."""
    server, _ = fake
    resting = (await engine.submit(limit("AAPL", Side.BUY, 1, 185.0))).order
    assert resting is not None
    engine.kill_deadline_seconds = 0.5
    server.faults["DELETE /v2/orders"] = Fault(hang_seconds=60)
    for _ in range(3):  # more hung attempts than the kill path has threads
        ack = await engine.apply_kill_switch(engage_command())
        assert ack.trading_state is TradingState.HALTED
        assert ack.working_orders == [resting.id]
    del server.faults["DELETE /v2/orders"]
    engine.kill_deadline_seconds = 2.0
    started = time.monotonic()
    ack = await engine.apply_kill_switch(engage_command())
    assert ack.cancelled_orders == [resting.id], ack.errors
    assert ack.working_orders == []
    assert time.monotonic() - started < 2.5


@pytest.mark.anyio
async def test_an_unfinished_kill_clean_up_is_retried_while_engaged(
    engine: TradingEngine, fake: tuple[FakeAlpaca, str]
) -> None:
    """A cancel refused at the kill deadline (429, 5xx) is not forgotten once acknowledged: the engine
    retries it by itself, with no new command, until the broker has cancelled the order."""
    server, _ = fake
    resting = (await engine.submit(limit("AAPL", Side.BUY, 1, 185.0))).order
    assert resting is not None
    engine.kill_deadline_seconds = 0.5
    server.faults["DELETE /v2/orders"] = Fault(status=429, retry_after=1)
    ack = await engine.apply_kill_switch(engage_command())
    assert ack.working_orders == [resting.id]
    assert any("429" in e or "deadline" in e for e in ack.errors), ack.errors
    server.faults["DELETE /v2/orders"] = Fault(status=500)
    hits = server.fault_hits["DELETE /v2/orders"]
    await asyncio.sleep(1.0)  # the 429's Retry-After (the broker keeps it on the event loop's clock)
    engine.clock.advance(1.5)  # type: ignore[attr-defined]
    await engine.housekeeping()
    assert server.fault_hits["DELETE /v2/orders"] > hits  # retried on its own
    assert [o.id for o in engine.orders.working()] == [resting.id]
    del server.faults["DELETE /v2/orders"]
    engine.clock.advance(5)  # type: ignore[attr-defined]
    await engine.housekeeping()
    assert engine.orders.working() == []
    assert server.orders[resting.id]["status"] == "canceled"
    assert (await engine.submit(market("AAPL", Side.BUY, 1))).rejection is not None
    # Nothing is retried once the work is done.
    calls = len(server.requests)
    engine.clock.advance(60)  # type: ignore[attr-defined]
    await engine.housekeeping()
    assert not [r for r in server.requests[calls:] if r.startswith("DELETE")]


@pytest.mark.anyio
async def test_the_kill_path_waits_out_alpacas_retry_after(
    engine: TradingEngine, fake: tuple[FakeAlpaca, str]
) -> None:
    """A 429's Retry-After is honoured: inside the kill path no cancel goes out sooner than it says (the
    path's own backoff would retry after 0.1 s), nor on the next kill path, and the engine's retry of
    the owed clean-up waits for it too (its backoff alone would retry after 2 s)."""
    server, _ = fake
    route = "DELETE /v2/orders"
    resting = (await engine.submit(limit("AAPL", Side.BUY, 1, 185.0))).order
    assert resting is not None
    engine.kill_deadline_seconds = 1.5
    server.faults[route] = Fault(status=429, retry_after=1)
    ack = await engine.apply_kill_switch(engage_command())
    assert ack.working_orders == [resting.id]
    times = server.fault_times[route]
    # At once, then once Retry-After has passed; a third would be after the deadline, so it is not sent.
    assert len(times) == 2, [round(b - a, 2) for a, b in itertools.pairwise(times)]
    assert times[1] - times[0] >= 0.95, times
    # A second kill path (the engine's retry) waits for the rest of the Retry-After before its cancel.
    server.faults[route] = Fault(status=429, retry_after=3)
    engine.clock.advance(1.5)  # type: ignore[attr-defined]
    await engine.housekeeping()
    times = server.fault_times[route]
    assert len(times) == 3, times  # retried, told to wait 3 s
    assert times[2] - times[1] >= 0.95, times
    engine.clock.advance(2.5)  # type: ignore[attr-defined]
    await engine.housekeeping()
    assert len(server.fault_times[route]) == 3  # the engine's backoff (2 s) is over, Alpaca's 3 s are not
    del server.faults[route]
    await asyncio.sleep(max(0.0, times[2] + 3 - time.monotonic()))
    engine.clock.advance(1)  # type: ignore[attr-defined]
    await engine.housekeeping()
    assert engine.orders.working() == []
    assert server.orders[resting.id]["status"] == "canceled"


@pytest.mark.anyio
async def test_orders_wait_out_alpacas_retry_after_refused_here_not_sent(
    engine: TradingEngine, fake: tuple[FakeAlpaca, str]
) -> None:
    """Alpaca's rate limit is the account's, on every endpoint: after a 429 with Retry-After (here on a
    read) no order goes out until it has passed. Each is refused here as `broker_rate_limited`, without a
    broker error (the watchdog's error rate); the first order after it is sent."""
    server, _ = fake
    server.faults["GET /v2/account"] = Fault(status=429, retry_after=1, times=1)
    with pytest.raises(BrokerError):
        await engine.broker.account()
    errors = engine.errors_total
    sent = server.requests.count("POST /v2/orders")
    refused = await engine.submit(market("AAPL", Side.BUY, 1))
    assert refused.rejection is not None
    assert refused.rejection.reason is RejectReason.BROKER_RATE_LIMITED
    assert "Retry-After" in refused.rejection.message
    assert server.requests.count("POST /v2/orders") == sent  # not sent
    assert engine.errors_total == errors
    await asyncio.sleep(1.05)
    placed = await engine.submit(market("AAPL", Side.BUY, 1))
    assert placed.order is not None, placed.rejection
    assert server.requests.count("POST /v2/orders") == sent + 1


@pytest.mark.anyio
async def test_a_release_forgets_an_unfinished_flatten(
    engine: TradingEngine, fake: tuple[FakeAlpaca, str]
) -> None:
    """A flatten owed by one engagement is not carried into the next one, which did not ask for it."""
    server, _ = fake
    engine.kill_deadline_seconds = 0.3
    server.faults["DELETE /v2/positions"] = Fault(status=500)
    ack = await engine.apply_kill_switch(engage_command(close_positions=True, generation=1))
    assert ack.errors
    await engine.apply_kill_switch(release_command(generation=2))
    assert engine.trading_state is TradingState.ACTIVE
    resting = (await engine.submit(limit("AAPL", Side.BUY, 1, 185.0))).order
    assert resting is not None
    # The next engagement does not flatten, and its own cancel fails for now.
    server.faults = {"DELETE /v2/orders": Fault(status=500)}
    ack = await engine.apply_kill_switch(engage_command(close_positions=False, generation=3))
    assert ack.working_orders == [resting.id]
    server.faults = {}
    engine.clock.advance(60)  # type: ignore[attr-defined]
    await engine.housekeeping()
    assert server.orders[resting.id]["status"] == "canceled"
    assert server.positions["AAPL"]["qty"] == 10.0  # not flattened
