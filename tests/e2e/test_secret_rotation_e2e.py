"""The runbook's credential rotation, end to end, with no restart: real kube-apiserver, real operator,
real engine and safety processes (hack/devcluster/podrunner.py keeps their mounted Secrets in sync, as the
kubelet does), and for Alpaca the real alpaca-py client against the local Alpaca-wire server.

Each Secret is rotated the way docs/RUNBOOK.md says (`kubectl create secret ... --dry-run=client -o yaml
| kubectl apply -f -`). After each rotation: the new value works, the old one is refused (401) once the overlap ends, and the
processes are the same ones (same PIDs). The old value stays valid for the overlap window (set to
5 s here; 180 s by default), so a rotation never refuses a kill; then it is refused (401).
"""

from __future__ import annotations

import subprocess
import time
import uuid

import httpx
import pytest
from quantzoo_api.killswitch import ENGINE_KILL_SWITCH_PATH

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
OVERLAP_END_TIMEOUT = 20.0  # the 5 s overlap plus slack for a loaded machine
# The runbook's safety-check call, as typed; only the port differs.
SAFETY_CHECK = (
    "curl http://localhost:{port}/test/safety-check "
    '-H "Authorization: Bearer $SAFETY_API_TOKEN" -s -o /dev/null -w "%{{http_code}}"'
)
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


def safety_check(port: int, token: str) -> str:
    """The runbook's `curl .../test/safety-check` with $SAFETY_API_TOKEN; returns the HTTP status."""
    done = subprocess.run(
        ["bash", "-c", SAFETY_CHECK.format(port=port)],
        env={"PATH": "/usr/bin:/bin", "SAFETY_API_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.stdout.strip()


def admin_probe(engine_url: str, token: str) -> int:
    """An admin call that changes nothing: an empty order body is 422 when authorised, 401 when not."""
    resp = httpx.post(
        engine_url + "/orders", json={}, headers={"Authorization": f"Bearer {token}"}, timeout=5
    )
    if resp.status_code >= 400:
        LEAKS.response(resp, "admin-probe")
    return resp.status_code


def _halted(s: TradingSystemStack) -> bool:
    st = s.engine_state()
    return st["trading_state"] == "HALTED" and st["kill_switch"]["engaged"]


def test_safety_api_token_rotation(cluster, kube_api, runner, namespace, operator_process):
    s = new_stack(kube_api, runner, namespace)
    s.run_engine()
    s.run_safety()
    wait_for(lambda: s.engine_state()["trading_state"] == "ACTIVE", timeout=60, what="engine ACTIVE")
    port = int(s.safety.url.rsplit(":", 1)[1])
    old = s.token(f"{s.name}-safety-token")
    pids = (s.engine.proc.pid, s.safety.proc.pid)
    assert safety_check(port, old) == "200"

    new = new_token("safety")
    applied = rotate(cluster, namespace, f"{s.name}-safety-token", token=new)
    wait_for(
        lambda: safety_check(port, new) == "200", timeout=ROTATION_TIMEOUT, what="new safety token works"
    )
    took = time.monotonic() - applied
    # Inside the overlap window the old token still works (a kill typed with it is not refused) ...
    assert safety_check(port, old) == "200"
    # ... and after it, it is refused.
    wait_for(lambda: safety_check(port, old) == "401", timeout=OVERLAP_END_TIMEOUT, what="old token refused")
    refused = httpx.post(
        s.safety.url + "/kill-switch/activate",
        headers={"Authorization": f"Bearer {old}", "Content-Type": "application/json"},
        content='{"reason": "old token", "close_positions": false, "operator": "mallory"}',
        timeout=10,
    )
    LEAKS.response(refused, "safety-old-token")
    assert refused.status_code == 401
    assert not (s.get()["spec"].get("killSwitch") or {}).get("engaged")
    # The runbook's activate with the new token still stops trading.
    ok = httpx.post(
        s.safety.url + "/kill-switch/activate",
        headers={"Authorization": f"Bearer {new}", "Content-Type": "application/json"},
        content='{"reason": "after rotation", "close_positions": false, "operator": "alice"}',
        timeout=10,
    )
    assert ok.status_code == 200, ok.text
    wait_for(lambda: _halted(s), timeout=15, what="engine halted")
    assert (s.engine.proc.pid, s.safety.proc.pid) == pids
    assert s.engine.alive()
    assert s.safety.alive()
    print(f"safety token rotation: new token accepted {took:.2f}s after kubectl apply returned")


def test_engine_admin_token_rotation(cluster, kube_api, runner, namespace, operator_process):
    s = new_stack(kube_api, runner, namespace)
    s.run_engine()
    s.run_safety()
    wait_for(lambda: s.engine_state()["trading_state"] == "ACTIVE", timeout=60, what="engine ACTIVE")
    old = s.token(f"{s.name}-engine-admin")
    pids = (s.engine.proc.pid, s.safety.proc.pid)
    # The operator has pushed with the old token (and cached it): one engage/release cycle.
    s.patch({"spec": {"killSwitch": {"engaged": True, "reason": "before rotation", "operator": "alice"}}})
    wait_for(s.acknowledged, timeout=30, what="acknowledged with the old token")
    s.patch({"spec": {"killSwitch": {"engaged": False, "release": {"operator": "alice", "reason": "drill"}}}})
    wait_for(lambda: s.engine_state()["trading_state"] == "ACTIVE", timeout=30, what="engine ACTIVE again")
    assert admin_probe(s.engine.url, old) == 422

    new = new_token("engine-admin")
    applied = rotate(cluster, namespace, f"{s.name}-engine-admin", token=new)
    wait_for(
        lambda: admin_probe(s.engine.url, new) == 422, timeout=ROTATION_TIMEOUT, what="new admin token works"
    )
    took = time.monotonic() - applied
    # Inside the overlap window the old token still works, then it is refused.
    assert admin_probe(s.engine.url, old) == 422
    wait_for(
        lambda: admin_probe(s.engine.url, old) == 401, timeout=OVERLAP_END_TIMEOUT, what="old token refused"
    )
    body = {"engaged": True, "reason": "old token", "source": "test"}
    refused = httpx.post(
        s.engine.url + ENGINE_KILL_SWITCH_PATH,
        json=body,
        headers={"Authorization": f"Bearer {old}"},
        timeout=5,
    )
    LEAKS.response(refused, "engine-old-token")
    assert refused.status_code == 401
    assert s.engine_state()["trading_state"] == "ACTIVE"

    # The safety service's direct halt (API server down) uses the rotated token from its own mount.
    wait_for(
        lambda: s.safety.secret("ENGINE_ADMIN_TOKEN") == new, timeout=ROTATION_TIMEOUT, what="safety mount"
    )
    if cluster.plane is not None:
        cluster.plane.stop_apiserver()
        try:
            resp = httpx.post(
                s.safety.url + "/kill-switch/activate",
                headers={"Authorization": f"Bearer {s.safety.secret('SAFETY_API_TOKEN')}"},
                json={
                    "reason": "apiserver down after rotation",
                    "close_positions": False,
                    "operator": "carol",
                },
                timeout=20,
            )
            assert resp.status_code in (200, 202), resp.text
            assert resp.json()["engine"] == "halted", resp.text
            assert _halted(s)
        finally:
            cluster.plane.start_apiserver()
    else:
        s.patch({"spec": {"killSwitch": {"engaged": True, "reason": "after rotation", "operator": "carol"}}})
    # The operator's push keeps working: its cached token gets a 401, it re-reads the Secret and retries.
    wait_for(
        lambda: (s.get()["spec"].get("killSwitch") or {}).get("engaged"), timeout=30, what="switch in spec"
    )
    ks = wait_for(s.acknowledged, timeout=30, what="operator acknowledgement after rotation")
    assert ks["acknowledgements"][0]["engaged"] is True
    assert (s.engine.proc.pid, s.safety.proc.pid) == pids
    assert s.engine.alive()
    assert s.safety.alive()
    print(f"engine admin token rotation: new token accepted {took:.2f}s after kubectl apply returned")


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
