"""Two engines for the same TradingSystem against the real API server, as real processes (no operator,
so nothing but the engines' own watch and trading Lease is tested): the second does not trade while the
first holds the Lease, and takes over only after the Lease expired, when the first is silently partitioned
from the API server (its traffic black-holed in tests/faults/delay_proxy.py), by which time the first had
already stopped submitting.

Kept as processes because a single real node cannot run this honestly: the kubelet kills a force-deleted
pod's container at once, and one StatefulSet never runs two pods of one ordinal, so two live engines of
one system only exist as processes. The silent partition of one engine pod (no_proof_of_state within the
bound, resting orders cancelled, positions kept, resumed on fresh proof) runs on real pods:
tests/pods/test_faults_realpods.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.delay_proxy import DelayProxy
from tests.faults.watching_engine import (
    WatchingEngine,
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
def engines() -> Iterator[list[WatchingEngine]]:
    started: list[WatchingEngine] = []
    try:
        yield started
    finally:
        for engine in started:
            engine.stop()


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
