"""Finding 1 of issue #15 against the real API server, with engines as real processes (no operator, so
nothing but the engine's own watch and Lease is tested):

- a silent partition (packets dropped, no RST, no FIN) between an engine and the API server, made by
  black-holing the engine's API-server traffic in tests/faults/delay_proxy.py once its watch is up: the
  engine halts itself (`no_proof_of_state`) within the configured bound, and resumes on fresh proof once
  the route is back;
- the no_proof_of_state halt also cancels the orders resting at the broker (they could fill under a switch
  the engine can no longer see) and keeps the positions (flattening is the switch's call);
- two engines for the same TradingSystem: the second does not trade while the first holds the trading
  Lease, and takes over only after the Lease expired, when the first is partitioned, by which time the
  first had already stopped submitting.

Not modelled: a partition that also cuts the engine from the broker (the broker route is in-process here:
the paper broker), and pod scheduling (the processes stand in for a force-deleted pod and its successor).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.delay_proxy import DelayProxy
from tests.faults.watching_engine import (
    WatchingEngine,
    api_server_port,
    create_trading_system,
    kubeconfig_via,
    start_watching_engine,
    wait_state,
)

pytestmark = pytest.mark.slow

PROOF_BOUND = 4.0
LEASE = {"duration": 6, "renew": 1.0, "margin": 2.0}
ENV = {
    "ENGINE_PROOF_TIMEOUT_SECONDS": str(PROOF_BOUND),
    "ENGINE_WATCH_TIMEOUT_SECONDS": "3",
    "ENGINE_KUBE_REQUEST_TIMEOUT_SECONDS": "1",
    "ENGINE_LEASE_DURATION_SECONDS": str(LEASE["duration"]),
    "ENGINE_LEASE_RENEW_SECONDS": str(LEASE["renew"]),
    "ENGINE_LEASE_MARGIN_SECONDS": str(LEASE["margin"]),
}
# How late the engine's state may show a halt: the fence timer's tick plus this test's polling.
SLACK = 1.0


def active(state: dict) -> bool:
    return state["trading_state"] == "ACTIVE"


@pytest.fixture
def proxy(cluster) -> Iterator[DelayProxy]:
    p = DelayProxy("127.0.0.1", api_server_port(cluster.kubeconfig)).start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def engines() -> Iterator[list[WatchingEngine]]:
    started: list[WatchingEngine] = []
    try:
        yield started
    finally:
        for engine in started:
            engine.stop()


def test_a_silently_partitioned_engine_halts_itself_within_the_bound(
    cluster, kube_api, namespace, proxy: DelayProxy, engines: list[WatchingEngine], tmp_path: Path
) -> None:
    create_trading_system(kube_api, namespace, "acct")
    kubeconfig = kubeconfig_via(cluster.kubeconfig, proxy, tmp_path / "kubeconfig")
    engine = start_watching_engine(tmp_path, kubeconfig, namespace, "acct", "engine-a", ENV)
    engines.append(engine)
    wait_state(engine, active, 20, "ACTIVE")
    # A quiet, healthy watch is proof enough (bookmarks, re-listed watches): no false halt.
    deadline = time.monotonic() + 2 * PROOF_BOUND
    while time.monotonic() < deadline:
        assert active(engine.state()), engine.state()["halt_reasons"]
        time.sleep(0.2)
    assert engine.place_order().status_code == 201

    proxy.blackhole = True
    partitioned_at = time.monotonic()
    seen, state = wait_state(
        engine,
        lambda s: "no_proof_of_state" in s["halt_reasons"],
        PROOF_BOUND + SLACK + 5,
        "halted for lack of proof of the kill switch's state",
    )
    assert seen - partitioned_at <= PROOF_BOUND + SLACK, f"halted after {seen - partitioned_at:.1f}s"
    assert state["trading_state"] == "HALTED"
    refused = engine.place_order()
    assert refused.status_code >= 400, refused.text
    assert engine.state()["orders"]["submitted"] == 1

    proxy.blackhole = False  # the route is back: a fresh read lifts the halt
    wait_state(engine, active, 30, "ACTIVE again after fresh proof")


def test_no_proof_of_state_cancels_the_resting_orders_and_keeps_the_positions(
    cluster, kube_api, namespace, proxy: DelayProxy, engines: list[WatchingEngine], tmp_path: Path
) -> None:
    create_trading_system(kube_api, namespace, "acct")
    kubeconfig = kubeconfig_via(cluster.kubeconfig, proxy, tmp_path / "kubeconfig")
    engine = start_watching_engine(tmp_path, kubeconfig, namespace, "acct", "engine-a", ENV)
    engines.append(engine)
    wait_state(engine, active, 20, "ACTIVE")
    assert engine.place_order().status_code == 201  # filled at once by the paper broker: a position
    wait_state(engine, lambda s: s["orders"]["filled"] == 1, 10, "the market order filled")
    last = httpx.get(engine.url + "/positions/current", timeout=2).json()["positions"][0]["last_price"]
    # 4.5% below the last trade: inside the engine's 5% price collar, far enough not to fill meanwhile.
    resting = engine.place_order(type="limit", limit_price=round(last * 0.955, 2))
    assert resting.status_code == 201, resting.text
    wait_state(engine, lambda s: s["orders"]["working"] == 1, 10, "the limit order resting")
    held = engine.positions()
    assert held == {"AAPL": 1.0}

    proxy.blackhole = True
    _, state = wait_state(
        engine,
        lambda s: "no_proof_of_state" in s["halt_reasons"] and s["orders"]["working"] == 0,
        PROOF_BOUND + SLACK + 5,
        "halted for lack of proof, with no order left working",
    )
    assert state["orders"]["cancelled_no_proof_of_state"] == 1
    assert state["kill_switch"]["engaged"] is False  # the engine's own doing, not a kill switch
    assert engine.positions() == held  # positions are not flattened on a guess
    metrics = httpx.get(engine.url + "/metrics", timeout=2).text
    assert 'quantzoo_engine_orders_cancelled_total{cause="no_proof_of_state"} 1.0' in metrics


def test_a_second_engine_trades_only_after_the_first_ones_lease_expired(
    cluster, kube_api, namespace, proxy: DelayProxy, engines: list[WatchingEngine], tmp_path: Path
) -> None:
    create_trading_system(kube_api, namespace, "acct")
    first = start_watching_engine(
        tmp_path, kubeconfig_via(cluster.kubeconfig, proxy, tmp_path / "kubeconfig-a"), namespace, "acct",
        "engine-a", ENV,
    )  # fmt: skip
    engines.append(first)
    wait_state(first, active, 20, "the first engine ACTIVE")
    second = start_watching_engine(tmp_path, cluster.kubeconfig, namespace, "acct", "engine-b", ENV)
    engines.append(second)
    # The second engine reads the (released) switch, but the first holds the Lease: it does not trade.
    deadline = time.monotonic() + 2 * LEASE["duration"]
    while time.monotonic() < deadline:
        state = second.state()
        assert state["trading_state"] == "HALTED"
        assert "no_trading_lease" in state["halt_reasons"]
        assert active(first.state())
        time.sleep(0.2)
    refused = second.place_order()
    assert refused.status_code >= 400, refused.text
    assert second.state()["orders"]["submitted"] == 0
    assert first.place_order().status_code == 201

    proxy.blackhole = True  # the first engine is cut off from the API server (it cannot renew)
    partitioned_at = time.monotonic()
    first_halted, _ = wait_state(first, lambda s: not active(s), LEASE["duration"], "the first engine halted")
    second_active, _ = wait_state(second, active, 4 * LEASE["duration"], "the second engine took over")
    # The first stopped before its Lease could expire; the second waited for the whole duration since the
    # last renewal it saw (at most one renew interval before the partition).
    assert first_halted - partitioned_at <= LEASE["duration"] - LEASE["margin"] + SLACK
    assert second_active - partitioned_at >= LEASE["duration"] - LEASE["renew"]
    assert first_halted < second_active
    assert second.place_order().status_code == 201
    assert first.place_order().status_code >= 400
