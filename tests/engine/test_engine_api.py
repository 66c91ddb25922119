"""The engine's HTTP API in process (the real app, lifespan included): the runbook paths, the metrics
contract, the admin token, the kill switch over HTTP, and bad input (4xx with a reason, no state
change, never a 500).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import PRICES, Bars, make_spec
from fastapi.testclient import TestClient
from pydantic import SecretStr
from quantzoo_api.killswitch import ENGINE_KILL_SWITCH_PATH, KillSwitchAck
from quantzoo_engine.app import create_app
from quantzoo_engine.engine import TradingEngine
from quantzoo_engine.kube_watch import KubeWatch
from quantzoo_engine.settings import EngineSettings

TOKEN = "engine-admin-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
METRICS_DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def settings(tmp_path: Path, token: str | None = TOKEN) -> EngineSettings:
    return EngineSettings(
        admin_token=SecretStr(token) if token else None,
        state_dir=tmp_path,
        pod_name="api-test",
        spec=make_spec(),
    )


def wait_ready(client: TestClient) -> None:
    for _ in range(200):
        if client.get("/readyz").status_code == 200:
            return
        time.sleep(0.01)
    raise AssertionError("engine never became ready")


def engine_of(client: TestClient) -> TradingEngine:
    return client.app.state.engine  # type: ignore[attr-defined]


def push_bars(client: TestClient, bars: Bars, prices: dict[str, float]) -> None:
    engine = engine_of(client)
    for symbol, price in prices.items():
        client.portal.call(engine.on_bar, bars(symbol, price))  # type: ignore[union-attr]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings(tmp_path), with_feed=False)) as c:
        wait_ready(c)
        push_bars(c, Bars(), PRICES)
        yield c


def book(client: TestClient) -> tuple[Any, ...]:
    """What bad input must not change."""
    state = client.get("/state").json()
    engine = engine_of(client)
    return (
        state["orders"]["submitted"],
        state["orders"]["working"],
        state["orders"]["filled"],
        client.get("/positions/current").json()["positions"],
        len(engine.broker.received),  # type: ignore[attr-defined]
        state["kill_switch"],
        state["trading_state"],
    )


# --- the runbook's endpoints -----------------------------------------------------------------------------


def test_runbook_paths(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["ready"] is True
    state = client.get("/state").json()
    datetime.fromisoformat(state["last_update"].replace("Z", "+00:00"))
    positions = client.get("/positions/current").json()
    assert positions["positions"] == []
    symbols = client.get("/symbols/list").json()
    assert isinstance(symbols, list)
    assert [(s["symbol"], s["last_price"]) for s in symbols] == list(PRICES.items())
    assert all(s["last_update"] for s in symbols)
    assert client.get("/orders").json() == []


def test_state_has_the_contracted_fields(client: TestClient) -> None:
    state = client.get("/state").json()
    assert state["trading_state"] == "ACTIVE"
    assert set(state["kill_switch"]) >= {
        "engaged",
        "mode",
        "reason",
        "operator",
        "source",
        "generation",
        "since",
    }
    assert state["kill_switch_state_known"] is True
    for key in ("last_update", "heartbeat_at", "mode", "equity", "gross_exposure", "errors_total"):
        assert key in state
    assert set(state["pnl"]) >= {
        "realized",
        "unrealized",
        "total",
        "unrealized_pnl_pct",
        "daily_drawdown_pct",
    }
    assert set(state["orders"]) >= {"submitted", "filled", "rejected", "rejected_by_reason", "working"}
    assert set(state["data"]) >= {"stale", "staleness_seconds", "missing_bars", "outliers"}
    assert state["mode"] == "paper"


def _documented_engine_metrics() -> list[tuple[str, str]]:
    text = METRICS_DOC.read_text()
    section = text.split("## Engine", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z_]+)` \| (\w+) \|", section, flags=re.MULTILINE)


def test_metrics_export_exactly_the_documented_names(client: TestClient) -> None:
    documented = _documented_engine_metrics()
    assert ("unrealized_pnl_pct", "gauge") in documented
    assert ("api_latency_seconds", "gauge") in documented
    body = client.get("/metrics").text
    for name, kind in documented:
        assert f"# TYPE {name} {kind}" in body, name
    exported = set(re.findall(r"^# TYPE (\S+) ", body, flags=re.MULTILINE))
    assert exported == {name for name, _ in documented}
    assert 'api_latency_seconds{api="http"}' in body
    assert 'quantzoo_engine_trading_state{state="ACTIVE"} 1.0' in body


# --- the admin token ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN}],
    ids=["missing", "wrong", "wrong-scheme", "no-scheme"],
)
def test_admin_refuses_without_the_token(client: TestClient, headers: dict[str, str]) -> None:
    before = book(client)
    for path, body in ((ENGINE_KILL_SWITCH_PATH, {"engaged": True}), ("/orders", {"symbol": "AAPL"})):
        resp = client.post(path, json=body, headers=headers)
        assert resp.status_code == 401
        assert resp.json() == {"detail": "unauthorized"}
        assert TOKEN not in resp.text
    assert book(client) == before


def test_admin_fails_closed_without_a_configured_token(tmp_path: Path) -> None:
    with TestClient(create_app(settings(tmp_path, token=None), with_feed=False)) as c:
        wait_ready(c)
        for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer anything"}):
            resp = c.post(ENGINE_KILL_SWITCH_PATH, json={"engaged": False}, headers=headers)
            assert resp.status_code == 503
        assert c.get("/state").json()["kill_switch"]["engaged"] is False


# --- the kill switch over HTTP -------------------------------------------------------------------------


def test_kill_switch_engage_and_release_over_http(client: TestClient) -> None:
    resting = client.post(
        "/orders",
        json={"symbol": "AAPL", "side": "buy", "quantity": 5, "type": "limit", "limit_price": 97.0},
        headers=AUTH,
    )
    assert resting.status_code == 201
    client.post("/orders", json={"symbol": "MSFT", "side": "buy", "quantity": 3}, headers=AUTH)
    body = {"engaged": True, "close_positions": True, "reason": "runaway", "operator": "ann", "generation": 3}
    resp = client.post(ENGINE_KILL_SWITCH_PATH, json=body, headers=AUTH)
    assert resp.status_code == 200
    ack = KillSwitchAck.model_validate(resp.json())
    assert (ack.pod, ack.engaged, ack.trading_state, ack.generation) == ("api-test", True, "HALTED", 3)
    assert ack.cancelled_orders == [resting.json()["id"]]
    assert ack.closed_positions == ["MSFT"]
    state = client.get("/state").json()
    assert state["kill_switch"]["engaged"] is True
    assert state["kill_switch"]["operator"] == "ann"
    assert client.get("/positions/current").json()["positions"] == []
    blocked = client.post("/orders", json={"symbol": "AAPL", "side": "buy", "quantity": 1}, headers=AUTH)
    assert blocked.status_code == 409
    assert blocked.json()["detail"]["reason"] == "trading_halted"
    # A stale release is ignored, and the answer says it is still engaged.
    stale = client.post(ENGINE_KILL_SWITCH_PATH, json={"engaged": False, "generation": 2}, headers=AUTH)
    assert stale.json()["engaged"] is True
    released = client.post(ENGINE_KILL_SWITCH_PATH, json={"engaged": False, "generation": 4}, headers=AUTH)
    assert released.json()["engaged"] is False
    assert released.json()["trading_state"] == "ACTIVE"


# --- bad input ---------------------------------------------------------------------------------------------


BAD_KILL_SWITCH = [
    ("malformed", b"{engaged: true"),
    ("not-an-object", b"[true]"),
    ("empty", b""),
    ("wrong-type", b'{"engaged": "definitely"}'),
    ("unknown-field", b'{"engaged": true, "force": 1}'),
    ("bad-mode", b'{"engaged": true, "mode": "Panic"}'),
    ("negative-generation", b'{"engaged": true, "generation": -1}'),
    ("missing-engaged", b'{"reason": "x"}'),
    ("huge", b'{"engaged": true, "reason": "' + b"x" * 70_000 + b'"}'),
    # Found by the fuzzer (tests/fuzz): lax parsing took these as a valid command.
    ("engaged-number", b'{"engaged": 1}'),
    ("engaged-string", b'{"engaged": "true"}'),
    ("issued-at-number", b'{"engaged": true, "issued_at": 0}'),
    ("generation-float", b'{"engaged": true, "generation": 1.0}'),
]


@pytest.mark.parametrize("body", [b for _, b in BAD_KILL_SWITCH], ids=[n for n, _ in BAD_KILL_SWITCH])
def test_bad_kill_switch_bodies(client: TestClient, body: bytes) -> None:
    before = book(client)
    resp = client.post(
        ENGINE_KILL_SWITCH_PATH, content=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert 400 <= resp.status_code < 500
    assert "Traceback" not in resp.text
    assert book(client) == before


BAD_ORDERS: list[tuple[str, bytes | dict[str, Any], int, str | None]] = [
    ("malformed", b'{"symbol": "AAPL", "side": ', 422, None),
    ("not-json", b"buy 10 AAPL", 422, None),
    ("array", b"[]", 422, None),
    ("quantity-string", {"symbol": "AAPL", "side": "buy", "quantity": "10"}, 422, None),
    ("quantity-bool", {"symbol": "AAPL", "side": "buy", "quantity": True}, 422, None),
    ("negative", {"symbol": "AAPL", "side": "buy", "quantity": -5}, 422, None),
    ("zero", {"symbol": "AAPL", "side": "buy", "quantity": 0}, 422, None),
    ("absurd", {"symbol": "AAPL", "side": "buy", "quantity": 1e12}, 422, None),
    ("nan", b'{"symbol": "AAPL", "side": "buy", "quantity": NaN}', 422, None),
    ("infinity", b'{"symbol": "AAPL", "side": "buy", "quantity": Infinity}', 422, None),
    ("bad-side", {"symbol": "AAPL", "side": "hold", "quantity": 1}, 422, None),
    ("lowercase-symbol", {"symbol": "aapl", "side": "buy", "quantity": 1}, 422, None),
    ("symbol-injection", {"symbol": "AAPL; DROP", "side": "buy", "quantity": 1}, 422, None),
    ("limit-without-price", {"symbol": "AAPL", "side": "buy", "quantity": 1, "type": "limit"}, 422, None),
    ("market-with-price", {"symbol": "AAPL", "side": "buy", "quantity": 1, "limit_price": 100}, 422, None),
    ("extra-field", {"symbol": "AAPL", "side": "buy", "quantity": 1, "account": "other"}, 422, None),
    ("unknown-symbol", {"symbol": "ZZZZ", "side": "buy", "quantity": 1}, 422, "unknown_symbol"),
    ("over-max-quantity", {"symbol": "AAPL", "side": "buy", "quantity": 5_000}, 422, "max_order_quantity"),
    ("over-max-notional", {"symbol": "MSFT", "side": "buy", "quantity": 999}, 422, "max_order_notional"),
    (
        "outside-collar",
        {"symbol": "AAPL", "side": "buy", "quantity": 1, "type": "limit", "limit_price": 50},
        422,
        "price_collar",
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "reason"), [c[1:] for c in BAD_ORDERS], ids=[c[0] for c in BAD_ORDERS]
)
def test_bad_orders(
    client: TestClient, body: bytes | dict[str, Any], status: int, reason: str | None
) -> None:
    before = book(client)
    if isinstance(body, bytes):
        resp = client.post("/orders", content=body, headers={**AUTH, "Content-Type": "application/json"})
    else:
        resp = client.post("/orders", json=body, headers=AUTH)
    assert resp.status_code == status
    assert "Traceback" not in resp.text
    if reason is not None:
        assert resp.json()["detail"]["reason"] == reason
        assert resp.json()["detail"]["message"]
    else:
        assert resp.json()["detail"][0]["msg"]
    assert book(client) == before


def test_duplicate_client_order_id_over_http(client: TestClient) -> None:
    order = {"symbol": "AAPL", "side": "buy", "quantity": 1, "client_order_id": "smoke-1"}
    assert client.post("/orders", json=order, headers=AUTH).status_code == 201
    before = book(client)
    again = client.post("/orders", json=order, headers=AUTH)
    assert again.status_code == 409
    assert again.json()["detail"]["reason"] == "duplicate_client_order_id"
    assert book(client) == before


def test_manual_smoke_test_order_round_trip(client: TestClient) -> None:
    placed = client.post("/orders", json={"symbol": "AAPL", "side": "buy", "quantity": 2}, headers=AUTH)
    assert placed.status_code == 201
    assert placed.json()["status"] == "filled"
    assert client.get("/positions/current").json()["positions"][0]["quantity"] == 2
    assert (
        client.post(
            "/orders", json={"symbol": "AAPL", "side": "sell", "quantity": 2}, headers=AUTH
        ).status_code
        == 201
    )
    assert client.get("/positions/current").json()["positions"] == []
    orders = client.get("/orders").json()
    assert [o["side"] for o in orders] == ["sell", "buy"]
    assert client.get("/orders", params={"status": "working"}).json() == []
    assert client.get("/orders", params={"status": "bogus"}).status_code == 422


# --- the OpenAPI document (what tests/fuzz checks every answer against) -----------------------------------


def test_openapi_documents_auth_bodies_and_refusals(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "The engine admin token (ENGINE_ADMIN_TOKEN).",
    }
    for path, extra in ((ENGINE_KILL_SWITCH_PATH, {"409"}), ("/orders", {"409", "429", "502"})):
        op = doc["paths"][path]["post"]
        assert op["security"] == [{"HTTPBearer": []}]
        assert "parameters" not in op  # the token is the security scheme, not a header parameter
        body = op["requestBody"]
        assert body["required"] is True
        # A model's "#/$defs/..." would resolve against the document root, where it does not exist.
        assert "$defs" not in str(body)
        assert (
            set(op["responses"])
            == {"200" if path != "/orders" else "201", "401", "413", "422", "503"} | extra
        )
    assert "text/plain" in doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert set(doc["paths"]["/readyz"]["get"]["responses"]) == {"200", "503"}


def test_not_ready_until_the_kill_switch_state_is_read(tmp_path: Path) -> None:
    class SilentWatch(KubeWatch):
        async def run(self) -> None:  # the API server never answers
            return None

    app = create_app(
        settings(tmp_path),
        with_feed=False,
        watch_factory=lambda on_action: SilentWatch("t", "demo", on_action),
    )
    with TestClient(app) as c:
        resp = c.get("/readyz")
        assert resp.status_code == 503
        assert "kill_switch_state_unknown" in resp.json()["halt_reasons"]
        state = c.get("/state").json()
        assert (state["trading_state"], state["kill_switch_state_known"]) == ("HALTED", False)
