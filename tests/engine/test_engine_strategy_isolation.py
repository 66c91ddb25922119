"""User code cannot slow the stop: real engine processes running misbehaving strategies.

The strategies (engine_plugins.py) are installed through the entry-point group like a team's package.
Each engine runs one in its own process (the default); the test engages and releases the kill switch
through the admin API while the strategy burns CPU for 5 s per bar, and checks every engage was
acknowledged HALTED within a bound far below one burn. bench/strategy_isolation_bench.py measures the
latencies against a noop strategy (and against the same burner run inline) and records them.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest
from engine_plugins import install_test_strategies
from engine_process import TOKEN, EngineProcess, start_engine, stop

pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def strategy_engine(tmp_path: Path, strategy: dict, *, isolate: bool = True) -> EngineProcess:
    plugins = install_test_strategies(tmp_path / "plugins")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"spec": {"symbols": ["AAPL", "MSFT"], "strategy": strategy}}))
    path = os.pathsep.join(p for p in (str(plugins), os.environ.get("PYTHONPATH", "")) if p)
    return start_engine(
        tmp_path,
        {
            "QUANTZOO_CONFIG": str(config),
            "PYTHONPATH": path,
            "ENGINE_ISOLATE_STRATEGY": "true" if isolate else "false",
        },
    )


def health(http: httpx.Client) -> dict:
    return http.get("/state").json()["strategy_health"]


def engage_release_latencies(http: httpx.Client, trials: int) -> list[float]:
    """Seconds from sending an engage to its acknowledgement (HALTED), per trial."""
    out = []
    for i in range(trials):
        started = time.perf_counter()
        ack = http.post("/admin/kill-switch", json={"engaged": True, "reason": f"t{i}"}, headers=AUTH)
        out.append(time.perf_counter() - started)
        assert ack.status_code == 200, ack.text
        assert ack.json()["trading_state"] == "HALTED"
        released = http.post("/admin/kill-switch", json={"engaged": False}, headers=AUTH)
        assert released.status_code == 200, released.text
    return out


def test_a_cpu_burning_strategy_does_not_delay_the_halt(tmp_path: Path) -> None:
    engine = strategy_engine(tmp_path, {"name": "cpuBurner", "params": {"burnSeconds": 5}})
    try:
        with engine.http() as http:
            deadline = time.monotonic() + 20
            while health(http)["bars"] < 1:  # the first burn is done: the child is mid-burn from now on
                assert time.monotonic() < deadline, health(http)
                time.sleep(0.1)
            latencies = engage_release_latencies(http, 20)
            h = health(http)
    finally:
        stop(engine)
    assert h["status"] == "running"
    assert h["isolated"] is True
    # One burn is 5 s; a halt queued behind it would take seconds. Measured: bench/results.
    assert max(latencies) < 1.0, latencies


def test_a_blocking_strategy_does_not_delay_the_halt(tmp_path: Path) -> None:
    engine = strategy_engine(tmp_path, {"name": "blocker", "params": {"burnSeconds": 60}})
    try:
        with engine.http() as http:
            time.sleep(1.0)  # the child is now asleep inside on_bar
            latencies = engage_release_latencies(http, 5)
            assert health(http)["bars"] == 0
    finally:
        stop(engine)
    assert max(latencies) < 1.0, latencies


def test_a_strategy_that_keeps_raising_is_stopped_and_reported(tmp_path: Path) -> None:
    engine = strategy_engine(tmp_path, {"name": "alwaysRaises"})
    try:
        with engine.http() as http:
            deadline = time.monotonic() + 20
            while health(http)["status"] != "failed":
                assert time.monotonic() < deadline, health(http)
                time.sleep(0.1)
            h = health(http)
            time.sleep(0.5)
            assert health(http)["errors_total"] == h["errors_total"]  # not retried
            assert http.get("/state").json()["trading_state"] == "ACTIVE"
            assert 'engine_errors_total{kind="strategy"} 5.0' in http.get("/metrics").text
    finally:
        stop(engine)
    assert h["errors_total"] == 5
    assert "ZeroDivisionError: my signal divided by zero" in h["last_error"]
    assert "strategy stopped" in engine.log.read_text()


def test_an_unknown_strategy_or_bad_parameter_refuses_to_start(tmp_path: Path) -> None:
    for strategy, field in [
        ({"name": "martingale"}, "strategy.name"),
        ({"name": "maCrossover", "params": {"fastWindow": 9, "slowWindow": 4}}, "strategy.params.slowWindow"),
    ]:
        with pytest.raises(AssertionError, match="exited early") as exc:
            strategy_engine(tmp_path, strategy)
        assert field in str(exc.value)
        assert "Traceback" not in str(exc.value)
