"""An engine or safety pod running on the real node (node.py), reached from this host at its pod address.

The host is the node, so it reaches pod addresses directly (as the kubelet's probes do; no NetworkPolicy
applies to the node's own traffic). It offers what TradingSystemStack uses of a LocalPod (`url`, `secret`,
`tail`, `stop`), so the stack's helpers work unchanged on real pods.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from kubernetes import client
from quantzoo_api.killswitch import ENGINE_ADMIN_TOKEN_ENV, SAFETY_API_TOKEN_ENV

from hack.devcluster import controlplane

# The Secret (and its key) behind each token variable, as the operator names them.
SECRET_OF = {ENGINE_ADMIN_TOKEN_ENV: "{name}-engine-admin", SAFETY_API_TOKEN_ENV: "{name}-safety-token"}
TOKEN_KEY = "token"


@dataclass
class PodAddress:
    api: client.ApiClient
    plane: controlplane.ControlPlane
    namespace: str
    system: str
    pod: str
    url: str

    def secret(self, env: str) -> str:
        name = SECRET_OF[env].format(name=self.system)
        data = client.CoreV1Api(self.api).read_namespaced_secret(name, self.namespace).data or {}
        return base64.b64decode(data[TOKEN_KEY]).decode()

    def tail(self, lines: int = 40) -> str:
        res = self.plane.kubectl("-n", self.namespace, "logs", self.pod, f"--tail={lines}", check=False)
        return res.stdout or res.stderr

    def stop(self, timeout: float = 0) -> None:
        """The kubelet owns the process; nothing to stop from here."""


def of_pod(
    api: client.ApiClient, plane: controlplane.ControlPlane, pod: client.V1Pod, port: int
) -> PodAddress:
    labels = pod.metadata.labels or {}
    return PodAddress(
        api=api,
        plane=plane,
        namespace=pod.metadata.namespace,
        system=labels["trading.quantzoo.io/system"],
        pod=pod.metadata.name,
        url=f"http://{pod.status.pod_ip}:{port}",
    )
