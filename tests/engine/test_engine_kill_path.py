"""The kill path and order submission against slow or failing order answers, with the real alpaca-py
client talking to the local Alpaca-wire server (engine_fake_alpaca.py); findings 2 and 3 of issue #15:

- one slow submission does not hold up the cancel of the orders already resting at the broker (block,
  cancel at once, settle the in-flight submissions, cancel again);
- no submit reaches the broker after the engine acknowledged a halt (alpaca-py's own 429/504 re-sends
  are off), and after an ambiguous answer the order is looked up by its client order id, not re-sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from engine_fake_alpaca import KEY, SECRET, FakeAlpaca, Fault, ServerThread, wait_until
from engine_helpers import engage_command, free_port, limit, market, ready_engine
from quantzoo_api.killswitch import TradingState
from quantzoo_engine.broker.alpaca import AlpacaBroker
from quantzoo_engine.clock import ManualClock
from quantzoo_engine.engine import TradingEngine
from quantzoo_engine.orders import Side

PRICES = {"AAPL": 190.0, "MSFT": 410.0}
SUBMIT = "POST /v2/orders"


@pytest.fixture
def fake() -> Iterator[tuple[FakeAlpaca, str]]:
    server = FakeAlpaca()
    port = free_port()
    with ServerThread(server.app, port):
        yield server, f"http://127.0.0.1:{port}"


async def alpaca_engine(url: str, kill_deadline_seconds: float) -> TradingEngine:
    broker = AlpacaBroker(KEY, SECRET, paper=True, url_override=url, timeout_seconds=5.0)
    return await ready_engine(
        broker=broker, clock=ManualClock(), prices=PRICES, kill_deadline_seconds=kill_deadline_seconds
    )


def submits(server: FakeAlpaca, since: int = 0) -> int:
    return sum(1 for r in server.requests[since:] if r == SUBMIT)


@pytest.mark.anyio
async def test_a_slow_submission_does_not_hold_up_the_cancel_of_resting_orders(
    fake: tuple[FakeAlpaca, str],
) -> None:
    server, url = fake
    engine = await alpaca_engine(url, kill_deadline_seconds=0.5)
    resting = await engine.submit(limit("AAPL", Side.BUY, 1, 185.0))
    assert resting.order is not None
    server.faults[SUBMIT] = Fault(hang_seconds=3.0)  # the next submit is answered (and placed) after 3 s
    held = asyncio.ensure_future(engine.submit(limit("AAPL", Side.BUY, 1, 186.0)))
    await wait_until(lambda: server.fault_hits.get(SUBMIT) == 1)

    ack = await engine.apply_kill_switch(engage_command())

    assert resting.order.id in ack.cancelled_orders
    assert server.orders[resting.order.id]["status"] == "canceled"
    assert any("in flight" in e for e in ack.errors)  # the held one is owed, and said so
    landed = await held
    assert landed.order is not None  # sent before the halt: it lands, and is cancelled as owed
    engine.clock.advance(2.0)  # type: ignore[attr-defined]
    await engine.retry_owed_cleanup()
    assert server.open_orders() == []
    await engine.broker.close()


@pytest.mark.anyio
async def test_no_submit_reaches_alpaca_after_the_halt_was_acknowledged(
    fake: tuple[FakeAlpaca, str],
) -> None:
    server, url = fake
    engine = await alpaca_engine(url, kill_deadline_seconds=1.0)
    server.faults[SUBMIT] = Fault(status=429, times=1)  # alpaca-py would wait 3 s and send it again
    submit = asyncio.ensure_future(engine.submit(market("AAPL", Side.BUY, 1)))
    await wait_until(lambda: server.fault_hits.get(SUBMIT) == 1)

    ack = await engine.apply_kill_switch(engage_command())
    assert ack.trading_state is TradingState.HALTED
    after_ack = len(server.requests)

    result = await asyncio.wait_for(submit, 10)
    await asyncio.sleep(0.5)
    assert submits(server, after_ack) == 0, server.requests[after_ack:]
    assert result.rejection is not None
    assert server.orders == {}
    await engine.broker.close()


@pytest.mark.anyio
async def test_an_order_behind_a_lost_answer_is_found_by_client_order_id(
    fake: tuple[FakeAlpaca, str],
) -> None:
    server, url = fake
    engine = await alpaca_engine(url, kill_deadline_seconds=1.0)
    # Alpaca placed the order, but the answer was a 504: re-sending would be a second order (or, with the
    # same client order id, a refusal that hides the first one from the engine).
    server.faults[SUBMIT] = Fault(status=504, lose_answer=True, times=1)
    result = await engine.submit(limit("AAPL", Side.BUY, 1, 185.0))
    assert submits(server) == 1
    (placed,) = server.orders.values()
    assert result.order is not None, result.rejection
    assert result.order.id == placed["id"]
    assert [o.id for o in engine.orders.working()] == [placed["id"]]  # so a kill cancels it
    await engine.broker.close()


@pytest.mark.anyio
async def test_a_submit_queued_behind_busy_threads_is_not_sent_after_the_halt(
    fake: tuple[FakeAlpaca, str],
) -> None:
    server, url = fake
    engine = await alpaca_engine(url, kill_deadline_seconds=0.3)
    broker = engine.broker
    assert isinstance(broker, AlpacaBroker)
    server.faults["GET /v2/account"] = Fault(hang_seconds=3.0)
    # Every order worker busy (say, slow reconcile reads): the next submit waits for a thread.
    busy = [asyncio.ensure_future(broker.account()) for _ in range(4)]
    await wait_until(lambda: server.fault_hits.get("GET /v2/account") == 4)
    queued = asyncio.ensure_future(engine.submit(market("AAPL", Side.BUY, 1)))
    await asyncio.sleep(0.05)
    await engine.apply_kill_switch(engage_command())
    result = await asyncio.wait_for(queued, 10)
    assert result.rejection is not None
    assert submits(server) == 0
    await asyncio.gather(*busy, return_exceptions=True)
    await broker.close()
