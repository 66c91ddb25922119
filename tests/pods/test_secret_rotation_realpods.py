"""The runbook's credential rotations on real pods: the Secret is replaced with the runbook's command, the
real kubelet updates the mounted file in place (its atomic `..data` swap), the pod's service re-reads it,
and the containers are not restarted. The old token keeps working for the overlap window (5 s here,
180 s by default) and is refused after it, also for a kill. For the engine's admin token, the operator
pod's kill push keeps working (it re-reads the Secret after a 401 with its cached token), and so does the
safety pod's direct halt with the API server stopped (it reads the rotated token from its own mount).

The Alpaca keys' rotation is tests/pods/test_alpaca_rotation_realpods.py.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator

import httpx
import pytest
from quantzoo_api.killswitch import ENGINE_KILL_SWITCH_PATH

from hack.devcluster import node
from hack.devcluster.leaks import REGISTRY as LEAKS
from tests.pods import realpods

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SPEC = {
    "symbols": ["AAPL"],
    "strategy": {"name": "noop"},
    "marketData": {"kind": "simulated", "seed": 7, "intervalSeconds": 0.2},
}
OVERLAP = "5"
SAFETY_ENGINE_TOKEN = "/var/run/secrets/quantzoo/engine-admin-token/token"  # the safety pod's mount
# The kubelet refreshes a mounted Secret on its pod sync (about a minute), not at once.
ROTATION_TIMEOUT = 150


@pytest.fixture
def system(release: node.RealCluster) -> Iterator[tuple[str, dict, dict]]:
    ns = f"rot-{uuid.uuid4().hex[:6]}"
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}}
    release.plane.kubectl("apply", "-f", "-", input=json.dumps(namespace))
    image = {"image": release.node.app_image, "imagePullPolicy": "Never"}
    engine_env = [{"name": "ENGINE_TOKEN_OVERLAP_SECONDS", "value": OVERLAP}]
    safety_env = [{"name": "SAFETY_TOKEN_OVERLAP_SECONDS", "value": OVERLAP}]
    ts = {
        "apiVersion": "trading.quantzoo.io/v1alpha1",
        "kind": "TradingSystem",
        "metadata": {"name": "rot", "namespace": ns},
        "spec": {**SPEC, "engine": {**image, "env": engine_env}, "safety": {**image, "env": safety_env}},
    }
    release.plane.kubectl("apply", "-f", "-", input=json.dumps(ts))
    try:
        selector = "trading.quantzoo.io/system=rot,app.kubernetes.io/component="
        engine = realpods.one_ready_pod(release, ns, selector + "engine", 240)
        yield ns, realpods.one_ready_pod(release, ns, selector + "safety", 240), engine
    finally:
        release.plane.kubectl("-n", ns, "delete", "ts", "rot", "--timeout=90s", check=False)
        release.plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def rotate(cluster: node.RealCluster, ns: str, secret: str, token: str | None = None, **values: str) -> None:
    """The runbook's rotation: kubectl create secret ... --dry-run=client -o yaml | kubectl apply -f -"""
    literals = [f"--from-literal={k}={v}" for k, v in ({"token": token} if token else values).items()]
    manifest = cluster.plane.kubectl(
        "-n", ns, "create", "secret", "generic", secret, *literals, "--dry-run=client", "-o", "yaml",
    ).stdout  # fmt: skip
    cluster.plane.kubectl("apply", "-f", "-", input=manifest)


def token_of(cluster: node.RealCluster, ns: str, secret: str) -> str:
    data = realpods.kubectl_json(cluster, "-n", ns, "get", "secret", secret)["data"]
    return base64.b64decode(data["token"]).decode()


def restarts(cluster: node.RealCluster, ns: str, pod: dict) -> tuple[str, list[int]]:
    now = realpods.kubectl_json(cluster, "-n", ns, "get", "pod", pod["metadata"]["name"])
    return now["metadata"]["uid"], [c["restartCount"] for c in now["status"]["containerStatuses"]]


def safety_check(url: str, token: str) -> int:
    return httpx.get(
        url + "/test/safety-check", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).status_code


def test_safety_token_rotation_through_the_kubelet_without_a_restart(release, system):
    ns, pod, _ = system
    before = restarts(release, ns, pod)
    url = f"http://{pod['status']['podIP']}:8888"
    old = token_of(release, ns, "rot-safety-token")
    assert safety_check(url, old) == 200

    new = f"rotated-{uuid.uuid4().hex}"
    LEAKS.secret(new, "rotated token (test)")
    rotate(release, ns, "rot-safety-token", new)
    realpods.wait_for(
        lambda: safety_check(url, new) == 200, ROTATION_TIMEOUT, "new token accepted", interval=1
    )
    realpods.wait_for(lambda: safety_check(url, old) == 401, 30, "old token refused after the overlap")
    refused = httpx.post(
        url + "/kill-switch/activate",
        headers={"Authorization": f"Bearer {old}"},
        json={"reason": "old token", "close_positions": False, "operator": "mallory"},
        timeout=20,
    )
    LEAKS.response(refused, "safety-old-token (real pods)")
    assert refused.status_code == 401
    ts = realpods.kubectl_json(release, "-n", ns, "get", "ts", "rot")
    assert not (ts["spec"].get("killSwitch") or {}).get("engaged")
    ok = httpx.post(
        url + "/kill-switch/activate",
        headers={"Authorization": f"Bearer {new}"},
        json={"reason": "after rotation", "close_positions": False, "operator": "alice"},
        timeout=20,
    )
    assert ok.status_code == 200, ok.text
    assert restarts(release, ns, pod) == before


def admin_probe(url: str, token: str) -> int:
    """An admin call that changes nothing: an empty order body is 422 when authorised, 401 when not."""
    return httpx.post(
        url + "/orders", json={}, headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).status_code


def acknowledged(cluster: node.RealCluster, ns: str) -> dict | None:
    ks = (realpods.kubectl_json(cluster, "-n", ns, "get", "ts", "rot").get("status") or {}).get(
        "killSwitch"
    ) or {}
    acks = ks.get("acknowledgements") or []
    return ks if ks.get("engaged") and acks and all(a.get("engaged") for a in acks) else None


def test_engine_admin_token_rotation_and_the_operators_push_after_it(release, system):
    ns, safety, pod = system
    before = restarts(release, ns, pod)
    url = f"http://{pod['status']['podIP']}:8001"
    patch = ("-n", ns, "patch", "ts", "rot", "--type=merge", "-p")
    # The operator pushes with the old token (and caches it): one engage/release cycle.
    engage = {"spec": {"killSwitch": {"engaged": True, "reason": "before rotation", "operator": "alice"}}}
    release.plane.kubectl(*patch, json.dumps(engage))
    realpods.wait_for(lambda: acknowledged(release, ns), 60, "acknowledged with the old token")
    drill = {"spec": {"killSwitch": {"engaged": False, "release": {"operator": "alice", "reason": "drill"}}}}
    release.plane.kubectl(*patch, json.dumps(drill))
    old = token_of(release, ns, "rot-engine-admin")
    assert admin_probe(url, old) == 422

    new = f"rotated-{uuid.uuid4().hex}"
    LEAKS.secret(new, "rotated token (test)")
    rotate(release, ns, "rot-engine-admin", new)
    realpods.wait_for(
        lambda: admin_probe(url, new) == 422, ROTATION_TIMEOUT, "new admin token accepted", interval=1
    )
    realpods.wait_for(lambda: admin_probe(url, old) == 401, 30, "old admin token refused after the overlap")
    refused = httpx.post(
        url + ENGINE_KILL_SWITCH_PATH,
        json={"engaged": True, "reason": "old token", "source": "test"},
        headers={"Authorization": f"Bearer {old}"},
        timeout=10,
    )
    LEAKS.response(refused, "engine-old-token (real pods)")
    assert refused.status_code == 401
    assert httpx.get(url + "/state", timeout=5).json()["trading_state"] == "ACTIVE"

    # The safety pod's direct halt (API server down) uses the rotated token from its own mount, which the
    # kubelet refreshes through the API server: wait for it first, then stop the API server.
    safety_url = f"http://{safety['status']['podIP']}:8888"
    safety_token = token_of(release, ns, "rot-safety-token")
    read_mount = f"print(open('{SAFETY_ENGINE_TOKEN}').read().strip())"
    exec_read = ("-n", ns, "exec", safety["metadata"]["name"], "--", "python", "-c", read_mount)
    realpods.wait_for(
        lambda: release.plane.kubectl(*exec_read, check=False).stdout.strip() == new,
        ROTATION_TIMEOUT,
        "the safety pod's copy of the admin token rotated",
        interval=2,
    )
    release.plane.stop_apiserver()
    try:
        resp = httpx.post(
            safety_url + "/kill-switch/activate",
            headers={"Authorization": f"Bearer {safety_token}"},
            json={"reason": "apiserver down after rotation", "close_positions": False, "operator": "carol"},
            timeout=30,
        )
        assert resp.status_code in (200, 202), resp.text
        assert resp.json()["engine"] == "halted", resp.text
        assert httpx.get(url + "/state", timeout=5).json()["trading_state"] == "HALTED"
    finally:
        release.plane.start_apiserver()
    # The operator pod's push after the rotation: its cached token gets a 401, it re-reads and retries.
    realpods.wait_for(
        lambda: realpods.kubectl_json(release, "-n", ns, "get", "ts", "rot"), 60, "API server up"
    )
    engage["spec"]["killSwitch"]["reason"] = "after rotation"
    release.plane.kubectl(*patch, json.dumps(engage))
    realpods.wait_for(lambda: acknowledged(release, ns), 60, "acknowledged after the rotation")
    assert restarts(release, ns, pod) == before
