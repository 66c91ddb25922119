"""Keeps the simulated kwok node's Lease fresh (a workaround for the shared control plane).

kwok v0.7 is started without `--node-lease-duration-seconds`, so it writes no node Lease and posts node
status only every ~55 s, longer than kube-controller-manager's 50 s node-monitor grace period. For a few
seconds of every minute the node counts as unhealthy and the node-lifecycle controller marks every pod on
it NotReady -- and kwok never marks them Ready again. Operator tests depend on pod readiness, so this
renews `kube-node-lease/<node>` every few seconds, as a kubelet would. (The lasting fix is one kwok flag
in tests/support/controlplane.py; reported.)
"""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime

from kubernetes import client

NODE = "kwok-node-0"
NAMESPACE = "kube-node-lease"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class NodeLeaseKeeper(threading.Thread):
    def __init__(self, api: client.ApiClient, node: str = NODE, interval: float = 5.0) -> None:
        super().__init__(name="kwok-node-lease", daemon=True)
        self.coordination = client.CoordinationV1Api(api)
        self.node = node
        self.interval = interval
        self.stopping = threading.Event()

    def renew(self) -> None:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.node, "namespace": NAMESPACE},
            "spec": {"holderIdentity": self.node, "leaseDurationSeconds": 40, "renewTime": _now()},
        }
        with contextlib.suppress(client.ApiException):
            self.coordination.patch_namespaced_lease(
                self.node,
                NAMESPACE,
                body,
                field_manager="quantzoo-tests-node-lease",
                force=True,
                _content_type="application/apply-patch+yaml",
            )

    def run(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(Exception):
                self.renew()
            self.stopping.wait(self.interval)

    def stop(self) -> None:
        self.stopping.set()
