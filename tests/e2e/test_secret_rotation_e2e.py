"""The runbook's Alpaca-key rotation, end to end, with no restart: real kube-apiserver, real operator, the
real engine process (hack/devcluster/podrunner.py keeps its mounted Secret in sync, as the kubelet does),
and the real alpaca-py client against the local Alpaca-wire server.

The Secret is replaced the way docs/RUNBOOK.md says (`kubectl create secret ... --dry-run=client -o yaml
| kubectl apply -f -`); the new keys work, the old ones are refused by the broker, the process is the same
one (same PID) with its state. The safety and engine-admin token rotations run on real pods
(tests/pods/test_secret_rotation_realpods.py); this one stays here until the engine pod's rotation to new
Alpaca keys is understood there (see that file's docstring).
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from hack.devcluster.leaks import REGISTRY as LEAKS
from hack.devcluster.podrunner import free_port, wait_for
from hack.devcluster.stack import TradingSystemStack
from tests.engine.engine_fake_alpaca import KEY, SECRET, FakeAlpaca, ServerThread

pytestmark = pytest.mark.slow

SPEC = {
    "symbols": ["AAPL", "MSFT"],
    "strategy": {"name": "noop"},
    "marketData": {"kind": "simulated", "seed": 7, "intervalSeconds": 0.1},
    "risk": {"maxOrdersPerSecond": 50, "maxOrdersPerMinute": 3000, "staleDataSeconds": 30},
    # A short rotation overlap (180 s by default), so the test sees the old token accepted, then refused.
    "engine": {"env": [{"name": "ENGINE_TOKEN_OVERLAP_SECONDS", "value": "5"}]},
    "safety": {"env": [{"name": "SAFETY_TOKEN_OVERLAP_SECONDS", "value": "5"}]},
}
ROTATION_TIMEOUT = 30.0  # generous: the runner resyncs every 0.5 s; a loaded machine may be slow


def new_stack(kube_api, runner, namespace, spec=SPEC) -> TradingSystemStack:
    s = TradingSystemStack(kube_api, runner, namespace, f"rot-{uuid.uuid4().hex[:6]}")
    s.create(spec)
    return s


def rotate(cluster, namespace: str, secret: str, **values: str) -> float:
    """The runbook's rotation command; returns when kubectl returned (time.monotonic())."""
    literals = [f"--from-literal={k}={v}" for k, v in values.items()]
    manifest = cluster.kubectl(
        "-n", namespace, "create", "secret", "generic", secret, *literals, "--dry-run=client", "-o", "yaml"
    ).stdout
    cluster.kubectl("apply", "-f", "-", input=manifest)
    return time.monotonic()


def new_token(tag: str) -> str:
    token = f"rotated-{tag}-{uuid.uuid4().hex}"
    LEAKS.secret(token, f"rotated {tag} token (test)")
    return token


def test_alpaca_credentials_rotation(cluster, kube_api, runner, namespace, operator_process):
    fake = FakeAlpaca()
    port = free_port()
    with ServerThread(fake.app, port):
        creds = "alpaca-paper-credentials"
        LEAKS.secret(KEY, "Alpaca key id (test)")
        LEAKS.secret(SECRET, "Alpaca secret key (test)")
        rotate(cluster, namespace, creds, ALPACA_API_KEY=KEY, ALPACA_API_SECRET=SECRET)
        spec = {
            **SPEC,
            "mode": "paper",
            "broker": {"kind": "alpaca", "credentialsSecret": creds, "baseUrl": f"http://127.0.0.1:{port}"},
        }
        s = new_stack(kube_api, runner, namespace, spec)
        s.run_engine(extra_env={"ENGINE_RECONCILE_INTERVAL_SECONDS": "1"})
        wait_for(lambda: s.engine_state()["trading_state"] == "ACTIVE", timeout=60, what="engine ACTIVE")
        pid = s.engine.proc.pid
        first = s.place_order("AAPL", "buy", 3)
        assert first.status_code == 201, first.text
        assert fake.orders_by_key(KEY) == 1

        new_key, new_secret = new_token("alpaca-key"), new_token("alpaca-secret")
        applied = rotate(cluster, namespace, creds, ALPACA_API_KEY=new_key, ALPACA_API_SECRET=new_secret)
        fake.rotate(new_key, new_secret)  # the old key is revoked at the broker at the same moment

        def new_key_order() -> bool:
            resp = s.place_order("MSFT", "buy", 1)
            return resp.status_code == 201 and fake.orders_by_key(new_key) >= 1

        wait_for(new_key_order, timeout=ROTATION_TIMEOUT, interval=0.2, what="an order sent with the new key")
        took = time.monotonic() - applied
        # The old pair is refused with Alpaca's 401 shape; the new one is never refused.
        old = httpx.get(
            f"http://127.0.0.1:{port}/v2/account",
            headers={"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET},
            timeout=5,
        )
        assert old.status_code == 401
        assert old.json() == {"code": 40110000, "message": "request is not authorized"}
        assert not [r for r in fake.refused if r[0] == new_key]
        # Same process, state kept: the position bought with the old key is still there.
        assert s.engine.proc.pid == pid
        assert s.engine.alive()
        held = httpx.get(s.engine.url + "/positions/current", timeout=5).json()["positions"]
        positions = {p["symbol"]: float(p["quantity"]) for p in held}
        assert positions.get("AAPL") == 3
        # The kill path's own client uses the new key too.
        s.patch(
            {
                "spec": {
                    "killSwitch": {"engaged": True, "closePositions": True, "reason": "r", "operator": "a"}
                }
            }
        )
        wait_for(s.acknowledged, timeout=30, what="acknowledged")
        wait_for(lambda: not fake.positions, timeout=30, what="flattened at the broker with the new key")
        assert not [r for r in fake.refused if r[0] == new_key]
        s.stop()
    print(f"alpaca rotation: first order with the new key {took:.2f}s after kubectl apply returned")
