"""The runbook's safety-token rotation on real pods: the Secret is replaced with the runbook's command, the
real kubelet updates the mounted file in place (its atomic `..data` swap), the safety pod's service
re-reads it, and the containers are not restarted. The old token keeps working for the overlap window
(5 s here, 180 s by default) and is refused after it.

tests/e2e/test_secret_rotation_e2e.py keeps the engine admin token and the Alpaca keys (a local
Alpaca-wire server on loopback, which pods cannot reach), on the pod runner's processes.
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
def system(release: node.RealCluster) -> Iterator[tuple[str, dict]]:
    ns = f"rot-{uuid.uuid4().hex[:6]}"
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}}
    release.plane.kubectl("apply", "-f", "-", input=json.dumps(namespace))
    image = {"image": release.node.app_image, "imagePullPolicy": "Never"}
    overlap = [{"name": "SAFETY_TOKEN_OVERLAP_SECONDS", "value": OVERLAP}]
    ts = {
        "apiVersion": "trading.quantzoo.io/v1alpha1",
        "kind": "TradingSystem",
        "metadata": {"name": "rot", "namespace": ns},
        "spec": {**SPEC, "engine": image, "safety": {**image, "env": overlap}},
    }
    release.plane.kubectl("apply", "-f", "-", input=json.dumps(ts))
    try:
        selector = "trading.quantzoo.io/system=rot,app.kubernetes.io/component=safety"
        yield ns, realpods.one_ready_pod(release, ns, selector, 240)
    finally:
        release.plane.kubectl("-n", ns, "delete", "ts", "rot", "--timeout=90s", check=False)
        release.plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def safety_check(url: str, token: str) -> int:
    return httpx.get(
        url + "/test/safety-check", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).status_code


def test_safety_token_rotation_through_the_kubelet_without_a_restart(release, system):
    ns, pod = system
    url = f"http://{pod['status']['podIP']}:8888"
    secret = realpods.kubectl_json(release, "-n", ns, "get", "secret", "rot-safety-token")
    old = base64.b64decode(secret["data"]["token"]).decode()
    assert safety_check(url, old) == 200

    new = f"rotated-{uuid.uuid4().hex}"
    # The runbook's rotation: kubectl create secret ... --dry-run=client -o yaml | kubectl apply -f -
    manifest = release.plane.kubectl(
        "-n", ns, "create", "secret", "generic", "rot-safety-token", f"--from-literal=token={new}",
        "--dry-run=client", "-o", "yaml",
    ).stdout  # fmt: skip
    release.plane.kubectl("apply", "-f", "-", input=manifest)
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
    now = realpods.kubectl_json(release, "-n", ns, "get", "pod", pod["metadata"]["name"])
    assert now["metadata"]["uid"] == pod["metadata"]["uid"]
    assert [c["restartCount"] for c in now["status"]["containerStatuses"]] == [
        c["restartCount"] for c in pod["status"]["containerStatuses"]
    ]
