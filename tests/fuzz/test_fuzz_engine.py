"""schemathesis against the engine's OpenAPI schema: every operation, with a valid admin token, a wrong one
and none.

The real engine app runs in process (TestClient, lifespan included) with the in-process paper broker and a
manual clock, so the generated orders meet the real risk checks and fill: state builds up over the run
the way it would in production (positions, working orders, kill switch engaged and released). Checks:
no 5xx, every answer documented (status code, content type, body schema), invalid input refused with a
4xx, and a rejected request changes nothing (the custom check in fuzz_support.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fuzz_support import (
    AUTH_VARIANTS,
    FUZZ_SETTINGS,
    apply_auth,
    load_schema,
    no_state_change_on_rejection,
    send,
)
from pydantic import SecretStr
from quantzoo_engine.app import create_app
from quantzoo_engine.clock import ManualClock
from quantzoo_engine.risk.checks import RejectReason
from quantzoo_engine.settings import EngineSettings

from tests.engine.engine_helpers import PRICES, Bars, make_spec

TOKEN = "engine-admin-token-for-fuzzing"
SUITE = "engine"
REJECT_REASONS = {str(r) for r in RejectReason}
SYMBOL = re.compile(r"^[A-Z][A-Z0-9.\-]{0,15}$")  # ManualOrder.symbol's pattern


def engine_settings(state_dir: Path) -> EngineSettings:
    # Generous rate limits and no staleness on a frozen clock: generated orders get past the throttle and
    # reach the other checks and the broker, which is where the interesting state changes are.
    spec = make_spec(
        risk={"maxOrdersPerSecond": 10_000, "maxOrdersPerMinute": 600_000, "staleDataSeconds": 86_400}
    )
    return EngineSettings(admin_token=SecretStr(TOKEN), state_dir=state_dir, pod_name="fuzz", spec=spec)


schema = load_schema(create_app(engine_settings(Path("/nonexistent")), with_feed=False).openapi())


@pytest.fixture(scope="module")
def engine_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    app = create_app(
        engine_settings(tmp_path_factory.mktemp("engine-fuzz")), with_feed=False, clock=ManualClock()
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        engine = app.state.engine
        bars = Bars()
        for symbol, price in PRICES.items():
            client.portal.call(engine.on_bar, bars(symbol, price))  # type: ignore[union-attr]
        assert client.get("/readyz").status_code == 200
        yield client


def steer_symbol(case: Any) -> None:
    """A random valid symbol meets `unknown_symbol` first. Two of three valid ones become a configured
    symbol, so orders reach the quantity, notional, collar and exposure checks and the broker. Only a
    valid symbol is replaced, by another valid one: a negative case stays negative where it was."""
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("symbol"), str) and SYMBOL.fullmatch(body["symbol"]):
        known = sorted(PRICES)
        pick = len(body["symbol"]) % (len(known) + 1)
        if pick < len(known):
            body["symbol"] = known[pick]


def snapshot(client: TestClient) -> dict[str, Any]:
    """The engine's observable state (the views behind /state, /positions/current and /orders), read in
    the app's event loop in one hop: what no refused request may change."""
    engine = client.app.state.engine  # type: ignore[attr-defined]

    def read() -> dict[str, Any]:
        state = engine.state_view()
        return {
            "trading_state": state["trading_state"],
            "halt_reasons": state["halt_reasons"],
            "kill_switch": state["kill_switch"],
            "orders": dict(state["orders"]),
            "cash": state["cash"],
            "positions": engine.positions_view()["positions"],
            "working_orders": [o.to_dict() for o in engine.orders.working()],
            "broker_orders": len(engine.broker.received),
            "errors_total": state["errors_total"],
        }

    return client.portal.call(read)  # type: ignore[union-attr]


def is_risk_refusal(body: Any) -> bool:
    detail = body.get("detail") if isinstance(body, dict) else None
    return isinstance(detail, dict) and detail.get("reason") in REJECT_REASONS


@pytest.mark.parametrize("auth", AUTH_VARIANTS)
@schema.parametrize()
@FUZZ_SETTINGS
def test_engine_api(case: Any, auth: str, engine_client: TestClient) -> None:
    apply_auth(case, auth, TOKEN)
    steer_symbol(case)
    before = snapshot(engine_client)
    response = send(engine_client, case, SUITE)
    after = snapshot(engine_client)
    if is_risk_refusal(_json(response)):
        # A risk refusal is counted by reason, by design (the reject-spike alert reads the counter);
        # everything else must stay as it was. Any other 4xx (auth, body) must not even count.
        for snap in (before, after):
            del snap["orders"]["rejected"], snap["orders"]["rejected_by_reason"]
    case.validate_response(response, additional_checks=[no_state_change_on_rejection(before, after)])


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
