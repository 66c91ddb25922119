"""Helpers for the tests on real pods (tests/pods): kubectl as JSON, waiting, and throwaway probe pods
that try to reach an address from inside the pod network (the only place a NetworkPolicy applies)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

from hack.devcluster import node

T = TypeVar("T")

# A probe pod runs this in the QuantZoo image: GET each URL until it answers or 15 s pass (the
# NetworkPolicy controller admits a new pod's address a moment after the pod starts), then print the
# outcomes as one JSON line.
PROBE = """
import json, sys, time, urllib.request
out = {}
for url in sys.argv[1:]:
    deadline = time.monotonic() + 15
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                out[url] = r.status
            break
        except Exception as e:
            out[url] = type(e).__name__ + ": " + str(getattr(e, "reason", e))
            if time.monotonic() > deadline:
                break
            time.sleep(1)
print(json.dumps(out))
"""

RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


# The session's release and system (conftest.py's fixtures make them).
OPERATOR_NS = "quantzoo-system"
TRADING_NS = "trading"
SYSTEM = "demo"
MONITORING_NS = "monitoring"
OUTSIDER_NS = "outsider"


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # an API hiccup is retried like a not-yet
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached after {timeout}s (last: {last!r})")


def kubectl_json(cluster: node.RealCluster, *args: str) -> dict:
    return json.loads(cluster.plane.kubectl(*args, "-o", "json").stdout)


def pods(cluster: node.RealCluster, namespace: str, selector: str) -> list[dict]:
    return kubectl_json(cluster, "-n", namespace, "get", "pods", "-l", selector)["items"]


def ready(pod: dict) -> bool:
    conds = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
    return conds.get("Ready") == "True"


def one_ready_pod(cluster: node.RealCluster, namespace: str, selector: str, timeout: float = 180) -> dict:
    def find() -> dict | None:
        found = [p for p in pods(cluster, namespace, selector) if ready(p)]
        return found[0] if found else None

    return wait_for(find, timeout, f"a Ready pod {namespace}/{selector}")


def probe_from(cluster: node.RealCluster, namespace: str, name: str, urls: list[str]) -> dict[str, Any]:
    """Run a pod in `namespace` that GETs each URL; returns {url: HTTP status or the error}."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "netpol-probe"}},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsUser": 10001, "runAsGroup": 10001},
            "containers": [
                {
                    "name": "probe",
                    "image": cluster.node.app_image,
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", PROBE, *urls],
                    "securityContext": RESTRICTED_CONTAINER,
                }
            ],
        },
    }
    cluster.plane.kubectl("apply", "-f", "-", input=json.dumps(pod))

    def finished() -> str | None:
        phase = kubectl_json(cluster, "-n", namespace, "get", "pod", name)["status"].get("phase")
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_for(finished, 150, f"probe pod {namespace}/{name} finished")
    logs = cluster.plane.kubectl("-n", namespace, "logs", name).stdout
    cluster.plane.kubectl("-n", namespace, "delete", "pod", name, "--wait=false")
    assert phase == "Succeeded", logs
    return json.loads(logs.strip().splitlines()[-1])


def container_id(pod: dict, container: str) -> str:
    """The runtime's id of a container of `pod` (containerd://<id> in its status)."""
    for st in pod["status"]["containerStatuses"]:
        if st["name"] == container:
            return st["containerID"].split("://", 1)[1]
    raise KeyError(container)


def task_pid(cluster: node.RealCluster, container: str) -> int:
    """The host pid of a container's main process (`ctr tasks ls`: TASK PID STATUS)."""
    for line in cluster.node.ctr("tasks", "ls").stdout.splitlines()[1:]:
        task, pid, _status = line.split()
        if task == container:
            return int(pid)
    raise KeyError(container)
