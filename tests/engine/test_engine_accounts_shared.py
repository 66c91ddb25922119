"""Two TradingSystems in one broker account (issue #13, item 1), end to end: two real engine processes
(`python -m quantzoo_engine`, real alpaca-py) trade in ONE account of the local fake Alpaca server
(engine_fake_alpaca.py), as the operator wires them (QUANTZOO_ACCOUNT_NAME / _LIMITS, the account's
broker in the rendered spec).

- Each engine adopts only its own orders and positions, also after a restart from nothing; a position
  in the account that no system's orders explain is adopted by neither.
- A system-level kill with closePositions cancels and flattens ONLY what that system owns (its own order
  ids, its own quantities, no account-wide cancel-all or close-all); the other keeps trading, its
  resting order and its position intact.
- The account-wide gross exposure limit holds across the two engines: the second engine's order, which
  would take the account over the limit, is refused with a reason naming the account.

What the fake does not model: partial fills over time, Alpaca's paging of the order list (it answers
every order in one page) and its `after` filter (the engines' own filtering by prefix is what is tested).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from engine_fake_alpaca import KEY, SECRET, FakeAlpaca, ServerThread
from engine_helpers import free_port
from engine_process import TOKEN, EngineProcess, start_engine, stop
from quantzoo_api.accounts import order_id_prefix
from quantzoo_api.killswitch import ENGINE_KILL_SWITCH_PATH

pytestmark = pytest.mark.slow  # two engine processes

ADMIN = {"Authorization": f"Bearer {TOKEN}"}
ACCOUNT = "shared"
NAMESPACE = "desk"


@pytest.fixture
def fake() -> Iterator[tuple[FakeAlpaca, str]]:
    server = FakeAlpaca()
    port = free_port()
    with ServerThread(server.app, port):
        yield server, f"http://127.0.0.1:{port}"


def start_system(
    tmp_path: Path, url: str, name: str, *, limits: dict[str, Any] | None = None, fresh: bool = True
) -> EngineProcess:
    home = tmp_path / name
    home.mkdir(exist_ok=True)
    config = home / "engine.json"
    spec = {
        "symbols": ["AAPL", "MSFT"],
        "strategy": {"name": "noop"},
        # What the operator renders for a system with spec.accountRef: the account's broker.
        "broker": {
            "kind": "alpaca",
            "credentialsSecret": "account-keys",
            "baseUrl": url,
            "initialCash": 50_000,
        },
        "risk": {"priceCollarPct": 50},
    }
    config.write_text(json.dumps({"namespace": NAMESPACE, "name": name, "spec": spec}))
    if fresh:
        for leftover in (home / "state").glob("*"):
            leftover.unlink()
    return start_engine(
        home,
        {
            "QUANTZOO_CONFIG": str(config),
            "ALPACA_API_KEY": KEY,
            "ALPACA_API_SECRET": SECRET,
            "QUANTZOO_ACCOUNT_NAME": ACCOUNT,
            "QUANTZOO_ACCOUNT_LIMITS": json.dumps(limits or {}),
            "ENGINE_ACCOUNT_CACHE_SECONDS": "0",
            "ENGINE_RECONCILE_INTERVAL_SECONDS": "0.3",
            "ENGINE_ISOLATE_STRATEGY": "0",
        },
    )


def order(engine: EngineProcess, **body: Any) -> httpx.Response:
    with engine.http() as http:
        return http.post("/orders", json=body, headers=ADMIN)


def positions(engine: EngineProcess) -> dict[str, float]:
    with engine.http() as http:
        rows = http.get("/positions/current").json()["positions"]
    return {r["symbol"]: r["quantity"] for r in rows}


def working(engine: EngineProcess) -> int:
    with engine.http() as http:
        return http.get("/state").json()["orders"]["working"]


def eventually(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def account_qty(server: FakeAlpaca, symbol: str) -> float:
    return server.positions.get(symbol, {"qty": 0.0})["qty"]


def test_two_systems_trade_side_by_side_and_a_system_kill_touches_only_its_own(
    fake: tuple[FakeAlpaca, str], tmp_path: Path
) -> None:
    server, url = fake
    # A position nobody's orders explain (bought by hand at the broker): no system adopts it.
    server.positions["MSFT"] = {"qty": 3.0, "avg": 400.0}
    server.cash -= 1_200.0
    alpha = start_system(tmp_path, url, "alpha")
    beta = start_system(tmp_path, url, "beta")
    try:
        assert order(alpha, symbol="AAPL", side="buy", quantity=10).status_code == 201
        rest_a = order(alpha, symbol="AAPL", side="buy", quantity=5, type="limit", limit_price=185.0)
        assert rest_a.status_code == 201, rest_a.text
        assert order(beta, symbol="AAPL", side="buy", quantity=7).status_code == 201
        rest_b = order(beta, symbol="MSFT", side="buy", quantity=4, type="limit", limit_price=400.0)
        assert rest_b.status_code == 201, rest_b.text
        assert rest_a.json()["client_order_id"].startswith(order_id_prefix(NAMESPACE, "alpha"))
        assert rest_b.json()["client_order_id"].startswith(order_id_prefix(NAMESPACE, "beta"))
        assert account_qty(server, "AAPL") == 17

        def attributed() -> None:
            assert positions(alpha) == {"AAPL": 10}
            assert positions(beta) == {"AAPL": 7}
            assert working(alpha) == 1
            assert working(beta) == 1

        eventually(attributed)  # after the periodic reconcile: still only each system's own

        # SIGTERM cancels the stopping engine's own working orders, not its sibling's; a restart from
        # nothing (no persisted book) rebuilds beta's book from its own orders only.
        stop(beta)
        assert server.orders[rest_b.json()["id"]]["status"] == "canceled"
        assert server.orders[rest_a.json()["id"]]["status"] == "new"
        beta = start_system(tmp_path, url, "beta", fresh=True)
        rest_b = order(beta, symbol="MSFT", side="buy", quantity=4, type="limit", limit_price=400.0)
        assert rest_b.status_code == 201, rest_b.text
        eventually(attributed)

        with alpha.http() as http:
            ack = http.post(
                ENGINE_KILL_SWITCH_PATH,
                json={"engaged": True, "close_positions": True, "reason": "test", "operator": "pytest"},
                headers=ADMIN,
            )
        assert ack.status_code == 200, ack.text
        body = ack.json()
        assert body["cancelled_orders"] == [rest_a.json()["id"]]
        assert body["closed_positions"] == ["AAPL"]
        assert body["errors"] == []

        # At the broker: alpha's order cancelled and its 10 AAPL sold; beta's order still rests, its 7
        # AAPL and the nobody's 3 MSFT are untouched; no account-wide cancel-all or close-all was sent.
        assert server.orders[rest_a.json()["id"]]["status"] == "canceled"
        assert server.orders[rest_b.json()["id"]]["status"] == "new"
        assert account_qty(server, "AAPL") == 7
        assert account_qty(server, "MSFT") == 3
        assert "DELETE /v2/orders" not in server.requests
        assert not any(r.startswith("DELETE /v2/positions") for r in server.requests)

        eventually(lambda: positions(alpha) == {} or pytest.fail(str(positions(alpha))))
        # Beta keeps trading with its position intact.
        assert order(beta, symbol="AAPL", side="buy", quantity=1).status_code == 201
        eventually(lambda: positions(beta) == {"AAPL": 8} or pytest.fail(str(positions(beta))))
        assert working(beta) == 1
        refused = order(alpha, symbol="AAPL", side="buy", quantity=1)
        assert refused.status_code == 409  # alpha is halted
    finally:
        stop(alpha)
        stop(beta)


def test_the_account_limit_holds_across_engines(fake: tuple[FakeAlpaca, str], tmp_path: Path) -> None:
    server, url = fake
    limits = {"maxGrossExposure": 3_000}
    alpha = start_system(tmp_path, url, "alpha", limits=limits)
    beta = start_system(tmp_path, url, "beta", limits=limits)
    try:
        # 10 x 190 = 1,900 each: either alone fits, both together (3,800) do not.
        assert order(alpha, symbol="AAPL", side="buy", quantity=10).status_code == 201
        refused = order(beta, symbol="AAPL", side="buy", quantity=10)
        assert refused.status_code == 422, refused.text
        detail = refused.json()["detail"]
        assert detail["reason"] == "account_gross_exposure"
        assert f"TradingAccount {ACCOUNT}" in detail["message"]
        assert "maxGrossExposure 3,000.00" in detail["message"]
        assert account_qty(server, "AAPL") == 10  # the refused order never reached the broker
        # Within the limit, beta trades.
        assert order(beta, symbol="AAPL", side="buy", quantity=5).status_code == 201
    finally:
        stop(alpha)
        stop(beta)
