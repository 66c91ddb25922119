"""The local Alpaca-wire server (tests/engine/engine_fake_alpaca.py) for engine pods on the real node
(tests/pods): bound on the node's own address, which pods reach through their gateway, its test keys
registered as secrets for tests/zz_leaks, and a TradingSystem of a test's own on it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from hack.devcluster import node
from hack.devcluster.leaks import REGISTRY as LEAKS
from tests.engine.engine_fake_alpaca import KEY, SECRET, FakeAlpaca, ServerThread
from tests.pods import ownsystem, realpods

# Far above the simulated feed's prices: a buy limit inside the engine's price collar rests at "Alpaca".
BROKER_PRICE = 100_000.0
CREDENTIALS = "alpaca"


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextmanager
def serving(fake: FakeAlpaca) -> Iterator[str]:
    """`fake` served on the node's address; yields its base URL as pods dial it."""
    port = free_port(node.NODE_IP)
    LEAKS.secret(KEY, "Alpaca key id (test)")
    LEAKS.secret(SECRET, "Alpaca secret key (test)")
    with ServerThread(fake.app, port, host=node.NODE_IP):
        yield f"http://{node.NODE_IP}:{port}"


def resting_broker() -> FakeAlpaca:
    """A fake Alpaca where the engine's buy limits rest (its prices far above the feed's)."""
    fake = FakeAlpaca()
    fake.prices = {"AAPL": BROKER_PRICE, "MSFT": BROKER_PRICE}
    fake.cash = fake.last_equity = 10_000_000.0
    return fake


@contextmanager
def alpaca_system(
    cluster: node.RealCluster, ns: str, name: str, spec: dict[str, Any]
) -> Iterator[tuple[ownsystem.System, FakeAlpaca]]:
    """`spec` on a resting fake Alpaca (its keys in the Secret `alpaca`), in its own namespace; yields the
    system, its engine pod ACTIVE, and the fake. The namespace goes afterwards."""
    fake = resting_broker()
    with serving(fake) as base_url:
        ownsystem.namespace(cluster, ns)
        keys = [f"--from-literal=ALPACA_API_KEY={KEY}", f"--from-literal=ALPACA_API_SECRET={SECRET}"]
        cluster.plane.kubectl("-n", ns, "create", "secret", "generic", CREDENTIALS, *keys)
        broker = {"kind": "alpaca", "credentialsSecret": CREDENTIALS, "baseUrl": base_url}
        with ownsystem.trading_system(cluster, ns, name, {**spec, "broker": broker}) as pods:
            system = ownsystem.System.of(cluster, ns, name, pods)
            realpods.wait_for(lambda: ownsystem.active(system.state()), 60, "engine ACTIVE")
            yield system, fake


def place_working_orders(system: ownsystem.System, fake: FakeAlpaca, count: int = 2) -> list[str]:
    """`count` buy limits a little below the feed's last price: they rest at the fake Alpaca."""
    last = {r["symbol"]: r for r in httpx.get(system.url + "/symbols/list", timeout=5).json()}
    working = []
    for i in range(count):
        price = round(float(last["AAPL"]["last_price"]) * (0.97 + i * 0.005), 2)
        resp = system.order(type="limit", limit_price=price)
        assert resp.status_code == 201, resp.text
        working.append(resp.json()["id"])
    assert {o["id"] for o in fake.open_orders()} == set(working)
    return working


def submissions(fake: FakeAlpaca, since: int = 0) -> list[str]:
    """The order submissions the fake received after its `since`-th request."""
    return [r for r in fake.requests[since:] if r.startswith("POST /v2/orders")]
