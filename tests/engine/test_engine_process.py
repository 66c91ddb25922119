"""`python -m quantzoo_engine` as a real process: the runbook's curl paths and SIGTERM.

Each test starts the engine on a free port with its embedded defaults (simulated feed sped up through
ENGINE_FEED_INTERVAL_SECONDS), talks HTTP to it, and for SIGTERM checks the exit code, that the
working orders were cancelled and that the state file was written.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from engine_helpers import free_port
from engine_process import SHUTDOWN_DEADLINE, TOKEN, EngineProcess, start_engine, stop

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def running_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    engine = start_engine(tmp_path_factory.mktemp("engine"))
    try:
        yield engine
    finally:
        stop(engine)


def test_runbook_curl_paths(running_engine: EngineProcess) -> None:
    with running_engine.http() as http:
        # curl localhost:8001/healthz
        assert http.get("/healthz").json() == {"status": "ok"}
        # curl localhost:8001/state | jq '.last_update'
        state = http.get("/state").json()
        last_update = datetime.fromisoformat(state["last_update"].replace("Z", "+00:00"))
        assert last_update.tzinfo is not None
        assert state["trading_state"] == "ACTIVE"
        assert state["kill_switch_state_known"] is True
        # curl localhost:8001/positions/current
        assert isinstance(http.get("/positions/current").json()["positions"], list)
        # curl localhost:8001/symbols/list | jq '.[] | {symbol, last_update}'
        symbols = http.get("/symbols/list").json()
        assert isinstance(symbols, list)
        assert [s["symbol"] for s in symbols] == ["AAPL", "MSFT"]
        assert all(s["last_update"] for s in symbols)
        metrics = http.get("/metrics").text
        assert "# TYPE unrealized_pnl_pct gauge" in metrics
        assert 'api_latency_seconds{api="http"}' in metrics


def test_market_data_keeps_flowing(running_engine: EngineProcess) -> None:
    with running_engine.http() as http:
        first = http.get("/symbols/list").json()[0]["bars"]
        deadline = time.monotonic() + 10
        while http.get("/symbols/list").json()[0]["bars"] <= first:
            assert time.monotonic() < deadline, "no new bars"
            time.sleep(0.05)


def test_sigterm_cancels_working_orders_persists_and_exits(tmp_path: Path) -> None:
    engine = start_engine(tmp_path, {"QUANTZOO_NAME": "sigterm-test"})
    try:
        with engine.http() as http:
            last = {s["symbol"]: s["last_price"] for s in http.get("/symbols/list").json()}
            # A buy limit 4% under the market (inside the 5% collar): it rests, so there is work to cancel.
            order = {
                "symbol": "MSFT",
                "side": "buy",
                "quantity": 3,
                "type": "limit",
                "limit_price": round(last["MSFT"] * 0.96, 2),
                "client_order_id": "sigterm-resting-1",
            }
            placed = http.post("/orders", json=order, headers={"Authorization": f"Bearer {TOKEN}"})
            assert placed.status_code == 201, placed.text
            order_id = placed.json()["id"]
            assert order_id in [o["id"] for o in http.get("/orders", params={"status": "working"}).json()]
        started = time.monotonic()
        engine.proc.send_signal(signal.SIGTERM)
        returncode = engine.proc.wait(timeout=SHUTDOWN_DEADLINE + 10)
        elapsed = time.monotonic() - started
    finally:
        stop(engine)
    log = engine.log.read_text()
    assert returncode == 0, log
    assert elapsed < SHUTDOWN_DEADLINE, log
    saved = json.loads((engine.state_dir / "engine-state.json").read_text())
    assert saved["pod"] == "engine-under-test"
    assert saved["name"] == "sigterm-test"
    assert saved["shutdown"]["clean"] is True
    assert order_id in saved["shutdown"]["cancelled_orders"]
    assert saved["working_orders"] == []
    assert saved["state"]["trading_state"] == "HALTED"
    assert "shutting_down" in saved["state"]["halt_reasons"]
    cancelled = next(o for o in saved["orders"] if o["id"] == order_id)
    assert cancelled["status"] == "canceled"


def test_bad_configuration_exits_with_a_reason(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"spec": {"risk": {"maxOrderQuantity": 0}}}))
    result = subprocess.run(
        [sys.executable, "-m", "quantzoo_engine", "--port", str(free_port())],
        env={**os.environ, "QUANTZOO_CONFIG": str(config)},
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert b"maxOrderQuantity" in result.stderr
    assert b"Traceback" not in result.stderr
