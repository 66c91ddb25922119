"""Faults at the broker during a kill, with the engine as a real process and the real alpaca-py talking
to the local Alpaca-wire server (tests/engine/engine_fake_alpaca.py): Alpaca failing the cancels (429 with
Retry-After, 500, a hanging answer): new orders stop at once regardless, the cancels are retried, the ack
and status say what is still working, and once Alpaca recovers the orders end cancelled and status
converges.

The engine SIGKILLed with working orders at the broker runs on real pods (its container killed with
`ctr`): tests/pods/test_faults_realpods.py.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from hack.devcluster.podrunner import free_port, wait_for
from hack.devcluster.stack import TradingSystemStack
from tests.engine.engine_fake_alpaca import KEY, SECRET, FakeAlpaca, Fault, ServerThread
from tests.faults.harness import SPEC, Faults, conditions

pytestmark = pytest.mark.slow

ENGINE_ENV = {"ENGINE_RECONCILE_INTERVAL_SECONDS": "1"}
# Far above the simulated feed's prices: a buy limit inside the engine's price collar rests at "Alpaca".
BROKER_PRICE = 100_000.0


@pytest.fixture
def alpaca() -> Iterator[tuple[FakeAlpaca, str]]:
    server = FakeAlpaca()
    server.prices = {"AAPL": BROKER_PRICE, "MSFT": BROKER_PRICE}
    server.cash = 10_000_000.0
    server.last_equity = server.cash
    port = free_port()
    with ServerThread(server.app, port):
        yield server, f"http://127.0.0.1:{port}"


def alpaca_stack(faults: Faults, base_url: str) -> TradingSystemStack:
    secret = "alpaca-credentials"
    faults.runner.core.create_namespaced_secret(
        faults.namespace,
        {
            "metadata": {"name": secret},
            "data": {
                "ALPACA_API_KEY": base64.b64encode(KEY.encode()).decode(),
                "ALPACA_API_SECRET": base64.b64encode(SECRET.encode()).decode(),
            },
        },
    )
    spec: dict[str, Any] = {
        **SPEC,
        # A strategy that never crosses inside the test: every order at Alpaca is one the test placed.
        "strategy": {
            "name": "maCrossover",
            "params": {"fastWindow": 2, "slowWindow": 400, "orderQuantity": 1},
        },
        "broker": {"kind": "alpaca", "credentialsSecret": secret, "baseUrl": base_url},
    }
    return faults.stack(spec)


def place_working_orders(stack: TradingSystemStack, server: FakeAlpaca, count: int = 2) -> list[str]:
    last = {row["symbol"]: row for row in httpx.get(stack.engine.url + "/symbols/list", timeout=5).json()}
    ids = []
    for i in range(count):
        price = round(float(last["AAPL"]["last_price"]) * (0.97 + i * 0.005), 2)
        resp = stack.place_order("AAPL", "buy", 1, type="limit", limit_price=price)
        assert resp.status_code == 201, resp.text
        ids.append(resp.json()["id"])
    assert {o["id"] for o in server.open_orders()} == set(ids)
    return ids


def submissions(server: FakeAlpaca, since: int = 0) -> list[str]:
    return [r for r in server.requests[since:] if r.startswith("POST /v2/orders")]


def _halted(stack: TradingSystemStack) -> bool:
    st = stack.engine_state()
    return st["trading_state"] == "HALTED" and st["kill_switch"]["engaged"]


def test_broker_errors_during_a_kill_orders_stop_cancels_retried_until_done(
    faults: Faults, alpaca: tuple[FakeAlpaca, str]
) -> None:
    server, base_url = alpaca
    faults.operators.start()
    stack = alpaca_stack(faults, base_url)
    stack.run_engine(extra_env=ENGINE_ENV)
    wait_for(lambda: stack.engine_state()["trading_state"] == "ACTIVE", timeout=30, what="engine ACTIVE")
    working = place_working_orders(stack, server)
    route = "DELETE /v2/orders"
    server.faults[route] = Fault(status=429, retry_after=1)

    since = len(server.requests)
    stack.patch({"spec": {"killSwitch": {"engaged": True, "reason": "broker trouble", "operator": "jo"}}})
    # Orders stop at once, whatever Alpaca does: the halt is in memory, before any broker call.
    wait_for(lambda: _halted(stack), timeout=15, what="engine halted")
    refused = stack.place_order("AAPL", "buy", 1)
    assert refused.status_code == 409, refused.text

    def acked_with_work_left() -> dict | None:
        ks = stack.acknowledged()
        ack = (ks or {}).get("acknowledgements", [{}])[0]
        return ack if ack.get("workingOrders") == len(working) and ack.get("errors") else None

    ack = wait_for(acked_with_work_left, timeout=30, what="an ack that says what is still working")
    assert any("429" in e or "deadline" in e for e in ack["errors"]), ack["errors"]
    assert "still working" in conditions(stack)["KillSwitchEngaged"]["message"]

    # 500s, then a hanging Alpaca: the cancels keep being retried; orders stay refused meanwhile.
    for fault in (Fault(status=500), Fault(hang_seconds=60)):
        server.faults[route] = fault
        hits = server.fault_hits[route]
        wait_for(lambda h=hits: server.fault_hits[route] >= h + 2, timeout=30, what=f"retries under {fault}")
        assert stack.place_order("AAPL", "buy", 1).status_code == 409
        assert {o["id"] for o in server.open_orders()} == set(working)

    del server.faults[route]  # Alpaca recovers
    wait_for(lambda: not server.open_orders(), timeout=30, what="the working orders cancelled")
    assert all(server.orders[i]["status"] == "canceled" for i in working)

    def clean_ack() -> dict | None:
        ks = stack.acknowledged()
        ack = (ks or {}).get("acknowledgements", [{}])[0]
        return ack if ack.get("workingOrders") == 0 and not ack.get("errors") else None

    wait_for(clean_ack, timeout=30, what="status showing the clean-up done")
    assert "still working" not in conditions(stack)["KillSwitchEngaged"]["message"]
    assert submissions(server, since) == []  # not one order reached Alpaca after the engage
    assert _halted(stack)
    faults.assert_no_leaks(stack)
