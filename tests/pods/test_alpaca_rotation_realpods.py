"""The runbook's Alpaca-key rotation on real pods, with no restart: the real operator pod, the engine pod
with the real alpaca-py client against the local Alpaca-wire server (tests/engine/engine_fake_alpaca.py,
bound on the node's own address, which pods reach through their gateway), and the real kubelet updating
the mounted Secret in place.

The Secret is replaced with the runbook's command (docs/RUNBOOK.md, its `# Alpaca keys` line, with the
new values in place of its placeholders), and, in the runbook's order, the old key is revoked at the
broker only once the engine uses the new one. No broker call is refused, the engine keeps trading, the
next order goes out with the new key, the old one is refused by the broker, the engine container is the
same one with its state, and the kill path's own client flattens with the new key.

Revoking the old key first (the kwok edition did; the runbook's "at once if compromised") leaves the engine
without valid keys until the kubelet's pod sync delivers the new Secret (76 s in one run here): its broker
calls fail with 401 meanwhile, and the safety watchdog engages the kill switch (`auto:error_burst`, 22
errors in 22 s with a reconcile every second), which stays engaged after the new keys arrive. The runbook
says so. The fake server stands in for Alpaca's servers only: no market hours, market orders fill at once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest

from hack.devcluster import node
from hack.devcluster.leaks import REGISTRY as LEAKS
from tests.engine.engine_fake_alpaca import KEY, SECRET, FakeAlpaca
from tests.pods import alpaca_wire, ownsystem, realpods

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

NAME = "alprot"
CREDENTIALS = "alpaca-paper-credentials"  # the runbook's name
# The kubelet refreshes a mounted Secret on the pod's periodic sync (about a minute), not at once.
ROTATION_TIMEOUT = 150


def runbook_step(comment: str) -> str:
    """The command under `# <comment>` in the runbook's rotation block (up to the next comment)."""
    block = ownsystem.runbook_block("To rotate (every 90 days")
    return block.split(f"# {comment}\n", 1)[1].split("\n#", 1)[0]


def run_step(cluster: node.RealCluster, ns: str, command: str) -> float:
    """Runs a runbook command with `kubectl` on PATH; returns when it returned (time.monotonic())."""
    env = {"PATH": f"{cluster.plane.bin_dir}:/usr/bin:/bin", "KUBECONFIG": str(cluster.kubeconfig)}
    env |= {"NS": ns, "TS": NAME, "HOME": str(cluster.plane.workdir)}  # kubectl's cache goes there
    res = ownsystem.bash(command, env, timeout=60)
    assert res.returncode == 0, res.stderr
    return time.monotonic()


def rotate(cluster: node.RealCluster, ns: str, key: str, secret: str) -> float:
    """The runbook's Alpaca-key rotation, its placeholders replaced by the new values."""
    command = runbook_step("Alpaca keys")
    assert "new_key" in command, command
    assert "new_secret" in command, command
    return run_step(cluster, ns, command.replace("new_key", key).replace("new_secret", secret))


def new_value(tag: str) -> str:
    value = f"rotated-{tag}-{uuid.uuid4().hex}"
    LEAKS.secret(value, f"rotated {tag} (test)")
    return value


@dataclass
class AlpacaSystem:
    """A paper TradingSystem on the Alpaca broker (the fake), its engine pod Ready and ACTIVE."""

    cluster: node.RealCluster
    ns: str
    fake: FakeAlpaca
    spec: dict
    engine: dict
    url: str
    admin: dict[str, str]

    def order(self, symbol: str, quantity: float) -> httpx.Response:
        body = {"symbol": symbol, "side": "buy", "quantity": quantity}
        resp = httpx.post(self.url + "/orders", json=body, headers=self.admin, timeout=15)
        if resp.status_code >= 400:
            LEAKS.response(resp, "alpaca-rotation-order (real pods)")
        return resp

    def state(self) -> dict:
        return httpx.get(self.url + "/state", timeout=5).json()

    def containers(self) -> list[tuple[str, int]]:
        pod = ownsystem.ready_pod(self.cluster, self.ns, NAME, "engine")
        return [(c["containerID"], c["restartCount"]) for c in pod["status"]["containerStatuses"]]

    def used(self, key: str) -> bool:
        return any(k == key for k, _ in self.fake.accepted)


@contextmanager
def alpaca_system(cluster: node.RealCluster, ns: str) -> Iterator[AlpacaSystem]:
    fake = FakeAlpaca()
    with alpaca_wire.serving(fake) as base_url:
        spec = {
            "mode": "paper",
            "symbols": ["AAPL", "MSFT"],
            "strategy": {"name": "noop"},
            "marketData": {"kind": "simulated", "seed": 7, "intervalSeconds": 0.2},
            "broker": {
                "kind": "alpaca",
                "credentialsSecret": CREDENTIALS,
                "baseUrl": base_url,
            },
            # The periodic reconcile (every second here) is the engine's first call with new keys.
            "engine": {"env": [{"name": "ENGINE_RECONCILE_INTERVAL_SECONDS", "value": "1"}]},
        }
        ownsystem.namespace(cluster, ns)
        rotate(cluster, ns, KEY, SECRET)  # the first keys, created the same way
        with ownsystem.trading_system(cluster, ns, NAME, spec) as pods:
            engine = pods["engine"]
            token = ownsystem.secret_token(cluster, ns, f"{NAME}-engine-admin")
            s = AlpacaSystem(
                cluster,
                ns,
                fake,
                spec,
                engine,
                f"http://{engine['status']['podIP']}:8001",
                {"Authorization": f"Bearer {token}"},
            )
            realpods.wait_for(lambda: s.state()["trading_state"] == "ACTIVE", 60, "engine ACTIVE")
            first = s.order("AAPL", 3)
            assert first.status_code == 201, first.text
            assert fake.orders_by_key(KEY) == 1
            yield s


@pytest.mark.timeout(600)  # the node's start, the system's, and up to ROTATION_TIMEOUT for the kubelet
def test_alpaca_key_rotation_in_the_runbooks_order(release):
    with alpaca_system(release, "alpaca-rot") as s:
        before = s.containers()
        new_key, new_secret = new_value("alpaca-key"), new_value("alpaca-secret")
        # The new keys exist at the broker and go into the Secret; the old ones are revoked only once the
        # engine uses the new ones (the runbook: after 24 h without errors).
        s.fake.rotate(new_key, new_secret, revoke_old=False)
        applied = rotate(release, s.ns, new_key, new_secret)
        realpods.wait_for(lambda: s.used(new_key), ROTATION_TIMEOUT, "a broker call with the new key", 0.2)
        took = time.monotonic() - applied
        s.fake.revoke_previous()
        second = s.order("MSFT", 1)
        assert second.status_code == 201, second.text
        assert s.fake.orders_by_key(new_key) == 1
        assert not s.fake.refused, "no broker call was refused during the rotation"
        assert s.state()["trading_state"] == "ACTIVE"

        # The old pair is refused with Alpaca's 401 shape.
        old = httpx.get(
            s.spec["broker"]["baseUrl"] + "/v2/account",
            headers={"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET},
            timeout=5,
        )
        assert old.status_code == 401
        assert old.json() == {"code": 40110000, "message": "request is not authorized"}
        # The same container, its state kept: the position bought with the old key is still there.
        assert s.containers() == before
        held = httpx.get(s.url + "/positions/current", timeout=5).json()["positions"]
        assert {p["symbol"]: float(p["quantity"]) for p in held}.get("AAPL") == 3
        # The kill path's own client uses the new key too.
        engage = {"killSwitch": {"engaged": True, "closePositions": True, "reason": "r", "operator": "a"}}
        ownsystem.apply(release, s.ns, NAME, {**s.spec, **engage})
        realpods.wait_for(lambda: not s.fake.positions, 60, "flattened at the broker with the new key")
        assert not [r for r in s.fake.refused if r[0] == new_key]
    print(f"alpaca rotation (real pods): first call with the new key {took:.1f}s after kubectl apply")


@pytest.mark.timeout(600)
def test_compromised_alpaca_key_revoked_first_then_the_engine_pod_refreshed(release):
    """The old key revoked at the broker at the moment of the rotation: the runbook's annotation of the
    engine pod makes the kubelet write the new Secret at once, before the errors add up to a halt."""
    with alpaca_system(release, "alpaca-revoked") as s:
        before = s.containers()
        new_key, new_secret = new_value("alpaca-key"), new_value("alpaca-secret")
        s.fake.rotate(new_key, new_secret)  # the old pair is refused from now on
        revoked = rotate(release, s.ns, new_key, new_secret)
        annotate = runbook_step("revoked first (compromised)? the engine pods read the new keys now:")
        assert "annotate pod" in annotate, annotate
        run_step(release, s.ns, annotate)
        realpods.wait_for(lambda: s.used(new_key), 30, "a broker call with the new key", 0.2)
        took = time.monotonic() - revoked
        second = s.order("MSFT", 1)
        assert second.status_code == 201, second.text
        assert s.fake.orders_by_key(new_key) == 1
        state = s.state()
        assert state["trading_state"] == "ACTIVE", state
        assert not [r for r in s.fake.refused if r[0] == new_key]
        assert s.containers() == before
    print(f"alpaca rotation, old key revoked first (real pods): new key in use {took:.1f}s after")
