"""The kill path of an engine in a shared account, in process: real alpaca-py (AlpacaBroker owning only
its system's orders) against the local fake Alpaca server (engine_fake_alpaca.py). Cancels go out by
order id, one per own working order; a cancel the broker fails once is retried inside the kill
deadline; a flatten closes only the system's own quantity; a sibling's and nobody's orders and
positions are never touched. What the fake does not model: partial fills over time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from engine_fake_alpaca import KEY, SECRET, FakeAlpaca, Fault, ServerThread
from engine_helpers import engage_command, free_port, limit, market, ready_engine
from quantzoo_api.accounts import order_id_prefix, owned_client_order_id
from quantzoo_engine.broker.alpaca import OWNED_BOOK_FILE_NAME, AlpacaBroker
from quantzoo_engine.clock import ManualClock
from quantzoo_engine.engine import TradingEngine
from quantzoo_engine.orders import Side

PRICES = {"AAPL": 190.0, "MSFT": 410.0}
MINE = order_id_prefix("desk", "alpha")
SIBLING = order_id_prefix("desk", "beta")


@pytest.fixture
def fake() -> Iterator[tuple[FakeAlpaca, str]]:
    server = FakeAlpaca()
    port = free_port()
    with ServerThread(server.app, port):
        yield server, f"http://127.0.0.1:{port}"


@pytest.fixture
async def engine(fake: tuple[FakeAlpaca, str], tmp_path: Path) -> AsyncIterator[TradingEngine]:
    server, url = fake
    # The sibling's filled buy and resting sell, and a position nobody's orders explain.
    server._new_order("AAPL", 6, "buy", "market", None, owned_client_order_id(SIBLING))
    server._new_order("MSFT", 2, "sell", "limit", 450.0, owned_client_order_id(SIBLING))
    server.positions["MSFT"] = {"qty": 3.0, "avg": 400.0}
    broker = AlpacaBroker(
        KEY,
        SECRET,
        url_override=url,
        timeout_seconds=5.0,
        owner_prefix=MINE,
        capital=50_000,
        state_dir=tmp_path,
    )
    eng = await ready_engine(broker=broker, clock=ManualClock(), prices=PRICES, kill_deadline_seconds=2.0)
    eng.order_prefix = MINE
    yield eng
    await broker.close()


@pytest.mark.anyio
async def test_a_system_kill_cancels_by_id_and_flattens_only_its_own(
    engine: TradingEngine, fake: tuple[FakeAlpaca, str], tmp_path: Path
) -> None:
    server, _ = fake
    assert engine.portfolio.positions == {}  # neither the sibling's AAPL nor nobody's MSFT
    assert engine.orders.working() == []
    assert (await engine.submit(market("AAPL", Side.BUY, 4))).accepted
    resting = (await engine.submit(limit("AAPL", Side.BUY, 2, 185.0))).order
    assert resting is not None
    assert resting.client_order_id.startswith(MINE)
    assert server.positions["AAPL"]["qty"] == 10
    # The broker fails the first cancel of our order: retried inside the kill deadline.
    server.faults[f"DELETE /v2/orders/{resting.id}"] = Fault(status=500, times=1)

    ack = await engine.apply_kill_switch(engage_command(close_positions=True))

    assert ack.errors == []
    assert ack.cancelled_orders == [resting.id]
    assert ack.closed_positions == ["AAPL"]
    assert server.fault_hits[f"DELETE /v2/orders/{resting.id}"] == 1
    assert server.orders[resting.id]["status"] == "canceled"
    sibling_rest = [o for o in server.orders.values() if o["client_order_id"].startswith(SIBLING)][1]
    assert sibling_rest["status"] == "new"
    assert server.positions["AAPL"]["qty"] == 6  # the sibling's 6, ours closed
    assert server.positions["MSFT"]["qty"] == 3  # nobody's, untouched
    close = [
        o for o in server.orders.values() if o["client_order_id"].startswith(MINE) and o["side"] == "sell"
    ]
    assert [(o["symbol"], o["qty"]) for o in close] == [("AAPL", 4.0)]
    assert "DELETE /v2/orders" not in server.requests
    assert not any(r.startswith("DELETE /v2/positions") for r in server.requests)
    await engine.reconcile_with_broker()
    assert engine.portfolio.positions == {}
    assert (tmp_path / OWNED_BOOK_FILE_NAME).exists()  # the book a restart starts from
