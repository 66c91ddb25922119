"""The runbook's token rotations on real pods: the Secret is replaced with the runbook's command, the
real kubelet updates the mounted file in place (its atomic `..data` swap), the pod's service re-reads it,
and the containers are not restarted. The old token keeps working for the overlap window (5 s here,
180 s by default) and is refused after it. For the engine's admin token, the operator pod's kill push
keeps working (it re-reads the Secret after a 401 with its cached token).

tests/e2e/test_secret_rotation_e2e.py keeps the Alpaca keys (a local Alpaca-wire server on loopback,
which pods cannot reach), on the pod runner's processes.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator

import httpx
import pytest

from hack.devcluster import node
from tests.pods import realpods

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SPEC = {
    "symbols": ["AAPL"],
    "strategy": {"name": "noop"},
    "marketData": {"kind": "simulated", "seed": 7, "intervalSeconds": 0.2},
}
OVERLAP = "5"
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


def rotate(cluster: node.RealCluster, ns: str, secret: str, token: str) -> None:
    """The runbook's rotation: kubectl create secret ... --dry-run=client -o yaml | kubectl apply -f -"""
    manifest = cluster.plane.kubectl(
        "-n", ns, "create", "secret", "generic", secret, f"--from-literal=token={token}",
        "--dry-run=client", "-o", "yaml",
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
    rotate(release, ns, "rot-safety-token", new)
    realpods.wait_for(
        lambda: safety_check(url, new) == 200, ROTATION_TIMEOUT, "new token accepted", interval=1
    )
    realpods.wait_for(lambda: safety_check(url, old) == 401, 30, "old token refused after the overlap")
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
    ns, _, pod = system
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
    rotate(release, ns, "rot-engine-admin", new)
    realpods.wait_for(
        lambda: admin_probe(url, new) == 422, ROTATION_TIMEOUT, "new admin token accepted", interval=1
    )
    realpods.wait_for(lambda: admin_probe(url, old) == 401, 30, "old admin token refused after the overlap")
    # The operator pod's push after the rotation: its cached token gets a 401, it re-reads and retries.
    engage["spec"]["killSwitch"]["reason"] = "after rotation"
    release.plane.kubectl(*patch, json.dumps(engage))
    realpods.wait_for(lambda: acknowledged(release, ns), 60, "acknowledged after the rotation")
    assert restarts(release, ns, pod) == before
